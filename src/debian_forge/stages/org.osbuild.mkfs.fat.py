"""Make a FAT filesystem (an EFI system partition) on the stage's `device`.

The volume id comes from the manifest and `--invariant` keeps mkfs.fat from stamping the clock:
the same manifest gives the same bytes.
"""

from __future__ import annotations

from debian_forge.context import StageContext, StageError

SCHEMA = {
    "required": ["volid"],
    "properties": {
        "volid": {"type": "string", "pattern": "^[0-9a-fA-F]{8}$",
                  "x-expected": "8 hex digits", "description": "Volume id (serial)."},
        "label": {"type": "string", "maxLength": 11, "description": "Volume label."},
        "fat_size": {"enum": [12, 16, 32], "description": "FAT type (default: by size)."},
    },
}



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
