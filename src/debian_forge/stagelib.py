"""Helpers shared by stage modules: reading a tree's account databases, finding its tools,
writing cloud-init configuration.

Small functions over `Tree` (context.py); every path goes through `Tree.path()`.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import yaml

from deb_mock.paths import resolve_in_tree
from debian_forge.context import INPUTS_MOUNT, StageContext, StageError, Tree

_COMMAND_DIRS = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")

# A user or group name: osbuild's rule, except that it must start with a letter or '_'.
ACCOUNT_NAME_PATTERN = "^[A-Za-z_][A-Za-z0-9_.-]{0,31}$"


@dataclass(frozen=True)
class PasswdEntry:
    """One line of a tree's /etc/passwd."""

    name: str
    uid: int
    gid: int
    gecos: str
    home: str
    shell: str


@dataclass(frozen=True)
class GroupEntry:
    """One line of a tree's /etc/group."""

    name: str
    gid: int
    members: tuple[str, ...]


def _colon_records(tree: Tree, path: str, fields: int) -> list[list[str]]:
    """The colon-separated records of a file in the tree (none when it is missing)."""
    if not tree.exists(path):
        return []
    records = []
    for line in tree.read_text(path).splitlines():
        parts = line.split(":")
        if len(parts) >= fields and not line.startswith(("#", "+", "-")):
            records.append(parts)
    return records


def read_passwd(tree: Tree) -> dict[str, PasswdEntry]:
    """The users of the tree's /etc/passwd, by name."""
    return {parts[0]: PasswdEntry(parts[0], int(parts[2]), int(parts[3]), parts[4], parts[5],
                                  parts[6])
            for parts in _colon_records(tree, "/etc/passwd", 7)}


def read_group(tree: Tree) -> dict[str, GroupEntry]:
    """The groups of the tree's /etc/group, by name."""
    return {parts[0]: GroupEntry(parts[0], int(parts[2]),
                                 tuple(member for member in parts[3].split(",") if member))
            for parts in _colon_records(tree, "/etc/group", 4)}


def require_command(tree: Tree, command: str, package: str) -> None:
    """StageError unless the tree has `command` (in /usr/sbin, /usr/bin, /sbin or /bin),
    telling which Debian package to install first."""
    if not any(tree.exists(f"{directory}/{command}") for directory in _COMMAND_DIRS):
        raise StageError(f"this tree has no '{command}': install the package '{package}' "
                         f"with an org.osbuild.apt stage before this one")


def did_you_mean(word: str, candidates: Iterable[str], n: int = 3) -> str:
    """` (did you mean 'a', 'b' or 'c'?)` for a word not among `candidates`, or the empty
    string when nothing is close."""
    close = [repr(item) for item in difflib.get_close_matches(word, list(candidates), n=n)]
    if not close:
        return ""
    listed = close[0] if len(close) == 1 else ", ".join(close[:-1]) + " or " + close[-1]
    return f" (did you mean {listed}?)"


# Locations and file modes as manifests write them (org.osbuild.mkdir, org.osbuild.copy).


def tree_location(location: str) -> str:
    """The path inside the tree that `tree:///etc/x` (or a plain `/etc/x`) names: `/etc/x`.
    Resolve it with `Tree.path()`, which refuses escapes."""
    if location.startswith("tree://"):
        return location[len("tree://"):]
    return location


# mkfs stages fill a new filesystem from a directory of a `tree` input, without a mount.
FILL_PATH_PROPERTY = {"type": "string", "pattern": "^/", "default": "/",
                      "x-expected": "an absolute path",
                      "description": "The directory of the `tree` input to fill the filesystem "
                                     "with."}
FILL_INPUTS = {"type": "object", "additionalProperties": False,
               "properties": {"tree": {"type": "object",
                                       "description": "A pipeline whose tree fills the "
                                                      "filesystem."}}}


def fill_source(ctx: StageContext, inside: str) -> tuple[Path, str]:
    """The `tree` input's directory `inside`: its host path and where the build root sees it
    (StageError when the tree has no such directory)."""
    host = resolve_in_tree(ctx.inputs["tree"].path, inside)
    if not host.is_dir():
        raise StageError(f"path {inside!r}: no such directory in the tree input")
    return host, f"{INPUTS_MOUNT}/tree/{inside.strip('/')}".rstrip("/")


def switch_property(default: bool, what: str) -> dict:
    """The schema of an on/off option whose description says its default."""
    return {"type": "boolean", "default": default,
            "description": f"{what} ({'on' if default else 'off'} unless set)."}


def uuid_property(description: str) -> dict:
    """The schema of a UUID option (filesystems, partitions, disks)."""
    return {"type": "string", "pattern": "^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$",
            "x-expected": "a UUID", "description": description}


def file_name_property(description: str) -> dict:
    """The schema of a plain file name in a pipeline's tree (an image, a tarball)."""
    return {"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.+-]*$",
            "x-expected": "a plain file name (no directories)", "description": description}


def mode_property(description: str) -> dict:
    """The schema of a file mode option: an integer (493 for 0o755) or an octal string ("0755")."""
    return {"description": description,
            "oneOf": [{"type": "integer", "minimum": 0, "maximum": 0o7777},
                      {"type": "string", "pattern": "^0?[0-7]{3,4}$",
                       "x-expected": "an octal mode such as \"0755\""}]}


def parse_mode(value: int | str) -> int:
    """A mode as `mode_property` allows it (493 or "0755"), as an integer."""
    return value if isinstance(value, int) else int(value, 8)


# cloud-init configuration (org.osbuild.cloud-init, org.osbuild.cloud).

CLOUD_CONFIG_DIR = "/etc/cloud/cloud.cfg.d"
_CLOUD_SOURCES_DIR = "/usr/lib/python3/dist-packages/cloudinit/sources"


def cloud_datasources(tree: Tree) -> list[str]:
    """The cloud-init datasources the tree's cloud-init has (`DataSource<Name>.py`), sorted."""
    directory = tree.path(_CLOUD_SOURCES_DIR)
    if not directory.is_dir():
        return []
    return sorted(entry.name[len("DataSource"):-len(".py")]
                  for entry in directory.glob("DataSource?*.py"))


def require_cloud_datasources(tree: Tree, names: Iterable[str]) -> None:
    """StageError unless the tree's cloud-init has every datasource of `names`."""
    available = cloud_datasources(tree)
    missing = [name for name in names if name not in available]
    if missing:
        raise StageError(f"the tree's cloud-init has no datasource {', '.join(missing)} (no "
                         f"{_CLOUD_SOURCES_DIR}/DataSource{missing[0]}.py); it has: "
                         f"{', '.join(available) or 'none'}")


def write_cloud_config(tree: Tree, filename: str, data: dict, comment: str) -> Path:
    """Write `data` as YAML to /etc/cloud/cloud.cfg.d/<filename> (0644) under a `# comment`
    line. cloud-init merges those files in name order, later names winning."""
    text = f"# {comment}\n" + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    return tree.write_text(f"{CLOUD_CONFIG_DIR}/{filename}", text, mode=0o644)


# The "slim" trick of Debian's container images: dpkg leaves these out of every package it
# unpacks (path-exclude), except the includes (copyright notices must stay).
SLIM_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/groff/*",
                 "/usr/share/info/*", "/usr/share/lintian/*", "/usr/share/linda/*",
                 "/usr/share/locale/*")
SLIM_INCLUDES = ("/usr/share/doc/*/copyright", "/usr/share/locale/locale.alias")
SLIM_DPKG_CONFIG = "/etc/dpkg/dpkg.cfg.d/debian-forge-slim"


def slim_dpkg_config() -> str:
    """The dpkg configuration of the slim excludes (one option per line)."""
    return ("# Written by debian-forge: no documentation, manual pages or translations.\n"
            + "".join(f"path-exclude={p}\n" for p in SLIM_EXCLUDES)
            + "".join(f"path-include={p}\n" for p in SLIM_INCLUDES))


def slim_excluded(path: str) -> bool:
    """Whether dpkg, configured by slim_dpkg_config(), leaves the absolute `path` out."""
    return (any(fnmatch.fnmatchcase(path, p) for p in SLIM_EXCLUDES)
            and not any(fnmatch.fnmatchcase(path, p) for p in SLIM_INCLUDES))
