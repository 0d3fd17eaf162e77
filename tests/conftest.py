"""Shared fixtures: one persistent store and package cache for the whole suite (and across runs),
so real bootstraps happen once per machine rather than once per test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TEST_CACHE = Path(os.environ.get("DEBIAN_FORGE_TEST_CACHE", "/var/cache/debian-forge-tests"))
DEB_MOCK = [sys.executable, "-m", "deb_mock"]


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="integration tests need root (they mount and bootstrap)")
        for item in items:
            if "integration" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def cache_env() -> dict[str, str]:
    """Environment variables that point deb-mock at the shared test cache and a fresh state dir."""
    TEST_CACHE.mkdir(parents=True, exist_ok=True)
    state = Path(tempfile.mkdtemp(prefix="deb-mock-state-", dir=TEST_CACHE))
    values = {"DEBIAN_FORGE_CACHE_DIR": str(TEST_CACHE / "cache"),
              "DEB_MOCK_STATE_DIR": str(state)}
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    yield values
    for key, old in saved.items():
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def deb_mock(cache_env):
    """Run the deb-mock CLI as a user would; returns CompletedProcess (text, captured)."""

    def call(*args: str, check: bool = False, timeout: float = 600, **kwargs):
        proc = subprocess.run([*DEB_MOCK, *args], capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, **cache_env}, **kwargs)
        if check and proc.returncode != 0:
            raise AssertionError(f"deb-mock {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    return call


@pytest.fixture(scope="session")
def bookworm(deb_mock):
    """The default bookworm environment, initialised once for the session."""
    deb_mock("-r", "debian-bookworm-amd64", "init", check=True)
    return "debian-bookworm-amd64"


def project_mounts() -> list[str]:
    """Mount points of ours (store, state, test cache) in this process's and the host's view."""
    found = []
    for table in ("/proc/self/mountinfo", "/proc/1/mountinfo"):
        with open(table) as mountinfo:
            for line in mountinfo:
                point = line.split()[4].replace("\\040", " ")
                if str(TEST_CACHE) in point or "deb-mock" in point or "debian-forge" in point:
                    found.append(point)
    return found


@pytest.fixture(autouse=True)
def no_mount_left_behind():
    """After every test, nothing of ours is still mounted."""
    yield
    leftover = project_mounts()
    assert not leftover, f"mounts left behind: {leftover}"
