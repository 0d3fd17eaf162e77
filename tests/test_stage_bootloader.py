"""org.osbuild.kernel-cmdline, org.osbuild.grub2 and org.osbuild.grub2.inst on their own: what
they write and how they refuse. The real thing — GRUB installed, images booted with SeaBIOS and
OVMF — is tests/test_images.py and tests/test_disk_stages.py."""

from __future__ import annotations

import subprocess

import jsonschema
import pytest

from debian_forge import stages
from debian_forge.context import StageError

pytestmark = pytest.mark.integration

ROOT_UUID = "6a8f2c1e-4b7d-4e39-9c0a-1d2e3f4a5b6c"
_UPDATE_GRUB_CMDLINE = ('cd "$1" && { [ -f etc/default/grub ] && . ./etc/default/grub; '
                        'for f in etc/default/grub.d/*.cfg; do . "./$f"; done; '
                        'printf %s "$GRUB_CMDLINE_LINUX"; }')


def test_kernel_cmdline_writes_kernel_install_and_grub_settings(stage_runner):
    """/etc/kernel/cmdline with root=UUID, and a grub.d snippet that update-grub's sourcing
    turns into the same options after the distribution's own."""
    tree = stage_runner.run("org.osbuild.kernel-cmdline", {
        "root_fs_uuid": ROOT_UUID, "kernel_opts": "console=ttyS0,115200  quiet"})
    assert tree.read_text("/etc/kernel/cmdline") == \
        f"root=UUID={ROOT_UUID} console=ttyS0,115200 quiet\n"
    tree.write_text("/etc/default/grub", 'GRUB_CMDLINE_LINUX="net.ifnames=0"\n')
    cmdline = subprocess.run(["sh", "-c", _UPDATE_GRUB_CMDLINE, "sh", str(tree.root)],
                             capture_output=True, text=True, check=True).stdout
    assert cmdline == "net.ifnames=0 console=ttyS0,115200 quiet"


def test_kernel_options_cannot_break_out_of_the_shell_quotes():
    schema = stages.get("org.osbuild.kernel-cmdline").options_schema()
    for bad in ['a" ; rm -rf /', "$(reboot)", "`id`", "a\\"]:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"kernel_opts": bad}, schema)


def test_grub2_needs_a_firmware_and_a_root_uuid():
    schema = stages.get("org.osbuild.grub2").options_schema()
    jsonschema.validate({"root_fs_uuid": ROOT_UUID, "uefi": True}, schema)
    for bad in ({"root_fs_uuid": ROOT_UUID}, {"root_fs_uuid": ROOT_UUID, "bios": False},
                {"bios": True}, {"root_fs_uuid": "root", "bios": True}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_grub2_names_the_missing_grub_package_then_the_missing_kernel(stage_runner):
    """The tree has neither GRUB nor a kernel: first GRUB's tools are asked for, then — with a
    stand-in grub-mkimage — a kernel."""
    options = {"root_fs_uuid": ROOT_UUID, "bios": True}
    with pytest.raises(StageError, match="no 'grub-mkimage': install the package 'grub-common'"):
        stage_runner.run("org.osbuild.grub2", options)
    stage_runner.tree.write_text("/usr/bin/grub-mkimage", "#!/bin/sh\n", mode=0o755)
    with pytest.raises(StageError, match=r"no kernel in /boot: install one \(linux-image-amd64\)"):
        stage_runner.run("org.osbuild.grub2", options)
    stage_runner.tree.write_text("/boot/vmlinuz-6.1.0-9-amd64", "kernel")
    with pytest.raises(StageError, match="no /usr/lib/grub/i386-pc: install the package "
                                         "'grub-pc-bin'"):
        stage_runner.run("org.osbuild.grub2", options)


def _check_room():
    return stages.get("org.osbuild.grub2.inst").module._check_room


def test_grub2_inst_keeps_the_core_image_out_of_other_partitions():
    """GPT: only inside a BIOS boot partition; MBR: only before the first partition."""
    check = _check_room()
    bios = {"start": 2048, "size": 2048, "type": "21686148-6449-6E6F-744E-656564454649"}
    root = {"start": 4096, "size": 100000, "type": "0FC63DAF-8483-4772-8E79-3D69D8477DE4"}
    check({"label": "gpt", "partitions": [bios, root]}, 2048, 60)
    with pytest.raises(StageError, match="does not fit in a BIOS boot partition"):
        check({"label": "gpt", "partitions": [bios, root]}, 2048, 3000)
    with pytest.raises(StageError, match="sector 4096 is in partition 2 of type 0FC63DAF"):
        check({"label": "gpt", "partitions": [bios, root]}, 4096, 60)
    check({"label": "dos", "partitions": [{"start": 2048, "size": 10, "type": "83"}]}, 1, 60)
    with pytest.raises(StageError, match="overlaps the first partition"):
        check({"label": "dos", "partitions": [{"start": 40, "size": 10, "type": "83"}]}, 1, 60)
