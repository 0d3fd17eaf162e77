"""deb-mock benchmarks against mmdebstrap, run in the same command (these machines are noisy).

Targets (issue: deb-mock foundation):
  cold init / mmdebstrap --variant=buildd  <= 1.15
  warm init / mmdebstrap --variant=buildd  <= 0.10 (aim: under 1 s)
  chroot -- true                           <= 0.2 s
  peak RSS of the deb-mock process         <= 150 MB
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
from pathlib import Path

from common import BENCH_DIR, report, run_cli, timed

CONFIG = os.environ.get("BENCH_CONFIG", "debian-bookworm-amd64")


def deb_mock(args: list[str], env: dict, rss_file: Path | None = None) -> float:
    return run_cli("deb_mock.cli", args, env, rss_file)


def mmdebstrap_buildd(mirror_lines: list[str], suite: str) -> float:
    target = Path(tempfile.mkdtemp(prefix="mmdebstrap-", dir=BENCH_DIR))
    try:
        shutil.rmtree(target)
        return timed(["mmdebstrap", "--variant=buildd", "--mode=root", suite, str(target),
                      *mirror_lines])
    finally:
        shutil.rmtree(target, ignore_errors=True)


def main() -> int:
    from deb_mock.bootstrap import mirror_lines
    from deb_mock.config import load_config
    from deb_mock.environment import archive_sources

    config = load_config(CONFIG)
    lines = mirror_lines(archive_sources(config))
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    cache, state = BENCH_DIR / "cache", BENCH_DIR / "state"
    for path in (cache, state):
        shutil.rmtree(path, ignore_errors=True)
    env = {**os.environ, "DEBIAN_FORGE_CACHE_DIR": str(cache), "DEB_MOCK_STATE_DIR": str(state)}
    rss_file = BENCH_DIR / "rss"

    print(f"benchmark: {CONFIG}, buildd variant; peer mmdebstrap in the same run", flush=True)
    mm_first = mmdebstrap_buildd(lines, config.suite)
    cold = deb_mock(["-r", CONFIG, "init"], env, rss_file)
    rss_cold_mb = int(rss_file.read_text()) / 1024
    mm_second = mmdebstrap_buildd(lines, config.suite)
    mmdebstrap = statistics.mean([mm_first, mm_second])
    warm = statistics.median(deb_mock(["-r", CONFIG, "init"], env) for _ in range(5))
    deb_mock(["-r", CONFIG, "install", "hello"], env, rss_file)
    rss_install_mb = int(rss_file.read_text()) / 1024
    chroot_true = statistics.median(deb_mock(["-r", CONFIG, "chroot", "--", "true"], env)
                                    for _ in range(7))
    shutil.rmtree(state, ignore_errors=True)

    rows = [
        ("cold init / mmdebstrap", cold / mmdebstrap, 1.15, f"{cold:.1f} s vs {mmdebstrap:.1f} s"),
        ("warm init / mmdebstrap", warm / mmdebstrap, 0.10, f"{warm:.2f} s vs {mmdebstrap:.1f} s"),
        ("chroot -- true (s)", chroot_true, 0.2, "wall time of the whole command"),
        ("peak RSS, MB", max(rss_cold_mb, rss_install_mb), 150,
         f"cold init {rss_cold_mb:.0f} MB, install {rss_install_mb:.0f} MB"),
    ]
    return report("deb-mock", rows, {
        "config": CONFIG, "mmdebstrap_s": [mm_first, mm_second], "cold_init_s": cold,
        "warm_init_s": warm, "chroot_true_s": chroot_true,
        "rss_mb": {"cold_init": rss_cold_mb, "install": rss_install_mb}})
