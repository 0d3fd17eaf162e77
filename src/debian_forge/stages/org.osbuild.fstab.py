"""Write the tree's /etc/fstab.

The file is replaced: a header comment, then one tab-separated line per file system, in the
order given. Each file system is named by exactly one of `uuid` (`UUID=…`), `label`
(`LABEL=…`), `partuuid` (`PARTUUID=…`) or `device` (a device path). Spaces, tabs and
backslashes in a field are written as octal escapes (`\\040`), as fstab(5) requires.
The builder never invents UUIDs: they come from the manifest, like those of the mkfs stages.
Two file systems on the same mount point are refused.
"""

from __future__ import annotations

from debian_forge.context import StageContext, StageError

HEADER = ("# /etc/fstab: static file system information (written by debian-forge).\n"
          "#\n"
          "# <file system>\t<mount point>\t<type>\t<options>\t<dump>\t<pass>\n")

_SOURCES = (("uuid", "UUID="), ("label", "LABEL="), ("partuuid", "PARTUUID="), ("device", ""))

SCHEMA = {
    "required": ["filesystems"],
    "properties": {
        "filesystems": {
            "type": "array",
            "description": "The file systems, one fstab line each, in this order.",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["path", "vfs_type"],
                "oneOf": [{"required": ["uuid"]}, {"required": ["label"]},
                          {"required": ["partuuid"]}, {"required": ["device"]}],
                "properties": {
                    "uuid": {"type": "string", "pattern": "^[0-9A-Fa-f][0-9A-Fa-f-]*$",
                             "x-expected": "a file system UUID such as "
                                           "6e3a1c4d-6c5b-4f2e-9d4a-2b8f0c1e7a90 or 1234-ABCD",
                             "description": "The file system's UUID (UUID=…)."},
                    "label": {"type": "string", "minLength": 1,
                              "description": "The file system's label (LABEL=…)."},
                    "partuuid": {"type": "string", "pattern": "^[0-9A-Fa-f][0-9A-Fa-f-]*$",
                                 "x-expected": "a partition UUID such as "
                                               "0f3b0b6c-2e4d-4b8e-8c5a-1d2e3f405162",
                                 "description": "The partition's UUID (PARTUUID=…)."},
                    "device": {"type": "string", "pattern": "^/",
                               "x-expected": "a device path such as /dev/vda1",
                               "description": "A device path, written as is."},
                    "path": {"type": "string", "pattern": "^(/|none$)",
                             "x-expected": "an absolute mount point, or none for swap",
                             "description": "The mount point (none for swap)."},
                    "vfs_type": {"type": "string", "pattern": "^[^\\s]+$",
                                 "x-expected": "a file system type such as ext4, vfat or swap",
                                 "description": "The file system type: ext4, vfat, swap, …"},
                    "options": {"type": "string", "pattern": "^[^\\s]+$", "default": "defaults",
                                "x-expected": "comma-separated mount options without spaces",
                                "description": "Mount options, comma-separated; "
                                               "\"defaults\" when not given."},
                    "freq": {"type": "integer", "minimum": 0, "default": 0,
                             "description": "dump(8) frequency (the fifth field); 0."},
                    "passno": {"type": "integer", "minimum": 0, "default": 0,
                               "description": "fsck pass (the sixth field): 1 for the root "
                                              "file system, 2 for others, 0 for none."},
                },
            },
        },
    },
}


def run(ctx: StageContext, options: dict) -> None:
    lines = [HEADER]
    seen: set[str] = set()
    for fs in options["filesystems"]:
        if fs["path"] != "none":
            if fs["path"] in seen:
                raise StageError(f"two file systems are mounted on {fs['path']}")
            seen.add(fs["path"])
        source = next(prefix + fs[key] for key, prefix in _SOURCES if key in fs)
        fields = [source, fs["path"], fs["vfs_type"], fs.get("options", "defaults"),
                  str(fs.get("freq", 0)), str(fs.get("passno", 0))]
        lines.append("\t".join(_escape(field) for field in fields) + "\n")
    ctx.tree.write_text("/etc/fstab", "".join(lines))


def _escape(field: str) -> str:
    """A field as fstab(5) reads it: whitespace and backslashes as octal escapes."""
    return "".join(f"\\{ord(char):03o}" if char in " \t\n\\" else char for char in field)
