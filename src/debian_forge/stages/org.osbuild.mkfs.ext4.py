"""Make an ext4 filesystem on the stage's `device`, with the manifest's UUID and label.

Deterministic: the UUID and the directory hash seed come from the manifest, and with a source
epoch mke2fs stamps that time (E2FSPROGS_FAKE_TIME) instead of the clock. With a `tree` input
the filesystem is populated from that tree as it is made (`mke2fs -d`), without a mount, and
with a source epoch every file's modification time is clamped to it (as tar's --clamp-mtime
does). Not yet byte-identical across builds: mke2fs takes each inode's change time from the
copy it reads.
"""

from __future__ import annotations

from deb_mock.sandbox import Bind
from debian_forge.context import INPUTS_MOUNT, StageContext, StageError

_SCRATCH = "/run/osbuild/scratch"

SCHEMA = {
    "required": ["uuid"],
    "properties": {
        "uuid": {"type": "string",
                 "pattern": "^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$",
                 "x-expected": "a UUID", "description": "Filesystem UUID (also the hash seed)."},
        "label": {"type": "string", "maxLength": 16, "description": "Volume label."},
        "lazy_itable_init": {"type": "boolean", "default": False,
                             "description": "Leave inode tables to be zeroed at first mount."},
    },
}



INPUTS = {"type": "object", "additionalProperties": False,
          "properties": {"tree": {"type": "object",
                                  "description": "A pipeline whose tree fills the filesystem."}}}


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
        source = f"{INPUTS_MOUNT}/tree"
        if ctx.source_epoch is not None:
            # mke2fs keeps the files' own times: clamp them to the epoch on a copy, as tar's
            # --clamp-mtime does.
            binds = [Bind(ctx.scratch, _SCRATCH, readonly=False)]
            source = f"{_SCRATCH}/tree"
            ctx.run_in_buildroot(["cp", "-a", "--reflink=auto", f"{INPUTS_MOUNT}/tree", source],
                                 binds=binds)
            ctx.run_in_buildroot(["find", source, "-newermt", f"@{ctx.source_epoch}", "-exec",
                                  "touch", "--no-dereference", "--date",
                                  f"@{ctx.source_epoch}", "{}", "+"], binds=binds)
        argv += ["-d", source]
    env = {}
    if ctx.source_epoch is not None:
        env["E2FSPROGS_FAKE_TIME"] = str(ctx.source_epoch)
    ctx.run_in_buildroot([*argv, str(device)], env=env, binds=binds)
