"""debian-forge benchmarks against mmdebstrap, run in the same command (these machines are noisy).

Targets (issue: the manifest engine):
  cold build of examples/debian-minimal.json / mmdebstrap --variant=minbase to a tarball  <= 1.2
  full cache hit rebuild (locked manifest, export included)                            <= 1.0 s
  rebuild after changing the last stage's options                                      <= 3.0 s
  two cold builds with the same lock and source epoch: tarballs differ                 == 0
  peak RSS of the engine (cold build)                                                  <= 200 MB
  resolve of a ~300-package set, warm indexes                                          <= 2.0 s
  the same resolve / apt-get install --simulate of the same request                     <= 1.5
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import tempfile
from pathlib import Path

from common import BENCH_DIR, report, run_cli, timed

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples/debian-minimal.json"
TARBALL = "rootfs/debian-bookworm-minbase.tar"


def forge(args: list, env: dict, rss_file: Path | None = None) -> float:
    return run_cli("debian_forge.cli", args, env, rss_file)


def debootstrap_stage():
    """The org.osbuild.debootstrap module (its `sources()` gives a bootstrap's repositories)."""
    from debian_forge import stages

    return stages.get("org.osbuild.debootstrap").module


def mirror_lines(stage_options: dict) -> list[str]:
    """The sources the example's bootstrap resolves against, as mmdebstrap mirror lines."""
    from deb_mock.bootstrap import mirror_lines as lines
    from deb_mock.host_sources import resolve_mirror, resolve_security_mirror

    module = debootstrap_stage()
    options = dict(stage_options)
    options["mirror"] = resolve_mirror(options.get("mirror"))
    options["security-mirror"] = resolve_security_mirror(None, options["mirror"])
    return lines(module.sources(options))


def mmdebstrap_minbase(lines: list[str], suite: str, epoch: int) -> float:
    target = Path(tempfile.mkdtemp(prefix="mmdebstrap-", dir=BENCH_DIR))
    try:
        return timed(["mmdebstrap", "--variant=minbase", "--mode=root", suite,
                      target / "rootfs.tar", *lines],
                     env={**os.environ, "SOURCE_DATE_EPOCH": str(epoch)})
    finally:
        shutil.rmtree(target, ignore_errors=True)


# A bootstrap plus services and tools: about 300 packages resolved in one request.
RESOLVE_PACKAGES = ["systemd", "openssh-server", "python3", "git", "curl", "vim", "sudo",
                    "locales", "iproute2", "ca-certificates", "rsync", "less", "gnupg", "man-db",
                    "build-essential", "python3-pip", "xauth", "apache2", "gdb", "strace",
                    "tmux", "htop", "nfs-common", "cron", "logrotate", "rsyslog"]


def resolve_benchmark(env: dict, work: Path) -> tuple[float, float, int]:
    """(our resolve, apt-get --simulate of the same request, packages): warm indexes."""

    from deb_mock import bootstrap
    from deb_mock.apt_host import HostApt
    from debian_forge.resolve import AptState, Resolver

    manifest = work / "resolve.json"
    manifest.write_text(json.dumps({"version": "2", "pipelines": [{"name": "os", "stages": [
        {"type": "org.osbuild.debootstrap",
         "options": {"suite": "bookworm", "variant": "minbase", "packages": RESOLVE_PACKAGES}}]}]}))
    forge(["resolve", manifest, "-o", work / "resolved.json"], env)  # warms the indexes
    ours = statistics.median(forge(["resolve", manifest, "-o", work / "resolved.json"], env)
                             for _ in range(3))
    locked = json.loads((work / "resolved.json").read_text())
    count = len(locked["pipelines"][0]["stages"][0]["inputs"]["packages"]["references"])
    # The peer: the same request to apt-get --simulate, on the same isolated APT state.
    options = locked["pipelines"][0]["stages"][0]["options"]
    state = AptState(architecture=options["architecture"])
    state.sources = {"debian": debootstrap_stage().sources(options)}
    host_apt: HostApt = Resolver(Path(env["DEBIAN_FORGE_CACHE_DIR"])).apt(state)
    request = bootstrap.base_request("minbase", RESOLVE_PACKAGES)
    apt = statistics.median(timed(["apt-get", *host_apt.options(), "-s", "install", "--", *request])
                            for _ in range(3))
    return ours, apt, count


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    manifest = json.loads(EXAMPLE.read_text())
    boot = manifest["pipelines"][0]["stages"][0]["options"]
    lines = mirror_lines(boot)
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    cache, work = BENCH_DIR / "forge-cache", BENCH_DIR / "forge-work"
    for path in (cache, work):
        shutil.rmtree(path, ignore_errors=True)
    work.mkdir()
    env = {**os.environ, "DEBIAN_FORGE_CACHE_DIR": str(cache)}
    rss_file = BENCH_DIR / "rss"

    print("benchmark: examples/debian-minimal.json (bookworm minbase tarball); peer "
          "mmdebstrap --variant=minbase to a tarball in the same run", flush=True)
    mm_first = mmdebstrap_minbase(lines, boot["suite"], manifest["source-epoch"])
    cold = forge(["build", EXAMPLE, "--export", "rootfs", "--output-directory", work / "cold"],
                 env, rss_file)
    rss_mb = int(rss_file.read_text()) / 1024
    mm_second = mmdebstrap_minbase(lines, boot["suite"], manifest["source-epoch"])
    mmdebstrap = statistics.mean([mm_first, mm_second])

    lock = work / "cold/manifest.lock.json"
    hit = statistics.median(
        forge(["build", lock, "--export", "rootfs", "--output-directory", work / "hit"], env)
        for _ in range(5))

    last_stage = []
    for i in range(3):
        changed = json.loads(lock.read_text())
        changed["pipelines"][1]["stages"][0]["options"]["filename"] = f"changed-{i}.tar"
        path = work / f"changed-{i}.json"
        path.write_text(json.dumps(changed))
        last_stage.append(forge(["build", path, "--export", "rootfs", "--output-directory",
                                 work / f"changed-{i}"], env))
    last = statistics.median(last_stage)

    # A second cold build of the lock: a new store (the package cache stays: same files).
    forge(["build", lock, "--store", work / "store2", "--export", "rootfs",
           "--output-directory", work / "cold2"], env)
    differ = int(sha256(work / "cold" / TARBALL) != sha256(work / "cold2" / TARBALL))

    resolve_s, apt_s, resolved = resolve_benchmark(env, work)

    rows = [
        ("cold build / mmdebstrap minbase", cold / mmdebstrap, 1.2,
         f"{cold:.1f} s vs {mmdebstrap:.1f} s"),
        ("full cache hit rebuild (s)", hit, 1.0, "locked manifest, export included"),
        ("last stage changed rebuild (s)", last, 3.0, "tar options changed"),
        ("cold builds differing (count)", differ, 0,
         f"tarball sha256 {sha256(work / 'cold' / TARBALL)[:16]}…"),
        ("peak RSS of the engine, MB", rss_mb, 200, "cold build"),
        (f"resolve {resolved} packages (s)", resolve_s, 2.0, "warm indexes, whole command"),
        ("resolve / apt-get --simulate", resolve_s / apt_s, 1.5,
         f"{resolve_s:.2f} s vs {apt_s:.2f} s, same request and indexes"),
    ]
    shutil.rmtree(work, ignore_errors=True)
    return report("forge", rows, {
        "mmdebstrap_s": [mm_first, mm_second], "cold_build_s": cold, "cache_hit_s": hit,
        "last_stage_s": last_stage, "tarballs_differ": differ, "rss_mb": rss_mb,
        "resolve_s": resolve_s, "apt_simulate_s": apt_s, "resolved_packages": resolved})
