"""The one sandbox: every command that runs inside a tree goes through here (DESIGN.md, 4).

bubblewrap binds the tree as `/` and gives it `/proc`, a minimal `/dev`, tmpfs `/tmp` and `/run`,
a cleared environment, its own PID/IPC/UTS namespaces and — unless the caller asks — no network.
bwrap dies with us (--die-with-parent) and, as PID 1 of its namespace, takes every process of the
command with it, so nothing survives an interrupted run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Mapping, Sequence

from deb_mock.errors import HostError
from deb_mock.namespace import die_with_parent

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Bind:
    """A host path made visible inside the sandbox."""

    source: Path
    target: str
    readonly: bool = True
    device: bool = False  # a device node (a loop device, its partitions): usable inside


@dataclass(frozen=True)
class Tmpfs:
    """A fresh tmpfs at `target` inside the sandbox (RAM-backed scratch space)."""

    target: str
    size: str | None = None  # e.g. "4G"; the kernel's default (half the RAM) when None


@dataclass(frozen=True)
class User:
    """Run the command as this unprivileged user instead of root."""

    name: str
    uid: int
    gid: int
    home: str


@dataclass
class ExecResult:
    """What a command did: its exit status and, when captured, its output."""

    returncode: int
    stdout: str = ""
    stderr: str = ""
    argv: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def require_tool(tool: str, package: str) -> str:
    """The path of a host tool, or a HostError naming the Debian package that provides it."""
    path = shutil.which(tool)
    if path is None:
        raise HostError(f"'{tool}' is not installed on this host: apt-get install {package}")
    return path


def bwrap_argv(root: Path, argv: Sequence[str], *, network: bool = False, user: User | None = None,
               env: Mapping[str, str] | None = None, binds: Sequence[Bind | Tmpfs] = (), cwd: str = "/",
               interactive: bool = False, hostname: str = "deb-mock",
               readonly_root: bool = False) -> list[str]:
    """The bubblewrap command line that runs `argv` inside `root`."""
    args = [require_tool("bwrap", "bubblewrap"), "--ro-bind" if readonly_root else "--bind",
            str(root), "/",
            "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp",
            "--tmpfs", "/run",
            "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", hostname,
            "--die-with-parent", "--clearenv"]
    if not network:
        args.append("--unshare-net")
    elif Path("/etc/resolv.conf").exists():
        # Name resolution as the host has it, without writing the host's file into the tree.
        args += ["--ro-bind", str(Path("/etc/resolv.conf").resolve()), "/etc/resolv.conf"]
    if not interactive:
        args.append("--new-session")  # no TIOCSTI into the caller's terminal
    made: set[str] = set()
    for bind in binds:
        # bwrap makes missing mount points 0700: on the fresh /run and /tmp, make their
        # parents 0755 so an unprivileged user can reach what is bound there.
        for parent in reversed(Path(bind.target).parents):
            name = str(parent)
            if name.startswith(("/run/", "/tmp/")) and name not in made:
                made.add(name)
                args += ["--perms", "0755", "--dir", name]
        if isinstance(bind, Tmpfs):
            if bind.size:
                from deb_mock.config import parse_size

                args += ["--size", str(parse_size(bind.size, "tmpfs size"))]
            args += ["--perms", "1777", "--tmpfs", bind.target]
        else:
            kind = "--dev-bind" if bind.device else "--ro-bind" if bind.readonly else "--bind"
            args += [kind, str(bind.source), bind.target]
    environment = {"PATH": DEFAULT_PATH, "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive",
                   "HOME": user.home if user else "/root", "USER": user.name if user else "root",
                   "LOGNAME": user.name if user else "root"}
    if interactive and os.environ.get("TERM"):
        environment["TERM"] = os.environ["TERM"]
    environment.update(env or {})
    for key, value in environment.items():
        args += ["--setenv", key, value]
    args += ["--chdir", cwd, "--"]
    if user is not None:
        args += ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups", "--"]
    return args + list(argv)


def run(root: Path, argv: Sequence[str], *, network: bool = False, user: User | None = None,
        env: Mapping[str, str] | None = None, binds: Sequence[Bind | Tmpfs] = (), cwd: str = "/",
        capture: bool = False, echo: bool = True, log: IO[str] | None = None,
        stdin: int | IO | None = None, interactive: bool = False,
        timeout: float | None = None, hostname: str = "deb-mock",
        readonly_root: bool = False) -> ExecResult:
    """Run `argv` inside `root` and wait for it.

    Output goes to `log` (if given), to our stdout/stderr (if `echo`) and into the result (if
    `capture`). `interactive` hands the terminal to the command (for `shell`), nothing is
    captured then. `readonly_root` binds `root` read-only (a build root running host tools).
    """
    full = bwrap_argv(root, argv, network=network, user=user, env=env, binds=binds, cwd=cwd,
                      interactive=interactive, hostname=hostname, readonly_root=readonly_root)
    if interactive:
        proc = subprocess.Popen(full, preexec_fn=die_with_parent)
        return ExecResult(_wait(proc, timeout), argv=list(argv))
    proc = subprocess.Popen(full, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=die_with_parent)
    out: list[str] = []
    err: list[str] = []
    lock = threading.Lock()
    pumps = [threading.Thread(target=_pump, args=(proc.stdout, out if capture else None, log,
                                                  sys.stdout if echo else None, lock)),
             threading.Thread(target=_pump, args=(proc.stderr, err if capture else None, log,
                                                  sys.stderr if echo else None, lock))]
    for pump in pumps:
        pump.start()
    returncode = _wait(proc, timeout)
    for pump in pumps:
        pump.join()
    return ExecResult(returncode, "".join(out), "".join(err), list(argv))


def _pump(stream, keep: list[str] | None, log: IO[str] | None, echo: IO[str] | None,
          lock: threading.Lock) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace")
        if keep is not None:
            keep.append(line)
        with lock:
            if log is not None:
                log.write(line)
            if echo is not None:
                echo.write(line)
                echo.flush()
    stream.close()


def _wait(proc: subprocess.Popen, timeout: float | None) -> int:
    try:
        return proc.wait(timeout=timeout)
    except BaseException:
        # Interrupted or timed out: bwrap is PID 1's parent; killing it ends the whole sandbox.
        proc.kill()
        proc.wait()
        raise
