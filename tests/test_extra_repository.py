"""Extra repositories with their own signing key: a real signed repository served on 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import TEST_CACHE

pytestmark = pytest.mark.integration
# Keys and port persist with the test cache, so the environment's base stays a cache hit.
WORK = TEST_CACHE / "extra-repository"


def gpg(home: Path, *args: str) -> str:
    return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--yes", *args],
                          check=True, capture_output=True, text=True).stdout


def signing_key(name: str) -> tuple[Path, str]:
    """A throwaway signing key (made once): its GnuPG home and its ASCII-armoured public key."""
    home = WORK / f"gnupg-{name}"
    if not (home / "public.asc").exists():
        home.mkdir(parents=True, exist_ok=True)
        home.chmod(0o700)
        gpg(home, "--passphrase", "", "--quick-gen-key", f"{name} <{name}@example.org>",
            "ed25519", "sign", "never")
        (home / "public.asc").write_text(gpg(home, "--export", "--armor"))
    return home, (home / "public.asc").read_text()


def build_repository(root: Path, signer: Path) -> None:
    """A flat repository with one package, signed (InRelease) by `signer`."""
    package = root / "pkg"
    (package / "DEBIAN").mkdir(parents=True)
    (package / "usr/bin").mkdir(parents=True)
    (package / "DEBIAN/control").write_text(
        "Package: forge-extra-hello\nVersion: 1.0\nArchitecture: all\n"
        "Maintainer: Test <test@example.org>\nDescription: test package\n")
    script = package / "usr/bin/forge-extra-hello"
    script.write_text("#!/bin/sh\necho hello from the extra repository\n")
    script.chmod(0o755)
    repo = root / "repo"
    repo.mkdir()
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(package),
                    str(repo / "forge-extra-hello_1.0_all.deb")], check=True, capture_output=True)
    packages = subprocess.run(["apt-ftparchive", "packages", "."], cwd=repo, check=True,
                              capture_output=True, text=True).stdout
    (repo / "Packages").write_text(packages)
    release = subprocess.run(["apt-ftparchive", "release", "."], cwd=repo, check=True,
                             capture_output=True, text=True).stdout
    (repo / "Release").write_text(release)
    gpg(signer, "--clearsign", "-o", str(repo / "InRelease"), str(repo / "Release"))


def fixed_port() -> int:
    """The same loopback port every run (the URL is part of the base's key), if it is free."""
    path = WORK / "port"
    if path.exists():
        port = int(path.read_text())
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    WORK.mkdir(parents=True, exist_ok=True)
    path.write_text(str(port))
    return port


@pytest.fixture(scope="module")
def served_repository(tmp_path_factory):
    root = tmp_path_factory.mktemp("extra-repo")
    signer, _ = signing_key("repo-signer")
    build_repository(root, signer)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root / "repo"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", fixed_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def config_with(tmp_path: Path, name: str, url: str, key: str) -> Path:
    indented = "\n".join("      " + line for line in key.strip().splitlines())
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"include: debian-bookworm-amd64\nextra_repositories:\n"
                    f"  - url: {url}\n    suite: ./\n    components: []\n"
                    f"    signed_by: |\n{indented}\n")
    return path


def test_package_from_signed_extra_repository_installs(deb_mock, served_repository, tmp_path):
    """With the repository's key given inline, its package installs and runs."""
    _, key = signing_key("repo-signer")
    config = config_with(tmp_path, "extra-signed", served_repository, key)
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
    assert served_repository in proc.stderr
    assert "NO_PUBKEY" in proc.stderr or "not signed" in proc.stderr
