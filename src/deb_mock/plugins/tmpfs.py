"""tmpfs — run package builds on a RAM-backed tmpfs.

Off by default. Mounts a fresh tmpfs of at most `size` at `dir` (by default `/build`, where builds
happen) in the package build's sandbox: fast for builds with much small I/O, when the host has
the memory. Like every mount of the sandbox it lives for one command: what the build leaves there
is gone when the command ends, so the build must copy its results out within that command (the
package build does), and chroot_scan finds nothing under it afterwards. `chroot` and `shell`
are not affected.
"""

from __future__ import annotations

from deb_mock.plugins import hookimpl
from deb_mock.sandbox import Tmpfs

NAME = "tmpfs"
DEFAULT_ENABLED = False
DEFAULT_OPTIONS = {"size": "4G", "dir": "/build"}
OPTIONS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        # Everything this pattern accepts, deb_mock.config.parse_size accepts; bubblewrap refuses
        # a size of 0, so at least one digit of the number is not 0.
        "size": {"type": ["string", "integer", "null"], "minimum": 1,
                 "pattern": r"^\s*(?=[0-9.]*[1-9])[0-9]+(\.[0-9]+)?\s*"
                            r"([KkMmGgTt](i?[Bb])?|[Bb])?\s*$",
                 "x-expected": "a size such as 4G, 512M or a number of bytes, more than 0",
                 "description": "Largest size of the tmpfs (K, M, G, T are powers of 1024); "
                                "null: the kernel's default, half the RAM."},
        "dir": {"type": "string", "pattern": r"^/(?!(.*/)?\.\.(/|$))[^\0]*$",
                "x-expected": "an absolute path inside the environment such as /build",
                "description": "Where the tmpfs is mounted inside the environment."},
    },
}


@hookimpl
def sandbox_mounts(env, purpose) -> list:
    if purpose != "build":
        return []
    options = env.plugins.options(NAME)
    size = options["size"]
    return [Tmpfs(options["dir"], None if size is None else str(size).strip())]
