"""Partition a disk with sfdisk: GPT or MBR, types, names, sizes, UUIDs from the manifest.

The stage's `device` (an org.osbuild.loopback over the whole image) is partitioned by the build
root's sfdisk. Every UUID comes from the manifest, so the same manifest gives the same table:
a GPT disk or partition UUID the options leave out is derived from the options themselves
(a name-based UUID), never drawn at random; likewise an MBR disk identifier.
Starts and sizes are in 512-byte sectors; a partition without a size takes the rest.
"""

from __future__ import annotations

import hashlib
import json
import uuid

from debian_forge.context import StageContext, StageError
from debian_forge.stagelib import uuid_property


SCHEMA = {
    "required": ["label", "partitions"],
    "properties": {
        "label": {"enum": ["gpt", "dos"], "description": "Partition table type."},
        "uuid": {"type": "string", "minLength": 1,
                 "description": "Disk identifier: a UUID for GPT, 0xXXXXXXXX for MBR."},
        "partitions": {"type": "array", "minItems": 1, "items": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "start": {"type": "integer", "minimum": 0, "description": "First sector."},
                "size": {"type": "integer", "minimum": 1, "description": "Sectors."},
                "type": {"type": "string", "minLength": 1,
                         "description": "Partition type: a GPT type UUID or an MBR hex id "
                                        "(sfdisk's aliases L, U, S, V work too)."},
                "uuid": uuid_property("Partition UUID (GPT)."),
                "name": {"type": "string", "description": "Partition name (GPT)."},
                "bootable": {"type": "boolean", "description": "The MBR active flag."},
                "attrs": {"type": "array", "items": {"type": "integer"},
                          "description": "GPT attribute bits."},
            }}, "description": "The partitions, in order."},
    },
}



def derived_uuid(options: dict, what: str) -> str:
    """A UUID for `what` that only the options decide (uuid5 over their canonical JSON)."""
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()
    return str(uuid.uuid5(uuid.NAMESPACE_OID, f"debian-forge.sfdisk/{digest}/{what}"))


def script(options: dict) -> str:
    """sfdisk's input for the table."""
    gpt = options["label"] == "gpt"
    lines = [f"label: {options['label']}"]
    if "uuid" in options:
        lines.append(f"label-id: {options['uuid']}")
    elif gpt:
        lines.append(f"label-id: {derived_uuid(options, 'disk')}")
    else:
        lines.append(f"label-id: 0x{derived_uuid(options, 'disk')[:8]}")
    lines.append("")
    for index, part in enumerate(options["partitions"]):
        if gpt and "uuid" not in part:
            part = {**part, "uuid": derived_uuid(options, f"partition-{index}")}
        fields = []
        for key, name in (("start", "start"), ("size", "size"), ("type", "type"),
                          ("uuid", "uuid")):
            if key in part:
                fields.append(f"{name}={part[key]}")
        if "name" in part:
            fields.append(f'name="{part["name"]}"')
        if part.get("bootable"):
            fields.append("bootable")
        if part.get("attrs"):
            fields.append('attrs="' + " ".join(f"GUID:{bit}" for bit in part["attrs"]) + '"')
        lines.append(", ".join(fields))
    return "\n".join(lines) + "\n"


def run(ctx: StageContext, options: dict) -> None:
    device = ctx.devices.get("device")
    if device is None:
        raise StageError("org.osbuild.sfdisk needs a device named `device` (an "
                         "org.osbuild.loopback over the whole image)")
    ctx.run_in_buildroot(["sfdisk", "--no-reread", "--no-tell-kernel", "--wipe", "always",
                          str(device)], stdin=script(options))
