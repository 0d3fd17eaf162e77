"""Add or modify user accounts in a tree.

A new user is made with `useradd --create-home`, an existing one changed with `usermod` (only
the fields given), both inside the tree. The password is a crypt(3) hash, set with `chpasswd
--encrypted` from standard input so that it stays out of the build log. SSH keys replace the
user's `~/.ssh/authorized_keys`; `sudo` gives password-less sudo through
`/etc/sudoers.d/<name>`. Supplementary groups must exist already (org.osbuild.groups).
"""

from __future__ import annotations

import os

from debian_forge.context import StageContext, StageError
from debian_forge.stagelib import (ACCOUNT_NAME_PATTERN, read_group, read_passwd,
                                   require_command)

PATH_PATTERN = "^/[^:\\n]*$"

SCHEMA = {
    "required": ["users"],
    "properties": {
        "users": {
            "type": "object",
            "description": "The users to add or modify, by name (letters, digits, '_', '.' and "
                           "'-', at most 32 characters, not starting with a digit, '.' or '-').",
            "propertyNames": {"pattern": ACCOUNT_NAME_PATTERN,
                              "x-expected": "a user name such as 'alice' or 'svc-backup'"},
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "description": "The account's settings; for an existing user, only those given "
                               "are changed.",
                "properties": {
                    "uid": {"type": "integer", "minimum": 0, "maximum": 4294967294,
                            "description": "Numeric user ID; useradd picks the next free one "
                                           "when left out."},
                    "gid": {"type": "integer", "minimum": 0, "maximum": 4294967294,
                            "description": "Numeric ID of the primary group, which must exist; "
                                           "without it a new user gets a group of its own."},
                    "groups": {"type": "array", "uniqueItems": True,
                               "items": {"type": "string", "pattern": ACCOUNT_NAME_PATTERN,
                                         "x-expected": "a group name"},
                               "description": "Supplementary groups (they replace the user's "
                                              "current ones); each must exist in the tree."},
                    "description": {"type": "string", "pattern": "^[^:\\n]*$",
                                    "x-expected": "one line without ':'",
                                    "description": "The comment (GECOS) field, usually the "
                                                   "full name."},
                    "home": {"type": "string", "pattern": PATH_PATTERN,
                             "x-expected": "an absolute path without ':'",
                             "description": "Home directory; a new user's is created from "
                                            "/etc/skel (default /home/<name>)."},
                    "shell": {"type": "string", "pattern": PATH_PATTERN,
                              "x-expected": "an absolute path without ':'",
                              "description": "Login shell; it must exist in the tree."},
                    "password": {"type": "string", "pattern": "^(\\$[^:\\s]+|!|\\*)$",
                                 "x-expected": "a crypt(3) hash such as '$6$…' (from "
                                               "`mkpasswd -m sha-512`), or '!' or '*' for none",
                                 "description": "The password as a crypt(3) hash, never "
                                                "plain text; '!' or '*' allows no password "
                                                "log-in."},
                    "keys": {"type": "array",
                             "items": {"type": "string", "pattern": "^[^\\r\\n]+$",
                                       "x-expected": "one line of an OpenSSH public key"},
                             "description": "SSH public keys that make up "
                                            "~/.ssh/authorized_keys."},
                    "key": {"type": "string", "pattern": "^[^\\r\\n]+$",
                            "x-expected": "one line of an OpenSSH public key",
                            "description": "One SSH public key (osbuild compatibility), added "
                                           "after `keys`."},
                    "sudo": {"type": "boolean",
                             "description": "true: password-less sudo for everything through "
                                            "/etc/sudoers.d/<name> (dots in the name become "
                                            "'_'); false: that file is removed. Needs sudo in "
                                            "the tree."},
                    "expiredate": {"type": "integer", "minimum": 0,
                                   "description": "The day the account is disabled, in days "
                                                  "since 1970-01-01."},
                },
            },
        },
    },
}

_FLAGS = {"uid": "-u", "gid": "-g", "description": "-c", "home": "-d", "shell": "-s",
          "expiredate": "-e"}


def run(ctx: StageContext, options: dict) -> None:
    users = options["users"]
    require_command(ctx.tree, "useradd", "passwd")
    _check(ctx, users)
    for name, settings in users.items():
        _apply(ctx, name, settings)


def _check(ctx: StageContext, users: dict) -> None:
    """StageError for anything the tree cannot give: groups, shells, uids, sudo."""
    groups = read_group(ctx.tree)
    missing = sorted({group for settings in users.values()
                      for group in settings.get("groups", []) if group not in groups})
    if missing:
        raise StageError(f"groups missing from this tree: {', '.join(missing)}; create them "
                         f"with an org.osbuild.groups stage before this one")
    gids = {group.gid for group in groups.values()}
    passwd = read_passwd(ctx.tree)
    for name, settings in users.items():
        if "gid" in settings and settings["gid"] not in gids:
            raise StageError(f"user '{name}': no group has GID {settings['gid']}: create it "
                             f"with an org.osbuild.groups stage before this one")
        if "shell" in settings and not ctx.tree.exists(settings["shell"]):
            raise StageError(f"user '{name}': shell {settings['shell']} is not in this tree: "
                             f"install the package that provides it first")
        if "uid" in settings:
            others = [user.name for user in passwd.values()
                      if user.uid == settings["uid"] and user.name != name]
            if others:
                raise StageError(f"user '{name}': UID {settings['uid']} already belongs to "
                                 f"'{others[0]}'")
    if any(settings.get("sudo") for settings in users.values()) and not (
            ctx.tree.exists("/usr/bin/sudo") or ctx.tree.exists("/etc/sudoers.d")):
        raise StageError("'sudo' is set but this tree has no sudo: install the package 'sudo' "
                         "with an org.osbuild.apt stage before this one")


def _apply(ctx: StageContext, name: str, settings: dict) -> None:
    args = []
    for key, flag in _FLAGS.items():
        if key in settings:
            args += [flag, str(settings[key])]
    exists = name in read_passwd(ctx.tree)
    if "groups" in settings and (exists or settings["groups"]):
        args += ["-G", ",".join(settings["groups"])]
    if not exists:
        ctx.run(["useradd", "--create-home", *args, name])
    elif args:
        ctx.run(["usermod", *args, name])
    if "password" in settings:
        ctx.run(["chpasswd", "--encrypted"], stdin=f"{name}:{settings['password']}\n")
    if "keys" in settings or "key" in settings:
        keys = [*settings.get("keys", []), *([settings["key"]] if "key" in settings else [])]
        _write_authorized_keys(ctx, name, keys)
    if "sudo" in settings:
        path = "/etc/sudoers.d/" + name.replace(".", "_")
        if settings["sudo"]:
            ctx.tree.write_text(path, f"{name} ALL=(ALL) NOPASSWD:ALL\n", mode=0o440)
        elif ctx.tree.exists(path):
            ctx.tree.path(path).unlink()


def _write_authorized_keys(ctx: StageContext, name: str, keys: list[str]) -> None:
    """~/.ssh/authorized_keys of `name` (dir 0700, file 0600), owned by the user's IDs as the
    tree's /etc/passwd has them; a missing home is created for the user."""
    user = read_passwd(ctx.tree)[name]
    home = ctx.tree.path(user.home)
    if not home.is_dir():
        home.mkdir(mode=0o700, parents=True)
        os.chown(home, user.uid, user.gid)
    ssh = ctx.tree.path(f"{user.home}/.ssh")
    ssh.mkdir(exist_ok=True)
    os.chmod(ssh, 0o700)
    os.chown(ssh, user.uid, user.gid)
    target = ctx.tree.write_text(f"{user.home}/.ssh/authorized_keys",
                                 "".join(key + "\n" for key in keys), mode=0o600)
    os.chown(target, user.uid, user.gid)
