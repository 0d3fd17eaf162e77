"""debian-forge disk images against mmdebstrap, run in the same command (these machines are noisy).

examples/debian-qcow2.json: pipeline os (bookworm minbase, one apt stage with a kernel, GRUB and
cloud-init, config stages), image (GPT disk: sfdisk, mkfs.fat and mkfs.ext4 filled from os,
grub2.inst), qcow2 (qemu-img convert). Cold means a fresh empty store with the package cache and
the archive indexes warm (this suite's own cache, $DEBIAN_FORGE_BENCH_DIR/disk-cache, filled
before timing); the peer mmdebstrap gets the same .debs in /var/cache/apt/archives beforehand,
so neither tool downloads packages (mmdebstrap still fetches its indexes, as it always does).

Targets (this suite's proposals; no issue sets them yet):
  cold image build / mmdebstrap --variant=minbase --include=<the apt stage's packages> to a
    tarball: what the disk image costs on top of the tree                                <= 1.5
  cold split: tree stages (os), disk assembly (image), conversion (qcow2), from build.json   -
  full cache hit rebuild (locked manifest, the ~0.9 GB qcow2 export included)           <= 5.0 s
  stages built by that rebuild                                                          == 0
  rebuild after changing only the hostname / the cold build                             <= 0.5
  stages of that rebuild not as expected: built are the hostname stage on in os, and in
    image and qcow2 the stages from the first one with a changed pipeline as input on
    (image's truncate and sfdisk read no tree: cached); all the others from the cache     == 0
  qcow2 size / the os tree's size (apparent size of its files, each inode once)         <= 1.2
  sizes of the qcow2, the raw image (allocated, du) and the tree (MB)                      -
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_forge import forge, mirror_lines
from common import BENCH_DIR, report, timed

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples/debian-qcow2.json"
EXPORT = ["--export", "qcow2"]
INF = float("inf")


def package_refs(lock: dict, pipeline: str | None = None) -> list:
    """Every package file the locked manifest names (of one pipeline), as PackageRefs."""
    from deb_mock.package_cache import PackageRef

    urls = {ref: item["url"] for ref, item in lock["sources"]["org.osbuild.curl"]["items"].items()}
    refs = []
    for item in lock["pipelines"]:
        if pipeline is not None and item["name"] != pipeline:
            continue
        for stage in item["stages"]:
            for put in (stage.get("inputs") or {}).values():
                if put.get("origin") != "org.osbuild.source" or not isinstance(
                        put.get("references"), dict):
                    continue
                for ref, meta in put["references"].items():
                    meta = meta.get("metadata", {})
                    # The name apt gives the file in /var/cache/apt/archives (epoch ':' quoted).
                    name = f"{meta.get('name')}_{meta.get('version')}_{meta.get('architecture')}"
                    refs.append(PackageRef(url=urls[ref], sha256=ref.split(":", 1)[1],
                                           size=meta.get("size"),
                                           filename=name.replace(":", "%3a") + ".deb"))
    return refs


def warm_cache(example: Path, env: dict, work: Path, pipeline: str | None = None) -> list:
    """Resolve `example` (archive indexes) and fetch its packages: untimed, before the cold
    build. Returns the package files (of `pipeline`, or all), for the peer."""
    from deb_mock.package_cache import PackageCache

    forge(["resolve", example, "-o", work / "warm.lock.json"], env)
    lock = json.loads((work / "warm.lock.json").read_text())
    cache = PackageCache(Path(env["DEBIAN_FORGE_CACHE_DIR"]) / "packages")
    missing = cache.missing(package_refs(lock))
    if missing:
        print(f"  warming the package cache: {len(missing)} files", flush=True)
        cache.fetch(missing)
    return package_refs(lock, pipeline)


def mmdebstrap(lines: list[str], suite: str, archives: Path, epoch: int, installed: Path,
               includes: list[str] = ()) -> tuple[float, int]:
    """(seconds, tarball bytes) of mmdebstrap --variant=minbase (plus `includes`) to a tarball,
    its .debs already in place."""
    target = Path(tempfile.mkdtemp(prefix="mmdebstrap-", dir=BENCH_DIR))
    try:
        seconds = timed(["mmdebstrap", "--variant=minbase", "--mode=root",
                         *([f"--include={','.join(includes)}"] if includes else []),
                         '--setup-hook=mkdir -p "$1/var/cache/apt/archives/partial"',
                         f'--setup-hook=cp -al {archives}/. "$1/var/cache/apt/archives/" '
                         f'|| cp -a {archives}/. "$1/var/cache/apt/archives/"',
                         f'--customize-hook=chroot "$1" dpkg-query -W > {installed}',
                         suite, target / "rootfs.tar", *lines],
                        env={**os.environ, "SOURCE_DATE_EPOCH": str(epoch)})
        return seconds, (target / "rootfs.tar").stat().st_size
    finally:
        shutil.rmtree(target, ignore_errors=True)


def expected_built(lock: dict, pipeline: str, index: int) -> set[tuple[str, int]]:
    """(pipeline, index) of every stage a change to stage `index` of `pipeline` must rebuild.

    A stage's ID covers the stage before it, its options and its inputs' IDs: in the changed
    pipeline the stages from the change on; in every other pipeline the stages from the first
    one that takes a changed pipeline as an input (or all, if its build root changed) on. The
    stages before that keep their IDs and must come from the cache (image's truncate and
    sfdisk read no tree).
    """
    changed: set[str] = set()
    built: set[tuple[str, int]] = set()
    for item in lock["pipelines"]:
        name = item["name"]
        if name == pipeline:
            first = index
        elif item.get("build", "").removeprefix("name:") in changed:
            first = 0
        else:
            first = next((i for i, stage in enumerate(item["stages"])
                          for put in (stage.get("inputs") or {}).values()
                          if put.get("origin") == "org.osbuild.pipeline"
                          and any(str(ref).removeprefix("name:") in changed
                                  for ref in put.get("references", []))), None)
        if first is not None:
            changed.add(name)
            built.update((name, i) for i in range(first, len(item["stages"])))
    return built


def build(args: list, env: dict) -> float:
    """Wall time of `debian-forge build ARGS`. A failed build (run_cli shows no output) is run
    again untimed to show why, then stops the suite: its figures would be wrong."""
    try:
        return forge(["build", *args], env)
    except subprocess.CalledProcessError as exc:
        again = subprocess.run([sys.executable, "-m", "debian_forge", "build", *map(str, args)],
                               env=env, capture_output=True, text=True)
        tail = "\n".join((again.stdout + again.stderr).splitlines()[-30:])
        raise RuntimeError(f"debian-forge build {' '.join(map(str, args))} exited "
                           f"{exc.returncode}; run again it exited {again.returncode}:\n{tail}")


def stages(out: Path) -> list[dict]:
    return json.loads((out / "build.json").read_text())["stages"]


def tree_bytes(root: Path) -> tuple[int, int]:
    """(apparent size of the regular files, each inode once; how many)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for top, _dirs, files in os.walk(root):
        for name in files:
            st = os.lstat(os.path.join(top, name))
            if not (st.st_mode & 0o170000 == 0o100000) or (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total, len(seen)


def main() -> int:
    manifest = json.loads(EXAMPLE.read_text())
    os_stages = manifest["pipelines"][0]["stages"]
    boot = os_stages[0]["options"]
    includes = [*boot.get("packages", []),
                *(p for s in os_stages if s["type"] == "org.osbuild.apt"
                  for p in s["options"]["packages"])]
    hostname_at = next(i for i, s in enumerate(os_stages) if s["type"] == "org.osbuild.hostname")
    lines = mirror_lines(boot)
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    cache = BENCH_DIR / "disk-cache"  # kept between runs: the warm package cache
    work = Path(tempfile.mkdtemp(prefix="disk-", dir=BENCH_DIR))
    store = work / "store"
    env = {**os.environ, "DEBIAN_FORGE_CACHE_DIR": str(cache)}
    try:
        print("benchmark: examples/debian-qcow2.json (bookworm GPT disk, qcow2); peer mmdebstrap "
              "--variant=minbase --include=<the same packages> to a tarball in the same run",
              flush=True)
        os_refs = warm_cache(EXAMPLE, env, work, "os")
        from deb_mock.package_cache import PackageCache

        archives = work / "archives"
        PackageCache(cache / "packages").link_into(os_refs, archives)

        mm_first, _ = mmdebstrap(lines, boot["suite"], archives, manifest["source-epoch"],
                                 work / "mm-installed", includes)
        cold = build([EXAMPLE, "--store", store, *EXPORT, "--output-directory",
                      work / "cold"], env)
        mm_second, _ = mmdebstrap(lines, boot["suite"], archives, manifest["source-epoch"],
                                  work / "mm-installed", includes)
        peer = statistics.mean([mm_first, mm_second])
        mm_packages = len((work / "mm-installed").read_text().splitlines())
        cold_stages = stages(work / "cold")
        split = {name: sum(s["duration"] for s in cold_stages if s["pipeline"] == name)
                 for name in ("os", "image", "qcow2")}
        cold_built = sum(not s["cached"] for s in cold_stages)

        lock_path = work / "cold/manifest.lock.json"
        hit = build([lock_path, "--store", store, *EXPORT, "--output-directory",
                     work / "hit"], env)
        hit_built = sum(not s["cached"] for s in stages(work / "hit"))

        changed = json.loads(lock_path.read_text())
        changed["pipelines"][0]["stages"][hostname_at]["options"]["hostname"] = "bench-changed"
        changed_path = work / "hostname/manifest.json"  # no relative paths in it to keep
        changed_path.parent.mkdir()
        changed_path.write_text(json.dumps(changed))
        rebuild = build([changed_path, "--store", store, *EXPORT, "--output-directory",
                         work / "hostname/out"], env)
        rebuilt = stages(work / "hostname/out")
        expected = expected_built(changed, "os", hostname_at)
        wrong = [s for s in rebuilt
                 if s["cached"] == ((s["pipeline"], s["index"]) in expected)]
        rebuilt_names = [f"{s['pipeline']}/{s['type'].removeprefix('org.osbuild.')}"
                         for s in rebuilt if not s["cached"]]

        # Sizes: a cache hit of the lock exporting the raw image and the tree too (untimed).
        build([lock_path, "--store", store, "--export", "image", "--export", "os",
               "--output-directory", work / "sizes"], env)
        qcow2 = next((work / "cold/qcow2").glob("*.qcow2")).stat().st_size
        raw = (work / "sizes/image/disk.raw").stat()
        tree, files = tree_bytes(work / "sizes/os")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    mb = 1024 * 1024
    forge_packages = len({r.sha256 for r in os_refs})
    rows = [
        ("cold image build / mmdebstrap", cold / peer, 1.5,
         f"{cold:.1f} s vs {peer:.1f} s (mean of {mm_first:.1f}, {mm_second:.1f}); "
         f"{forge_packages} vs {mm_packages} packages, {cold_built} stages built"),
        ("cold split: tree stages, os (s)", split["os"], INF,
         f"{len(os_stages)} stages"),
        ("cold split: disk assembly, image (s)", split["image"], INF,
         f"the rest of the command {cold - sum(split.values()):.1f} s "
         "(resolve, export, record)"),
        ("cold split: conversion, qcow2 (s)", split["qcow2"], INF, "qemu-img convert"),
        ("full cache hit rebuild (s)", hit, 5.0, "locked manifest, qcow2 export included"),
        ("cache hit: stages built", hit_built, 0, f"of {len(cold_stages)}"),
        ("hostname changed rebuild / cold", rebuild / cold, 0.5,
         f"{rebuild:.1f} s vs {cold:.1f} s"),
        ("hostname rebuild: stages wrong", len(wrong), 0,
         ("pass" if not wrong else "FAIL: " + ", ".join(
             f"{s['pipeline']}/{s['type']} {'cached' if s['cached'] else 'built'}"
             for s in wrong)) + f"; rebuilt {len(rebuilt_names)}: " + " ".join(rebuilt_names)),
        ("qcow2 / os tree size", qcow2 / tree, 1.2,
         f"{qcow2 / mb:.0f} MB vs {tree / mb:.0f} MB"),
        ("qcow2 file size (MB)", qcow2 / mb, INF, "st_size of the exported .qcow2"),
        ("raw image allocated (MB)", raw.st_blocks * 512 / mb, INF,
         f"du of the exported disk.raw; apparent {raw.st_size / mb:.0f} MB"),
        ("os tree size (MB)", tree / mb, INF,
         f"apparent size of the {files} regular files of the exported os tree, each inode once"),
    ]
    return report("disk", rows, {
        "mmdebstrap_s": [mm_first, mm_second], "cold_build_s": cold, "cold_split_s": split,
        "cold_stages": cold_stages,
        "packages": {"forge": forge_packages, "mmdebstrap": mm_packages},
        "cache_hit_s": hit, "cache_hit_built": hit_built, "hostname_rebuild_s": rebuild,
        "hostname_rebuilt": rebuilt_names, "hostname_wrong": wrong,
        "sizes_bytes": {"qcow2": qcow2, "raw_allocated": raw.st_blocks * 512,
                        "raw_apparent": raw.st_size, "tree": tree, "tree_files": files}})
