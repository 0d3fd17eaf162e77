"""Loop devices over image files: released on exit, on failure and when their owner is SIGKILLed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from deb_mock import loop
from deb_mock.loop import LoopError, attached_to, loop_device, partition_devices, release_stale
from deb_mock.namespace import enter_private_mount_namespace

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("sfdisk") is None, reason="needs sfdisk (package fdisk)"),
]

MiB = 1024 * 1024


def run(*argv, input: str | None = None) -> str:
    return subprocess.run([str(a) for a in argv], input=input, capture_output=True, text=True,
                          check=True).stdout


def make_disk(path: Path, label: str = "gpt") -> list[tuple[int, int]]:
    """A 64 MiB sparse image with two partitions; returns their (offset, size) in bytes."""
    with open(path, "wb") as f:
        f.truncate(64 * MiB)
    kind = "linux" if label == "gpt" else "83"
    run("sfdisk", "-q", path, input=f"label: {label}\nsize=20MiB, type={kind}\ntype={kind}\n")
    table = json.loads(run("sfdisk", "--json", path))["partitiontable"]
    return [(p["start"] * 512, p["size"] * 512) for p in table["partitions"]]


def mkfs_in_partition(image: Path, offset: int, size: int) -> None:
    """ext4 written straight into the image file at the partition's place, no device involved."""
    run("mkfs.ext4", "-q", "-F", "-E", f"offset={offset}", image, f"{size // 1024}k")


@pytest.fixture
def disk(tmp_path) -> tuple[Path, list[tuple[int, int]]]:
    image = tmp_path / "disk.img"
    return image, make_disk(image)


def rebound(dev: Path) -> bool:
    """Another process (tests share the host) bound the number we released, with its partitions."""
    return (loop.SYS_BLOCK / dev.name / "loop").exists()


def losetup_lists(image: Path) -> bool:
    return str(image) in run("losetup", "-a")


@pytest.mark.parametrize("label", ["dos", "gpt"])
def test_partitions_are_usable_and_all_is_released_after(tmp_path, label):
    """partscan gives one device per partition; a filesystem on p1 mounts and takes a file that
    lands in the image; the loop device and its partition nodes are gone once the context exits."""
    image = tmp_path / "disk.img"
    offset, size = make_disk(image, label)[0]
    enter_private_mount_namespace()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with loop_device(image, partscan=True) as dev:
        parts = partition_devices(dev)
        assert parts == [Path(f"{dev}p1"), Path(f"{dev}p2")]
        run("mkfs.ext4", "-q", parts[0])
        run("mount", parts[0], mnt)
        (mnt / "hello").write_text("hello\n")
        run("umount", mnt)
    assert attached_to(image) == []
    assert not losetup_lists(image)
    assert not any(p.exists() for p in parts) or rebound(dev)
    with loop_device(image, offset=offset, size=size, read_only=True) as p1:
        assert run("debugfs", "-R", "cat /hello", p1) == "hello\n"


def test_offset_and_size_expose_one_partition_as_the_whole_device(disk):
    image, partitions = disk
    offset, size = partitions[0]
    mkfs_in_partition(image, offset, size)
    with loop_device(image, offset=offset, size=size) as dev:
        blkid = run("blkid", "--probe", "--output", "value", "--match-tag", "TYPE", dev)
        assert blkid.strip() == "ext4"
        assert int((loop.SYS_BLOCK / dev.name / "size").read_text()) * 512 == size
    assert attached_to(image) == []


def test_a_failing_body_still_releases_the_device(disk):
    image, _ = disk
    with pytest.raises(RuntimeError, match="stage failed"):
        with loop_device(image, partscan=True) as dev:
            assert attached_to(image) == [dev]
            raise RuntimeError("stage failed")
    assert attached_to(image) == []


def test_read_only_device_refuses_writes(disk):
    image, _ = disk
    with loop_device(image, read_only=True) as dev:
        assert (loop.SYS_BLOCK / dev.name / "ro").read_text().strip() == "1"
        fd = os.open(dev, os.O_WRONLY)
        try:
            with pytest.raises(OSError):
                os.write(fd, b"x" * 512)
        finally:
            os.close(fd)
    assert attached_to(image) == []


def test_two_step_setup_without_loop_configure_also_autoclears(disk, monkeypatch):
    """The LOOP_SET_FD + LOOP_SET_STATUS64 path (kernels before 5.8) gets the same flags."""
    image, _ = disk
    monkeypatch.setattr(loop, "_use_configure", False)
    with loop_device(image, partscan=True) as dev:
        assert (loop.SYS_BLOCK / dev.name / "loop/autoclear").read_text().strip() == "1"
        assert len(partition_devices(dev)) == 2
    assert attached_to(image) == []


def test_a_missing_partition_node_is_made_from_sysfs_and_removed_after(disk):
    """Where nothing creates /dev/loopNpM (a tmpfs /dev without udev) we mknod it ourselves."""
    image, _ = disk
    with loop_device(image, partscan=True) as dev:
        p2 = partition_devices(dev)[1]
        os.unlink(p2)
        assert partition_devices(dev)[1] == p2
        major, minor = (loop.SYS_BLOCK / dev.name / p2.name / "dev").read_text().split(":")
        assert os.stat(p2).st_rdev == os.makedev(int(major), int(minor))
    assert not p2.exists() or rebound(dev)


def test_a_partition_left_mounted_is_reported_and_released_on_unmount(tmp_path, disk, monkeypatch):
    image, partitions = disk
    mkfs_in_partition(image, *partitions[0])
    enter_private_mount_namespace()
    monkeypatch.setattr(loop, "RELEASE_WAIT", 0.2)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with pytest.raises(LoopError, match="still in use"):
        with loop_device(image, partscan=True) as dev:
            run("mount", partition_devices(dev)[0], mnt)
    assert attached_to(image) == [dev]
    run("umount", mnt)
    assert attached_to(image) == []


CHILD = textwrap.dedent("""
    import subprocess, sys, time
    from pathlib import Path
    from deb_mock.loop import loop_device, partition_devices
    from deb_mock.namespace import enter_private_mount_namespace

    image, mnt = Path(sys.argv[1]), sys.argv[2]
    enter_private_mount_namespace()
    with loop_device(image, partscan=True) as dev:
        if mnt:
            subprocess.run(["mount", str(partition_devices(dev)[0]), mnt], check=True)
        print(dev, flush=True)
        time.sleep(60)
""")


@pytest.mark.parametrize("mounted", [False, True], ids=["attached", "partition-mounted"])
def test_a_sigkilled_owner_leaves_no_device_behind(tmp_path, disk, mounted):
    """Either the kernel autoclears the device when the killed process's descriptors (and its
    mount namespace) go, or release_stale detaches it; the test says which guarantee held."""
    image, partitions = disk
    mnt = ""
    if mounted:
        mkfs_in_partition(image, *partitions[0])
        (tmp_path / "mnt").mkdir()
        mnt = str(tmp_path / "mnt")
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(image), mnt], stdout=subprocess.PIPE,
                             text=True)
    try:
        dev = Path(child.stdout.readline().strip())
        assert attached_to(image) == [dev]
    finally:
        child.kill()
        child.wait()
    deadline = time.monotonic() + 5
    while attached_to(image) and time.monotonic() < deadline:
        time.sleep(0.02)
    if attached_to(image):
        print(f"kernel kept {dev} after SIGKILL; release_stale detached it")
        assert release_stale(tmp_path) == [dev]
    else:
        print(f"kernel autocleared {dev} after SIGKILL")
    assert attached_to(image) == []
    assert not losetup_lists(image)


def test_release_stale_detaches_a_leaked_device_under_the_directory(disk, tmp_path):
    image, _ = disk
    dev = Path(run("losetup", "-f", "--show", image).strip())
    assert attached_to(image) == [dev]
    assert release_stale(tmp_path) == [dev]
    assert attached_to(image) == []


def test_release_stale_ignores_devices_outside_the_directory(disk):
    image, _ = disk
    dev = run("losetup", "-f", "--show", image).strip()
    try:
        with tempfile.TemporaryDirectory() as elsewhere:
            assert release_stale(Path(elsewhere)) == []
        assert attached_to(image) == [Path(dev)]
    finally:
        run("losetup", "-d", dev)


def test_release_stale_leaves_a_device_held_open_alone(disk, tmp_path):
    image, _ = disk
    with loop_device(image) as dev:
        assert release_stale(tmp_path) == []
        assert attached_to(image) == [dev]
    assert attached_to(image) == []


def test_release_stale_leaves_a_mounted_device_alone(disk, tmp_path):
    image, partitions = disk
    mkfs_in_partition(image, *partitions[0])
    enter_private_mount_namespace()
    dev = run("losetup", "-f", "--show", "-o", str(partitions[0][0]), image).strip()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    run("mount", dev, mnt)
    try:
        assert release_stale(tmp_path) == []
    finally:
        run("umount", mnt)
    assert release_stale(tmp_path) == [Path(dev)]
    assert attached_to(image) == []
