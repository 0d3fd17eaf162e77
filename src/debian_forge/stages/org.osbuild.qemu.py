"""Convert a raw disk image into the format a hypervisor or cloud takes (qemu-img convert).

The image comes from the `image` input (another pipeline's tree) and `filename` is written into
this pipeline's tree: qcow2 (optionally compressed), vmdk (stream-optimized for AWS), vpc (fixed,
whole-MiB sizes, for Azure), vhdx, or raw.
"""

from __future__ import annotations

from debian_forge.context import INPUTS_MOUNT, TREE_MOUNT, StageContext

SCHEMA = {
    "required": ["filename", "format"],
    "properties": {
        "filename": {"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.+-]*$",
                     "x-expected": "a plain file name", "description": "The output file."},
        "source": {"type": "string", "default": "disk.img",
                   "description": "The raw image's path in the input tree."},
        "format": {
            "type": "object", "additionalProperties": False, "required": ["type"],
            "properties": {
                "type": {"enum": ["qcow2", "vmdk", "vpc", "vhdx", "raw"],
                         "description": "Output format."},
                "compression": {"type": "boolean", "description": "qcow2: compress clusters."},
                "compat": {"type": "string", "description": "qcow2: compat level (1.1)."},
                "subformat": {"type": "string",
                              "description": "vmdk: streamOptimized, monolithicSparse…; "
                                             "vpc: fixed or dynamic."},
                "force_size": {"type": "boolean",
                               "description": "vpc: keep the exact size (Azure needs it)."},
            },
            "description": "qemu-img's output format and its options."},
    },
}

INPUTS = {"type": "object", "additionalProperties": False, "required": ["image"],
          "properties": {"image": {"type": "object"}}}


def run(ctx: StageContext, options: dict) -> None:
    fmt = options["format"]
    argv = ["qemu-img", "convert", "-O", fmt["type"]]
    extra = []
    if fmt.get("compat"):
        extra.append(f"compat={fmt['compat']}")
    if fmt.get("subformat"):
        extra.append(f"subformat={fmt['subformat']}")
    if fmt.get("force_size"):
        extra.append("force_size=on")
    if extra:
        argv += ["-o", ",".join(extra)]
    if fmt.get("compression"):
        argv.append("-c")
    source = f"{INPUTS_MOUNT}/image/{options.get('source', 'disk.img').lstrip('/')}"
    ctx.run_in_buildroot([*argv, "-f", "raw", source, f"{TREE_MOUNT}/{options['filename']}"])
