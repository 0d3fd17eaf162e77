"""Make an ext4 filesystem on the stage's `device`, with the manifest's UUID and label.

Deterministic: the UUID and the directory hash seed come from the manifest, and with a source
epoch mke2fs stamps that time (E2FSPROGS_FAKE_TIME) instead of the clock.
"""

from __future__ import annotations

from debian_forge.context import StageContext, StageError

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



def run(ctx: StageContext, options: dict) -> None:
    device = ctx.devices.get("device")
    if device is None:
        raise StageError("org.osbuild.mkfs.ext4 needs a device named `device`")
    lazy = 1 if options.get("lazy_itable_init") else 0
    argv = ["mkfs.ext4", "-q", "-F", "-U", options["uuid"],
            "-E", f"hash_seed={options['uuid']},lazy_itable_init={lazy},lazy_journal_init={lazy}"]
    if "label" in options:
        argv += ["-L", options["label"]]
    env = {}
    if ctx.source_epoch is not None:
        env["E2FSPROGS_FAKE_TIME"] = str(ctx.source_epoch)
    ctx.run_in_buildroot([*argv, str(device)], env=env)
