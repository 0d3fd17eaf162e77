"""Disk assembly for real: a GPT image with an EFI partition and an ext4 root holding the tree,
through the engine's loop devices and mounts, converted to qcow2."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import project_mounts
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
