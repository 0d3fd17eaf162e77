"""A user's mistake gets one clear paragraph and the documented exit status, never a traceback."""

from __future__ import annotations

import os
import subprocess

import pytest

from conftest import DEB_MOCK, REPO


def run(*args: str, env: dict | None = None, user: int | None = None):
    argv = [*DEB_MOCK, *args]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, cwd=REPO)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_unknown_config_lists_the_known_ones():
    proc = run("-r", "debian-potato-amd64", "init")
    assert proc.returncode == 2
    assert "debian-potato-amd64" in proc.stderr
    assert "debian-bookworm-amd64" in proc.stderr


def test_invalid_yaml_names_file_and_line(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("suite: bookworm\narchitecture: amd64\ncomponents: [main\n")
    proc = run("-r", str(bad), "init")
    assert proc.returncode == 2
    assert str(bad) in proc.stderr
    assert "line" in proc.stderr


def test_config_key_of_wrong_type_is_named(tmp_path):
    proc = run("-r", "debian-bookworm-amd64", "--config-opts", "network=maybe", "init")
    assert proc.returncode == 2
    assert "network" in proc.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_not_root_is_refused_with_the_reason():
    proc = run("-r", "debian-bookworm-amd64", "chroot", "--", "true", user=65534,
               env={"DEB_MOCK_STATE_DIR": "/tmp/deb-mock-nonroot",
                    "DEBIAN_FORGE_CACHE_DIR": "/tmp/deb-mock-nonroot-cache"})
    assert proc.returncode == 2
    assert "root" in proc.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the root check comes first")
def test_missing_host_tool_names_its_package(tmp_path):
    # A PATH with python but without bwrap or mmdebstrap.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("apt-get", "setpriv"):
        (bindir / tool).symlink_to(f"/usr/bin/{tool}")
    proc = run("-r", "debian-bookworm-amd64", "chroot", "--", "true",
               env={"PATH": str(bindir), "DEB_MOCK_STATE_DIR": str(tmp_path / "state"),
                    "DEBIAN_FORGE_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 2
    assert "apt-get install" in proc.stderr


def test_usage_error_exits_2():
    proc = run("copyin", "only-one-arg")
    assert proc.returncode == 2
