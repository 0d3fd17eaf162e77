"""Create groups in a tree.

Each group is made with `groupadd` inside the tree. A group that already exists is left as it
is when it has the asked GID (or none was asked); a different GID is an error, as is a GID
another group already has.
"""

from __future__ import annotations

from debian_forge.context import StageContext, StageError
from debian_forge.stagelib import ACCOUNT_NAME_PATTERN, read_group, require_command

SCHEMA = {
    "required": ["groups"],
    "properties": {
        "groups": {
            "type": "object",
            "description": "The groups to create, by name (letters, digits, '_', '.' and '-', "
                           "at most 32 characters, not starting with a digit, '.' or '-').",
            "propertyNames": {"pattern": ACCOUNT_NAME_PATTERN,
                              "x-expected": "a group name such as 'wheel' or 'web-admins'"},
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "description": "How to create the group.",
                "properties": {
                    "gid": {"type": "integer", "minimum": 0, "maximum": 4294967294,
                            "description": "Numeric group ID; groupadd picks the next "
                                           "free one when left out."},
                },
            },
        },
    },
}


def run(ctx: StageContext, options: dict) -> None:
    require_command(ctx.tree, "groupadd", "passwd")
    for name, settings in options["groups"].items():
        existing = read_group(ctx.tree)
        gid = settings.get("gid")
        if name in existing:
            if gid is not None and existing[name].gid != gid:
                raise StageError(f"group '{name}' already exists with GID "
                                 f"{existing[name].gid}, not {gid}")
            continue
        if gid is not None:
            taken = [group.name for group in existing.values() if group.gid == gid]
            if taken:
                raise StageError(f"cannot create group '{name}' with GID {gid}: group "
                                 f"'{taken[0]}' already has it")
        ctx.run(["groupadd", *(["--gid", str(gid)] if gid is not None else []), name])
