"""overlayfs mounts of layer stacks, and the copy fallback where overlayfs is unavailable.

Callers run inside a private mount namespace (deb-mock enters one per process, so every mount
vanishes with the process, even on SIGKILL). This module neither assumes nor enters one: it
mounts and unmounts in whatever namespace it is called from.

Mount options (see docs/store.md): upper dirs are later renamed into the store and stacked as
lower layers, and materialize() must be able to rebuild a tree from them alone. So every layer
must be self-describing: plain files, whiteouts (char 0/0) and `trusted.overlay.opaque=y`
directories, nothing that points elsewhere. We therefore force, whatever the kernel's or the
module's defaults are:
- redirect_dir=off: renaming a directory from a lower layer fails with EXDEV and tools copy it
  (mv, dpkg do), instead of recording a `trusted.overlay.redirect` pointer into a lower layer;
- metacopy=off: a chmod/chown copies the data too, instead of leaving a metadata-only inode
  whose data lives in a lower layer;
- index=off: no inode index tying the upper dir to the lowers of its first mount (a later mount
  over other lowers fails with ESTALE) and keeping hard-link state in the work dir we discard.
xino stays at its default: it only changes reported inode numbers and writes nothing to layers.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from deb_mock.errors import DebMockError, ExitCode

OVERLAY_OPTIONS = ("index=off", "metacopy=off", "redirect_dir=off")
MAX_LAYERS = 500  # the kernel's OVL_MAX_STACK
OPAQUE_XATTR = "trusted.overlay.opaque"
BUSY_RETRY_SECONDS = 1.0

_MNT_DETACH = 2
_UMOUNT_NOFOLLOW = 8
_libc = ctypes.CDLL(None, use_errno=True)
_supported: dict[int, bool] = {}  # st_dev -> probe result
# Characters the overlay option parser treats specially (',' separates options, ':' layers).
_SPECIAL = re.compile(r"[,:\\\s=]")


class OverlayError(DebMockError):
    """An overlay mount, unmount or copy fallback failed; the message gives the kernel's reason."""

    exit_code = ExitCode.CHROOT


def is_whiteout(st: os.stat_result) -> bool:
    """overlayfs marks a deleted path in an upper dir with a 0/0 character device."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: Path | str) -> bool:
    """A directory whose lower-layer contents are hidden (it was removed and re-created)."""
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def overlay_supported(path: Path) -> bool:
    """Whether overlayfs with whiteouts and opaque dirs works for upper dirs on `path`'s filesystem.

    Probed once per filesystem with a tiny mount in a temporary directory under `path`, which is
    removed again whatever happens.
    """
    dev = os.stat(path).st_dev
    if dev not in _supported:
        _supported[dev] = _probe(Path(path))
    return _supported[dev]


def _probe(path: Path) -> bool:
    try:
        base = Path(tempfile.mkdtemp(prefix=".overlay-probe-", dir=path))
    except OSError:
        return False
    try:
        lower, upper, work, merged = (base / n for n in ("lower", "upper", "work", "merged"))
        for d in (lower / "dir", upper, work, merged):
            d.mkdir(parents=True)
        (lower / "file").write_text("x")
        (lower / "dir" / "file").write_text("x")
        mount_overlay([lower], upper, work, merged)
        try:
            os.unlink(merged / "file")
            shutil.rmtree(merged / "dir")
            os.mkdir(merged / "dir")
            return is_whiteout(os.lstat(upper / "file")) and is_opaque(upper / "dir")
        finally:
            unmount(merged)
    except (OverlayError, OSError):
        return False
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _escape_free(path: str) -> bool:
    return bool(path) and not _SPECIAL.search(path)


def _mount_data(lowers: list[str], upper: str, work: str, stack: ExitStack) -> tuple[str, dict]:
    """The option string, shortened if needed; also maps /proc/self/fd names back to paths.

    mount(2) copies at most one page of options (4 KiB on x86), about 30 store paths. When the
    string does not fit, or a path contains a character the option parser treats specially,
    layers are passed as /proc/self/fd/N of O_PATH descriptors held open during the call: the
    kernel resolves them like any symlink, from this process, with no chdir (threads keep their
    cwd). That fits ~200 layers; chains are cut at full layers long before that.
    """
    limit = os.sysconf("SC_PAGESIZE") - 1
    names: dict[str, str] = {}

    def short(path: str) -> str:
        fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        stack.callback(os.close, fd)
        name = f"/proc/self/fd/{fd}"
        names[name] = path
        return name

    def data() -> str:
        return ",".join([f"lowerdir={':'.join(lowers)}", f"upperdir={upper}", f"workdir={work}",
                         *OVERLAY_OPTIONS])

    upper = upper if _escape_free(upper) else short(upper)
    work = work if _escape_free(work) else short(work)
    lowers = [p if _escape_free(p) else short(p) for p in lowers]
    if len(data().encode()) > limit:
        lowers = [p if p in names else short(p) for p in lowers]
    if len(data().encode()) > limit:
        upper, work = (p if p in names else short(p) for p in (upper, work))
    if len(data().encode()) > limit:
        raise OverlayError(
            f"cannot mount a stack of {len(lowers)} layers: the overlay options exceed the "
            f"kernel's {limit + 1}-byte limit; commit a full (flattened) layer to shorten the chain"
        )
    return data(), names


class _KernelLog:
    """Collects the kernel's log lines about overlayfs written while a mount is attempted.

    mount(2) only returns an errno; the reason ("failed to resolve '/x': -2") goes to the kernel
    log. /dev/kmsg may be unreadable (containers): then there is just the errno.
    """

    def __enter__(self) -> "_KernelLog":
        try:
            self.fd: int | None = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.lseek(self.fd, 0, os.SEEK_END)
        except OSError:
            self.fd = None
        return self

    def lines(self) -> list[str]:
        out: list[str] = []
        while self.fd is not None:
            try:
                record = os.read(self.fd, 8192)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # ring buffer overrun: records were lost, go on
                    continue
                break
            if not record:
                break
            text = record.decode(errors="replace").split(";", 1)[-1].split("\n", 1)[0]
            if text.startswith("overlay"):
                out.append(text)
        return out

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)


def mount_overlay(lowers: Sequence[Path], upper: Path, work: Path, target: Path) -> None:
    """Mount an overlay of `lowers` (top first) with writable `upper` at `target`.

    `work` must be an empty directory on the same filesystem as `upper`. Unmount with unmount()
    before committing `upper` to the store.
    """
    if not lowers:
        raise OverlayError(f"cannot mount an overlay on {target} without any lower layer")
    if len(lowers) > MAX_LAYERS:
        raise OverlayError(f"cannot mount {len(lowers)} layers on {target}: the kernel allows "
                           f"{MAX_LAYERS}; commit a full (flattened) layer to shorten the chain")
    paths = [os.path.abspath(p) for p in lowers]
    upper_s, work_s, target_s = (os.path.abspath(p) for p in (upper, work, target))
    for what, p in [*(("lower layer", p) for p in paths), ("upper dir", upper_s),
                    ("work dir", work_s), ("mount point", target_s)]:
        if not os.path.isdir(p):
            raise OverlayError(
                f"cannot mount an overlay on {target_s}: {what} {p} is not a directory")
    with ExitStack() as stack:
        data, names = _mount_data(paths, upper_s, work_s, stack)
        with _KernelLog() as log:
            rc = _libc.mount(b"overlay", os.fsencode(target_s), b"overlay", 0, os.fsencode(data))
            err = ctypes.get_errno()
            if rc == 0:
                return
            said = log.lines()
    reason = os.strerror(err)
    hints = {errno.EPERM: " (mounting needs root: CAP_SYS_ADMIN)",
             errno.ENODEV: " (the kernel has no overlayfs: modprobe overlay)"}
    message = f"cannot mount overlayfs on {target_s}: {reason}{hints.get(err, '')}"
    if said:
        text = "; ".join(said)
        for name, path in names.items():  # say the real path, not /proc/self/fd/N
            text = re.sub(re.escape(name) + r"(?!\d)", path, text)
        message += f"; the kernel said: {text}"
    raise OverlayError(message)


def _umount_one(mountpoint: str, lazy_fallback: bool) -> None:
    deadline = time.monotonic() + BUSY_RETRY_SECONDS
    path = os.fsencode(mountpoint)
    while True:
        if _libc.umount2(path, _UMOUNT_NOFOLLOW) == 0:
            return
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOENT):
            return  # not mounted (any more), e.g. detached together with its parent
        if err != errno.EBUSY:
            raise OverlayError(f"cannot unmount {mountpoint}: {os.strerror(err)}")
        if time.monotonic() < deadline:
            time.sleep(0.05)  # a process that just exited may still pin it for a moment
            continue
        if not lazy_fallback:
            raise OverlayError(f"cannot unmount {mountpoint}: it is busy (a process still uses it)")
        # Detach now; the kernel frees it when the last user goes away.
        if _libc.umount2(path, _MNT_DETACH | _UMOUNT_NOFOLLOW) == 0:
            return
        err = ctypes.get_errno()
        raise OverlayError(f"cannot detach {mountpoint}: {os.strerror(err)}")


def unmount(target: Path, lazy_fallback: bool = True) -> None:
    """Unmount `target` and anything mounted below it (deepest first).

    Nothing mounted there is not an error, so cleanup paths can call it unconditionally. A busy
    mount is retried for a moment, then detached lazily unless `lazy_fallback` is False.
    """
    for mountpoint in reversed(mounts_under(target)):
        _umount_one(mountpoint, lazy_fallback)


def _unescape(field: bytes) -> str:
    # The kernel writes space, tab, newline and backslash in mount points as \ooo.
    return os.fsdecode(re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), field))


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` in this mount namespace, in mount order (parents first)."""
    root = os.path.realpath(path)
    prefix = root.rstrip("/") + "/"
    out = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            mountpoint = _unescape(line.split(b" ")[4])
            if mountpoint == root or mountpoint.startswith(prefix):
                out.append(mountpoint)
    return out


# --- copy fallback -----------------------------------------------------------------------


def _remove(path: str, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _overlay_xattrs(path: str) -> list[str]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return []
    return [n for n in names if n.startswith("trusted.overlay.")]


def _prepare(layer: Path, target: Path) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Apply `layer`'s deletions to `target` before its files are copied over it.

    Removes what whiteouts delete, what opaque dirs hide, and every destination the layer
    replaces with something of another type or with a new file. Existing non-directories are
    unlinked rather than overwritten, so cp never writes through a symlink in the target (an
    absolute one would point into the host) nor into an inode hard-linked elsewhere in the tree.
    Returns the whiteouts (relative paths) and the trusted.overlay.* xattrs to strip after cp.
    """
    whiteouts: list[str] = []
    xattrs: list[tuple[str, list[str]]] = []
    names = _overlay_xattrs(os.fspath(layer))
    if names:
        xattrs.append((".", names))
    if is_opaque(layer):
        with os.scandir(target) as it:
            for entry in it:
                _remove(entry.path, entry.stat(follow_symlinks=False))
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        with os.scandir(layer / rel_dir) as it:
            for entry in it:
                rel = os.path.join(rel_dir, entry.name)
                src_st = entry.stat(follow_symlinks=False)
                dst = os.path.join(target, rel)
                try:
                    dst_st: os.stat_result | None = os.lstat(dst)
                except FileNotFoundError:
                    dst_st = None
                if is_whiteout(src_st):
                    whiteouts.append(rel)
                    if dst_st is not None:
                        _remove(dst, dst_st)
                    continue
                names = _overlay_xattrs(entry.path)
                if names:
                    xattrs.append((rel, names))
                if stat.S_ISDIR(src_st.st_mode):
                    opaque = OPAQUE_XATTR in names and is_opaque(entry.path)
                    if dst_st is not None and (opaque or not stat.S_ISDIR(dst_st.st_mode)):
                        _remove(dst, dst_st)
                    stack.append(rel)
                elif dst_st is not None:
                    _remove(dst, dst_st)
    return whiteouts, xattrs


def materialize(layers: Sequence[Path], target: Path) -> None:
    """Build in `target` the full tree an overlay of `layers` (top first, as mount_overlay) shows.

    The copy fallback where overlayfs is unavailable: layers are applied bottom first with
    `cp -a --reflink=auto` (cheap on btrfs/XFS), whiteouts delete, opaque dirs replace, and the
    overlay bookkeeping (whiteout nodes, trusted.overlay.* xattrs) is not carried into `target`.
    `target` should be empty or missing.
    """
    cp = shutil.which("cp")
    if cp is None:
        raise OverlayError("cannot copy layers: cp is missing (install coreutils)")
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    for layer in reversed([Path(p) for p in layers]):
        if not layer.is_dir():
            raise OverlayError(f"cannot copy layer {layer}: not a directory")
        whiteouts, xattrs = _prepare(layer, target)
        proc = subprocess.run([cp, "-a", "--reflink=auto", "--", f"{layer}/.", f"{target}/"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise OverlayError(f"cannot copy layer {layer} into {target}: {proc.stderr.strip()}")
        for rel in whiteouts:
            path = target / rel
            try:
                if is_whiteout(os.lstat(path)):
                    os.unlink(path)
            except FileNotFoundError:
                pass
        for rel, names in xattrs:
            for name in names:
                try:
                    os.removexattr(target / rel, name, follow_symlinks=False)
                except OSError:
                    pass  # gone with a later removal, or never copied
