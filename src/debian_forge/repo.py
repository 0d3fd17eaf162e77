"""A local, unsigned APT repository of exactly the locked packages of one stage.

The .debs were verified by sha256 when they entered the package cache, and the repository holds
nothing else: apt inside the sandbox can install the resolved set and cannot reach anything
more (it has no network either).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Mapping

from deb_mock.sandbox import require_tool

COMPONENT = "main"


def make_repository(directory: Path, files: Mapping[str, Path], suite: str,
                    architecture: str) -> Path:
    """Lay out `files` (checksum → .deb) as `deb [trusted=yes] <directory> <suite> main`."""
    pool = directory / "pool"
    pool.mkdir(parents=True, exist_ok=True)
    for checksum, path in files.items():
        # A name apt-ftparchive accepts, unique per content.
        target = pool / f"{checksum.split(':', 1)[-1][:16]}_{path.name}"
        if not target.exists():
            try:
                os.link(path, target)
            except OSError:
                target.symlink_to(path)
    index = directory / "dists" / suite / COMPONENT / f"binary-{architecture}"
    index.mkdir(parents=True, exist_ok=True)
    ftparchive = require_tool("apt-ftparchive", "apt-utils")
    packages = subprocess.run([ftparchive, "packages", "pool"], cwd=directory, check=True,
                              capture_output=True).stdout
    (index / "Packages").write_bytes(packages)
    release = subprocess.run(
        [ftparchive, "-o", f"APT::FTPArchive::Release::Suite={suite}",
         "-o", f"APT::FTPArchive::Release::Codename={suite}",
         "-o", f"APT::FTPArchive::Release::Components={COMPONENT}",
         "-o", f"APT::FTPArchive::Release::Architectures={architecture}", "release", "."],
        cwd=directory / "dists" / suite, check=True, capture_output=True).stdout
    (directory / "dists" / suite / "Release").write_bytes(release)
    return directory


def source_line(uri: str, suite: str) -> str:
    """The one-line source for a repository made here, seen at `uri`."""
    return f"deb [trusted=yes] {uri} {suite} {COMPONENT}"
