"""Install GRUB for BIOS into a disk image: boot.img into the MBR, core.img behind it.

Does what grub-bios-setup does, on an image file and without probing devices: the core image
that org.osbuild.grub2 (`bios: true`) made in the `tree` input is written at sector `location`,
its first sector is told where the rest of it starts, and the first 440 bytes of the MBR become
GRUB's boot.img pointing at it — the partition table after them is kept. On GPT the core image
must lie inside a BIOS boot partition (type 21686148-6449-6E6F-744E-656564454649; an EFI system
partition may sit beside it for UEFI); on an MBR disk, in the gap before the first partition.
"""

from __future__ import annotations

import json
import struct

from debian_forge.context import TREE_MOUNT, StageContext, StageError
from debian_forge.stagelib import file_name_property

SECTOR = 512
BIOS_BOOT = "21686148-6449-6E6F-744E-656564454649"
BOOT_CODE = 440  # bytes of boot.img that go into the MBR; the disk signature and table follow
KERNEL_SECTOR = 0x5C  # boot.img: where the core image starts (GRUB_BOOT_MACHINE_KERNEL_SECTOR)
NEXT_SECTOR = 0x200 - 12  # core.img's first sector: where its second sector is (blocklist start)

SCHEMA = {
    "required": ["filename", "location"],
    "properties": {
        "filename": file_name_property("The disk image in this pipeline's tree."),
        "platform": {"const": "i386-pc", "default": "i386-pc",
                     "description": "The GRUB platform (BIOS)."},
        "location": {"type": "integer", "minimum": 1,
                     "description": "First sector of the core image: the start of the BIOS "
                                    "boot partition, or a sector of the MBR gap."},
    },
}

INPUTS = {"type": "object", "additionalProperties": False, "required": ["tree"],
          "properties": {"tree": {"type": "object", "description":
                                  "The pipeline whose /boot/grub/i386-pc holds core.img and "
                                  "boot.img (org.osbuild.grub2 with bios: true)."}}}


def run(ctx: StageContext, options: dict) -> None:
    grub = ctx.inputs["tree"].path / "boot/grub/i386-pc"
    if not (grub / "core.img").is_file() or not (grub / "boot.img").is_file():
        raise StageError("the tree input has no /boot/grub/i386-pc/core.img and boot.img: run "
                         "org.osbuild.grub2 with \"bios\": true in that pipeline")
    core = (grub / "core.img").read_bytes()
    boot = (grub / "boot.img").read_bytes()
    image = ctx.tree.path(options["filename"])
    if not image.is_file():
        raise StageError(f"{options['filename']}: no such disk image in this pipeline's tree")
    location = options["location"]
    sectors = -(-len(core) // SECTOR)
    table = json.loads(ctx.run_in_buildroot(
        ["sfdisk", "--json", f"{TREE_MOUNT}/{options['filename']}"]).stdout)["partitiontable"]
    _check_room(table, location, sectors)
    with open(image, "r+b") as disk:
        disk.seek(location * SECTOR)
        disk.write(core)
        disk.seek(location * SECTOR + NEXT_SECTOR)
        disk.write(struct.pack("<Q", location + 1))
        disk.seek(0)
        disk.write(boot[:BOOT_CODE])
        disk.seek(KERNEL_SECTOR)
        disk.write(struct.pack("<Q", location))
    ctx.log.write(f"core.img ({sectors} sectors) at sector {location}, boot.img in the MBR\n")


def _check_room(table: dict, location: int, sectors: int) -> None:
    """StageError unless sectors [location, location+sectors) are GRUB's to write."""
    end = location + sectors
    parts = table.get("partitions", [])
    if table["label"] == "gpt":
        for number, part in enumerate(parts, 1):
            if part["start"] <= location and end <= part["start"] + part["size"]:
                if part["type"].upper() != BIOS_BOOT:
                    raise StageError(f"sector {location} is in partition {number} of type "
                                     f"{part['type']}, not a BIOS boot partition ({BIOS_BOOT})")
                return
        raise StageError(f"the core image ({sectors} sectors from {location}) does not fit in a "
                         f"BIOS boot partition ({BIOS_BOOT}) of this GPT disk")
    first = min((part["start"] for part in parts), default=None)
    if first is not None and end > first:
        raise StageError(f"the core image ({sectors} sectors from {location}) overlaps the first "
                         f"partition (from sector {first}): it must fit in the MBR gap")
