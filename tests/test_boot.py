"""debian-forge boot: what it does besides booting a good image (tests/test_images.py boots
every example image with it): timeouts with the console tail, usage errors, image formats and
the KVM probe.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]


@pytest.fixture
def run_dir(tmp_path) -> dict[str, str]:
    """TMPDIR for a boot, to see that it leaves nothing behind."""
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    return {"TMPDIR": str(scratch)}


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


@pytest.mark.parametrize("fmt,options", [("raw", ""), ("qcow2", ""), ("vmdk", ""), ("vpc", ""),
                                         ("vpc", "subformat=fixed"), ("vhdx", "")])
def test_each_image_format_is_recognised(tmp_path, fmt, options):
    """qemu-img names the format QEMU is then told (vpc is VHD; a fixed VHD, which qemu-img
    alone takes for raw, is recognised by its footer)."""
    from debian_forge.boot import image_format

    image = tmp_path / f"disk.{fmt}"
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, *(["-o", options] if options else []),
                    image, "16M"], check=True)
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
