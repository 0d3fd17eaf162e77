"""org.osbuild.systemd on a real Debian tree."""

import os
import subprocess

import jsonschema
import pytest

from debian_forge import stages
from debian_forge.context import StageError

pytestmark = pytest.mark.integration


def is_enabled(tree, unit):
    """What `systemctl is-enabled` says inside the tree."""
    return subprocess.run(["chroot", str(tree.root), "systemctl", "is-enabled", unit],
                          capture_output=True, text=True,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}).stdout.strip()


def test_units_are_enabled_disabled_and_masked(stage_runner):
    """Each list ends in the state systemctl itself reports inside the tree."""
    tree = stage_runner.run("org.osbuild.systemd", {
        "enabled_services": ["systemd-networkd.service", "getty@tty2.service"],
        "disabled_services": ["ssh.service"],
        "masked_services": ["apt-daily.timer"]})
    assert is_enabled(tree, "systemd-networkd.service") == "enabled"
    assert is_enabled(tree, "getty@tty2.service") == "enabled"
    assert is_enabled(tree, "ssh.service") == "disabled"
    assert is_enabled(tree, "apt-daily.timer") == "masked"


def test_default_target_is_linked(stage_runner):
    """set-default makes /etc/systemd/system/default.target point at the target."""
    tree = stage_runner.run("org.osbuild.systemd", {"default_target": "multi-user.target"})
    link = os.readlink(tree.root / "etc/systemd/system/default.target")
    assert link.endswith("/systemd/system/multi-user.target")


def test_missing_unit_is_named_before_anything_runs(stage_runner):
    """A unit the tree does not have fails the stage, naming it and what is close."""
    with pytest.raises(StageError, match="'sshd-keygen.service' is not installed.*ssh"):
        stage_runner.run("org.osbuild.systemd", {
            "enabled_services": ["systemd-networkd.service", "sshd-keygen.service"]})
    assert is_enabled(stage_runner.tree, "systemd-networkd.service") == "disabled"


def test_unit_in_two_lists_is_an_error(stage_runner):
    """Enabling and masking the same unit is contradictory and refused."""
    with pytest.raises(StageError, match="more than one of .*: ssh.service"):
        stage_runner.run("org.osbuild.systemd", {"enabled_services": ["ssh.service"],
                                                 "masked_services": ["ssh.service"]})


def test_tree_without_systemctl_is_told_to_install_systemd(stage_runner):
    """No systemctl in the tree: the error says to install systemd."""
    stage_runner.tree.path("/usr/bin/systemctl").unlink()
    with pytest.raises(StageError, match="install the package 'systemd'"):
        stage_runner.run("org.osbuild.systemd", {"enabled_services": ["ssh.service"]})


def test_systemd_schema_refuses_a_path_as_unit():
    """A unit is a name, not a path to a unit file."""
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"enabled_services": ["/etc/systemd/system/ssh.service"]},
                            stages.get("org.osbuild.systemd").options_schema())
