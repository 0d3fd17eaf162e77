"""org.osbuild.users on a real Debian tree."""

import os
import subprocess

import jsonschema
import pytest

from debian_forge import stages
from debian_forge.context import StageError

pytestmark = pytest.mark.integration

# openssl passwd -6 -salt forgetest secret
HASH = ("$6$forgetest$iGrdBIFZwg3YryCUlDvv6xyEkY2y55lQJUDKf7wdInyIQQqk8mr5Qk2EOXpbPTBW0/DR0KxC8"
        "dhZBVs547FGZ1")
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZvcmdldGVzdGtleWZvcmdldGVzdGtleWZvcmdldA alice@laptop"


def chroot(tree, *argv):
    return subprocess.run(["chroot", str(tree.root), *argv], capture_output=True, text=True,
                          check=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}).stdout


def test_new_user_gets_groups_password_and_home(stage_runner):
    """A new user exists with the asked uid, supplementary groups, hash, shell and home."""
    tree = stage_runner.run("org.osbuild.users", {"users": {"alice": {
        "uid": 1500, "groups": ["sudo", "adm"], "description": "Alice Example",
        "shell": "/bin/bash", "password": HASH}}})
    assert chroot(tree, "id", "alice") == (
        "uid=1500(alice) gid=1500(alice) groups=1500(alice),4(adm),27(sudo)\n")
    assert chroot(tree, "getent", "shadow", "alice").split(":")[1] == HASH
    assert chroot(tree, "getent", "passwd", "alice") == (
        "alice:x:1500:1500:Alice Example:/home/alice:/bin/bash\n")
    assert tree.path("/home/alice/.bashrc").is_file()  # from /etc/skel
    assert tree.path("/home/alice").stat().st_uid == 1500


def test_password_hash_stays_out_of_the_stage_log(stage_runner):
    """The hash goes to chpasswd on standard input, not on a logged command line."""
    stage_runner.run("org.osbuild.users", {"users": {"alice": {"password": HASH}}})
    log = stage_runner.log_path.read_text()
    assert "+ chpasswd --encrypted" in log and HASH not in log


def test_ssh_keys_belong_to_the_user(stage_runner):
    """authorized_keys holds the keys, 0600 in a 0700 ~/.ssh, owned by the user's uid/gid."""
    tree = stage_runner.run("org.osbuild.users", {"users": {"alice": {
        "keys": [KEY], "key": "ssh-rsa AAAAB3NzaC1yc2E second"}}})
    uid, gid = (int(field) for field in chroot(tree, "getent", "passwd", "alice").split(":")[2:4])
    keys = tree.path("/home/alice/.ssh/authorized_keys")
    assert keys.read_text() == KEY + "\nssh-rsa AAAAB3NzaC1yc2E second\n"
    owner = keys.stat()
    assert (owner.st_uid, owner.st_gid, owner.st_mode & 0o777) == (uid, gid, 0o600)
    ssh = keys.parent.stat()
    assert (ssh.st_uid, ssh.st_mode & 0o777) == (uid, 0o700)


def test_existing_user_is_modified_in_place(stage_runner):
    """For a user already in the tree (root), only the given fields change."""
    tree = stage_runner.run("org.osbuild.users", {"users": {"root": {
        "shell": "/bin/sh", "keys": [KEY]}}})
    assert chroot(tree, "getent", "passwd", "root") == "root:x:0:0:root:/root:/bin/sh\n"
    assert tree.read_text("/root/.ssh/authorized_keys") == KEY + "\n"


def test_changing_a_user_replaces_its_groups_and_sets_expiry(stage_runner):
    """A second run on the same user replaces its supplementary groups and sets expiredate."""
    stage_runner.run("org.osbuild.users", {"users": {"alice": {"groups": ["sudo", "adm"]}}})
    tree = stage_runner.run("org.osbuild.users", {"users": {"alice": {
        "groups": ["users"], "expiredate": 20000}}})
    assert chroot(tree, "id", "-nG", "alice").split() == ["alice", "users"]
    assert chroot(tree, "getent", "shadow", "alice").split(":")[7] == "20000"


def test_uid_of_another_user_is_refused(stage_runner):
    """A uid that already belongs to someone else fails, naming the owner."""
    with pytest.raises(StageError, match="UID 0 already belongs to 'root'"):
        stage_runner.run("org.osbuild.users", {"users": {"alice": {"uid": 0}}})


def test_sudo_user_may_run_anything_without_password(stage_runner):
    """sudo: true writes a 0440 drop-in that sudo itself accepts and applies."""
    tree = stage_runner.run("org.osbuild.users", {"users": {"alice": {"sudo": True}}})
    dropin = tree.path("/etc/sudoers.d/alice")
    assert dropin.read_text() == "alice ALL=(ALL) NOPASSWD:ALL\n"
    assert dropin.stat().st_mode & 0o777 == 0o440
    chroot(tree, "visudo", "-c")
    assert "(ALL) NOPASSWD: ALL" in chroot(tree, "sudo", "-l", "-U", "alice")


def test_unknown_supplementary_group_points_at_the_groups_stage(stage_runner):
    """Groups missing from the tree are named, with the stage that creates them."""
    with pytest.raises(StageError, match="developers, docker; .*org.osbuild.groups"):
        stage_runner.run("org.osbuild.users",
                         {"users": {"alice": {"groups": ["docker", "sudo", "developers"]}}})
    assert "alice:" not in stage_runner.tree.read_text("/etc/passwd")


def test_sudo_without_sudo_installed_asks_to_install_it(stage_runner):
    """sudo: true in a tree without sudo says to install the package."""
    stage_runner.tree.path("/usr/bin/sudo").unlink()
    for name in os.listdir(stage_runner.tree.path("/etc/sudoers.d")):
        stage_runner.tree.path(f"/etc/sudoers.d/{name}").unlink()
    stage_runner.tree.path("/etc/sudoers.d").rmdir()
    with pytest.raises(StageError, match="install the package 'sudo'"):
        stage_runner.run("org.osbuild.users", {"users": {"alice": {"sudo": True}}})


def test_users_schema_refuses_a_plain_text_password():
    """A password must be a crypt(3) hash, never the password itself."""
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"users": {"alice": {"password": "hunter2"}}},
                            stages.get("org.osbuild.users").options_schema())
