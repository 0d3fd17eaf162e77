"""Copy files from the stage's inputs, or inline text, into the tree.

Each item copies `from` (`input://<input>/<path>`) or writes `content` to `to`
(`tree:///<path>`). From a files input (`org.osbuild.files`) the path is the file's checksum,
`input://files/sha256:<hex>`; from a tree input (`org.osbuild.tree`, another pipeline's tree)
it is a path inside that tree, `input://root/etc/motd`, resolved without leaving it.

Copies are the build root's `cp -a --reflink=auto` (owners, modes, timestamps and symlinks
kept, directories recursive): when `to` is an existing directory the source is copied into it under
its own name, and a `from` ending in `/` (`input://root/`) copies the contents of the directory
rather than the directory itself, merging them into `to`. The parent directory of `to` must
exist (org.osbuild.mkdir creates it). Symlinks already in the tree are followed as inside the
tree, never out of it: a `to` that would leave the tree is refused, and a directory merged
into an existing one is copied entry by entry so that no symlink of the tree is written
through. `mode` and `owner` apply to `to` itself, not to the contents of a copied directory.
"""

from __future__ import annotations

import os
import posixpath
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from deb_mock.paths import resolve_in_tree
from deb_mock.sandbox import Bind
from debian_forge.context import INPUTS_MOUNT, Input, StageContext, StageError, Tree
from debian_forge.stagelib import mode_property, parse_mode, tree_location

# Any names; each one an osbuild input (its shape is checked with the manifest).
INPUTS = {
    "type": "object",
    "description": "Where `from` copies from: input://<name>/… names one of these: files "
                   "(org.osbuild.files from sources) or another pipeline's tree "
                   "(org.osbuild.tree).",
    "additionalProperties": {"type": "object"},
}

_TARGET = {"type": "string", "pattern": "^(tree:///|mount://[^/]+/)",
           "x-expected": "a tree:/// or mount://<name>/ URL such as tree:///etc/motd",
           "description": "The destination: tree:///<path> in the pipeline's tree, or "
                          "mount://<name>/<path> in one of the stage's mounted filesystems (a "
                          "disk image being assembled); an existing directory receives the "
                          "source under its own name."}

_COMMON = {
    "to": _TARGET,
    "mode": mode_property("Permissions of the destination: an octal string such as \"0644\" "
                          "or an integer (420 is 0o644); when not given, kept from the "
                          "source, or for content the existing file's mode or 0644."),
    "owner": {"type": "object", "additionalProperties": False, "required": ["uid", "gid"],
              "description": "Numeric owner of the destination (the tree's ids, not the "
                             "host's); kept from the source (root for content) when not given.",
              "properties": {"uid": {"type": "integer", "minimum": 0,
                                     "description": "User id."},
                             "gid": {"type": "integer", "minimum": 0,
                                     "description": "Group id."}}},
    "remove_destination": {"type": "boolean", "default": False,
                           "description": "Remove an existing file at the destination first "
                                          "instead of writing into it (breaks hard links)."},
}

SCHEMA = {
    "required": ["paths"],
    "properties": {
        "paths": {
            "type": "array",
            "minItems": 1,
            "description": "What to copy, in order.",
            "items": {
                "oneOf": [
                    {"type": "object", "additionalProperties": False,
                     "required": ["from", "to"],
                     "properties": {
                         "from": {"type": "string", "pattern": "^input://[^/]+/",
                                  "x-expected": "an input URL such as input://files/sha256:… "
                                                "or input://root/etc/motd",
                                  "description": "The source: input://<input>/<checksum> for a "
                                                 "files input, input://<input>/<path> for a "
                                                 "tree input; a trailing / copies a "
                                                 "directory's contents."},
                         **_COMMON}},
                    {"type": "object", "additionalProperties": False,
                     "required": ["content", "to"],
                     "properties": {
                         "content": {"type": "string",
                                     "description": "Text written to the destination as is "
                                                    "(UTF-8)."},
                         **_COMMON}},
                ],
            },
        },
    },
}


def run(ctx: StageContext, options: dict) -> None:
    for item in options["paths"]:
        tree, seen = ctx.destination(item["to"])
        dest_root = _Dest(tree, seen)
        to = _location(item["to"])
        remove = item.get("remove_destination", False)
        if "content" in item:
            dest = _write_content(dest_root, to, item["content"], remove)
        else:
            source, contents = _source(ctx, item["from"])
            if contents:
                dest = _merge(ctx, dest_root, source, to, remove)
            else:
                if tree.path(to).is_dir():
                    to = posixpath.join(to, source.host.name)
                dest = _place(ctx, dest_root, source, to, remove)
        _set_attributes(dest, item, to)


def _location(url: str) -> str:
    """The path part of tree:///x or mount://name/x: /x."""
    if url.startswith("mount://"):
        return "/" + url[len("mount://"):].split("/", 1)[1]
    return tree_location(url)


@dataclass(frozen=True)
class _Dest:
    """Where a copy writes: a Tree (paths confined to it) and where the build root sees it."""

    tree: Tree
    seen_at: str


@dataclass(frozen=True)
class _Source:
    """What to copy: its host path, and where the build root sees it (with `bind` if needed)."""

    host: Path
    seen_at: str
    bind: Bind | None = None

    def child(self, name: str) -> _Source:
        return _Source(self.host / name, posixpath.join(self.seen_at, name), self.bind)


def _source(ctx: StageContext, location: str) -> tuple[_Source, bool]:
    """The source `from` names, and whether a directory's contents (trailing /) are meant."""
    name, _, rest = location[len("input://"):].partition("/")
    item: Input | None = ctx.inputs.get(name)
    if item is None:
        known = ", ".join(sorted(ctx.inputs)) or "none"
        raise StageError(f"{location}: this stage has no input {name!r} (its inputs: {known})")
    if item.path is None:
        host = item.files.get(rest)
        if host is None:
            raise StageError(f"{location}: input {name!r} has no file {rest!r}")
        if not host.is_file():
            raise StageError(f"{location}: the file of {rest!r} is missing ({host})")
        seen_at = f"{INPUTS_MOUNT}/{name}/{rest}"
        return _Source(host, seen_at, Bind(host, seen_at)), False
    contents = rest == "" or rest.endswith("/")
    inside = PurePosixPath("/", rest)
    if contents or inside.name in ("", ".."):
        host = resolve_in_tree(item.path, inside)
    else:  # the last component itself, as cp -a copies a symlink rather than its target
        host = resolve_in_tree(item.path, inside.parent) / inside.name
    if not (host.exists() or host.is_symlink()):
        raise StageError(f"{location}: input {name!r} has no {inside}")
    if contents and not host.is_dir():
        raise StageError(f"{location}: {inside} is not a directory (drop the trailing /)")
    seen_at = posixpath.normpath(posixpath.join(INPUTS_MOUNT, name,
                                                str(host.relative_to(item.path))))
    return _Source(host, seen_at), contents


def _place(ctx: StageContext, root: _Dest, source: _Source, to: str, remove: bool) -> Path:
    """Copy `source` to `to` (a path in the tree), never writing through a symlink in the tree."""
    dest = root.tree.path(to)  # symlinks resolved inside the tree: dest itself is none
    if source.host.is_dir() and not source.host.is_symlink():
        if dest.is_dir():
            return _merge(ctx, root, source, to, remove)
        if dest.exists():
            raise StageError(f"cannot copy directory {source.host.name!r} over file {to}")
    elif dest.is_dir():
        raise StageError(f"cannot copy {source.host.name!r} over directory {to}")
    if not dest.parent.is_dir():
        raise StageError(f"cannot copy to {to}: its parent directory does not exist "
                         f"(create it with org.osbuild.mkdir)")
    # dest is a new path or an existing file that is no symlink; -T: dest is the name to write
    argv = ["cp", "-a", "--reflink=auto", "--no-target-directory"]
    if remove:
        argv.append("--remove-destination")
    ctx.run_in_buildroot([*argv, "--", source.seen_at,
                          posixpath.join(root.seen_at, str(dest.relative_to(root.tree.root)))],
                         binds=[source.bind] if source.bind else [])
    return dest


def _merge(ctx: StageContext, root: _Dest, source: _Source, to: str, remove: bool) -> Path:
    """Copy the contents of directory `source` into directory `to`, entry by entry."""
    dest = root.tree.path(to)
    if not (dest.exists() or dest.is_symlink()):
        return _place(ctx, root, source, to, remove)
    if not dest.is_dir():
        raise StageError(f"cannot copy directory contents into {to}: it is not a directory")
    for entry in sorted(source.host.iterdir()):
        _place(ctx, root, source.child(entry.name), posixpath.join(to, entry.name), remove)
    info = source.host.lstat()  # as cp -a: the directory takes the source's owner, mode, times
    os.chown(dest, info.st_uid, info.st_gid)
    shutil.copystat(source.host, dest)
    return dest


def _write_content(root: _Dest, to: str, content: str, remove: bool) -> Path:
    dest = root.tree.path(to)
    if dest.is_dir():
        raise StageError(f"cannot write content to {to}: it is a directory")
    if not dest.parent.is_dir():
        raise StageError(f"cannot write to {to}: its parent directory does not exist "
                         f"(create it with org.osbuild.mkdir)")
    if remove and dest.exists():
        dest.unlink()
    existed = dest.exists()
    dest.write_text(content)
    if not existed:
        os.chmod(dest, 0o644)
    return dest


def _set_attributes(dest: Path, item: dict, to: str) -> None:
    if "owner" in item:
        os.chown(dest, item["owner"]["uid"], item["owner"]["gid"], follow_symlinks=False)
    if "mode" in item:
        if dest.is_symlink():
            raise StageError(f"cannot set a mode on {to}: it is a symbolic link")
        os.chmod(dest, parse_mode(item["mode"]))
