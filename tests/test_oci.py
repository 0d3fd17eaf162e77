"""OCI images from directory trees, checked with the real clients (skopeo, umoci, podman)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import stat
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from debian_forge.oci import ImageConfig, LayerSource, build_image, write_layer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (shutil.which("skopeo") and shutil.which("umoci")),
                       reason="needs skopeo and umoci (apt-get install skopeo umoci)"),
]

EPOCH = 1735689600  # 2025-01-01T00:00:00Z, older than every file made here: mtimes get clamped
CONFIG = ImageConfig(entrypoint=["/usr/bin/tool"], cmd=["--help"], env=["LANG=C.UTF-8"],
                     working_dir="/srv", user="1000:1000", exposed_ports=["80/tcp"],
                     volumes=["/data"], labels={"org.example.flavour": "test"},
                     stop_signal="SIGTERM")
HAS_SETCAP = shutil.which("setcap") is not None


def run(*args: object) -> str:
    proc = subprocess.run([str(arg) for arg in args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def make_base(root: Path) -> Path:
    """Layer 1: files, an executable with a second hard link, a symlink, xattrs, a fifo, a socket,
    a file owned by 1000:1000 and a directory that layer 2 makes opaque."""
    write(root / "etc/hostname", "forge\n")
    write(root / "etc/gone", "whited out by layer 2\n")
    os.link(write(root / "usr/bin/tool", "#!/bin/sh\necho tool\n", 0o755), root / "usr/bin/tool2")
    (root / "etc/alias").symlink_to("hostname")
    os.setxattr(write(root / "etc/tagged", "x\n"), "user.comment", b"kept")
    os.setxattr(root / "etc/tagged", "trusted.secret", b"dropped")
    write(root / "srv/data/old.txt", "old\n")
    write(root / "srv/data/sub/deep.txt", "deep\n")
    os.chown(write(root / "home/user/notes", "mine\n", 0o600), 1000, 1000)
    os.mkfifo(root / "etc/fifo")
    with socket.socket(socket.AF_UNIX) as sock:  # bind relative: tmp paths can exceed 108 bytes
        cwd = os.getcwd()
        os.chdir(root / "etc")
        try:
            sock.bind("sock")
        finally:
            os.chdir(cwd)
    if HAS_SETCAP:
        run("setcap", "cap_net_raw+ep", write(root / "usr/bin/pinger", "ping\n", 0o755))
    return root


def make_upper(root: Path) -> Path:
    """Layer 2, as overlayfs leaves an upper directory: a whiteout, an opaque directory, a
    changed file and a real device node."""
    (root / "etc").mkdir(parents=True)
    os.mknod(root / "etc/gone", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    write(root / "etc/hostname", "forge-2\n")
    write(root / "srv/data/new.txt", "new\n")
    os.setxattr(root / "srv/data", "trusted.overlay.opaque", b"y")
    (root / "dev").mkdir()
    os.mknod(root / "dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return root


def layers(base: Path, upper: Path) -> list[LayerSource]:
    return [LayerSource(base, False, "debian-forge org.osbuild.apt 1"),
            LayerSource(upper, True, "debian-forge org.osbuild.hostname 2")]


def build(sources: list[LayerSource], out: Path, epoch: int | None = EPOCH):
    return build_image(sources, CONFIG, out, basename="image", name="localhost/forge-test",
                       tag="v1", formats=["oci-dir", "oci-archive", "docker-archive"],
                       annotations={"org.opencontainers.image.title": "forge test"},
                       epoch=epoch)


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("trees")
    return make_base(root / "base"), make_upper(root / "upper")


@pytest.fixture(scope="module")
def image(trees, tmp_path_factory):
    return build(layers(*trees), tmp_path_factory.mktemp("out"))


def layer_members(image, index: int, blobs: Path) -> list[tarfile.TarInfo]:
    digest = image.layers[index].digest.removeprefix("sha256:")
    with tarfile.open(blobs / "sha256" / digest, "r:gz") as tar:
        return tar.getmembers()


def test_layer_tar_is_sorted_clamped_and_keeps_only_image_xattrs(image):
    """Layer 1's tar: sorted names without "./", numeric owners, no user names, mtimes clamped
    to the epoch, user.*/security.* xattrs kept, trusted.* dropped, sockets left out."""
    members = layer_members(image, 0, image.outputs["oci-dir"] / "blobs")
    names = [m.name for m in members]
    assert names[:3] == ["etc", "etc/alias", "etc/fifo"] and "etc/sock" not in names
    assert all(m.mtime == EPOCH and m.uname == m.gname == "" for m in members)
    by_name = {m.name: m for m in members}
    assert (by_name["home/user/notes"].uid, by_name["home/user/notes"].gid) == (1000, 1000)
    assert by_name["etc/tagged"].pax_headers == {"SCHILY.xattr.user.comment": "kept"}
    assert by_name["etc/fifo"].isfifo()
    hard = [m for m in members if m.islnk()]
    assert [(m.name, m.linkname) for m in hard] == [("usr/bin/tool2", "usr/bin/tool")]
    if HAS_SETCAP:
        assert "SCHILY.xattr.security.capability" in by_name["usr/bin/pinger"].pax_headers


def test_overlay_whiteouts_become_wh_entries(image):
    """Layer 2's tar: the 0:0 device is a .wh. file, the opaque directory's marker comes first
    among its children, a real device stays a device, no trusted.overlay xattr leaks."""
    members = layer_members(image, 1, image.outputs["oci-dir"] / "blobs")
    names = [m.name for m in members]
    assert names == ["dev", "dev/null", "etc", "etc/.wh.gone", "etc/hostname",
                     "srv", "srv/data", "srv/data/.wh..wh..opq", "srv/data/new.txt"]
    by_name = {m.name: m for m in members}
    assert by_name["etc/.wh.gone"].isreg() and by_name["etc/.wh.gone"].size == 0
    assert by_name["dev/null"].ischr() and (by_name["dev/null"].devmajor,
                                            by_name["dev/null"].devminor) == (1, 3)
    assert not any(m.pax_headers for m in members)


def test_skopeo_reads_the_config_from_both_archives(image):
    """skopeo sees the runtime config we set in the oci-archive and in the docker-archive."""
    for transport in ("oci-archive", "docker-archive"):
        config = json.loads(run("skopeo", "inspect", "--config",
                                f"{transport}:{image.outputs[transport]}"))
        assert config["config"] == {
            "Entrypoint": ["/usr/bin/tool"], "Cmd": ["--help"], "Env": ["LANG=C.UTF-8"],
            "WorkingDir": "/srv", "User": "1000:1000", "ExposedPorts": {"80/tcp": {}},
            "Volumes": {"/data": {}}, "Labels": {"org.example.flavour": "test"},
            "StopSignal": "SIGTERM"}, transport
        assert config["created"] == "2025-01-01T00:00:00Z"
        assert config["rootfs"]["diff_ids"] == image.diff_ids
        assert [h["created_by"] for h in config["history"]] == [
            "debian-forge org.osbuild.apt 1", "debian-forge org.osbuild.hostname 2"]
    info = json.loads(run("skopeo", "inspect", f"oci-archive:{image.outputs['oci-archive']}"))
    assert info["Digest"] == image.manifest.digest


def test_umoci_unpacks_the_layered_tree(image, tmp_path):
    """umoci's rootfs holds both layers merged: contents, modes, owners, symlink, hard link,
    xattrs and devices as in the trees; the whited-out file gone; the opaque directory holding
    only layer 2's entries."""
    run("umoci", "unpack", "--image", f"{image.outputs['oci-dir']}:v1", tmp_path / "bundle")
    rootfs = tmp_path / "bundle/rootfs"
    assert (rootfs / "etc/hostname").read_text() == "forge-2\n"
    assert not (rootfs / "etc/gone").exists()
    assert sorted(p.name for p in (rootfs / "srv/data").iterdir()) == ["new.txt"]
    assert os.readlink(rootfs / "etc/alias") == "hostname"
    tool, tool2 = (rootfs / "usr/bin/tool").stat(), (rootfs / "usr/bin/tool2").stat()
    assert stat.S_IMODE(tool.st_mode) == 0o755 and tool.st_ino == tool2.st_ino
    assert (rootfs / "usr/bin/tool").read_text() == "#!/bin/sh\necho tool\n"
    notes = (rootfs / "home/user/notes").stat()
    assert (notes.st_uid, notes.st_gid, stat.S_IMODE(notes.st_mode)) == (1000, 1000, 0o600)
    assert os.getxattr(rootfs / "etc/tagged", "user.comment") == b"kept"
    assert "trusted.secret" not in os.listxattr(rootfs / "etc/tagged")
    assert stat.S_ISFIFO((rootfs / "etc/fifo").lstat().st_mode)
    null = (rootfs / "dev/null").lstat()
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    if HAS_SETCAP:
        assert "cap_net_raw" in run("getcap", rootfs / "usr/bin/pinger")


def test_skopeo_copies_the_layout_and_the_docker_archive(image, tmp_path):
    """skopeo copies out of the OCI layout and out of the docker-archive, checking every digest
    (the docker-archive's uncompressed layers must hash to their diff_ids)."""
    run("skopeo", "copy", f"oci:{image.outputs['oci-dir']}:v1", f"dir:{tmp_path / 'from-oci'}")
    run("skopeo", "copy", f"docker-archive:{image.outputs['docker-archive']}",
        f"dir:{tmp_path / 'from-docker'}")
    manifest = json.loads((tmp_path / "from-oci/manifest.json").read_text())
    assert [layer["digest"] for layer in manifest["layers"]] == [b.digest for b in image.layers]


@pytest.mark.skipif(shutil.which("podman") is None, reason="needs podman")
def test_podman_loads_both_archives(image, tmp_path):
    """podman load (in a throwaway storage root) accepts the oci-archive and the docker-archive
    and names the image as asked."""
    runroot = tempfile.mkdtemp(prefix="forge-podman-")  # podman wants a runroot of <= 50 chars
    podman = ["podman", "--root", tmp_path / "root", "--runroot", runroot,
              "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none"]
    image_id = image.config.digest.removeprefix("sha256:")
    try:
        for transport in ("oci-archive", "docker-archive"):
            run(*podman, "load", "-i", image.outputs[transport])
            ids = run(*podman, "images", "--no-trunc",
                      "--format", "{{.ID}} {{.Repository}}:{{.Tag}}")
            assert image_id in ids, (transport, ids)
            # the oci-archive's ref.name and the docker-archive's RepoTags carry the full name
            assert "localhost/forge-test:v1" in ids, (transport, ids)
            run(*podman, "rmi", "--force", image_id)
    finally:
        shutil.rmtree(runroot, ignore_errors=True)


def test_rebuild_is_byte_identical(trees, image, tmp_path):
    """The same trees and epoch give the same digests and the same archive bytes, even after
    every file's mtime moved (they are clamped to the epoch)."""
    later = time.time() + 3600
    for path in [*trees[0].rglob("*"), *trees[1].rglob("*")]:
        os.utime(path, (later, later), follow_symlinks=False)
    again = build(layers(*trees), tmp_path)
    assert (again.manifest, again.config, again.layers) == (image.manifest, image.config,
                                                            image.layers)
    for fmt in ("oci-archive", "docker-archive"):
        assert again.outputs[fmt].read_bytes() == image.outputs[fmt].read_bytes(), fmt
    first, second = image.outputs["oci-dir"], again.outputs["oci-dir"]
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)


def test_images_sharing_a_base_share_its_blob(trees, image, tmp_path):
    """A second image on the same layer 1 reuses layer 1's blob digest; its own layer differs."""
    other = write(tmp_path / "other/etc/motd", "hello\n").parent.parent
    second = build([layers(*trees)[0], LayerSource(other, True, "motd")], tmp_path / "out")
    assert second.layers[0] == image.layers[0]
    assert second.layers[1] != image.layers[1]


def test_write_layer_alone_is_content_addressed(trees, tmp_path):
    """write_layer stores the gzip blob under its digest; its diff_id hashes the plain tar."""
    blob, diff_id = write_layer(layers(*trees)[0], tmp_path / "blobs", epoch=EPOCH)
    path = tmp_path / "blobs/sha256" / blob.digest.removeprefix("sha256:")
    assert path.stat().st_size == blob.size
    assert os.listdir(tmp_path / "blobs/sha256") == [path.name]  # no temporary left behind
    assert "sha256:" + hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest() == diff_id


def test_a_failing_compressor_fails_the_layer_instead_of_hanging():
    """The second thread's error (say, a full disk) comes back to the writer; nothing waits
    forever."""
    from debian_forge.oci import _BackgroundWriter

    class Full(io.BytesIO):
        def write(self, data):
            raise OSError(28, "No space left on device")

    writer = _BackgroundWriter(Full())
    with pytest.raises(OSError, match="No space left"):
        for _ in range(64):
            writer.write(b"x" * (1 << 20))
        writer.close()
