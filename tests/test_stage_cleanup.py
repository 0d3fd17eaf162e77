"""org.osbuild.cleanup on a real Debian tree, dirtied the way a build leaves it."""

import os

import jsonschema
import pytest

from deb_mock.paths import PathEscape
from debian_forge import stages

pytestmark = pytest.mark.integration


def dirty(tree):
    """Leave behind what builds leave: a machine id, logs, caches, temporary files."""
    tree.write_text("/etc/machine-id", "0123456789abcdef0123456789abcdef\n", mode=0o444)
    tree.write_text("/var/lib/dbus/machine-id", "0123456789abcdef0123456789abcdef\n")
    tree.write_text("/var/log/apt/history.log", "Start-Date: today\n")
    tree.write_text("/var/log/dpkg.log", "status installed hello\n")
    tree.write_text("/var/cache/apt/pkgcache.bin", "cache")
    tree.write_text("/var/cache/apt/srcpkgcache.bin", "cache")
    tree.write_text("/var/cache/apt/archives/hello_2.10-3_amd64.deb", "deb")
    tree.write_text("/var/cache/ldconfig/aux-cache", "aux")
    tree.write_text("/var/lib/apt/lists/partial/leftover", "half a download")
    tree.write_text("/tmp/build-scratch/notes", "x")
    tree.write_text("/tmp/.hidden", "x")
    tree.write_text("/var/tmp/keep-me-not", "x")


def files_under(tree, path):
    """Every non-directory under `path` in the tree (symlinks included), relative to it."""
    base = tree.path(path)
    found = []
    for directory, dirnames, filenames in os.walk(base):
        found += [os.path.relpath(os.path.join(directory, name), base) for name in filenames]
        found += [os.path.relpath(os.path.join(directory, name), base) for name in dirnames
                  if os.path.islink(os.path.join(directory, name))]
    return sorted(found)


def test_defaults_strip_machine_id_logs_apt_data_caches_and_tmp(stage_runner):
    """With no options everything but the ssh host keys is cleaned as official images are."""
    dirty(stage_runner.tree)
    tree = stage_runner.run("org.osbuild.cleanup", {})
    machine_id = tree.path("/etc/machine-id")
    assert machine_id.is_file() and machine_id.stat().st_size == 0
    assert machine_id.stat().st_mode & 0o777 == 0o444
    assert not tree.exists("/var/lib/dbus/machine-id")
    assert files_under(tree, "/var/log") == []
    assert sorted(os.listdir(tree.path("/var/lib/apt/lists"))) == ["lock", "partial"]
    assert os.listdir(tree.path("/var/lib/apt/lists/partial")) == []
    assert os.listdir(tree.path("/var/cache/apt")) == ["archives"]
    assert not [n for n in os.listdir(tree.path("/var/cache/apt/archives")) if n.endswith(".deb")]
    assert not tree.exists("/var/cache/ldconfig/aux-cache")
    assert [n for n in os.listdir(tree.path("/var/cache/debconf")) if n.endswith("-old")] == []
    assert [n for n in os.listdir(tree.path("/var/lib/dpkg")) if n.endswith("-old")] == []
    assert os.listdir(tree.path("/tmp")) == [] and os.listdir(tree.path("/var/tmp")) == []
    assert tree.exists("/etc/ssh/ssh_host_ed25519_key")
    assert tree.exists("/var/cache/debconf/config.dat") and tree.exists("/var/lib/dpkg/status")


def test_log_directories_stay_with_their_owners_and_modes(stage_runner):
    """Only files go: /var/log/apt, journal and the 0700 private directory remain as they were."""
    before = {name: os.lstat(stage_runner.tree.path(f"/var/log/{name}")).st_mode
              for name in ("apt", "journal", "private")}
    tree = stage_runner.run("org.osbuild.cleanup", {"logs": True})
    assert {name: os.lstat(tree.path(f"/var/log/{name}")).st_mode for name in before} == before


def test_switched_off_parts_are_left_alone(stage_runner):
    """With every switch off nothing changes, not even the machine id."""
    dirty(stage_runner.tree)
    tree = stage_runner.run("org.osbuild.cleanup", {
        "machine-id": False, "logs": False, "apt-lists": False, "apt-cache": False,
        "caches": False, "tmp": False, "ssh-host-keys": False})
    assert tree.read_text("/etc/machine-id").startswith("0123")
    assert tree.exists("/var/log/dpkg.log") and tree.exists("/tmp/.hidden")
    assert tree.exists("/var/cache/apt/pkgcache.bin")


def test_ssh_host_keys_are_removed_only_when_asked(stage_runner):
    """ssh-host-keys removes every /etc/ssh/ssh_host_* file and keeps the rest of /etc/ssh."""
    tree = stage_runner.run("org.osbuild.cleanup", {"ssh-host-keys": True})
    names = os.listdir(tree.path("/etc/ssh"))
    assert not [name for name in names if name.startswith("ssh_host_")]
    assert "sshd_config" in names


def test_a_symlink_to_the_dbus_machine_id_is_kept(stage_runner):
    """Only a regular /var/lib/dbus/machine-id goes; a link to /etc/machine-id stays."""
    stage_runner.tree.path("/var/lib/dbus").mkdir(parents=True, exist_ok=True)
    os.symlink("/etc/machine-id", stage_runner.tree.path("/var/lib/dbus") / "machine-id")
    tree = stage_runner.run("org.osbuild.cleanup", {})
    assert os.readlink(tree.path("/var/lib/dbus") / "machine-id") == "/etc/machine-id"


def test_symlinks_to_host_files_are_removed_without_touching_their_targets(stage_runner,
                                                                           tmp_path):
    """Symlinks in /var/log and /tmp pointing at host paths go; the host files stay."""
    host_dir = tmp_path / "host-logs"
    host_dir.mkdir()
    (host_dir / "precious.log").write_text("keep\n")
    (tmp_path / "precious-file").write_text("keep\n")
    os.symlink(str(host_dir), stage_runner.tree.path("/var/log") / "host-logs")
    os.symlink(str(tmp_path / "precious-file"), stage_runner.tree.path("/var/log") / "file.log")
    os.symlink(str(host_dir), stage_runner.tree.path("/tmp") / "host-logs")
    tree = stage_runner.run("org.osbuild.cleanup", {})
    assert (host_dir / "precious.log").read_text() == "keep\n"
    assert (tmp_path / "precious-file").read_text() == "keep\n"
    assert not os.path.lexists(tree.path("/var/log") / "host-logs")
    assert not os.path.lexists(tree.path("/tmp") / "host-logs")


def test_a_base_directory_linking_out_of_the_tree_is_refused(stage_runner, tmp_path):
    """A /var/tmp symlink climbing above the tree's root raises PathEscape; the host is intact."""
    var_tmp = stage_runner.tree.path("/var/tmp")
    os.rmdir(var_tmp)
    os.symlink("../../../../../../../../../../" + str(tmp_path).lstrip("/"), var_tmp)
    (tmp_path / "host-file").write_text("keep\n")
    with pytest.raises(PathEscape):
        stage_runner.run("org.osbuild.cleanup", {})
    assert (tmp_path / "host-file").read_text() == "keep\n"


def test_cleanup_schema_refuses_a_misspelt_switch_and_a_non_boolean():
    """Switches are the listed names and take true or false."""
    schema = stages.get("org.osbuild.cleanup").options_schema()
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"machine_id": True}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"logs": "yes"}, schema)
