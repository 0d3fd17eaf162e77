"""Enable, disable or mask systemd units and set the default target of a tree.

Runs `systemctl enable`, then `disable`, then `mask`, then `set-default` inside the tree
(systemctl works offline there, as it does in a chroot). Every unit named must be installed in
the tree (/etc/systemd/system, /usr/lib/systemd/system or /lib/systemd/system; an instance
such as `getty@tty1.service` needs its template `getty@.service`), so that a typo fails the
build instead of silently doing nothing.
"""

from __future__ import annotations

import os

from debian_forge.context import StageContext, StageError
from debian_forge.stagelib import did_you_mean, require_command

UNIT_DIRS = ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")

UNIT_TYPES = ("service", "socket", "target", "timer", "path", "mount", "automount", "swap",
              "slice", "device")
UNIT_PATTERN = f"^[A-Za-z0-9:_.\\\\-]+(@[A-Za-z0-9:_.\\\\-]*)?\\.({'|'.join(UNIT_TYPES)})$"


def _unit_list_schema(description: str) -> dict:
    return {"type": "array", "uniqueItems": True, "description": description,
            "items": {"type": "string", "pattern": UNIT_PATTERN,
                      "x-expected": "a unit name such as 'ssh.service' or "
                                    "'getty@tty1.service'"}}


SCHEMA = {
    "properties": {
        "enabled_services": _unit_list_schema(
            "Units to enable (`systemctl enable`), e.g. 'ssh.service'."),
        "disabled_services": _unit_list_schema(
            "Units to disable (`systemctl disable`, which removes all their symlinks); done "
            "after enabling."),
        "masked_services": _unit_list_schema(
            "Units to mask (`systemctl mask`: linked to /dev/null so that nothing can start "
            "them); done after disabling."),
        "default_target": {
            "type": "string",
            "pattern": "^[A-Za-z0-9:_.\\\\-]+\\.target$",
            "x-expected": "a target unit such as 'multi-user.target'",
            "description": "The target the system boots into (`systemctl set-default`), e.g. "
                           "'multi-user.target' or 'graphical.target'.",
        },
    },
}

_ACTIONS = (("enabled_services", "enable"), ("disabled_services", "disable"),
            ("masked_services", "mask"))


def run(ctx: StageContext, options: dict) -> None:
    require_command(ctx.tree, "systemctl", "systemd")
    wanted = [unit for key, _ in _ACTIONS for unit in options.get(key, [])]
    twice = sorted({unit for unit in wanted if wanted.count(unit) > 1})
    if twice:
        raise StageError("listed in more than one of enabled_services, disabled_services "
                         f"and masked_services: {', '.join(twice)}")
    if "default_target" in options:
        wanted.append(options["default_target"])
    installed = _installed_units(ctx)
    for unit in wanted:
        if unit not in installed and _template(unit) not in installed:
            raise StageError(f"unit '{unit}' is not installed in this tree"
                             + did_you_mean(unit, installed))
    for key, action in _ACTIONS:
        if options.get(key):
            ctx.run(["systemctl", action, *options[key]])
    if "default_target" in options:
        ctx.run(["systemctl", "set-default", options["default_target"]])


def _template(unit: str) -> str:
    """The template an instance is made from ('getty@tty1.service' → 'getty@.service')."""
    if "@" not in unit:
        return unit
    prefix, _, rest = unit.partition("@")
    return f"{prefix}@.{rest.rsplit('.', 1)[1]}"


def _installed_units(ctx: StageContext) -> set[str]:
    """The names of every unit file (or alias link) in the tree's unit directories."""
    names = set()
    for directory in UNIT_DIRS:
        path = ctx.tree.path(directory)
        if path.is_dir():
            names.update(entry for entry in os.listdir(path)
                         if entry.rsplit(".", 1)[-1] in UNIT_TYPES)
    return names
