"""Process-level isolation of mounts and children.

deb-mock moves itself into a private mount namespace before it mounts anything: every overlay
and bind it makes is then invisible to the host and disappears with the process, also when it is
SIGKILLed. Children get a parent-death signal so none outlives us.
"""

from __future__ import annotations

import ctypes
import os
import signal

from deb_mock.errors import HostError

_CLONE_NEWNS = 0x00020000
_MS_REC = 0x4000
_MS_PRIVATE = 1 << 18
_PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(None, use_errno=True)
_entered = False


def enter_private_mount_namespace() -> None:
    """Unshare the mount namespace of this process (once) and stop propagation to the host."""
    global _entered
    if _entered:
        return
    if os.geteuid() != 0:
        raise HostError("this needs root: it mounts overlay filesystems and runs bubblewrap "
                        "as root (like mock with its group, or osbuild). Run it with sudo.")
    if _libc.unshare(_CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise HostError(f"cannot create a private mount namespace: {os.strerror(err)} "
                        "(this needs CAP_SYS_ADMIN and a single-threaded process)")
    if _libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        err = ctypes.get_errno()
        raise HostError(f"cannot make mounts private: {os.strerror(err)}")
    _entered = True


def die_with_parent() -> None:
    """preexec_fn for children: SIGKILL them when deb-mock dies, whatever kills it."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
