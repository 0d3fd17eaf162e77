"""deb-mock package builds against sbuild (unshare backend), same hello source, same run.

Targets (issue: deb-mock builds):
  deb-mock cold (base cached, build dependencies not) / sbuild   <= 1.0
  deb-mock warm (build-dependency layer cached) / sbuild          <= 0.6
sbuild gets a buildd chroot tarball made by mmdebstrap beforehand and runs without lintian,
piuparts or autopkgtest. Its unshare mode needs subordinate ids for root: this benchmark adds
`root:1000000:65536` to /etc/subuid and /etc/subgid if root has none.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
from pathlib import Path

from common import BENCH_DIR, report, run_cli, timed

CONFIG = "debian-bookworm-amd64"
SOURCE = "hello"


def _subids() -> None:
    for path in (Path("/etc/subuid"), Path("/etc/subgid")):
        text = path.read_text() if path.exists() else ""
        if not any(line.startswith("root:") for line in text.splitlines()):
            path.write_text(text + "root:1000000:65536\n")


def sbuild(dsc: Path, tarball: Path, work: Path) -> float:
    work.mkdir(parents=True, exist_ok=True)
    return timed(["sh", "-c", f"cd {work} && sbuild --chroot-mode=unshare --chroot={tarball} "
                              "--dist=bookworm --arch=amd64 --no-run-lintian --no-run-piuparts "
                              f"--no-run-autopkgtest --nolog {dsc}"])


def main() -> int:
    from deb_mock.bootstrap import mirror_lines
    from deb_mock.config import load_config
    from deb_mock.environment import archive_sources

    root = BENCH_DIR / "build"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    env = {**os.environ, "DEBIAN_FORGE_CACHE_DIR": str(root / "cache"),
           "DEB_MOCK_STATE_DIR": str(root / "state")}
    _subids()
    print(f"benchmark: deb-mock build {SOURCE} vs sbuild --chroot-mode=unshare, same run",
          flush=True)
    run_cli("deb_mock.cli", ["-r", CONFIG, "init"], env)  # the base: cached before timing
    lines = mirror_lines(archive_sources(load_config(CONFIG)))
    tarball = root / "bookworm-amd64.tar"
    timed(["mmdebstrap", "--variant=buildd", "--mode=root", "bookworm", tarball, *lines])

    cold = run_cli("deb_mock.cli", ["-r", CONFIG, "build", SOURCE, "--resultdir",
                                    root / "cold"], env)
    split = json.loads((root / "cold/build.json").read_text())["durations"]
    dsc = next((root / "cold").glob("*.dsc"))
    sbuild_first = sbuild(dsc, tarball, root / "sbuild1")
    warm = statistics.median(
        run_cli("deb_mock.cli", ["-r", CONFIG, "build", SOURCE, "--resultdir",
                                 root / f"warm{i}"], env) for i in range(2))
    sbuild_second = sbuild(dsc, tarball, root / "sbuild2")
    peer = statistics.mean([sbuild_first, sbuild_second])
    rows = [
        ("deb-mock cold / sbuild", cold / peer, 1.0, f"{cold:.1f} s vs {peer:.1f} s"),
        ("deb-mock warm / sbuild", warm / peer, 0.6, f"{warm:.1f} s vs {peer:.1f} s"),
        ("cold split: deps install (s)", split["install"], float("inf"),
         f"build {split['build']:.1f} s, collect {split['collect']:.2f} s, "
         f"source {split['source']:.1f} s"),
    ]
    shutil.rmtree(root, ignore_errors=True)
    return report("build", rows, {"cold_s": cold, "warm_s": warm, "split": split,
                                  "sbuild_s": [sbuild_first, sbuild_second]})
