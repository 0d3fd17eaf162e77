"""Set the time zone of a tree.

Points `/etc/localtime` at the zone's file under `/usr/share/zoneinfo` (a relative symlink,
as `timedatectl` makes it) and writes the zone name to `/etc/timezone`. The zone must be one
the tree's `tzdata` knows.
"""

from __future__ import annotations

import os
from pathlib import Path

from debian_forge.context import StageContext, StageError
from debian_forge.stagelib import did_you_mean

ZONEINFO = "/usr/share/zoneinfo"

SCHEMA = {
    "required": ["zone"],
    "properties": {
        "zone": {
            "type": "string",
            "pattern": "^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$",
            "x-expected": "a time zone name such as 'Europe/Berlin' or 'UTC'",
            "description": "The time zone, as named under /usr/share/zoneinfo (e.g. "
                           "'Europe/Berlin', 'America/New_York', 'UTC').",
        },
    },
}


def run(ctx: StageContext, options: dict) -> None:
    zone = options["zone"]
    if not ctx.tree.path(ZONEINFO).is_dir():
        raise StageError(f"this tree has no {ZONEINFO}: install the package 'tzdata' with an "
                         f"org.osbuild.apt stage before this one")
    # zoneinfo/localtime links back to /etc/localtime: naming it would make a loop.
    if zone == "localtime" or not _is_zone_file(ctx.tree.path(f"{ZONEINFO}/{zone}")):
        raise StageError(f"time zone '{zone}' is not in this tree's {ZONEINFO}"
                         + did_you_mean(zone, _zones(ctx)))
    localtime = ctx.tree.path("/etc") / "localtime"
    if os.path.lexists(localtime):
        localtime.unlink()
    localtime.symlink_to(f"..{ZONEINFO}/{zone}")
    ctx.tree.write_text("/etc/timezone", zone + "\n")


def _is_zone_file(path: Path) -> bool:
    """A compiled zone (TZif), not one of the tables that live beside them."""
    if not path.is_file():
        return False
    with open(path, "rb") as file:
        return file.read(4) == b"TZif"


def _zones(ctx: StageContext) -> list[str]:
    """Every zone name of the tree's tzdata (without the posix/ and right/ copies)."""
    root = ctx.tree.path(ZONEINFO)
    zones = []
    for directory, subdirs, files in os.walk(root):
        if directory == str(root):
            subdirs[:] = [name for name in subdirs if name not in ("posix", "right")]
        for name in files:
            relative = os.path.relpath(os.path.join(directory, name), root)
            if (name[0].isupper() or "/" in relative) and name != "localtime":
                zones.append(relative)
    return zones
