"""Solve a package set and put its .debs into the tree as an APT repository, without installing.

The request is solved like org.osbuild.apt's (versions, releases, recommends, exclusions,
strategy) against the tree as the earlier stages leave it — or, with `standalone`, against an
empty system, which gives every dependency — and the lock records every package by sha256. The
stage writes those files with a Packages index and a Release file to `directory`: a repository
an installer, a live image or a later offline `apt-get` can use with
`deb [trusted=yes] file:<directory> <suite> main`. The tree's installed packages do not change.
"""

from __future__ import annotations

import shutil

from debian_forge import apt_solve
from debian_forge.context import PACKAGE_INPUTS, StageContext
from debian_forge.resolve import AptState

LOCKS_PACKAGES = True

SCHEMA = {
    "required": ["packages"],
    "properties": {
        **apt_solve.SOLVER_OPTIONS,
        "standalone": {"type": "boolean", "default": False,
                       "description": "Solve against an empty system (every dependency is "
                                      "included) instead of the tree as it is."},
        "directory": {"type": "string", "pattern": "^/(?!.*(^|/)\\.\\.(/|$))[^\\0]*$",
                      "x-expected": "an absolute path without '..'",
                      "default": "/var/lib/debian-forge/repository",
                      "description": "Where the repository goes in the tree."},
        "suite": {"type": "string", "pattern": "^[A-Za-z0-9.+_-]+$", "default": "local",
                  "x-expected": "a suite name", "description": "The repository's suite."},
        "architecture": {"type": "string", "pattern": "^[a-z0-9]+$",
                         "x-expected": "a Debian architecture",
                         "description": "The index's architecture (default: the bootstrap's)."},
    },
}

INPUTS = PACKAGE_INPUTS  # the locked packages, added by resolving


def resolve(stage, state, resolver, locked):
    """The packages of the repository; the tree's state does not change."""
    options = dict(stage.options)
    options.setdefault("architecture", state.architecture or "amd64")
    if locked is None:
        basis = state
        if options.get("standalone"):
            basis = AptState(architecture=state.architecture, sources=state.sources,
                             preferences=state.preferences, settings=state.settings)
        # Nothing is installed: an older version than the tree has is no downgrade here.
        locked, _ = apt_solve.solve(stage, basis, resolver, allow_downgrades=True)
    return options, locked


def run(ctx: StageContext, options: dict) -> None:
    repo = ctx.repository(options.get("suite", "local"), options["architecture"])
    target = ctx.tree.path(options.get("directory", "/var/lib/debian-forge/repository"))
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Real copies: the tree must not share inodes with the package cache.
    shutil.copytree(repo, target, symlinks=False)
