"""Flat local APT repositories of built packages (chain builds, images that install them)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from deb_mock.sandbox import require_tool


def index_flat_repository(directory: Path) -> None:
    """Write Packages and Release for the .debs in `directory`: `deb [trusted=yes] file:DIR ./`."""
    ftparchive = require_tool("apt-ftparchive", "apt-utils")
    packages = subprocess.run([ftparchive, "packages", "."], cwd=directory, check=True,
                              capture_output=True).stdout
    (directory / "Packages").write_bytes(packages)
    release = subprocess.run([ftparchive, "release", "."], cwd=directory, check=True,
                             capture_output=True).stdout
    (directory / "Release").write_bytes(release)
