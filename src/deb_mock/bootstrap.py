"""Base environments: mmdebstrap fed, offline, with exactly the packages resolved beforehand.

The resolved packages are fetched into the shared package cache, hard-linked into the new tree's
/var/cache/apt/archives together with the verified indexes, and mmdebstrap runs with
`--skip=update` in a network namespace of its own. It therefore cannot install anything but the
resolved set: the base layer's ID (a hash of that set) describes its content.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Callable, IO, Sequence

from deb_mock.apt_host import HostApt, ResolvedPackage, SourceEntry
from deb_mock.errors import ChrootError
from deb_mock.namespace import die_with_parent
from deb_mock.sandbox import require_tool

KEYRING_DIR = "/etc/apt/keyrings"  # where extra repositories' keys live inside trees

# What each mmdebstrap variant installs, as apt requests (mmdebstrap(1), "--variant").
_ESSENTIAL = ["?essential"]
_REQUIRED = _ESSENTIAL + ["?priority(required)", "apt"]
VARIANT_REQUESTS: dict[str, list[str]] = {
    "extract": [],
    "custom": [],
    "essential": _ESSENTIAL,
    "apt": _ESSENTIAL + ["apt"],
    "required": _REQUIRED,
    "minbase": _REQUIRED,
    "buildd": _REQUIRED + ["build-essential"],
    "important": _REQUIRED + ["?priority(important)"],
    "standard": _REQUIRED + ["?priority(important)", "?priority(standard)"],
}


def base_request(variant: str, packages: Sequence[str]) -> list[str]:
    """The apt request whose resolution is the base's package set."""
    return VARIANT_REQUESTS[variant] + list(packages)


def mirror_lines(sources: Sequence[SourceEntry]) -> list[str]:
    """sources.list lines for mmdebstrap; written into the tree as its /etc/apt/sources.list."""
    lines = []
    for source in sources:
        options = []
        if source.signed_by:
            options.append(f"signed-by={source.signed_by}")
        if source.trusted:
            options.append("trusted=yes")
        prefix = f"deb [{' '.join(options)}] " if options else "deb "
        for suite in source.suites:
            lines.append(f"{prefix}{source.uri} {suite} {' '.join(source.components)}".rstrip())
    return lines


def run_mmdebstrap(*, target: Path, suite: str, variant: str, architecture: str,
                   sources: Sequence[SourceEntry], includes: Sequence[str], archives: Path,
                   host_apt: HostApt, customize: Sequence[str], log: IO[str],
                   on_line: Callable[[str], None]) -> None:
    """Bootstrap `target` offline from `archives` (the resolved .debs) and the verified indexes."""
    mmdebstrap = require_tool("mmdebstrap", "mmdebstrap")
    lists = " ".join(shlex.quote(str(path)) for path in host_apt.index_files())
    argv = [
        require_tool("unshare", "util-linux"), "--net", "--pid", "--fork", "--kill-child",
        mmdebstrap, "--mode=root", f"--variant={variant}", f"--architectures={architecture}",
        "--skip=update", "--skip=cleanup/apt/lists", "--skip=check/signed-by",
        "--dpkgopt=force-unsafe-io",  # a build environment: fsync costs minutes, buys nothing
        '--aptopt=APT::Install-Recommends "false"',
        '--aptopt=Acquire::Languages "none"',
        f'--setup-hook=cp -al {shlex.quote(str(archives))}/. "$1"/var/cache/apt/archives/',
        f'--setup-hook=cp -p {lists} "$1"/var/lib/apt/lists/',
    ]
    if any(source.key is not None for source in sources):
        keys = shlex.quote(str(host_apt.keyring_dir))
        argv.append(f'--setup-hook=mkdir -p "$1"{KEYRING_DIR} && cp -rp {keys}/. "$1"{KEYRING_DIR}/')
    if includes:
        argv.append("--include=" + ",".join(includes))
    argv += [f"--customize-hook={hook}" for hook in customize]
    argv += [suite, str(target), *mirror_lines(sources)]
    log.write("+ " + shlex.join(argv) + "\n")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
    tail: list[str] = []
    assert proc.stdout is not None
    try:
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace")
            log.write(line)
            on_line(line)
            tail = (tail + [line.rstrip()])[-15:]
        returncode = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if returncode != 0:
        raise ChrootError(f"mmdebstrap failed (exit {returncode}) bootstrapping {suite}/"
                          f"{architecture}; last lines of root.log:\n  " + "\n  ".join(tail))


def user_hooks(name: str, uid: int) -> list[str]:
    """customize hooks that create the unprivileged build user and its build directory."""
    return [
        f'chroot "$1" useradd --create-home --uid {uid} --user-group --shell /bin/bash {name}',
        f'mkdir -p "$1"/build && chroot "$1" chown {uid}:{uid} /build',
        # mmdebstrap copies the host's hostname; an environment has its own.
        'echo deb-mock > "$1"/etc/hostname',
    ]


def package_specs(packages: Sequence[ResolvedPackage]) -> list[str]:
    return [f"{p.name}={p.version}:{p.architecture}" for p in packages]
