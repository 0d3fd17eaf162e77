"""Path confinement: a path given by a user always stays inside the tree it addresses."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from deb_mock.errors import UsageError

_MAX_SYMLINKS = 40


class PathEscape(UsageError):
    """A path (or a symlink on its way) points outside its tree."""


def resolve_in_tree(root: Path, path: str | PurePosixPath) -> Path:
    """The host path of `path` inside `root`, following symlinks as a chroot would.

    Absolute symlink targets are taken relative to `root`; `..` may not climb above `root`;
    a path that would leave the tree raises PathEscape. The final component need not exist.
    """
    parts = list(PurePosixPath("/", path).parts[1:])
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                raise PathEscape(f"'{path}' leaves the tree through '..'")
            resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if candidate.is_symlink():
            hops += 1
            if hops > _MAX_SYMLINKS:
                raise PathEscape(f"'{path}': too many levels of symbolic links")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in PurePosixPath(target).parts if p != "/"] + parts
            continue
        resolved.append(part)
    return root.joinpath(*resolved)
