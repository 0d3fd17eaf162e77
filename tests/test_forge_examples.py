"""Every example manifest builds, and its result is what the example promises."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server_tree(trixie_server_build, tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("server-tree")
    subprocess.run(["tar", "-C", tree, "-xf",
                    trixie_server_build / "rootfs/debian-trixie-server.tar.zst"], check=True)
    return tree


def test_every_example_is_built_by_a_test():
    """No example manifest goes untested: each one's name appears in a test."""
    text = "".join(path.read_text() for path in (REPO / "tests").glob("*.py"))
    for example in sorted((REPO / "examples").glob("*.json")):
        assert example.name in text, f"{example.name} is built by no test"


def test_trixie_server_is_trixie_with_the_configured_system(server_tree):
    """Release, hostname, locale and time zone are as the manifest says."""
    assert (server_tree / "etc/debian_version").read_text().startswith("13.")
    assert (server_tree / "etc/hostname").read_text() == "trixie-server\n"
    assert "LANG=en_US.UTF-8" in (server_tree / "etc/default/locale").read_text()
    assert (server_tree / "etc/localtime").readlink() == Path("../usr/share/zoneinfo/Europe/Berlin")
    assert "LABEL=root" in (server_tree / "etc/fstab").read_text()


def test_trixie_server_has_the_admin_user_with_key_group_and_sudo(server_tree):
    """The user exists with its uid, group, password hash, SSH key and sudo rule."""
    passwd = (server_tree / "etc/passwd").read_text()
    assert "admin:x:2000:" in passwd and ":/home/admin:/bin/bash" in passwd
    assert "admins:x:2000:admin" in (server_tree / "etc/group").read_text()
    assert "admin:$6$forgesalt$" in (server_tree / "etc/shadow").read_text()
    keys = server_tree / "home/admin/.ssh/authorized_keys"
    assert keys.read_text().startswith("ssh-ed25519 ") and keys.stat().st_uid == 2000
    assert "NOPASSWD" in (server_tree / "etc/sudoers.d/admin").read_text()


def test_trixie_server_enables_ssh_and_boots_to_multi_user(server_tree):
    wants = server_tree / "etc/systemd/system/multi-user.target.wants/ssh.service"
    assert wants.is_symlink()
    assert str((server_tree / "etc/systemd/system/default.target").readlink()).endswith(
        "multi-user.target")


def test_trixie_server_is_cleaned_like_an_official_image(server_tree):
    """Empty machine-id, no apt lists, no log files."""
    assert (server_tree / "etc/machine-id").stat().st_size == 0
    assert not [p for p in (server_tree / "var/lib/apt/lists").iterdir()
                if p.name not in ("lock", "partial")]
    assert not [p for p in (server_tree / "var/log").rglob("*") if p.is_file()]


def test_trixie_server_record_lists_the_installed_packages(trixie_server_build):
    """build.json's package list of the export holds what the apt stage installed."""
    record = json.loads((trixie_server_build / "build.json").read_text())
    packages = {p["name"]: p for p in record["exports"]["rootfs"]["packages"]}
    assert {"systemd", "openssh-server", "sudo", "locales"} <= set(packages)
    locked = record["lock"]["pipelines"][0]["stages"][1]["inputs"]["packages"]["references"]
    versions = {r["metadata"]["name"]: r["metadata"]["version"] for r in locked.values()}
    assert packages["systemd"]["version"] == versions["systemd"]
    assert len(record["stages"]) == 12
    assert all(s["log"] is None or (trixie_server_build / s["log"]).exists()
               for s in record["stages"])


def test_minimal_example_tarball_has_bookworm(minimal_build):
    """debian-minimal.json: the tarball holds /etc/debian_version of bookworm."""
    with tarfile.open(minimal_build / "rootfs/debian-bookworm-minbase.tar") as tar:
        assert tar.extractfile("./etc/debian_version").read().startswith(b"12.")
