"""The test repositories of tests/aptrepo.py behave as the real archive would, for the host's apt:
a good one verifies and lists its packages, and each broken variant fails the way apt reports
that breakage."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from aptrepo import FORGE_PACKAGES, Package, Repo, signing_key
from deb_mock.apt_host import HostApt, SourceEntry
from deb_mock.errors import PackageManagerError

pytestmark = pytest.mark.integration


def apt_for(tmp_path: Path, repo: Repo, key: str | None = None) -> HostApt:
    """deb-mock's isolated host APT with `repo` as its only source, trusting `key` (by default
    the repository's own)."""
    key = repo.key if key is None else key
    entry = SourceEntry(repo.url, (repo.suite,), (repo.component,),
                        signed_by="/etc/apt/keyrings/test.asc" if key else None,
                        key=key.encode() if key else None)
    return HostApt(tmp_path / "apt", "amd64", [entry])


def update_error(apt: HostApt) -> str:
    with pytest.raises(PackageManagerError) as caught:
        apt.update()
    return caught.value.message


def test_good_repository_verifies_and_lists_both_versions(apt_repos, tmp_path):
    apt = apt_for(tmp_path, apt_repos.repo("good", FORGE_PACKAGES))
    assert apt.update()
    policy = subprocess.run(["apt-cache", *apt.options(), "policy", "forge-hello"],
                            capture_output=True, text=True)
    assert "Candidate: 2.0" in policy.stdout, policy.stdout
    assert "     2.0 500" in policy.stdout and "     1.0 500" in policy.stdout, policy.stdout


def test_unsigned_repository_is_refused_as_not_signed(apt_repos, tmp_path):
    repo = apt_repos.repo("unsigned", FORGE_PACKAGES, signer=None)
    _, key = signing_key("forge-signer")
    error = update_error(apt_for(tmp_path, repo, key))
    assert f"The repository '{repo.url} forge Release' is not signed" in error, error


def test_repository_signed_by_another_key_gives_no_pubkey(apt_repos, tmp_path):
    repo = apt_repos.repo("wrong-key", FORGE_PACKAGES, signer="someone-else")
    _, key = signing_key("forge-signer")
    error = update_error(apt_for(tmp_path, repo, key))
    assert "NO_PUBKEY" in error, error


def test_tampered_index_gives_hash_sum_mismatch(apt_repos, tmp_path):
    repo = apt_repos.repo("tampered-index", FORGE_PACKAGES, tamper="index")
    error = update_error(apt_for(tmp_path, repo))
    assert "Hash Sum mismatch" in error, error


def test_tampered_package_no_longer_matches_its_index(apt_repos):
    repo = apt_repos.repo("tampered-package", FORGE_PACKAGES, tamper="package")
    index = (repo.root / "dists/forge/main/binary-amd64/Packages").read_text()
    stanzas = [dict(line.split(": ", 1) for line in stanza.splitlines())
               for stanza in index.strip().split("\n\n")]
    listed = {s["Filename"]: s["SHA256"] for s in stanzas}
    actual = {name: hashlib.sha256((repo.root / name).read_bytes()).hexdigest() for name in listed}
    changed = [name for name in listed if listed[name] != actual[name]]
    assert changed == [f"pool/main/f/{FORGE_PACKAGES[0].filename}"]


def test_repository_is_built_once_for_the_same_inputs(apt_repos):
    """A second request for the same repository leaves the served files as they were."""
    packages = [Package("forge-lib", "1.0")]
    repo = apt_repos.repo("built-once", packages)
    release = repo.root / "dists/forge/InRelease"
    before = release.stat().st_mtime_ns
    assert apt_repos.repo("built-once", packages) == repo
    assert release.stat().st_mtime_ns == before
