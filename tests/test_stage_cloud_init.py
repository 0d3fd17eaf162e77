"""org.osbuild.cloud-init on a real bookworm tree.

The stage tree has no cloud-init, and stage_runner cannot install packages (that needs a locked
org.osbuild.apt stage in a real build), so the tests that need it first lay out what the stage
looks for, as Debian's package installs it: an executable /usr/bin/cloud-init and the
`cloudinit/sources/DataSource<Name>.py` modules of bookworm's cloud-init (22.4.2), which has no
Akamai or WSL datasource yet. What the stage writes is then read back as cloud-init reads it.
"""

import os
import stat

import jsonschema
import pytest
import yaml

from debian_forge import stages
from debian_forge.context import StageError

pytestmark = pytest.mark.integration

CLOUD_CFG_D = "/etc/cloud/cloud.cfg.d"
SOURCES = "/usr/lib/python3/dist-packages/cloudinit/sources"
BOOKWORM_DATASOURCES = [
    "AliYun", "AltCloud", "Azure", "Bigstep", "CloudSigma", "CloudStack", "ConfigDrive",
    "DigitalOcean", "Ec2", "Exoscale", "GCE", "Hetzner", "IBMCloud", "LXD", "MAAS", "NWCS",
    "NoCloud", "None", "OVF", "OpenNebula", "OpenStack", "Oracle", "RbxCloud", "Scaleway",
    "SmartOS", "UpCloud", "VMware", "Vultr"]


def fake_cloud_init(tree, datasources=BOOKWORM_DATASOURCES):
    """The files of Debian's cloud-init package the stages check for (see the module doc)."""
    tree.write_text("/usr/bin/cloud-init", "#!/bin/sh\nexit 0\n", mode=0o755)
    tree.write_text(f"{SOURCES}/__init__.py", "")
    for name in datasources:
        tree.write_text(f"{SOURCES}/DataSource{name}.py", "")
    tree.write_text(f"{CLOUD_CFG_D}/90_dpkg.cfg",
                    "# to update this file, run dpkg-reconfigure cloud-init\n"
                    "datasource_list: [ NoCloud, ConfigDrive, Ec2, GCE, Azure, None ]\n")


def effective_config(tree) -> dict:
    """/etc/cloud/cloud.cfg.d merged as cloud-init merges it: name order, later files' keys
    winning, mappings merged key by key."""
    def merge(base, over):
        out = dict(base)
        for key, value in over.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(
                out.get(key), dict) else value
        return out

    merged: dict = {}
    for name in sorted(os.listdir(tree.path(CLOUD_CFG_D))):
        if name.endswith(".cfg"):
            merged = merge(merged, yaml.safe_load(tree.read_text(f"{CLOUD_CFG_D}/{name}")) or {})
    return merged


def schema():
    return stages.get("org.osbuild.cloud-init").options_schema()


def test_options_become_the_cloud_config_they_describe(stage_runner):
    """Every option lands under cloud-init's own key, in a 0644 YAML file headed by a comment."""
    fake_cloud_init(stage_runner.tree)
    tree = stage_runner.run("org.osbuild.cloud-init", {
        "datasources": ["NoCloud", "Ec2"],
        "default_user": {"name": "admin", "groups": ["adm", "sudo"], "sudo": True,
                         "shell": "/bin/bash", "gecos": "Cloud Admin"},
        "growpart": True, "ssh_pwauth": False, "disable_root": True, "preserve_hostname": False,
        "config": {"timezone": "Europe/Berlin"}})
    path = f"{CLOUD_CFG_D}/99_debian-forge.cfg"
    text = tree.read_text(path)
    assert text.startswith("# Written by debian-forge (org.osbuild.cloud-init).\n")
    assert yaml.safe_load(text) == {
        "datasource_list": ["NoCloud", "Ec2", "None"],
        "system_info": {"default_user": {
            "name": "admin", "gecos": "Cloud Admin", "groups": ["adm", "sudo"],
            "shell": "/bin/bash", "sudo": "ALL=(ALL) NOPASSWD:ALL", "lock_passwd": True}},
        "growpart": {"mode": "auto", "devices": ["/"]}, "resize_rootfs": True,
        "ssh_pwauth": False, "disable_root": True, "preserve_hostname": False,
        "timezone": "Europe/Berlin"}
    assert stat.S_IMODE(tree.path(path).stat().st_mode) == 0o644


def test_growpart_off_and_no_sudo_are_written_as_cloud_init_reads_them(stage_runner):
    """growpart false is mode "off" (a string, not YAML's false) with resize_rootfs false;
    sudo false is null (cloud-init deprecated false); lock_passwd may be turned off."""
    fake_cloud_init(stage_runner.tree)
    tree = stage_runner.run("org.osbuild.cloud-init", {
        "growpart": False, "default_user": {"name": "debian", "sudo": False,
                                            "lock_passwd": False}})
    data = yaml.safe_load(tree.read_text(f"{CLOUD_CFG_D}/99_debian-forge.cfg"))
    assert data == {"system_info": {"default_user": {"name": "debian", "sudo": None,
                                                     "lock_passwd": False}},
                    "growpart": {"mode": "off"}, "resize_rootfs": False}


def test_none_ends_the_datasource_list_exactly_once(stage_runner):
    """`None` given last, given in the middle or not given: it ends the list, once."""
    fake_cloud_init(stage_runner.tree)
    for given in (["Ec2", "None"], ["None", "GCE"], ["Azure"]):
        tree = stage_runner.run("org.osbuild.cloud-init", {"datasources": given})
        written = yaml.safe_load(tree.read_text(f"{CLOUD_CFG_D}/99_debian-forge.cfg"))
        assert written["datasource_list"] == [n for n in given if n != "None"] + ["None"]


def test_config_is_merged_last_and_replaces_top_level_keys(stage_runner):
    """A key in `config` replaces what an option set for it."""
    fake_cloud_init(stage_runner.tree)
    tree = stage_runner.run("org.osbuild.cloud-init", {
        "growpart": True, "config": {"growpart": {"mode": "growpart", "devices": ["/srv"]},
                                     "runcmd": [["touch", "/run/ok"]]}})
    data = yaml.safe_load(tree.read_text(f"{CLOUD_CFG_D}/99_debian-forge.cfg"))
    assert data["growpart"] == {"mode": "growpart", "devices": ["/srv"]}
    assert data["resize_rootfs"] is True and data["runcmd"] == [["touch", "/run/ok"]]


def test_default_file_wins_over_debians_dpkg_config(stage_runner):
    """99_debian-forge.cfg sorts after the package's 90_dpkg.cfg: its datasource list is the
    one cloud-init uses; a chosen filename sorting earlier loses to 90_dpkg.cfg."""
    fake_cloud_init(stage_runner.tree)
    tree = stage_runner.run("org.osbuild.cloud-init", {"datasources": ["OpenStack"]})
    assert sorted(os.listdir(tree.path(CLOUD_CFG_D))) == ["90_dpkg.cfg", "99_debian-forge.cfg"]
    assert effective_config(tree)["datasource_list"] == ["OpenStack", "None"]
    tree.path(f"{CLOUD_CFG_D}/99_debian-forge.cfg").unlink()
    stage_runner.run("org.osbuild.cloud-init", {"filename": "10_early.cfg",
                                                "datasources": ["OpenStack"]})
    assert effective_config(tree)["datasource_list"] == [
        "NoCloud", "ConfigDrive", "Ec2", "GCE", "Azure", "None"]


def test_schema_refuses_an_unknown_datasource():
    """Only cloud-init's datasource names are accepted (here a typo of Ec2)."""
    with pytest.raises(jsonschema.ValidationError, match="'Ec3' is not one of"):
        jsonschema.validate({"datasources": ["Ec3"]}, schema())


def test_schema_refuses_a_filename_outside_cloud_cfg_d_or_not_cfg():
    """The file name is a plain name ending in .cfg (cloud-init reads only those)."""
    for filename in ("../cloud.cfg", "sub/x.cfg", "99_forge.yaml", ".cfg"):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"filename": filename}, schema())


def test_datasource_the_trees_cloud_init_lacks_is_refused(stage_runner):
    """WSL is a cloud-init datasource, but not one bookworm's cloud-init has: the error names
    it and lists those the tree has; nothing is written."""
    fake_cloud_init(stage_runner.tree)
    with pytest.raises(StageError, match=r"no datasource WSL .*DataSourceWSL\.py.*it has: "
                                         r"AliYun, .*Ec2, .*Vultr$"):
        stage_runner.run("org.osbuild.cloud-init", {"datasources": ["Ec2", "WSL"]})
    assert not stage_runner.tree.exists(f"{CLOUD_CFG_D}/99_debian-forge.cfg")


def test_tree_without_cloud_init_asks_to_install_it(stage_runner):
    """The stage tree has no cloud-init: the error names the package to install."""
    with pytest.raises(StageError, match="no 'cloud-init': install the package 'cloud-init'"):
        stage_runner.run("org.osbuild.cloud-init", {"growpart": True})
    assert not stage_runner.tree.exists(CLOUD_CFG_D)
