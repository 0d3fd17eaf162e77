"""Disk assembly for real: a GPT image with an EFI partition and an ext4 root holding the tree,
through the engine's loop devices and mounts, converted to qcow2."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import FORGE, project_mounts
from deb_mock.loop import attached_to, loop_device
from test_forge_features import BOOT, EPOCH

pytestmark = pytest.mark.integration

SECTORS = 2 * 1024 * 1024  # 1 GiB of 512-byte sectors
ESP = {"start": 2048, "size": 204800}
ROOT = {"start": 206848, "size": SECTORS - 34 - 206848 + 1}
ROOT_UUID = "6e2c1d0a-3c7f-4c2b-9a57-2f1f6b0d7e11"
DISK_UUID = "d6b2a6f1-1c2e-4b7a-8f3d-5e6a7b8c9d01"


def loopback(**options) -> dict:
    return {"device": {"type": "org.osbuild.loopback",
                       "options": {"filename": "disk.img", **options}}}


def image_manifest(path) -> None:
    tree_input = {"tree": {"type": "org.osbuild.tree", "origin": "org.osbuild.pipeline",
                           "references": ["name:os"]}}
    image = [
        {"type": "org.osbuild.truncate", "options": {"filename": "disk.img", "size": "1G"}},
        {"type": "org.osbuild.sfdisk", "devices": loopback(), "options": {
            "label": "gpt", "uuid": DISK_UUID, "partitions": [
                {**ESP, "type": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "name": "ESP",
                 "uuid": "0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"},
                {**ROOT, "type": "0FC63DAF-8483-4772-8E79-3D69D8477DE4", "name": "root",
                 "uuid": "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"}]}},
        {"type": "org.osbuild.mkfs.fat", "devices": loopback(**ESP),
         "options": {"volid": "7b3e1a2c", "label": "ESP"}},
        {"type": "org.osbuild.mkfs.ext4", "devices": loopback(**ROOT),
         "options": {"uuid": ROOT_UUID, "label": "root"}},
        {"type": "org.osbuild.copy", "inputs": tree_input,
         "devices": {"disk": {"type": "org.osbuild.loopback",
                              "options": {"filename": "disk.img", "partscan": True}}},
         "mounts": [{"name": "root", "type": "org.osbuild.ext4", "source": "disk",
                     "partition": 2, "target": "/"}],
         "options": {"paths": [{"from": "input://tree/", "to": "mount://root/"}]}},
    ]
    qcow2 = [{"type": "org.osbuild.qemu",
              "inputs": {"image": {"type": "org.osbuild.tree", "origin": "org.osbuild.pipeline",
                                   "references": ["name:image"]}},
              "options": {"filename": "disk.qcow2", "format": {"type": "qcow2"}}}]
    path.write_text(json.dumps({"version": "2", "source-epoch": EPOCH, "pipelines": [
        {"name": "os", "stages": [BOOT]}, {"name": "image", "stages": image},
        {"name": "qcow2", "stages": qcow2}]}))


@pytest.fixture(scope="module")
def disk_build(forge, minimal_build, tmp_path_factory):
    work = tmp_path_factory.mktemp("disk")
    image_manifest(work / "m.json")
    forge("build", work / "m.json", "--export", "image", "--export", "qcow2",
          "--output-directory", work / "out", check=True, timeout=1800)
    return work / "out"


def test_partition_table_is_the_manifests(disk_build):
    table = json.loads(subprocess.run(["sfdisk", "--json", disk_build / "image/disk.img"],
                                      capture_output=True, text=True, check=True).stdout)
    table = table["partitiontable"]
    assert table["label"] == "gpt" and table["id"].lower() == DISK_UUID
    starts = [(p["start"], p["size"], p["name"]) for p in table["partitions"]]
    assert starts == [(ESP["start"], ESP["size"], "ESP"), (ROOT["start"], ROOT["size"], "root")]


def test_root_filesystem_holds_the_tree_with_the_manifests_uuid(disk_build):
    image = disk_build / "image/disk.img"
    with loop_device(image, offset=ROOT["start"] * 512, size=ROOT["size"] * 512,
                     read_only=True) as device:
        blkid = subprocess.run(["blkid", "-o", "export", str(device)], capture_output=True,
                               text=True, check=True).stdout
        version = subprocess.run(["debugfs", "-R", "cat /etc/debian_version", str(device)],
                                 capture_output=True, text=True, check=True).stdout
    assert f"UUID={ROOT_UUID}" in blkid and "TYPE=ext4" in blkid
    assert version.startswith("12.")
    assert not attached_to(image) and not project_mounts()


def test_qcow2_conversion_has_the_raw_images_size(disk_build):
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json",
                                      disk_build / "qcow2/disk.qcow2"],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "qcow2" and info["virtual-size"] == SECTORS * 512


def test_a_filesystem_populated_from_the_tree_holds_it_with_clamped_times(forge, minimal_build,
                                                                        tmp_path):
    """mkfs.ext4 with a tree input (mke2fs -d, no mount): the tree is in the filesystem and no
    file is newer than the source epoch."""
    tree_input = {"tree": {"type": "org.osbuild.tree", "origin": "org.osbuild.pipeline",
                           "references": ["name:os"]}}
    manifest = json.loads((minimal_build / "manifest.lock.json").read_text())
    manifest["pipelines"] = [manifest["pipelines"][0], {"name": "image", "stages": [
        {"type": "org.osbuild.truncate", "options": {"filename": "disk.img", "size": "512M"}},
        {"type": "org.osbuild.mkfs.ext4", "inputs": tree_input, "devices": loopback(),
         "options": {"uuid": ROOT_UUID, "label": "root"}}]}]
    path = tmp_path / "m.json"
    path.write_text(json.dumps(manifest))
    out = tmp_path / "out"
    forge("build", path, "--export", "image", "--output-directory", out, check=True)
    image = out / "image/disk.img"
    version = subprocess.run(["debugfs", "-R", "cat /etc/debian_version", image],
                             capture_output=True, text=True, check=True).stdout
    assert version.startswith("12.")
    stat = subprocess.run(["debugfs", "-R", "stat /etc/passwd", image], capture_output=True,
                          text=True, check=True).stdout
    mtime = next(line for line in stat.splitlines() if line.strip().startswith("mtime:"))
    assert int(mtime.split()[1].split(":")[0], 16) <= manifest["source-epoch"]


# A small bootable layout: the tree has GRUB but a stand-in kernel, so two cold builds are cheap.
GRUB_TREE = [BOOT,
             {"type": "org.osbuild.apt",
              "options": {"packages": ["grub-pc-bin", "grub-efi-amd64-bin"]}},
             {"type": "org.osbuild.script", "options": {"script": (
                 "echo kernel > /boot/vmlinuz-6.1.0-99-amd64\n"
                 "echo initrd > /boot/initrd.img-6.1.0-99-amd64\n")}},
             {"type": "org.osbuild.kernel-cmdline", "options": {"kernel_opts": "console=ttyS0"}},
             {"type": "org.osbuild.grub2", "options": {"root_fs_uuid": ROOT_UUID, "bios": True,
                                                       "uefi": True}},
             # apt's and dpkg's logs and caches carry the time of the build
             {"type": "org.osbuild.cleanup", "options": {}}]
SMALL = {"bios": (2048, 2048), "esp": (4096, 65536), "root": (69632, 4 * 262144 - 69632 - 33)}


def small_disk_manifest(path) -> dict:
    tree = {"tree": {"type": "org.osbuild.tree", "origin": "org.osbuild.pipeline",
                     "references": ["name:os"]}}
    part = {name: {"start": start, "size": size} for name, (start, size) in SMALL.items()}
    image = [
        {"type": "org.osbuild.truncate", "options": {"filename": "disk.img", "size": "512M"}},
        {"type": "org.osbuild.sfdisk", "devices": loopback(), "options": {
            "label": "gpt", "uuid": DISK_UUID, "partitions": [
                {**part["bios"], "type": "21686148-6449-6E6F-744E-656564454649"},
                {**part["esp"], "type": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"},
                {**part["root"], "type": "0FC63DAF-8483-4772-8E79-3D69D8477DE4"}]}},
        # before mkfs.ext4: a stage that writes the image copies it up, the sooner the smaller
        {"type": "org.osbuild.grub2.inst", "inputs": tree,
         "options": {"filename": "disk.img", "location": SMALL["bios"][0]}},
        {"type": "org.osbuild.mkfs.fat", "devices": loopback(**part["esp"]), "inputs": tree,
         "options": {"volid": "7b3e1a2c", "path": "/boot/efi"}},
        {"type": "org.osbuild.mkfs.ext4", "devices": loopback(**part["root"]), "inputs": tree,
         "options": {"uuid": ROOT_UUID}}]
    image_input = {"image": {**tree["tree"], "references": ["name:image"]}}
    formats = [{"name": name, "stages": [{"type": "org.osbuild.qemu", "inputs": image_input,
                                          "options": {"filename": f"disk.{name}",
                                                      "format": fmt}}]}
               for name, fmt in (("vhd", {"type": "vpc", "subformat": "fixed",
                                          "force_size": True}),
                                 ("vmdk", {"type": "vmdk", "subformat": "streamOptimized"}))]
    manifest = {"version": "2", "source-epoch": EPOCH, "pipelines": [
        {"name": "os", "stages": GRUB_TREE}, {"name": "image", "stages": image}, *formats]}
    path.write_text(json.dumps(manifest))
    return manifest


def test_two_cold_builds_give_the_same_bootable_disk_bytes(forge, tmp_path):
    """Same manifest and epoch, two empty stores: the raw images are identical, byte for byte,
    and so are their VHD and VMDK conversions (qemu-img's clock and random ids replaced by the
    epoch and ids derived from the content). And the raw images hold what the stages promise:
    boot.img in the MBR pointing at core.img in the BIOS boot partition, the UEFI loader on the
    ESP, the menu with the kernel options."""
    small_disk_manifest(tmp_path / "m.json")
    digests = []
    for run in (1, 2):
        out = tmp_path / f"out{run}"
        forge("build", tmp_path / "m.json", "--store", tmp_path / f"store{run}", "--export",
              "image", "--export", "vhd", "--export", "vmdk", "--output-directory", out,
              check=True)
        digests.append([hashlib.sha256(path.read_bytes()).hexdigest() for path in
                        (out / "image/disk.img", out / "vhd/disk.vhd", out / "vmdk/disk.vmdk")])
    assert digests[0] == digests[1]
    disk = tmp_path / "out1/image/disk.img"
    with open(disk, "rb") as f:
        mbr = f.read(512)
        f.seek(SMALL["bios"][0] * 512)
        core_start = f.read(512)
    assert int.from_bytes(mbr[0x5C:0x64], "little") == SMALL["bios"][0]
    assert mbr[510:512] == b"\x55\xaa"  # the protective MBR's signature survived
    assert int.from_bytes(core_start[500:508], "little") == SMALL["bios"][0] + 1
    esp = f"{disk}@@{SMALL['esp'][0] * 512}"
    listing = subprocess.run(["mdir", "-b", "-i", esp, "::/EFI/BOOT"], capture_output=True,
                             text=True, check=True, env={"MTOOLS_SKIP_CHECK": "1"}).stdout
    assert listing.split() == ["::/EFI/BOOT/BOOTX64.EFI"]
    root_offset = SMALL["root"][0] * 512
    with loop_device(disk, offset=root_offset, size=SMALL["root"][1] * 512,
                     read_only=True) as device:
        menu = subprocess.run(["debugfs", "-R", "cat /boot/grub/grub.cfg", str(device)],
                              capture_output=True, text=True, check=True).stdout
    assert (f"linux /boot/vmlinuz-6.1.0-99-amd64 root=UUID={ROOT_UUID} ro console=ttyS0"
            in menu)


def test_grub_bios_core_must_fit_a_bios_boot_partition(forge, tmp_path):
    """grub2.inst aimed at the ESP fails naming the partition and its type (exit 10)."""
    manifest = small_disk_manifest(tmp_path / "m.json")
    manifest["pipelines"][1]["stages"][2]["options"]["location"] = SMALL["esp"][0]
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    proc = forge("build", tmp_path / "m.json", "--export", "image", "--output-directory",
                 tmp_path / "out")
    assert proc.returncode == 10, proc.stderr
    assert (f"sector {SMALL['esp'][0]} is in partition 2 of type "
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B, not a BIOS boot partition") in proc.stderr


def test_sigkill_during_a_disk_stage_leaves_no_loop_device_and_no_mount(forge, tmp_path,
                                                                         cache_env):
    """SIGKILL while org.osbuild.copy writes into a loop-mounted ext4: at once no mount and no
    loop device of the store remain (autoclear, private mount namespace); the rerun finishes
    and leaves none either."""
    tree = {"tree": {"type": "org.osbuild.tree", "origin": "org.osbuild.pipeline",
                     "references": ["name:os"]}}
    big = {"type": "org.osbuild.script",
           "options": {"script": "head -c 768M /dev/urandom > /big.bin"}}
    disk = {"device": {"type": "org.osbuild.loopback", "options": {"filename": "disk.img"}}}
    image = [{"type": "org.osbuild.truncate", "options": {"filename": "disk.img", "size": "2G"}},
             {"type": "org.osbuild.mkfs.ext4", "devices": disk, "options": {"uuid": ROOT_UUID}},
             {"type": "org.osbuild.copy", "inputs": tree, "devices": disk,
              "mounts": [{"name": "root", "type": "org.osbuild.ext4", "source": "device",
                          "target": "/"}],
              "options": {"paths": [{"from": "input://tree/", "to": "mount://root/"}]}}]
    os_only = tmp_path / "os.json"
    path = tmp_path / "m.json"
    os_only.write_text(json.dumps({"version": "2", "source-epoch": EPOCH, "pipelines": [
        {"name": "os", "stages": [BOOT, big]}]}))
    path.write_text(json.dumps({"version": "2", "source-epoch": EPOCH, "pipelines": [
        {"name": "os", "stages": [BOOT, big]}, {"name": "image", "stages": image}]}))
    store = tmp_path / "store"
    forge("build", os_only, "--store", store, check=True)  # the slow part, before the kill

    def ours() -> list[str]:
        listing = json.loads(subprocess.run(["losetup", "--list", "--json"], capture_output=True,
                                            text=True, check=True).stdout or '{"loopdevices":[]}')
        return [d["name"] for d in listing["loopdevices"]
                if str(store) in (d.get("back-file") or "")]

    proc = subprocess.Popen([*FORGE, "build", str(path), "--json", "--store", str(store)],
                            stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env={**os.environ, **cache_env})
    try:
        for line in proc.stdout:
            event = json.loads(line)
            if event["event"] == "stage-start" and event["stage"]["name"] == "org.osbuild.copy":
                break
        else:
            pytest.fail("the copy stage never started")
        time.sleep(1.0)
        assert ours(), "no loop device while the copy runs"
        assert proc.poll() is None, "the copy ended before the kill"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 10
    while (ours() or project_mounts()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not ours() and not project_mounts()
    forge("build", path, "--store", store, "--export", "image", "--output-directory",
          tmp_path / "out", check=True)
    assert not ours() and not project_mounts()
    with loop_device(tmp_path / "out/image/disk.img", read_only=True) as device:
        size = subprocess.run(["debugfs", "-R", "stat /big.bin", str(device)],
                              capture_output=True, text=True, check=True).stdout
    assert "Size: 805306368" in size
