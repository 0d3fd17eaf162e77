"""Make an ext4 filesystem on the stage's `device`, with the manifest's UUID and label.

Deterministic: the UUID and the directory hash seed come from the manifest, and with a source
epoch mke2fs stamps that time (E2FSPROGS_FAKE_TIME) instead of the clock. With a `tree` input
the filesystem is populated from that tree as it is made (`mke2fs -d`), without a mount, and
with a source epoch every file's modification time is clamped to it (as tar's --clamp-mtime
does) and every inode's access and change times are set to it afterwards (debugfs): mke2fs
copies them from the files it reads, which the build cannot choose. The same tree, UUID and
epoch give the same bytes. `path` fills the filesystem from a directory of the tree (a separate
/boot, say).
"""

from __future__ import annotations

import re

from deb_mock.sandbox import Bind
from debian_forge.context import StageContext, StageError
from debian_forge.stagelib import FILL_INPUTS, FILL_PATH_PROPERTY, fill_source, uuid_property

_SCRATCH = "/run/osbuild/scratch"

SCHEMA = {
    "required": ["uuid"],
    "properties": {
        "uuid": uuid_property("Filesystem UUID (also the hash seed)."),
        "label": {"type": "string", "maxLength": 16, "description": "Volume label."},
        "path": FILL_PATH_PROPERTY,
        "lazy_itable_init": {"type": "boolean", "default": False,
                             "description": "Leave inode tables to be zeroed at first mount."},
    },
}

INPUTS = FILL_INPUTS


def run(ctx: StageContext, options: dict) -> None:
    device = ctx.devices.get("device")
    if device is None:
        raise StageError("org.osbuild.mkfs.ext4 needs a device named `device`")
    lazy = 1 if options.get("lazy_itable_init") else 0
    argv = ["mkfs.ext4", "-q", "-F", "-U", options["uuid"],
            "-E", f"hash_seed={options['uuid']},lazy_itable_init={lazy},lazy_journal_init={lazy}"]
    if "label" in options:
        argv += ["-L", options["label"]]
    binds = []
    if "tree" in ctx.inputs:
        _, source = fill_source(ctx, options.get("path", "/"))
        if ctx.source_epoch is not None:
            # mke2fs keeps the files' own times: clamp them to the epoch on a copy, as tar's
            # --clamp-mtime does.
            binds = [Bind(ctx.scratch, _SCRATCH, readonly=False)]
            ctx.run_in_buildroot(["cp", "-a", "--reflink=auto", source, f"{_SCRATCH}/tree"],
                                 binds=binds)
            source = f"{_SCRATCH}/tree"
            ctx.run_in_buildroot(["find", source, "-newermt", f"@{ctx.source_epoch}", "-exec",
                                  "touch", "--no-dereference", "--date",
                                  f"@{ctx.source_epoch}", "{}", "+"], binds=binds)
        argv += ["-d", source]
    env = {}
    if ctx.source_epoch is not None:
        env["E2FSPROGS_FAKE_TIME"] = str(ctx.source_epoch)
    ctx.run_in_buildroot([*argv, str(device)], env=env, binds=binds)
    if "tree" in ctx.inputs and ctx.source_epoch is not None:
        _stamp_inodes(ctx, str(device), ctx.source_epoch, env)


def used_inodes(dumpe2fs: str) -> list[int]:
    """The inode numbers in use, from `dumpe2fs` output: each group's range minus the ranges
    it lists as free (reserved inodes other than the root directory excluded)."""
    per_group = int(re.search(r"^Inodes per group:\s+(\d+)", dumpe2fs, re.M)[1])
    first = int(re.search(r"^First inode:\s+(\d+)", dumpe2fs, re.M)[1])
    used = [2]
    frees = re.findall(r"^\s+Free inodes: ?(.*)$", dumpe2fs, re.M)
    for group, ranges in enumerate(frees):
        free = set()
        for item in filter(None, (part.strip() for part in ranges.split(","))):
            low, _, high = item.partition("-")
            free.update(range(int(low), int(high or low) + 1))
        start = max(group * per_group + 1, first)
        used += [n for n in range(start, (group + 1) * per_group + 1) if n not in free]
    return used


def _stamp_inodes(ctx: StageContext, device: str, epoch: int, env: dict) -> None:
    """Access and change time of every inode in use := the epoch (one debugfs batch)."""
    listing = ctx.run_in_buildroot(["dumpe2fs", device]).stdout
    commands = ctx.scratch / "stamp.debugfs"
    commands.write_text("".join(f"sif <{n}> {field} @{epoch}\n"
                                for n in used_inodes(listing) for field in ("atime", "ctime")))
    ctx.run_in_buildroot(["debugfs", "-w", "-f", f"{_SCRATCH}/stamp.debugfs", device], env=env,
                         binds=[Bind(ctx.scratch, _SCRATCH, readonly=False)])
