"""Strip what a finished image should not carry: machine id, logs, apt lists and caches.

What Debian's official images and mmdebstrap remove, each part switched by an option:
- `machine-id`: /etc/machine-id is emptied (kept as a zero-byte file, so systemd generates a new
  id on first boot) and a regular /var/lib/dbus/machine-id is removed;
- `logs`: every file under /var/log, keeping the directories (and their owners and modes);
- `apt-lists`: /var/lib/apt/lists, except its `lock` and `partial` directory (emptied);
- `apt-cache`: /var/cache/apt/*.bin and /var/cache/apt/archives/*.deb;
- `caches`: /var/cache/ldconfig/aux-cache, /var/cache/debconf/*-old, /var/lib/dpkg/*-old;
- `tmp`: everything in /tmp and /var/tmp;
- `ssh-host-keys` (off unless asked): /etc/ssh/ssh_host_*. Nothing regenerates them by itself:
  the image needs something that does on first boot, such as cloud-init (Debian's package
  regenerates ssh host keys) or a unit running `dpkg-reconfigure openssh-server`, or sshd will
  not start.

Symlinks are removed, never followed: nothing outside these directories of the tree is touched.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import stat
from pathlib import Path

from debian_forge.context import StageContext
from debian_forge.stagelib import switch_property


SCHEMA = {
    "properties": {
        "machine-id": switch_property(True, "Empty /etc/machine-id and remove a regular "
                                    "/var/lib/dbus/machine-id"),
        "logs": switch_property(True, "Remove every file under /var/log, keeping directories"),
        "apt-lists": switch_property(True, "Empty /var/lib/apt/lists (apt-get update restores it)"),
        "apt-cache": switch_property(True, "Remove /var/cache/apt/*.bin and downloaded .deb files"),
        "caches": switch_property(True, "Remove the ldconfig aux-cache and the -old backups of "
                                "debconf and dpkg"),
        "tmp": switch_property(True, "Remove everything in /tmp and /var/tmp"),
        "ssh-host-keys": switch_property(False, "Remove /etc/ssh/ssh_host_* (something must "
                                        "regenerate them on first boot)"),
    },
}


def run(ctx: StageContext, options: dict) -> None:
    removed: list[str] = []

    def base(path: str) -> Path | None:
        """A directory of the tree (symlinks resolved inside it), or None when missing."""
        host = ctx.tree.path(path)
        return host if host.is_dir() else None

    def remove(entry: Path) -> None:
        """Remove a file, symlink or whole directory without following any symlink."""
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        removed.append("/" + str(entry.relative_to(ctx.tree.root)))

    def remove_matching(path: str, pattern: str, keep: tuple[str, ...] = ()) -> None:
        directory = base(path)
        if directory is not None:
            for entry in sorted(directory.iterdir()):
                if fnmatch.fnmatchcase(entry.name, pattern) and entry.name not in keep:
                    remove(entry)

    if options.get("machine-id", True):
        etc = base("/etc")
        machine_id = etc / "machine-id" if etc else None
        if machine_id and _is_regular(machine_id) and machine_id.stat().st_size:
            os.truncate(machine_id, 0)
            removed.append("/etc/machine-id (contents)")
        dbus = base("/var/lib/dbus")
        if dbus and _is_regular(dbus / "machine-id"):
            remove(dbus / "machine-id")
    if options.get("logs", True):
        logs = base("/var/log")
        if logs is not None:
            for directory, dirnames, filenames in os.walk(logs, followlinks=False):
                for name in filenames + [d for d in dirnames if os.path.islink(
                        os.path.join(directory, d))]:
                    remove(Path(directory, name))
    if options.get("apt-lists", True):
        remove_matching("/var/lib/apt/lists", "*", keep=("lock", "partial"))
        remove_matching("/var/lib/apt/lists/partial", "*")
    if options.get("apt-cache", True):
        remove_matching("/var/cache/apt", "*.bin")
        remove_matching("/var/cache/apt/archives", "*.deb")
    if options.get("caches", True):
        remove_matching("/var/cache/ldconfig", "aux-cache")
        remove_matching("/var/cache/debconf", "*-old")
        remove_matching("/var/lib/dpkg", "*-old")
    if options.get("tmp", True):
        remove_matching("/tmp", "*")
        remove_matching("/var/tmp", "*")
    if options.get("ssh-host-keys", False):
        remove_matching("/etc/ssh", "ssh_host_*")
    ctx.log.write("".join(f"removed {path}\n" for path in removed) or "nothing to remove\n")


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except FileNotFoundError:
        return False
