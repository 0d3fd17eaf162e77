"""Make a FAT filesystem (an EFI system partition) on the stage's `device`.

The volume id comes from the manifest and `--invariant` keeps mkfs.fat from stamping the clock:
the same manifest gives the same bytes. With a `tree` input the filesystem is filled from the
directory `path` of that tree (for an ESP: `/boot/efi`) by mtools, without a mount: directories
and files are written in sorted order and, with a source epoch, stamped with it (mtools honours
SOURCE_DATE_EPOCH), so the same tree gives the same bytes.
"""

from __future__ import annotations

import os

from debian_forge.context import StageContext, StageError
from debian_forge.stagelib import FILL_INPUTS, FILL_PATH_PROPERTY, fill_source

SCHEMA = {
    "required": ["volid"],
    "properties": {
        "volid": {"type": "string", "pattern": "^[0-9a-fA-F]{8}$",
                  "x-expected": "8 hex digits", "description": "Volume id (serial)."},
        "label": {"type": "string", "maxLength": 11, "description": "Volume label."},
        "fat_size": {"enum": [12, 16, 32], "description": "FAT type (default: by size)."},
        "path": FILL_PATH_PROPERTY,
    },
}

INPUTS = FILL_INPUTS


def run(ctx: StageContext, options: dict) -> None:
    device = ctx.devices.get("device")
    if device is None:
        raise StageError("org.osbuild.mkfs.fat needs a device named `device`")
    argv = ["mkfs.fat", "--invariant", "-i", options["volid"]]
    if "label" in options:
        argv += ["-n", options["label"]]
    if "fat_size" in options:
        argv += ["-F", str(options["fat_size"])]
    ctx.run_in_buildroot([*argv, str(device)])
    if "tree" in ctx.inputs:
        _fill(ctx, str(device), options.get("path", "/"))


def _fill(ctx: StageContext, device: str, inside: str) -> None:
    """Copy the tree's directory `inside` into the filesystem: one mmd for every directory,
    one mcopy per directory for its files, parents first, names sorted."""
    top, seen = fill_source(ctx, inside)
    env = {"MTOOLS_SKIP_CHECK": "1"}
    directories, files = [], {}
    for here, subdirs, names in os.walk(top):
        relative = os.path.relpath(here, top)
        relative = "" if relative == "." else relative
        odd = sorted(n for n in [*subdirs, *names] if os.path.islink(os.path.join(here, n))
                     or not (n in subdirs or os.path.isfile(os.path.join(here, n))))
        subdirs.sort()
        directories += [os.path.join(relative, d) for d in subdirs]
        regular = sorted(names)
        if odd:
            raise StageError(f"{os.path.join(inside, relative)}: FAT holds only files and "
                             f"directories, not {', '.join(odd)}")
        if regular:
            files[relative] = regular
    if directories:
        ctx.run_in_buildroot(["mmd", "-i", device, *[f"::/{d}" for d in directories]], env=env)
    for relative, names in files.items():
        sources = [os.path.join(seen, relative, name) for name in names]
        ctx.run_in_buildroot(["mcopy", "-i", device, *sources, f"::/{relative}"], env=env)
