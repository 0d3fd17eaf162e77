"""The disk and cloud image examples, for real: each is built, its upload format checked with
qemu-img or tar, its provider's configuration read from the raw image, and the image users
would upload booted in QEMU twice at once — SeaBIOS and OVMF (UEFI), one virtual CPU each —
with `debian-forge boot`, which succeeds only at a login prompt with cloud-init done and the
seed's user created. On these machines KVM is unusable and QEMU runs under TCG.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import REPO
from deb_mock.loop import loop_device

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

GiB = 1024**3
ROOT_START = 262144 * 512
# example → (output pipeline, file it exports, qemu-img format or "tar.gz", provider)
IMAGES = {
    "debian-qcow2.json": ("qcow2", "debian-12-generic-amd64.qcow2", "qcow2", None),
    "debian-aws-image.json": ("vmdk", "debian-12-aws-amd64.vmdk", "vmdk", "aws"),
    "debian-gcp-image.json": ("gce", "debian-12-gcp-amd64.tar.gz", "tar.gz", "gcp"),
    "debian-azure-image.json": ("vhd", "debian-12-azure-amd64.vhd", "vpc", "azure"),
    "debian-openstack-image.json": ("qcow2", "debian-12-openstack-amd64.qcow2", "qcow2",
                                    "openstack"),
    "debian-digitalocean-image.json": ("qcow2", "debian-12-digitalocean-amd64.qcow2", "qcow2",
                                       "digitalocean"),
}


@pytest.fixture(scope="session")
def image_builds(forge, tmp_path_factory):
    """build(example) → its output directory (the `image` pipeline and the upload format),
    built once per session."""
    built: dict[str, Path] = {}

    def build(example: str) -> Path:
        if example not in built:
            out = tmp_path_factory.mktemp(example.removesuffix(".json"))
            forge("build", REPO / "examples" / example, "--export", "image", "--export",
                  IMAGES[example][0], "--output-directory", out, check=True, timeout=1800)
            built[example] = out
        return built[example]

    yield build
    for out in built.values():  # about 1.5 GB each: not kept for pytest's later runs
        shutil.rmtree(out, ignore_errors=True)


def upload_file(out: Path, example: str) -> Path:
    pipeline, filename, _, _ = IMAGES[example]
    return out / pipeline / filename


def qemu_img_info(path: Path, fmt: str) -> dict:
    return json.loads(subprocess.run(["qemu-img", "info", "--output=json", "-f", fmt, path],
                                     capture_output=True, text=True, check=True).stdout)


def read_root_file(raw: Path, path: str) -> str:
    """A file of the image's root filesystem (partition 3), read with debugfs."""
    with loop_device(raw, offset=ROOT_START, size=raw.stat().st_size - ROOT_START - 33 * 512,
                     read_only=True) as device:
        return subprocess.run(["debugfs", "-R", f"cat {path}", str(device)],
                              capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("example", list(IMAGES))
def test_example_boots_with_bios_and_with_uefi(example, image_builds, forge, tmp_path):
    """Both firmwares at once: SeaBIOS through the command (with the user's SSH key), OVMF
    through the Python API. Each reaches a login prompt with cloud-init done and the seed's
    user `forge` created (uid 1000); the image is never written and no temporary file stays."""
    from debian_forge.boot import boot

    image = upload_file(image_builds(example), example)
    if IMAGES[example][2] == "tar.gz":  # GCE takes the tarball; boot what it holds
        subprocess.run(["tar", "-xzf", image, "-C", tmp_path], check=True)
        image = tmp_path / "disk.raw"
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    before = image.stat().st_mtime_ns
    with ThreadPoolExecutor(2) as pool:
        bios = pool.submit(forge, "boot", image, "--cpus", "1", "--ssh-key", f"{key}.pub",
                           env={"TMPDIR": str(scratch)}, timeout=900)
        uefi = pool.submit(boot, image, uefi=True, cpus=1)
        bios, uefi = bios.result(), uefi.result()
    assert bios.returncode == 0, bios.stderr[-4000:]
    assert re.fullmatch(re.escape(str(image)) + r": booted \(BIOS, (KVM|TCG)\): login prompt "
                        r"after [\d.]+ s, cloud-init done after [\d.]+ s", bios.stdout.strip()), \
        bios.stdout
    assert uefi.accelerator in ("kvm", "tcg") and 0 < uefi.login_seconds
    assert any(re.search(r"FORGE-BOOT-OK \w+ user=forge uid=1000", line)
               for line in uefi.console_tail), uefi.console_tail
    assert image.stat().st_mtime_ns == before
    assert not list(scratch.iterdir())


@pytest.mark.parametrize("example", list(IMAGES))
def test_upload_format_is_the_providers(example, image_builds):
    """qcow2 for the generic image, OpenStack and DigitalOcean (compressed), a stream-optimized
    VMDK for AWS, a fixed VHD of whole MiB for Azure, a gzip tarball holding exactly disk.raw
    for GCE; every one of the 2 GiB raw image."""
    from debian_forge import stages
    from debian_forge.boot import image_format

    out = image_builds(example)
    _, _, fmt, provider = IMAGES[example]
    image = upload_file(out, example)
    if provider is not None:
        upload = stages.get("org.osbuild.cloud").module.PROFILES[provider]["upload"]
        assert upload["format"] == fmt, upload
    assert (out / "image/disk.raw").stat().st_size == 2 * GiB
    if fmt == "tar.gz":
        with tarfile.open(image, "r:gz") as tar:
            members = tar.getmembers()
        assert [(m.name, m.size, m.isfile()) for m in members] == [("disk.raw", 2 * GiB, True)]
        assert image.stat().st_size < GiB  # sparse and compressed, not 2 GiB of zeros
        return
    info = qemu_img_info(image, fmt)  # a fixed VHD has no header qemu-img would probe
    assert info["format"] == fmt and info["virtual-size"] == 2 * GiB
    assert image_format(image) == fmt  # what `debian-forge boot` tells QEMU
    if fmt == "vmdk":
        assert info["format-specific"]["data"]["create-type"] == "streamOptimized"
    if fmt == "vpc":  # fixed: the raw bytes and a 512-byte footer, a whole number of MiB
        assert info["virtual-size"] % (1024 * 1024) == 0
        assert image.stat().st_size == info["virtual-size"] + 512
        footer = _tail(image, 512)
        assert footer.startswith(b"conectix") and footer[60:64] == (2).to_bytes(4, "big")
    if example == "debian-digitalocean-image.json":
        assert image.stat().st_size < 0.7 * (out / "image/disk.raw").stat().st_blocks * 512


def _tail(path: Path, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(-size, 2)
        return f.read()


@pytest.mark.parametrize("provider", ["aws", "gcp", "azure", "openstack", "digitalocean"])
def test_the_providers_configuration_is_in_the_image(provider, image_builds):
    """The cloud profile's datasources (with NoCloud for local boots), kernel options in the
    GRUB menu and, where it has one, its time source."""
    from debian_forge import stages

    profile = stages.get("org.osbuild.cloud").module.PROFILES[provider]
    raw = image_builds(f"debian-{provider}-image.json") / "image/disk.raw"
    config = read_root_file(raw, f"/etc/cloud/cloud.cfg.d/91_debian-forge-{provider}.cfg")
    assert f"- {profile['datasources'][0]}" in config and "- NoCloud" in config
    menu = read_root_file(raw, "/boot/grub/grub.cfg")
    assert re.search(r"linux /boot/vmlinuz-\S+-cloud-amd64 root=UUID=\S+ ro .*"
                     + re.escape(profile["kernel_opts"]), menu), menu
    for line in profile["ntp"]:
        name = "sources.d" if line.startswith("server") else "conf.d"
        suffix = "sources" if name == "sources.d" else "conf"
        assert line in read_root_file(raw, f"/etc/chrony/{name}/debian-forge-{provider}.{suffix}")
    status = read_root_file(raw, "/var/lib/dpkg/status")
    for package in profile["packages"]:
        assert f"Package: {package}\nStatus: install ok installed" in status
