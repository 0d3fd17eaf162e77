"""Configure cloud-init: datasources, default user, disk growth, SSH and anything else.

Writes one YAML file, `/etc/cloud/cloud.cfg.d/<filename>` (0644): cloud-init merges
`/etc/cloud/cloud.cfg` and the `*.cfg` files of that directory in name order, a later file's
keys winning (mappings merge key by key, lists are replaced). The default `99_debian-forge.cfg`
sorts after Debian's `90_dpkg.cfg`, so its `datasource_list` wins over the one the package
writes from debconf, and after org.osbuild.cloud's `91_debian-forge-<provider>.cfg`, so this
stage's settings win over a provider profile's.

The tree must have cloud-init (the Debian package `cloud-init`), and every datasource asked for
must be one its cloud-init has (`cloudinit/sources/DataSource<Name>.py`). The fallback `None`
always ends the datasource list. `config` is merged last, top-level key by key, for every
other cloud-config setting.
"""

from __future__ import annotations

from debian_forge.context import StageContext
from debian_forge.stagelib import (ACCOUNT_NAME_PATTERN, require_cloud_datasources,
                                   require_command, write_cloud_config)

# cloud-init's datasource names (cloudinit/settings.py CFG_BUILTIN["datasource_list"]).
DATASOURCES = ["NoCloud", "ConfigDrive", "OpenNebula", "DigitalOcean", "Azure", "AltCloud", "OVF",
               "MAAS", "GCE", "OpenStack", "CloudSigma", "SmartOS", "Bigstep", "Scaleway",
               "AliYun", "Ec2", "CloudStack", "Hetzner", "IBMCloud", "Oracle", "Exoscale",
               "RbxCloud", "UpCloud", "VMware", "Vultr", "LXD", "NWCS", "Akamai", "WSL", "None"]
DEFAULT_FILENAME = "99_debian-forge.cfg"
SUDO_ALL = "ALL=(ALL) NOPASSWD:ALL"

SCHEMA = {
    "properties": {
        "filename": {
            "type": "string", "pattern": "^[A-Za-z0-9_.-]{1,250}\\.cfg$",
            "default": DEFAULT_FILENAME,
            "x-expected": "a file name ending in .cfg such as 99_debian-forge.cfg",
            "description": "The file written in /etc/cloud/cloud.cfg.d; names sorting later "
                           "win, so the default comes after Debian's 90_dpkg.cfg.",
        },
        "datasources": {
            "type": "array", "minItems": 1, "uniqueItems": True,
            "items": {"enum": DATASOURCES},
            "description": "The datasources cloud-init tries, in order (datasource_list); "
                           "`None`, the fallback, is put last when missing. Each must exist in "
                           "the tree's cloud-init.",
        },
        "default_user": {
            "type": "object", "additionalProperties": False, "required": ["name"],
            "description": "The default user cloud-init creates (system_info.default_user) "
                           "and gives the instance's SSH keys: `name` (required), `groups`, "
                           "`sudo` (true: password-less sudo; false: none), `shell`, `gecos`, "
                           "`lock_passwd` (default true: SSH keys only).",
            "properties": {
                "name": {"type": "string", "pattern": ACCOUNT_NAME_PATTERN,
                         "x-expected": "a user name such as 'debian' or 'admin'",
                         "description": "The user's name."},
                "groups": {"type": "array", "uniqueItems": True,
                           "items": {"type": "string", "pattern": ACCOUNT_NAME_PATTERN,
                                     "x-expected": "a group name"},
                           "description": "Supplementary groups."},
                "sudo": {"type": "boolean",
                         "description": "true: password-less sudo (ALL=(ALL) NOPASSWD:ALL); "
                                        "false: no sudo rule (sudo: null). Left out: the "
                                        "distribution's default (Debian's gives sudo)."},
                "shell": {"type": "string", "pattern": "^/[^:\\n]*$",
                          "x-expected": "an absolute path such as /bin/bash",
                          "description": "The login shell."},
                "gecos": {"type": "string", "pattern": "^[^:\\n]*$",
                          "x-expected": "one line without ':'",
                          "description": "The comment (GECOS) field, usually the full name."},
                "lock_passwd": {"type": "boolean", "default": True,
                                "description": "Lock the password: log in with SSH keys only."},
            },
        },
        "growpart": {"type": "boolean",
                     "description": "true: grow the root partition and file system to the disk "
                                    "on boot (growpart mode auto on /, resize_rootfs); false: "
                                    "leave them as built."},
        "ssh_pwauth": {"type": "boolean",
                       "description": "Allow SSH password logins (cloud-init's ssh_pwauth)."},
        "disable_root": {"type": "boolean",
                         "description": "Refuse SSH logins as root (cloud-init's disable_root)."},
        "preserve_hostname": {"type": "boolean",
                              "description": "Keep the image's hostname instead of the "
                                             "instance's (cloud-init's preserve_hostname)."},
        "config": {"type": "object",
                   "description": "Any other cloud-config, merged last: its top-level keys "
                                  "replace those the other options set."},
    },
}


def datasource_list(names: list[str]) -> list[str]:
    """`names` in order, ending with the fallback `None` (once)."""
    return [name for name in names if name != "None"] + ["None"]


def cloud_config(options: dict) -> dict:
    """The cloud-config mapping the options describe, in the order it is written."""
    data: dict = {}
    if "datasources" in options:
        data["datasource_list"] = datasource_list(options["datasources"])
    if "default_user" in options:
        user = options["default_user"]
        entry: dict = {"name": user["name"]}
        entry.update({key: user[key] for key in ("gecos", "groups", "shell") if key in user})
        if "sudo" in user:  # null, not false: cloud-init deprecated false in 22.3
            entry["sudo"] = SUDO_ALL if user["sudo"] else None
        entry["lock_passwd"] = user.get("lock_passwd", True)
        data["system_info"] = {"default_user": entry}
    if "growpart" in options:
        if options["growpart"]:
            data["growpart"] = {"mode": "auto", "devices": ["/"]}
            data["resize_rootfs"] = True
        else:
            data["growpart"] = {"mode": "off"}
            data["resize_rootfs"] = False
    for key in ("ssh_pwauth", "disable_root", "preserve_hostname"):
        if key in options:
            data[key] = options[key]
    data.update(options.get("config", {}))
    return data


def run(ctx: StageContext, options: dict) -> None:
    require_command(ctx.tree, "cloud-init", "cloud-init")
    if "datasources" in options:
        require_cloud_datasources(ctx.tree, datasource_list(options["datasources"]))
    data = cloud_config(options)
    filename = options.get("filename", DEFAULT_FILENAME)
    write_cloud_config(ctx.tree, filename, data,
                       "Written by debian-forge (org.osbuild.cloud-init).")
    ctx.log.write(f"wrote /etc/cloud/cloud.cfg.d/{filename}\n")
