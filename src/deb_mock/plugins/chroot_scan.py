"""chroot_scan — copy files such as config.log out of the environment after a failed build.

Off by default. After a build (only a failed one, unless `only_failed: false`), every regular file
of the environment matching one of `patterns` is copied to `chroot_scan/` in the result
directory, keeping its path (`/build/hello-2.10/config.log` →
`chroot_scan/build/hello-2.10/config.log`), and the list of paths goes to build.json under
`chroot_scan`. Patterns are absolute paths inside the environment where `*` and `?` match within
one path component, `**` matches any number of directories and `[…]` a set of characters.
Symbolic links are neither followed nor copied, so nothing outside the environment is read.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path, PurePosixPath

from deb_mock.paths import PathEscape, resolve_in_tree
from deb_mock.plugins import hookimpl

NAME = "chroot_scan"
DEFAULT_ENABLED = False
DEFAULT_OPTIONS = {"patterns": ["/build/**/config.log", "/build/**/CMakeError.log",
                                "/build/**/*.log"],
                   "only_failed": True}
OPTIONS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "patterns": {"type": "array",
                     "items": {"type": "string", "pattern": r"^/(?!(.*/)?\.\.(/|$))[^\0]*$",
                               "x-expected": "an absolute pattern inside the environment, "
                                             "without '..', such as /build/**/*.log"},
                     "description": "Glob patterns of the files to copy."},
        "only_failed": {"type": "boolean",
                        "description": "Scan only after a failed build."},
    },
}
DEST = "chroot_scan"


def pattern_regex(pattern: str) -> re.Pattern:
    """A regex matching the absolute paths a glob pattern (with `**`) names."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:[^/]+/)*"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 2:]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1:end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out += "[" + body.replace("\\", "\\\\") + "]"
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def _fixed_prefix(pattern: str) -> str:
    """The directory part of a pattern before its first wildcard: where to start walking."""
    parts = []
    for part in PurePosixPath(pattern).parts[1:-1]:
        if any(c in part for c in "*?["):
            break
        parts.append(part)
    return "/" + "/".join(parts)


def scan(root: Path, patterns: list[str]) -> list[str]:
    """Paths inside `root` (absolute, as seen inside) of the regular files matching `patterns`."""
    found: set[str] = set()
    for pattern in patterns:
        regex = pattern_regex(pattern)
        try:
            start = resolve_in_tree(root, _fixed_prefix(pattern))
        except PathEscape:
            continue
        if not start.is_dir():
            continue
        for directory, dirs, files in os.walk(start):  # never follows symbolic links
            for name in files:
                host = Path(directory, name)
                inside = "/" + host.relative_to(root).as_posix()
                if regex.match(inside) and stat.S_ISREG(host.lstat().st_mode):
                    found.add(inside)
    return sorted(found)


@hookimpl
def postbuild(env, build, result) -> None:
    options = env.plugins.options(NAME)
    if result.ok and options["only_failed"]:
        return
    dest = Path(build.result_dir) / DEST
    with env.mounted() as root:
        copied = scan(root, options["patterns"])
        for inside in copied:
            target = dest / inside.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / inside.lstrip("/"), target, follow_symlinks=False)
    result.extra[NAME] = copied
