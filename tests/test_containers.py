"""The container examples, for real: built by debian-forge, read by skopeo, unpacked by umoci,
loaded by podman, and run.

podman cannot start containers on these machines (the host's cgroup and rlimit setup refuses
them), so the entrypoint runs from the umoci-unpacked root filesystem in deb-mock's sandbox
(bubblewrap, no network, as the image's user) instead — what `podman run` would execute.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.integration

SLIM = "debian-docker-container.json"
APP = "debian-python-app.json"
FILES = {SLIM: "debian-bookworm-slim", APP: "debian-python-app"}
NAMES = {SLIM: "localhost/debian:bookworm-slim", APP: "localhost/debian-python-app:1.0"}


def run(*args: object) -> str:
    proc = subprocess.run([str(arg) for arg in args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="session")
def container_builds(forge, tmp_path_factory):
    """build(example) → its output directory (the image in every format and the os tree)."""
    built: dict[str, Path] = {}

    def build(example: str) -> Path:
        if example not in built:
            out = tmp_path_factory.mktemp(example.removesuffix(".json"))
            forge("build", REPO / "examples" / example, "--export", "container", "--export",
                  "os", "--output-directory", out, check=True)
            built[example] = out
        return built[example]

    yield build
    for out in built.values():
        shutil.rmtree(out, ignore_errors=True)


def output(out: Path, example: str, suffix: str) -> Path:
    return out / "container" / f"{FILES[example]}{suffix}"


def stage_report(out: Path, stage_type: str) -> dict:
    stages = json.loads((out / "build.json").read_text())["stages"]
    return next(s for s in stages if s["type"] == stage_type).get("report", {})


def unpack(out: Path, example: str, bundle: Path) -> Path:
    tag = NAMES[example].rsplit(":", 1)[1]
    run("umoci", "unpack", "--image", f"{output(out, example, '')}:{tag}", bundle)
    return bundle / "rootfs"


def test_skopeo_shows_the_configuration_in_both_archives(container_builds):
    """Entrypoint, cmd, env, user, working dir, port, labels and stop signal, as the manifest
    says, from the OCI archive and from the docker-archive alike."""
    out = container_builds(APP)
    for transport, suffix in (("oci-archive", ".oci.tar"), ("docker-archive", ".docker.tar")):
        config = json.loads(run("skopeo", "inspect", "--config",
                                f"{transport}:{output(out, APP, suffix)}"))["config"]
        assert config["Entrypoint"] == ["python3", "/srv/app/app.py"], transport
        assert config["Cmd"] == ["--port", "8000"]
        assert "LANG=C.UTF-8" in config["Env"] and "PYTHONUNBUFFERED=1" in config["Env"]
        assert config["ExposedPorts"] == {"8000/tcp": {}}
        assert (config["User"], config["WorkingDir"], config["StopSignal"]) == \
            ("app", "/srv/app", "SIGINT")
        assert config["Labels"]["org.opencontainers.image.title"] == \
            "debian-forge Python example service"
        inspect = json.loads(run("skopeo", "inspect", f"{transport}:{output(out, APP, suffix)}"))
        assert inspect["Architecture"] == "amd64" and inspect["Os"] == "linux"


def _entries(root: Path) -> dict[str, tuple]:
    """path → (kind, mode, uid, gid, content digest or link target) for every entry."""
    found = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(directory, name)
            st = path.lstat()
            if stat.S_ISREG(st.st_mode):
                what = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                what = os.readlink(path)
            else:
                what = None
            found[str(path.relative_to(root))] = (stat.S_IFMT(st.st_mode),
                                                  stat.S_IMODE(st.st_mode), st.st_uid,
                                                  st.st_gid, what)
    return found


@pytest.mark.parametrize("example", [SLIM, APP])
def test_umoci_unpacks_the_pipelines_tree(example, container_builds, tmp_path):
    """Every file, directory and link of the os tree, with its type, mode, owner and content,
    and nothing else — through per-stage layers whose whiteouts umoci applies."""
    out = container_builds(example)
    rootfs = unpack(out, example, tmp_path / "bundle")
    assert _entries(rootfs) == _entries(out / "os")


def test_a_file_deleted_by_a_later_stage_is_a_whiteout_and_absent(container_builds, tmp_path):
    """The app's cleanup stage deletes files the apt stage wrote (apt's lists, logs): its layer
    holds `.wh.` entries for them, and the unpacked image does not have them."""
    out = container_builds(APP)
    layers = stage_report(out, "org.osbuild.docker")["layers"]
    blobs = output(out, APP, "") / "blobs/sha256"
    deleted = []
    for layer in layers[1:]:
        with tarfile.open(blobs / layer["digest"].removeprefix("sha256:")) as tar:
            deleted += [name.replace(".wh.", "", 1) for name in tar.getnames()
                        if Path(name).name.startswith(".wh.") and ".wh..wh..opq" not in name]
    assert "var/log/apt/history.log" in deleted, deleted
    rootfs = unpack(out, APP, tmp_path / "bundle")
    assert not any((rootfs / name).exists() for name in deleted)


def test_the_entrypoint_runs_as_the_images_user(container_builds, tmp_path):
    """podman cannot start containers here: the unpacked root filesystem runs in deb-mock's
    sandbox instead, as the image's user `app`, with the image's entrypoint — which serves
    HTTP on loopback and fetches its own page."""
    from deb_mock.sandbox import User, run as sandbox_run

    out = container_builds(APP)
    rootfs = unpack(out, APP, tmp_path / "bundle")
    config = json.loads(run("skopeo", "inspect", "--config",
                            f"oci-archive:{output(out, APP, '.oci.tar')}"))["config"]
    result = sandbox_run(rootfs, [*config["Entrypoint"], "--self-test"], capture=True,
                         echo=False, user=User("app", 1000, 1000, "/srv/app"),
                         env=dict(item.split("=", 1) for item in config["Env"]),
                         cwd=config["WorkingDir"])
    assert result.ok, result.stderr
    version = (rootfs / "etc/debian_version").read_text().strip()
    assert result.stdout == f"hello from debian-forge on Debian {version}\n"


def test_podman_loads_both_archives_under_their_names(container_builds, tmp_path):
    out = container_builds(SLIM)
    runroot = tempfile.mkdtemp(prefix="forge-podman-")  # podman wants a runroot of <= 50 chars
    podman = ["podman", "--root", tmp_path / "root", "--runroot", runroot, "--storage-driver",
              "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none"]
    image_id = stage_report(out, "org.osbuild.docker")["config"].removeprefix("sha256:")
    try:
        for suffix in (".oci.tar", ".docker.tar"):
            run(*podman, "load", "-i", output(out, SLIM, suffix))
            listing = run(*podman, "images", "--no-trunc",
                          "--format", "{{.ID}} {{.Repository}}:{{.Tag}}")
            assert f"{image_id} {NAMES[SLIM]}" in listing, (suffix, listing)
            run(*podman, "rmi", "--force", image_id)
    finally:
        shutil.rmtree(runroot, ignore_errors=True)


def test_two_images_of_one_base_share_its_layer_blobs(container_builds):
    """layers: per-stage — the slim image's layers (bootstrap, container stage) are the app
    image's first layers, blob for blob."""
    slim = [layer["digest"] for layer in
            stage_report(container_builds(SLIM), "org.osbuild.docker")["layers"]]
    app = [layer["digest"] for layer in
           stage_report(container_builds(APP), "org.osbuild.docker")["layers"]]
    assert len(slim) == 2 and app[:2] == slim and len(app) > 2


def test_container_shape_and_slim_saving_are_in_the_tree_and_the_record(container_builds,
                                                                      tmp_path):
    """No kernel, no hostname or resolv.conf, services blocked, no docs but the copyright
    files, and what slim left out (tens of MB) in build.json."""
    out = container_builds(SLIM)
    rootfs = unpack(out, SLIM, tmp_path / "bundle")
    assert not (rootfs / "etc/hostname").exists() and not (rootfs / "etc/resolv.conf").exists()
    assert subprocess.run([rootfs / "usr/sbin/policy-rc.d"]).returncode == 101
    assert not list((rootfs / "boot").glob("vmlinuz*"))
    docs = [p.relative_to(rootfs / "usr/share/doc") for p in (rootfs / "usr/share/doc").rglob("*")
            if p.is_file()]
    assert docs and all(p.name == "copyright" for p in docs)
    assert not [p for p in (rootfs / "usr/share/man").rglob("*") if p.is_file()]
    slim = stage_report(out, "org.osbuild.debootstrap")["slim"]
    assert slim["bytes_excluded"] > 20_000_000 and slim["files_excluded"] > 1000


def test_two_cold_builds_give_the_same_image_digest(forge, tmp_path):
    """Same lock and source epoch, two empty stores: the same manifest digest, the same
    archives byte for byte."""
    lock = tmp_path / "lock.json"
    forge("resolve", REPO / "examples" / SLIM, "-o", lock, check=True)
    digests = []
    for run_number in (1, 2):
        out = tmp_path / f"out{run_number}"
        forge("build", lock, "--store", tmp_path / f"store{run_number}", "--export", "container",
              "--output-directory", out, check=True)
        digests.append((stage_report(out, "org.osbuild.docker")["manifest"],
                        hashlib.sha256(output(out, SLIM, ".oci.tar").read_bytes()).hexdigest(),
                        hashlib.sha256(output(out, SLIM, ".docker.tar").read_bytes()).hexdigest()))
    assert digests[0] == digests[1]


def test_a_tree_with_a_kernel_is_not_made_a_container(stage_runner):
    """The container stage refuses a tree with a kernel, naming it."""
    from debian_forge.context import StageError

    stage_runner.tree.write_text("/boot/vmlinuz-6.1.0-9-amd64", "kernel")
    with pytest.raises(StageError, match="a container has no kernel or bootloader of its own, "
                                         "and this tree has vmlinuz-6.1.0-9-amd64"):
        stage_runner.run("org.osbuild.container", {})
