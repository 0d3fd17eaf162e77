"""Loop devices over image files that cannot outlive the code that uses them.

A device is bound with LO_FLAGS_AUTOCLEAR and we keep one descriptor on it for the lifetime of
the context: the kernel detaches it when the last descriptor closes, which happens when the
context exits, when its body raises, and when the process dies, SIGKILL included (mounts made in
deb-mock's private mount namespace go away with it and release their hold too).

Setup is LOOP_CTL_GET_FREE + LOOP_CONFIGURE (Linux >= 5.8), which binds the file and sets the
flags in one ioctl, so there is no moment at which a bound device lacks autoclear. On older
kernels we fall back to LOOP_SET_FD + LOOP_SET_STATUS64; a process killed between those two
leaves a device without autoclear, which `release_stale` cleans up.

Device nodes: /dev is normally devtmpfs, where the kernel creates /dev/loopN and the partition
nodes /dev/loopNpM itself. Where /dev is a plain tmpfs without udev (some containers), we create
the missing nodes from sysfs major:minor and remove the ones we made when the context exits.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import re
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from deb_mock.errors import DebMockError, ExitCode

# <linux/loop.h>
LOOP_SET_FD = 0x4C00
LOOP_CLR_FD = 0x4C01
LOOP_SET_STATUS64 = 0x4C04
LOOP_CONFIGURE = 0x4C0A
LOOP_CTL_GET_FREE = 0x4C82
LO_FLAGS_READ_ONLY = 1
LO_FLAGS_AUTOCLEAR = 4
LO_FLAGS_PARTSCAN = 8
LO_NAME_SIZE = 64
LO_KEY_SIZE = 32

SYS_BLOCK = Path("/sys/block")
DEV = Path("/dev")
LOOP_CONTROL = DEV / "loop-control"
ATTACH_ATTEMPTS = 10  # LOOP_CTL_GET_FREE -> bind races with other processes taking the same N
NODE_WAIT = 0.5  # seconds we give udev to create partition nodes before making them ourselves
RELEASE_WAIT = 2.0  # seconds we wait for the kernel to finish detaching after the last close

_use_configure = True  # cleared once LOOP_CONFIGURE failed and the two-step way worked
_made_nodes: dict[str, list[Path]] = {}  # /dev/loopN -> nodes we created for it


class LoopError(DebMockError):
    """A loop device could not be set up, listed or released; the message says why."""

    exit_code = ExitCode.CHROOT


class _LoopInfo64(ctypes.Structure):
    _fields_ = [
        ("lo_device", ctypes.c_uint64),
        ("lo_inode", ctypes.c_uint64),
        ("lo_rdevice", ctypes.c_uint64),
        ("lo_offset", ctypes.c_uint64),
        ("lo_sizelimit", ctypes.c_uint64),
        ("lo_number", ctypes.c_uint32),
        ("lo_encrypt_type", ctypes.c_uint32),
        ("lo_encrypt_key_size", ctypes.c_uint32),
        ("lo_flags", ctypes.c_uint32),
        ("lo_file_name", ctypes.c_char * LO_NAME_SIZE),
        ("lo_crypt_name", ctypes.c_char * LO_NAME_SIZE),
        ("lo_encrypt_key", ctypes.c_char * LO_KEY_SIZE),
        ("lo_init", ctypes.c_uint64 * 2),
    ]


class _LoopConfig(ctypes.Structure):
    _fields_ = [
        ("fd", ctypes.c_uint32),
        ("block_size", ctypes.c_uint32),
        ("info", _LoopInfo64),
        ("reserved", ctypes.c_uint64 * 8),
    ]


@contextmanager
def loop_device(image: Path, *, offset: int = 0, size: int | None = None, partscan: bool = False,
                read_only: bool = False) -> Iterator[Path]:
    """Attach `image` (bytes offset/size) to a free loop device; yields /dev/loopN.

    Released on exit, also when the body raises, and by the kernel if we die. With `partscan`
    its partitions are known to the kernel inside the context (see partition_devices)."""
    image = Path(image)
    if offset < 0 or (size is not None and size <= 0):
        raise LoopError(f"{image}: bad loop range offset={offset} size={size}")
    info = _LoopInfo64(lo_offset=offset, lo_sizelimit=size or 0,
                       lo_flags=LO_FLAGS_AUTOCLEAR | (LO_FLAGS_PARTSCAN if partscan else 0))
    info.lo_file_name = os.fsencode(os.path.abspath(image))[:LO_NAME_SIZE - 1]
    fd, device = _attach(image, info, read_only)
    try:
        if partscan and not _sys_partitions(device):
            _add_partitions(device)
        yield device
    finally:
        os.close(fd)
        for node in _made_nodes.pop(str(device), []):
            _remove_node(node)
        released = _wait_released(device, image)
    if not released:  # only reported when the body succeeded: never hide its exception
        raise LoopError(f"{device} ({image}) is still in use after its user finished: something "
                        "still has it or a partition open or mounted. The kernel detaches it "
                        "when that is closed.")


def partition_devices(loop: Path) -> list[Path]:
    """/dev/loopNp1... of a device attached with partscan, in partition order.

    Nodes that neither devtmpfs nor udev made within NODE_WAIT are created from sysfs; the
    loop_device context that owns `loop` removes them when it exits."""
    loop = Path(loop)
    parts = [(number, loop.parent / sysdir.name, _sys_devno(sysdir))
             for number, sysdir in _sys_partitions(loop)]
    deadline = time.monotonic() + NODE_WAIT
    while not all(_is_node(node, devno) for _, node, devno in parts):
        if time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    for _, node, devno in parts:
        if not _is_node(node, devno):
            _make_node(node, devno)
            _made_nodes.setdefault(str(loop), []).append(node)
    return [node for _, node, _ in parts]


def _sys_partitions(loop: Path) -> list[tuple[int, Path]]:
    """(number, sysfs dir) of the partitions the kernel knows on `loop`, in order."""
    parts = []
    for entry in (SYS_BLOCK / loop.name).glob(f"{loop.name}p*"):
        match = re.fullmatch(re.escape(loop.name) + r"p(\d+)", entry.name)
        if match and (entry / "partition").exists():
            parts.append((int(match.group(1)), entry))
    return sorted(parts)


def _add_partitions(device: Path) -> None:
    """Kernels built without partition table parsers (CONFIG_MSDOS_PARTITION, CONFIG_EFI_PARTITION
    unset: minimal VM kernels) scan nothing. If libblkid sees a table, add its partitions with
    BLKPG_ADD_PARTITION (partx); the kernel still drops them when the device is detached."""
    probe = subprocess.run(["blkid", "--probe", "--output", "value", "--match-tag", "PTTYPE",
                            str(device)], capture_output=True, text=True)
    if probe.returncode not in (0, 2):
        raise LoopError(f"cannot read the partition table on {device}: {probe.stderr.strip()}")
    if not probe.stdout.strip():  # no partition table (2: nothing at all; 0: a filesystem)
        return
    add = subprocess.run(["partx", "--add", str(device)], capture_output=True, text=True)
    if add.returncode != 0:
        raise LoopError(f"the kernel found no partitions on {device} and adding the "
                        f"{probe.stdout.strip()} table's partitions failed: {add.stderr.strip()}")


def attached_to(image: Path) -> list[Path]:
    """Loop devices whose backing file is `image`, as /dev/loopN, lowest N first."""
    wanted = os.path.realpath(image)
    found = []
    for sysdir, backing in _bound_devices():
        same = backing == wanted
        if not same:
            try:
                same = os.path.samefile(backing, image)
            except OSError:
                pass
        if same:
            found.append(DEV / sysdir.name)
    return found


def release_stale(directory: Path) -> list[Path]:
    """Detach the loop devices whose backing file lies under `directory` and that nothing uses.

    "Uses" means: a process holds a descriptor on the device or one of its partitions, a
    filesystem on it is mounted in any namespace, or another block device (device mapper) sits
    on it. Returns the devices detached."""
    root = os.path.realpath(directory)
    released = []
    for sysdir, backing in _bound_devices():
        if os.path.commonpath([root, backing]) != root:
            continue
        try:
            devno = _sys_devno(sysdir)
            devnos = {devno} | {_sys_devno(entry) for _, entry in _sys_partitions(sysdir)}
            if any((sysdir / "holders").iterdir()) or _opened_by_a_process(devnos):
                continue
        except FileNotFoundError:  # its partitions went away under us: it is being detached
            continue
        device = DEV / sysdir.name
        made_node = _ensure_node(device, devno)
        try:
            if _detach_unused(device, backing):
                released.append(device)
        finally:
            if made_node:
                _remove_node(device)
    return released


def _detach_unused(device: Path, backing: str) -> bool:
    try:
        # O_EXCL fails with EBUSY while a filesystem on the device or a partition is mounted.
        fd = os.open(device, os.O_RDONLY | os.O_EXCL | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.EBUSY, errno.ENXIO, errno.ENOENT):
            return False
        raise LoopError(f"cannot open {device} to release it: {exc.strerror}") from None
    try:
        fcntl.ioctl(fd, LOOP_CLR_FD)  # takes effect when we close our descriptor, the last one
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # it detached itself meanwhile
            return False
        raise LoopError(f"cannot detach {device} ({backing}): {exc.strerror}") from None
    finally:
        os.close(fd)
    return _wait_released(device, Path(backing))


def _attach(image: Path, info: _LoopInfo64, read_only: bool) -> tuple[int, Path]:
    """Bind `image` to a free device; returns our descriptor on the device and its path."""
    mode = os.O_RDONLY if read_only else os.O_RDWR
    try:
        image_fd = os.open(image, mode | os.O_CLOEXEC)
    except OSError as exc:
        raise LoopError(f"cannot open image {image}: {exc.strerror}") from None
    try:
        for _ in range(ATTACH_ATTEMPTS):
            device, made_node = _free_device()
            try:
                fd = _bind(device, image_fd, info, mode, read_only)
            except BaseException:
                if made_node:
                    _remove_node(device)
                raise
            if fd is not None:
                if made_node:
                    _made_nodes.setdefault(str(device), []).append(device)
                return fd, device
            if made_node:
                _remove_node(device)
            time.sleep(0.01)
        raise LoopError(f"cannot attach {image}: every free loop device was taken by another "
                        f"process before we could bind it ({ATTACH_ATTEMPTS} attempts)")
    finally:
        os.close(image_fd)


def _bind(device: Path, image_fd: int, info: _LoopInfo64, mode: int, read_only: bool) -> int | None:
    """Our descriptor on `device` with the image bound; None if another process bound it first."""
    global _use_configure
    try:
        fd = os.open(device, mode | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ENXIO, errno.ENOENT):  # removed through loop-control meanwhile
            return None
        raise LoopError(f"cannot open {device}: {exc.strerror}") from None
    try:
        if _use_configure:
            config = _LoopConfig(fd=image_fd, info=info)
            config.info.lo_flags |= LO_FLAGS_READ_ONLY if read_only else 0
            try:
                fcntl.ioctl(fd, LOOP_CONFIGURE, config)
                return fd
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOTTY):
                    raise
                # Linux < 5.8 answers EINVAL too: try the two-step way (the file mode alone
                # decides read-only there) and only stop trying LOOP_CONFIGURE if that works.
        fcntl.ioctl(fd, LOOP_SET_FD, image_fd)
        try:
            fcntl.ioctl(fd, LOOP_SET_STATUS64, info)
        except OSError:
            fcntl.ioctl(fd, LOOP_CLR_FD)
            raise
        _use_configure = False
        return fd
    except OSError as exc:
        os.close(fd)
        if exc.errno == errno.EBUSY:  # another process bound this N between GET_FREE and us
            return None
        raise LoopError(f"cannot attach to {device}: {exc.strerror}") from None
    except BaseException:
        os.close(fd)
        raise


def _free_device() -> tuple[Path, bool]:
    """The device LOOP_CTL_GET_FREE names, and whether we had to create its node."""
    try:
        ctl = os.open(LOOP_CONTROL, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise LoopError(f"cannot open {LOOP_CONTROL}: {exc.strerror} "
                        "(is the loop module loaded, and is this root?)") from None
    try:
        number = fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)
    except OSError as exc:
        raise LoopError(f"no free loop device: {exc.strerror}") from None
    finally:
        os.close(ctl)
    device = DEV / f"loop{number}"
    return device, _ensure_node(device, _sys_devno(SYS_BLOCK / device.name))


def _ensure_node(device: Path, devno: int) -> bool:
    """Make the node if devtmpfs did not; True when we made it (and so must remove it)."""
    if _is_node(device, devno):
        return False
    _make_node(device, devno)
    return True


def _bound_devices() -> Iterator[tuple[Path, str]]:
    """(sysfs dir, backing file path) of every bound loop device."""
    devices = [p for p in SYS_BLOCK.glob("loop*") if p.name[4:].isdigit()]
    for sysdir in sorted(devices, key=lambda p: int(p.name[4:])):
        try:
            backing = (sysdir / "loop/backing_file").read_text().rstrip("\n")
        except OSError:  # not bound (the loop/ group exists only while a file is attached)
            continue
        yield sysdir, backing.removesuffix(" (deleted)")


def _opened_by_a_process(devnos: set[int]) -> bool:
    """Whether any process (in any mount namespace) has one of these block devices open."""
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            names = os.listdir(fd_dir)
        except OSError:  # the process exited
            continue
        for name in names:
            link = fd_dir / name
            try:
                if not os.readlink(link).startswith("/"):  # socket:[…], pipe:[…], anon_inode:
                    continue
                st = os.stat(link)  # the open file itself, whatever name it has in its namespace
            except OSError:
                continue
            if stat.S_ISBLK(st.st_mode) and st.st_rdev in devnos:
                return True
    return False


def _wait_released(device: Path, image: Path) -> bool:
    """Wait (RELEASE_WAIT at most) until `device` no longer has `image` bound; True if so."""
    deadline = time.monotonic() + RELEASE_WAIT
    while True:
        try:
            backing = (SYS_BLOCK / device.name / "loop/backing_file").read_text().rstrip("\n")
        except OSError:
            return True
        if backing.removesuffix(" (deleted)") != os.path.realpath(image):
            return True  # detached, and already bound again by someone else
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def _sys_devno(sysdir: Path) -> int:
    major, minor = (sysdir / "dev").read_text().split(":")
    return os.makedev(int(major), int(minor))


def _is_node(node: Path, devno: int) -> bool:
    try:
        st = os.stat(node)
    except OSError:
        return False
    return stat.S_ISBLK(st.st_mode) and st.st_rdev == devno


def _make_node(node: Path, devno: int) -> None:
    try:
        if os.path.lexists(node):
            os.unlink(node)  # a stale node with another major:minor
        os.mknod(node, 0o600 | stat.S_IFBLK, devno)
    except OSError as exc:
        raise LoopError(f"cannot create device node {node} "
                        f"({os.major(devno)}:{os.minor(devno)}): {exc.strerror}") from None


def _remove_node(node: Path) -> None:
    try:
        os.unlink(node)
    except FileNotFoundError:
        pass
