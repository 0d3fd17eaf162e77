"""debian-forge builds for real: the examples, the cache, the lock, offline rebuilds."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from conftest import REPO, project_mounts

pytestmark = pytest.mark.integration


def _record(out: Path) -> dict:
    return json.loads((out / "build.json").read_text())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _member(tarball: Path, name: str) -> str:
    with tarfile.open(tarball) as tar:
        return tar.extractfile(name).read().decode()


def test_minimal_example_is_a_bookworm_rootfs_tarball(minimal_build):
    """The minimal example exports a tarball of a bookworm tree with its package list."""
    tarball = minimal_build / "rootfs/debian-bookworm-minbase.tar"
    assert _member(tarball, "./etc/debian_version").startswith("12.")
    record = _record(minimal_build)
    names = {p["name"] for p in record["exports"]["rootfs"]["packages"]}
    assert {"bash", "apt", "dpkg", "base-files"} <= names
    assert record["source-epoch"] == 1700000000
    assert [s["type"] for s in record["stages"]][-1] == "org.osbuild.tar"
    locked = json.loads((minimal_build / "manifest.lock.json").read_text())
    assert locked == record["lock"]
    assert locked["sources"]["org.osbuild.curl"]["items"]


def test_tarball_members_are_sorted_numeric_and_clamped_to_the_epoch(minimal_build):
    """Reproducible tar: sorted names, numeric owners, no mtime after the source epoch."""
    with tarfile.open(minimal_build / "rootfs/debian-bookworm-minbase.tar") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names, key=lambda n: n.encode()) or names[0] == "."
    assert max(m.mtime for m in members) <= 1700000000
    assert not any(m.uname or m.gname for m in members)


def test_unchanged_rebuild_reruns_no_stage(forge, minimal_build, tmp_path):
    """Building the same manifest again takes every stage from the store."""
    forge("build", REPO / "examples/debian-minimal.json", "--export", "rootfs",
          "--output-directory", tmp_path, check=True)
    stages = _record(tmp_path)["stages"]
    assert stages and all(s["cached"] for s in stages)
    assert _sha256(tmp_path / "rootfs/debian-bookworm-minbase.tar") == \
        _sha256(minimal_build / "rootfs/debian-bookworm-minbase.tar")


def test_changing_the_last_stage_reruns_only_that_stage(forge, minimal_build, tmp_path):
    """A new compression for the tarball rebuilds the tar stage, not the bootstrap."""
    manifest = json.loads((minimal_build / "manifest.lock.json").read_text())
    # A name never built before: the store persists between test runs.
    filename = f"rootfs-{uuid.uuid4().hex[:8]}.tar.zst"
    manifest["pipelines"][1]["stages"][0]["options"]["filename"] = filename
    path = tmp_path / "m.json"
    path.write_text(json.dumps(manifest))
    out = tmp_path / "out"
    forge("build", path, "--export", "rootfs", "--output-directory", out, check=True)
    stages = _record(out)["stages"]
    assert [(s["type"], s["cached"]) for s in stages] == [("org.osbuild.debootstrap", True),
                                                          ("org.osbuild.tar", False)]
    assert (out / "rootfs" / filename).read_bytes()[:4] == b"\x28\xb5\x2f\xfd"


def test_a_changed_package_version_changes_the_ids_from_that_stage_on(forge, tmp_path):
    """Stage IDs cover resolved versions: editing one in the lock changes that stage's ID
    and every later one, not the earlier ones."""
    manifest = {"version": "2", "pipelines": [{"name": "os", "stages": [
        {"type": "org.osbuild.debootstrap", "options": {"suite": "bookworm"}},
        {"type": "org.osbuild.apt", "options": {"packages": ["hello"]}},
        {"type": "org.osbuild.hostname", "options": {"hostname": "box"}}]}]}
    path = tmp_path / "m.json"
    path.write_text(json.dumps(manifest))
    locked = json.loads(forge("resolve", path, check=True).stdout)
    (tmp_path / "a.json").write_text(json.dumps(locked))
    refs = locked["pipelines"][0]["stages"][1]["inputs"]["packages"]["references"]
    assert [r["metadata"]["name"] for r in refs.values()] == ["hello"]
    next(iter(refs.values()))["metadata"]["version"] = "0.0-changed"
    (tmp_path / "b.json").write_text(json.dumps(locked))
    before = json.loads(forge("inspect", tmp_path / "a.json", check=True).stdout)
    after = json.loads(forge("inspect", tmp_path / "b.json", check=True).stdout)
    ids_before = [s["id"] for s in before["pipelines"][0]["stages"]]
    ids_after = [s["id"] for s in after["pipelines"][0]["stages"]]
    assert ids_before[0] == ids_after[0]
    assert ids_before[1] != ids_after[1] and ids_before[2] != ids_after[2]
    assert before["pipelines"][0]["id"] == ids_before[2]


def test_locked_manifest_rebuilds_offline_in_a_namespace_without_network(forge, minimal_build,
                                                                         tmp_path):
    """With a warm package cache, the lock rebuilds from nothing under `unshare -n`, into the
    same bytes (same lock, same source epoch)."""
    store, out = tmp_path / "store", tmp_path / "out"
    proc = forge("build", minimal_build / "manifest.lock.json", "--store", store, "--offline",
                 "--export", "rootfs", "--output-directory", out)
    assert proc.returncode == 0, proc.stderr  # sanity: the same works with network namespaces
    out2 = tmp_path / "out2"
    proc = subprocess.run(["unshare", "-n", *map(str, [
        *__import__("conftest").FORGE, "build", minimal_build / "manifest.lock.json",
        "--store", tmp_path / "store2", "--export", "rootfs", "--output-directory", out2])],
        capture_output=True, text=True, timeout=600,
        env={**__import__("os").environ})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not _record(out2)["stages"][0]["cached"]
    assert _sha256(out2 / "rootfs/debian-bookworm-minbase.tar") == \
        _sha256(minimal_build / "rootfs/debian-bookworm-minbase.tar")
    assert not project_mounts()


def test_offline_build_names_the_missing_files(forge, minimal_build, tmp_path):
    """--offline with an empty package cache fails with exit status and names what is missing."""
    env = {"DEBIAN_FORGE_CACHE_DIR": str(tmp_path / "cache")}
    proc = forge("build", minimal_build / "manifest.lock.json", "--offline", env=env)
    assert proc.returncode != 0
    assert "not in the package cache" in proc.stderr and ".deb" in proc.stderr
    assert "Traceback" not in proc.stderr
