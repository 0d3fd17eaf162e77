"""debian-forge container images against mmdebstrap, run in the same command (these machines are noisy).

examples/debian-docker-container.json: pipeline os (org.osbuild.debootstrap bookworm minbase with
"slim": dpkg path-excludes of documentation, manual pages and translations; org.osbuild.container),
pipeline container (org.osbuild.docker: an OCI layout dir, an .oci.tar and a .docker.tar, one
layer per os stage). Cold means a fresh empty store with the package cache and the archive
indexes warm (this suite's own cache, $DEBIAN_FORGE_BENCH_DIR/container-cache, filled before
timing); the peer mmdebstrap --variant=minbase (bench_forge's invocation and mirror lines) gets
the same .debs in /var/cache/apt/archives beforehand, so neither tool downloads packages
(mmdebstrap still fetches its indexes, as it always does). Sizes come from the build record
(layer blob sizes: compressed) and the docker-archive (its layer.tar members: uncompressed);
the plain tree is the peer's tarball.

Targets (this suite's proposals; no issue sets them yet):
  cold build (mean of two) / mmdebstrap --variant=minbase to a tarball (mean of two)     <= 1.2
  rebuild with nothing changed (the manifest: resolve and the three exports included)  <= 5.0 s
  stages built by that rebuild                                                          == 0
  image compressed (sum of the layer blobs) / the plain minbase tarball                 <= 0.3
  image uncompressed (sum of the layer tars) / the plain minbase tarball                <= 0.8
  slim image / the same manifest with both "slim" options false, compressed             <= 0.85
  the same, uncompressed                                                                <= 0.8
  bytes and files debootstrap's slim excluded, from build.json (MB)                        -
  two cold builds (two fresh stores): image manifest digests differing                  == 0
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tarfile
import tempfile
from pathlib import Path

from bench_disk import build, mmdebstrap, stages, warm_cache
from bench_forge import mirror_lines
from common import BENCH_DIR, report

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples/debian-docker-container.json"
EXPORT = ["--export", "container"]
INF = float("inf")
MB = 1024 * 1024


def stage_report(out: Path, kind: str) -> dict:
    return next(s for s in stages(out) if s["type"] == kind).get("report") or {}


def image_sizes(out: Path) -> dict:
    """The exported image's layers: blob bytes (compressed, from the docker stage's report) and
    layer.tar bytes (uncompressed, the docker-archive's members), its manifest digest."""
    docker = stage_report(out, "org.osbuild.docker")
    archive = next((out / "container").glob("*.docker.tar"))
    with tarfile.open(archive) as tar:
        layers = json.load(tar.extractfile("manifest.json"))[0]["Layers"]
        uncompressed = [tar.getmember(name).size for name in layers]
    return {"manifest": docker["manifest"], "layers": len(docker["layers"]),
            "compressed": sum(layer["size"] for layer in docker["layers"]),
            "uncompressed": sum(uncompressed), "layer_tars": uncompressed}


def unslim(manifest: dict) -> dict:
    """The same manifest with debootstrap's and the container stage's "slim" false."""
    changed = json.loads(json.dumps(manifest))
    for stage in changed["pipelines"][0]["stages"]:
        if stage["type"] in ("org.osbuild.debootstrap", "org.osbuild.container"):
            stage["options"]["slim"] = False
    return changed


def main() -> int:
    manifest = json.loads(EXAMPLE.read_text())
    boot = manifest["pipelines"][0]["stages"][0]["options"]
    epoch = manifest["source-epoch"]
    lines = mirror_lines(boot)
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    cache = BENCH_DIR / "container-cache"  # kept between runs: the warm package cache
    work = Path(tempfile.mkdtemp(prefix="container-", dir=BENCH_DIR))
    env = {**os.environ, "DEBIAN_FORGE_CACHE_DIR": str(cache)}
    try:
        print("benchmark: examples/debian-docker-container.json (bookworm slim OCI/docker "
              "image); peer mmdebstrap --variant=minbase to a tarball in the same run",
              flush=True)
        refs = warm_cache(EXAMPLE, env, work)
        from deb_mock.package_cache import PackageCache

        archives = work / "archives"
        PackageCache(cache / "packages").link_into(refs, archives)

        installed = work / "mm-installed"
        mm_first, plain = mmdebstrap(lines, boot["suite"], archives, epoch, installed)
        cold_first = build([EXAMPLE, "--store", work / "store1", *EXPORT, "--output-directory",
                            work / "cold1"], env)
        mm_second, plain_second = mmdebstrap(lines, boot["suite"], archives, epoch, installed)
        cold_second = build([EXAMPLE, "--store", work / "store2", *EXPORT,
                             "--output-directory", work / "cold2"], env)
        peer = statistics.mean([mm_first, mm_second])
        cold = statistics.mean([cold_first, cold_second])
        mm_packages = len(installed.read_text().splitlines())
        cold_stages = stages(work / "cold1")
        cold_built = sum(not s["cached"] for s in cold_stages)
        split = {s["type"].removeprefix("org.osbuild."): s["duration"] for s in cold_stages}

        warm_runs, warm_built = [], 0
        for i in range(3):
            out = work / f"warm{i}"
            warm_runs.append(build([EXAMPLE, "--store", work / "store1", *EXPORT,
                                    "--output-directory", out], env))
            warm_built = max(warm_built, sum(not s["cached"] for s in stages(out)))
            shutil.rmtree(out)
        warm = statistics.median(warm_runs)

        slim = image_sizes(work / "cold1")
        second = image_sizes(work / "cold2")
        differ = int(slim["manifest"] != second["manifest"])
        locks_same = ((work / "cold1/manifest.lock.json").read_bytes()
                      == (work / "cold2/manifest.lock.json").read_bytes())
        excluded = stage_report(work / "cold1", "org.osbuild.debootstrap").get("slim", {})
        container = stage_report(work / "cold1", "org.osbuild.container")

        # The slim options' saving: the same manifest with both off (untimed, in store1).
        full_path = work / "unslim/manifest.json"  # no relative paths in it to keep
        full_path.parent.mkdir()
        full_path.write_text(json.dumps(unslim(manifest)))
        full_s = build([full_path, "--store", work / "store1", *EXPORT, "--output-directory",
                        work / "unslim/out"], env)
        full = image_sizes(work / "unslim/out")
        forge_packages = len({r.sha256 for r in refs})
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = [
        ("cold build / mmdebstrap minbase", cold / peer, 1.2,
         f"{cold:.1f} s (mean of {cold_first:.1f}, {cold_second:.1f}) vs {peer:.1f} s "
         f"(mean of {mm_first:.1f}, {mm_second:.1f}); {forge_packages} vs {mm_packages} "
         f"packages, {cold_built} stages built"),
        ("warm rebuild, nothing changed (s)", warm, 5.0,
         "median of " + ", ".join(f"{s:.1f}" for s in warm_runs)
         + "; the manifest, resolve and 3 exports included"),
        ("warm rebuild: stages built", warm_built, 0, f"of {len(cold_stages)} (most of 3 runs)"),
        ("image compressed / plain tarball", slim["compressed"] / plain, 0.3,
         f"{slim['compressed'] / MB:.1f} MB ({slim['layers']} layer blobs) vs "
         f"{plain / MB:.1f} MB mmdebstrap minbase tarball"),
        ("image uncompressed / plain tarball", slim["uncompressed"] / plain, 0.8,
         f"{slim['uncompressed'] / MB:.1f} MB (layer.tar files) vs {plain / MB:.1f} MB"),
        ("slim / unslim image, compressed", slim["compressed"] / full["compressed"], 0.85,
         f"{slim['compressed'] / MB:.1f} MB vs {full['compressed'] / MB:.1f} MB, "
         "both \"slim\" options false"),
        ("slim / unslim image, uncompressed", slim["uncompressed"] / full["uncompressed"], 0.8,
         f"{slim['uncompressed'] / MB:.1f} MB vs {full['uncompressed'] / MB:.1f} MB; "
         f"saved {(full['uncompressed'] - slim['uncompressed']) / MB:.1f} MB"),
        ("slim: bytes excluded (MB)", excluded.get("bytes_excluded", 0) / MB, INF,
         f"{excluded.get('files_excluded', 0)} files, debootstrap's report; the container "
         f"stage saved {container.get('bytes_saved', 0) / MB:.2f} MB more"),
        ("cold builds differing (count)", differ, 0,
         ("pass" if not differ else "FAIL") + f": manifest {slim['manifest'][:19]}… vs "
         f"{second['manifest'][:19]}…; locks {'identical' if locks_same else 'DIFFER'}"),
    ]
    return report("container", rows, {
        "mmdebstrap_s": [mm_first, mm_second], "cold_build_s": [cold_first, cold_second],
        "cold_split_s": split, "cold_stages": cold_stages,
        "packages": {"forge": forge_packages, "mmdebstrap": mm_packages},
        "warm_rebuild_s": warm_runs, "warm_built": warm_built, "unslim_build_s": full_s,
        "sizes_bytes": {"plain_tarball": [plain, plain_second], "slim": slim, "unslim": full},
        "slim_report": {"debootstrap": excluded, "container": container},
        "manifests_differ": differ, "locks_identical": locks_same})
