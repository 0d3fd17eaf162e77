"""Create directories in the tree.

Each path is created with `mode` exactly (the umask does not apply); with `parents`, missing
parent directories are created too, with mode 0755. A path that already exists is an error
unless `exist_ok` is set and it is a directory; an existing directory is left as it is (its
mode is not changed), as in osbuild. Symlinks on the way are followed as inside the tree
(`/var/run` → `/run`); a path that would leave the tree is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

from debian_forge.context import StageContext, StageError
from debian_forge.stagelib import mode_property, parse_mode, tree_location

SCHEMA = {
    "required": ["paths"],
    "properties": {
        "paths": {
            "type": "array",
            "minItems": 1,
            "description": "The directories to create, in order.",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["path"],
                "properties": {
                    "path": {
                        "type": "string",
                        "pattern": "^(/|tree:///)",
                        "x-expected": "an absolute path such as /srv/data or tree:///srv/data",
                        "description": "The directory, as an absolute path inside the tree or "
                                       "a tree:/// URL.",
                    },
                    "mode": mode_property("Permissions of the new directory: an integer "
                                          "(493 is 0o755) or an octal string such as "
                                          "\"0755\"; 0755 when not given."),
                    "parents": {"type": "boolean", "default": False,
                                "description": "Create missing parent directories (mode 0755) "
                                               "instead of failing."},
                    "exist_ok": {"type": "boolean", "default": False,
                                 "description": "Accept a directory that already exists (it is "
                                                "left unchanged) instead of failing."},
                },
            },
        },
    },
}


def run(ctx: StageContext, options: dict) -> None:
    for item in options["paths"]:
        path = tree_location(item["path"])
        mode = parse_mode(item.get("mode", 0o755))
        target = ctx.tree.path(path)
        if target.is_dir():
            if item.get("exist_ok", False):
                continue
            raise StageError(f"{path} already exists (set exist_ok to accept it)")
        if target.exists() or target.is_symlink():
            raise StageError(f"{path} already exists and is not a directory")
        missing = _missing_parents(target, ctx.tree.root)
        if missing and not item.get("parents", False):
            raise StageError(f"cannot create {path}: its parent directory does not exist "
                             f"(set parents to create it)")
        for parent in missing:
            _mkdir(parent, 0o755, path)
        _mkdir(target, mode, path)


def _missing_parents(target: Path, root: Path) -> list[Path]:
    """The ancestors of `target` (below `root`) that do not exist yet, outermost first."""
    missing = []
    parent = target.parent
    while parent != root and not (parent.exists() or parent.is_symlink()):
        missing.append(parent)
        parent = parent.parent
    return list(reversed(missing))


def _mkdir(directory: Path, mode: int, path: str) -> None:
    try:
        directory.mkdir()
    except NotADirectoryError:
        raise StageError(f"cannot create {path}: a component of it is not a directory") from None
    os.chmod(directory, mode)
