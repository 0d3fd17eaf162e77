"""debian-forge boot: real QEMU boots of a real bookworm disk image (TCG when KVM does not work).

There is no bootloader stage yet, so the session fixture below builds the image itself
(mmdebstrap, GPT, ext4, GRUB for BIOS and UEFI) and caches it under
$DEBIAN_FORGE_TEST_CACHE/boot-image/, keyed by a hash of the builder's source. It is test
scaffolding: a manifest of the disk-image stages will replace it.
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import io
import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import TEST_CACHE

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

IMAGE_CACHE = TEST_CACHE / "boot-image"
IMAGE_SIZE = 3 * 1024**3
PACKAGES = ("linux-image-amd64,systemd-sysv,cloud-init,grub-pc-bin,grub-efi-amd64-bin,udev,"
            "ifupdown,isc-dhcp-client,openssh-server")
BIOS_BOOT = "21686148-6449-6E6F-744E-656564454649"
ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LINUX_ROOT_X86_64 = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"


def _sh(*argv, **kwargs) -> str:
    """Run a host command; its output, or an AssertionError that shows it."""
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, argv))} exited {proc.returncode}:\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def _bootstrap(tree: Path) -> None:
    from deb_mock.host_sources import resolve_mirror

    mirror = f"deb {resolve_mirror(None)} bookworm main"
    _sh("mmdebstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm", tree, mirror,
        timeout=1500)


def _partition(disk: Path) -> dict[str, tuple[int, int]]:
    """A sparse disk with a GPT: BIOS boot, ESP, root; each one's (offset, size) in bytes."""
    with open(disk, "wb") as f:
        f.truncate(IMAGE_SIZE)
    table = (f"label: gpt\n"
             f"start=2048, size=1MiB, type={BIOS_BOOT}, name=bios\n"
             f"size=100MiB, type={ESP}, name=esp\n"
             f"type={LINUX_ROOT_X86_64}, name=root\n")
    _sh("sfdisk", "--quiet", disk, input=table)
    parts = json.loads(_sh("sfdisk", "--json", disk))["partitiontable"]["partitions"]
    return {p["name"]: (p["start"] * 512, p["size"] * 512) for p in parts}


def _grub_cfg(root_uuid: str, kernel: str, initrd: str) -> str:
    return (f"set timeout=0\n"
            f"serial --unit=0 --speed=115200\n"
            f"terminal_input serial console\n"
            f"terminal_output serial console\n"
            f"search --no-floppy --fs-uuid --set=root {root_uuid}\n"
            f"linux /boot/{kernel} root=UUID={root_uuid} ro console=tty0 console=ttyS0,115200\n"
            f"initrd /boot/{initrd}\n"
            f"boot\n")


def _efi_loader(target: Path, root_uuid: str) -> None:
    """GRUB for UEFI that finds the root file system by UUID and reads its /boot/grub (made
    with grub-mkimage: grub-install wants the ESP mounted, and this host kernel has no vfat)."""
    early = target.with_suffix(".cfg")
    early.write_text(f"search --no-floppy --fs-uuid --set=root {root_uuid}\n"
                     f"set prefix=($root)/boot/grub\n")
    _sh("grub-mkimage", "-O", "x86_64-efi", "-p", "/boot/grub", "-c", early, "-o", target,
        "part_gpt", "ext2", "search", "search_fs_uuid", "normal", "configfile")


def _esp(device: Path, efi_binary: Path) -> str:
    """A FAT32 ESP filled with mtools, holding the removable-media loader; its fstab UUID."""
    volume_id = uuid.uuid4().hex[:8].upper()
    _sh("mkfs.fat", "-F", "32", "-n", "ESP", "-i", volume_id, device)
    _sh("mmd", "-i", device, "::/EFI", "::/EFI/BOOT")
    _sh("mcopy", "-i", device, efi_binary, "::/EFI/BOOT/BOOTX64.EFI")
    return f"{volume_id[:4]}-{volume_id[4:]}"


def _fill(disk: Path, parts: dict, tree: Path, mnt: Path, work: Path) -> None:
    """File systems on the partitions, the tree copied into the root, GRUB for both firmwares.

    Each partition gets its own loop device over its byte range: grub-install cannot place a
    partition of a loop device (`cannot find a GRUB drive for /dev/loop0p3`), so it sees the
    root as a disk of its own and finds it at boot by UUID, with GPT support added. The loop
    devices detach themselves (autoclear) whatever happens."""
    from deb_mock.loop import loop_device

    root_uuid = str(uuid.uuid4())
    with (loop_device(disk) as whole, loop_device(disk, offset=parts["esp"][0],
                                                  size=parts["esp"][1]) as esp,
          loop_device(disk, offset=parts["root"][0], size=parts["root"][1]) as root):
        _efi_loader(work / "BOOTX64.EFI", root_uuid)
        esp_uuid = _esp(esp, work / "BOOTX64.EFI")
        _sh("mkfs.ext4", "-q", "-L", "root", "-U", root_uuid, root)
        mnt.mkdir()
        _sh("mount", root, mnt)
        try:
            _sh("cp", "-a", f"{tree}/.", mnt)
            (mnt / "boot/efi").mkdir(exist_ok=True)
            (mnt / "etc/fstab").write_text(
                f"UUID={root_uuid}\t/\text4\terrors=remount-ro\t0\t1\n"
                f"UUID={esp_uuid}\t/boot/efi\tvfat\tumask=0077\t0\t2\n")
            kernel = sorted(p.name for p in (mnt / "boot").glob("vmlinuz-*"))[-1]
            initrd = sorted(p.name for p in (mnt / "boot").glob("initrd.img-*"))[-1]
            grub = mnt / "boot/grub"
            grub.mkdir(exist_ok=True)
            (grub / "grub.cfg").write_text(_grub_cfg(root_uuid, kernel, initrd))
            shutil.copytree("/usr/lib/grub/x86_64-efi", grub / "x86_64-efi",
                            ignore=shutil.ignore_patterns("*.efi", "*.img", "monolithic"))
            _sh("grub-install", "--target=i386-pc", f"--boot-directory={mnt}/boot",
                "--modules=part_gpt ext2", whole)
        finally:
            _sh("umount", mnt)


def _build_image(target: Path) -> None:
    """A bootable 3 GiB sparse raw image: GPT with BIOS boot, ESP and ext4 root partitions."""
    from deb_mock.namespace import enter_private_mount_namespace

    enter_private_mount_namespace()
    work = target.parent / f"build-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    try:
        _bootstrap(work / "tree")
        disk = work / "disk.raw"
        _fill(disk, _partition(disk), work / "tree", work / "mnt", work)
        disk.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


_BUILDER = (_sh, _bootstrap, _partition, _grub_cfg, _efi_loader, _esp, _fill, _build_image)


def _builder_hash() -> str:
    text = PACKAGES + str(IMAGE_SIZE) + "".join(inspect.getsource(f) for f in _BUILDER)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@pytest.fixture(scope="session")
def boot_image() -> Path:
    """The bootable bookworm image, built once per builder version and kept between runs."""
    IMAGE_CACHE.mkdir(parents=True, exist_ok=True)
    image = IMAGE_CACHE / f"bookworm-{_builder_hash()}.raw"
    with open(IMAGE_CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not image.exists():
            _build_image(image)
            for old in IMAGE_CACHE.glob("bookworm-*.raw"):
                if old != image:
                    old.unlink()
    return image


@pytest.fixture
def run_dir(tmp_path) -> dict[str, str]:
    """TMPDIR for a boot, to see that it leaves nothing behind."""
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    return {"TMPDIR": str(scratch)}


def test_bios_boot_reaches_login_and_cloud_init_creates_the_user(forge, boot_image, run_dir,
                                                                  tmp_path):
    """SeaBIOS boots the image to a login prompt, cloud-init creates `forge` from the seed and
    says so on the serial console; the image itself is not written, no temp file remains."""
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    before = boot_image.stat().st_mtime_ns
    proc = forge("boot", boot_image, "--ssh-key", f"{key}.pub", env=run_dir, check=True)
    summary = proc.stdout.strip()
    assert re.fullmatch(re.escape(str(boot_image)) + r": booted \(BIOS, (KVM|TCG)\): login "
                        r"prompt after [\d.]+ s, cloud-init done after [\d.]+ s", summary), summary
    assert boot_image.stat().st_mtime_ns == before
    assert not os.listdir(run_dir["TMPDIR"])


def test_uefi_boot_reaches_login_and_cloud_init_creates_the_user(boot_image):
    """OVMF boots the same image from its ESP (the kernel finds EFI); the Python API reports the
    timings, and the console shows the marker with forge's uid."""
    from debian_forge.boot import boot

    console = io.StringIO()
    result = boot(boot_image, uefi=True, log=console)
    assert result.accelerator in ("kvm", "tcg")
    assert 0 < result.login_seconds and 0 < result.cloud_init_seconds
    assert "efi: EFI v2" in console.getvalue()
    assert any(re.search(r"FORGE-BOOT-OK \w+ user=forge uid=1000", line)
               for line in result.console_tail)


def test_a_blank_disk_times_out_with_the_console_tail(forge, tmp_path, run_dir):
    """A disk with nothing to boot fails after --timeout: exit 1, the firmware's last words."""
    blank = tmp_path / "blank.raw"
    with open(blank, "wb") as f:
        f.truncate(64 * 1024 * 1024)
    proc = forge("boot", blank, "--timeout", "20", env=run_dir, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "no login prompt and no cloud-init marker on the console after 20 s" in proc.stderr
    assert "  | No bootable device." in proc.stderr
    assert not os.listdir(run_dir["TMPDIR"])


def test_a_missing_image_is_a_usage_error(forge, tmp_path):
    """exit 2, naming the file, before anything starts."""
    proc = forge("boot", tmp_path / "nope.qcow2")
    assert proc.returncode == 2
    assert f"{tmp_path / 'nope.qcow2'}: no such image file" in proc.stderr


@pytest.mark.parametrize("fmt", ["raw", "qcow2", "vmdk", "vpc", "vhdx"])
def test_each_image_format_is_recognised(tmp_path, fmt):
    """qemu-img names the format QEMU is then told (vpc is VHD)."""
    from debian_forge.boot import image_format

    image = tmp_path / f"disk.{fmt}"
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, image, "16M"], check=True)
    assert image_format(image) == fmt


def test_the_kvm_probe_is_its_assembly_source(tmp_path):
    """The probe's bytes are what its source in boot.py assembles to (binutils)."""
    from debian_forge.boot import KVM_PROBE, KVM_PROBE_SOURCE

    (tmp_path / "probe.S").write_text(KVM_PROBE_SOURCE)
    subprocess.run(["as", "--64", "-o", tmp_path / "probe.o", tmp_path / "probe.S"], check=True)
    subprocess.run(["ld", "-m", "elf_x86_64", "-Ttext=0x7c00", "--oformat=binary", "-e", "_start",
                    "-o", tmp_path / "probe.bin", tmp_path / "probe.o"], check=True)
    assert (tmp_path / "probe.bin").read_bytes() == KVM_PROBE


def test_the_kvm_probe_reaches_long_mode_and_finishes_under_tcg():
    """The probe is a sound program: emulated by TCG it finishes well within its time, so when
    it does not under KVM, KVM is to blame."""
    from debian_forge.boot import run_probe

    finished, lines = run_probe("tcg")
    assert finished, lines
    assert [m for line in lines for m in re.findall(r"probe: [A-Za-z -]+", line)] == [
        "probe: real mode", "probe: protected mode", "probe: long mode", "probe: FORGE-KVM-OK"]
