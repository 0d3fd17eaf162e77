"""Convert a raw disk image into the format a hypervisor or cloud takes (qemu-img convert).

The image comes from the `image` input (another pipeline's tree) and `filename` is written into
this pipeline's tree: qcow2 (optionally compressed), vmdk (stream-optimized for AWS), vpc (fixed,
whole-MiB sizes, for Azure), vhdx, or raw.

qemu-img stamps a VHD (vpc) footer with the clock and a random UUID, and a VMDK descriptor with
a random content id (CID). With a source epoch the stage rewrites them: the time becomes the
epoch, the UUID and CID are derived from the raw image's sha256, so the same raw image gives the
same bytes in every format but vhdx (whose GUIDs sit in CRC-protected headers and stay random).
qcow2 needs nothing: it records neither.
"""

from __future__ import annotations

import re
import struct
import uuid
from pathlib import Path

from deb_mock.source import sha256_of
from debian_forge.context import INPUTS_MOUNT, TREE_MOUNT, StageContext
from debian_forge.stagelib import file_name_property

VHD_EPOCH = 946684800  # 2000-01-01T00:00:00Z: VHD timestamps count from it

SCHEMA = {
    "required": ["filename", "format"],
    "properties": {
        "filename": file_name_property("The output file."),
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
    source = options.get("source", "disk.img").lstrip("/")
    ctx.run_in_buildroot([*argv, "-f", "raw", f"{INPUTS_MOUNT}/image/{source}",
                          f"{TREE_MOUNT}/{options['filename']}"])
    if ctx.source_epoch is not None and fmt["type"] in ("vpc", "vmdk"):
        content = sha256_of(ctx.inputs["image"].path / source)
        output = ctx.tree.path(options["filename"])
        if fmt["type"] == "vpc":
            stamp_vhd(output, ctx.source_epoch, uuid.uuid5(uuid.NAMESPACE_OID, content))
        else:
            stamp_vmdk(output, content[:8])


def stamp_vhd(path: Path, epoch: int, disk_uuid: uuid.UUID) -> None:
    """Set the timestamp and UUID of a VHD's footer (at the end, and its copy at the start of
    a dynamic VHD), with the checksum recomputed."""
    with open(path, "r+b") as image:
        size = image.seek(0, 2)
        for offset in (size - 512, 0):
            image.seek(offset)
            footer = bytearray(image.read(512))
            if not footer.startswith(b"conectix"):
                continue
            footer[24:28] = struct.pack(">I", max(0, epoch - VHD_EPOCH))
            footer[68:84] = disk_uuid.bytes
            footer[64:68] = b"\0\0\0\0"
            footer[64:68] = struct.pack(">I", ~sum(footer) & 0xFFFFFFFF)
            image.seek(offset)
            image.write(footer)


def stamp_vmdk(path: Path, cid: str) -> None:
    """Set the CID of a sparse VMDK's embedded descriptor. qemu-img writes it without leading
    zeros, so the text is rewritten and padded back to the descriptor's own space."""
    with open(path, "r+b") as image:
        header = image.read(512)
        if header[:4] != b"KDMV":
            return
        offset, size = struct.unpack_from("<QQ", header, 28)  # descriptor sectors
        image.seek(offset * 512)
        area = image.read(size * 512)
        text = area.rstrip(b"\0")
        stamped = re.sub(rb"(?m)^CID=[0-9a-f]+$", b"CID=" + cid.encode(), text, count=1)
        if stamped != text and len(stamped) <= len(area):
            image.seek(offset * 512)
            image.write(stamped.ljust(len(area), b"\0"))
