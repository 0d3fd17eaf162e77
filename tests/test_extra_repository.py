"""Extra repositories with their own signing key: a real signed repository served on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from aptrepo import Package, Repo, signing_key

pytestmark = pytest.mark.integration
HELLO = Package("forge-extra-hello", "1.0", files={
    "usr/bin/forge-extra-hello": "#!/bin/sh\necho hello from the extra repository\n"})


@pytest.fixture(scope="module")
def served_repository(apt_repos) -> Repo:
    return apt_repos.repo("extra-repository", [HELLO])


def config_with(tmp_path: Path, name: str, repo: Repo, key: str) -> Path:
    indented = "\n".join("      " + line for line in key.strip().splitlines())
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"include: debian-bookworm-amd64\nextra_repositories:\n"
                    f"  - url: {repo.url}\n    suite: {repo.suite}\n"
                    f"    components: [{repo.component}]\n"
                    f"    signed_by: |\n{indented}\n")
    return path


def test_package_from_signed_extra_repository_installs(deb_mock, served_repository, tmp_path):
    """With the repository's key given inline, its package installs and runs."""
    config = config_with(tmp_path, "extra-signed", served_repository, served_repository.key)
    deb_mock("-r", str(config), "install", "forge-extra-hello", check=True)
    run = deb_mock("-r", str(config), "chroot", "--", "forge-extra-hello", check=True)
    assert run.stdout.strip() == "hello from the extra repository"
    keys = deb_mock("-r", str(config), "chroot", "--", "sh", "-c", "ls /etc/apt/keyrings",
                    check=True)
    assert keys.stdout.strip().startswith("deb-mock-")
    deb_mock("-r", str(config), "scrub", "chroot", check=True)


def test_repository_signed_by_another_key_is_refused(deb_mock, served_repository, tmp_path):
    _, other_key = signing_key("someone-else")
    config = config_with(tmp_path, "extra-wrong-key", served_repository, other_key)
    proc = deb_mock("-r", str(config), "init", "--refresh")
    assert proc.returncode == 30, proc.stderr
    assert served_repository.url in proc.stderr
    assert "NO_PUBKEY" in proc.stderr or "not signed" in proc.stderr
