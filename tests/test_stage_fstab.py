"""org.osbuild.fstab on a real Debian tree."""

import os

import jsonschema
import pytest

from debian_forge import stages
from debian_forge.context import StageError

pytestmark = pytest.mark.integration

ROOT_UUID = "6e3a1c4d-6c5b-4f2e-9d4a-2b8f0c1e7a90"


def entries(tree):
    """The non-comment lines of the tree's /etc/fstab, split on tabs."""
    return [line.split("\t") for line in tree.read_text("/etc/fstab").splitlines()
            if line and not line.startswith("#")]


def test_each_kind_of_source_becomes_one_tab_separated_line(stage_runner):
    """UUID=, LABEL=, PARTUUID= and a device path, with the defaults filled in, in order."""
    tree = stage_runner.run("org.osbuild.fstab", {"filesystems": [
        {"uuid": ROOT_UUID, "path": "/", "vfs_type": "ext4", "options": "errors=remount-ro",
         "passno": 1},
        {"uuid": "1234-ABCD", "path": "/boot/efi", "vfs_type": "vfat", "options": "umask=0077",
         "passno": 2},
        {"label": "data", "path": "/srv", "vfs_type": "xfs"},
        {"partuuid": "0f3b0b6c-2e4d-4b8e-8c5a-1d2e3f405162", "path": "none", "vfs_type": "swap",
         "options": "sw"},
        {"device": "/dev/vdb1", "path": "/var/backup", "vfs_type": "ext4", "freq": 1},
    ]})
    assert tree.read_text("/etc/fstab").startswith("# /etc/fstab: static file system")
    assert entries(tree) == [
        [f"UUID={ROOT_UUID}", "/", "ext4", "errors=remount-ro", "0", "1"],
        ["UUID=1234-ABCD", "/boot/efi", "vfat", "umask=0077", "0", "2"],
        ["LABEL=data", "/srv", "xfs", "defaults", "0", "0"],
        ["PARTUUID=0f3b0b6c-2e4d-4b8e-8c5a-1d2e3f405162", "none", "swap", "sw", "0", "0"],
        ["/dev/vdb1", "/var/backup", "ext4", "defaults", "1", "0"],
    ]


def test_the_debian_placeholder_fstab_is_replaced(stage_runner):
    """The tree's '# UNCONFIGURED FSTAB' is gone after the stage, and the file is 0644."""
    tree = stage_runner.run("org.osbuild.fstab", {"filesystems": [
        {"uuid": ROOT_UUID, "path": "/", "vfs_type": "ext4"}]})
    assert "UNCONFIGURED" not in tree.read_text("/etc/fstab")
    assert os.stat(tree.path("/etc/fstab")).st_mode & 0o777 == 0o644


def test_spaces_in_a_label_and_mount_point_are_written_as_octal_escapes(stage_runner):
    """fstab(5) splits on whitespace, so a space is written \\040."""
    tree = stage_runner.run("org.osbuild.fstab", {"filesystems": [
        {"label": "My Data", "path": "/srv/my data", "vfs_type": "ext4"}]})
    assert entries(tree) == [["LABEL=My\\040Data", "/srv/my\\040data", "ext4", "defaults",
                              "0", "0"]]


def test_two_file_systems_on_one_mount_point_are_a_stage_error(stage_runner):
    """Mounting two file systems on /srv is refused with the mount point named."""
    with pytest.raises(StageError, match="mounted on /srv"):
        stage_runner.run("org.osbuild.fstab", {"filesystems": [
            {"label": "a", "path": "/srv", "vfs_type": "ext4"},
            {"label": "b", "path": "/srv", "vfs_type": "ext4"}]})


def test_fstab_schema_refuses_an_entry_with_two_sources_or_none():
    """Exactly one of uuid, label, partuuid and device names the file system."""
    schema = stages.get("org.osbuild.fstab").options_schema()
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"filesystems": [{"uuid": ROOT_UUID, "label": "root", "path": "/",
                                              "vfs_type": "ext4"}]}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"filesystems": [{"path": "/", "vfs_type": "ext4"}]}, schema)
