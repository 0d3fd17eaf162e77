"""The layered, content-addressed store shared by deb-mock (environments) and debian-forge (stages).

A layer is a directory tree keyed by a content ID the caller chooses: either the diff against its
parent (an overlayfs upper directory, whiteouts and opaque xattrs included) or a full tree. See
docs/store.md for the on-disk layout and the guarantees.

Locking, in short:
- ``root/lock`` (store lock) serialises short critical sections only: publishing a commit,
  choosing and renaming away victims in gc/remove. Long work (size walks, rmtree) runs outside it.
- ``layers/<id>/lock`` is held shared by every process using the layer (``Store.using``);
  removal takes it exclusively without waiting, so an in-use layer is never evicted.
- ``tmp/<name>.lock`` is held exclusively by the process owning ``tmp/<name>``; a tmp dir whose
  lock nobody holds was left by a dead process and is removed by ``cleanup_stale``.
flock locks die with their process, so a SIGKILLed run never leaves a lock behind.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import stat
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from deb_mock.errors import DebMockError
from deb_mock.locking import FileLock
from deb_mock.overlay import mounts_under, unmount

FORMAT_VERSION = 1
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_libc = ctypes.CDLL(None, use_errno=True)


class StoreError(DebMockError):
    """The store cannot do what was asked; the message says which layer and why."""


class LayerNotFound(StoreError, KeyError):
    """A layer ID is not in the store (also a KeyError, like a missing dict key)."""

    def __init__(self, layer_id: str, root: Path):
        super().__init__(f"layer {layer_id} is not in the store at {root}")
        self.layer_id = layer_id


@dataclass(frozen=True)
class Layer:
    id: str
    path: Path  # root/layers/<id>
    tree: Path  # root/layers/<id>/tree: an overlayfs upper dir (diff vs parent), or a full tree
    parent: str | None
    full: bool  # a complete tree: stacking stops here
    meta: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class LayerInfo:
    id: str
    parent: str | None
    full: bool
    size: int  # bytes on disk (st_blocks * 512), computed once at commit time
    created: float
    last_used: float
    meta: dict = field(default_factory=dict, compare=False)


def tree_size(path: Path) -> int:
    """Disk usage of a tree in bytes: st_blocks*512 of every entry, hard links counted once.

    Never follows symlinks, so a tree pointing at / does not count the host.
    """
    total = 0
    seen: set[tuple[int, int]] = set()
    stack = [os.fspath(path)]
    st = os.lstat(path)
    total += st.st_blocks * 512
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                st = entry.stat(follow_symlinks=False)
                if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                    key = (st.st_dev, st.st_ino)
                    if key in seen:
                        continue
                    seen.add(key)
                total += st.st_blocks * 512
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    return total


def _lock_fd(path: Path, *, exclusive: bool, wait: bool, create: bool) -> int | None:
    """flock `path` and return the fd; None when busy (wait=False) or gone (create=False).

    Unlike FileLock this never creates parent directories and checks, after locking, that the
    path still names the locked inode: the files it is used on (layer and tmp-dir locks) get
    renamed or unlinked by their removers, and a lock on a detached inode protects nothing.
    """
    flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    while True:
        try:
            fd = os.open(path, flags, 0o644)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, mode | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        fst = os.fstat(fd)
        if st is not None and (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino):
            return fd
        os.close(fd)
        if not create:
            return None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs(path: Path) -> None:
    """Flush the whole filesystem holding `path` (one call instead of an fsync per file)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)


def _rmtree(path: Path) -> None:
    """shutil.rmtree that never deletes through a mount and tolerates entries vanishing."""
    # rmtree does not stop at mount points: a bind mount leaked inside a tmp dir (a crashed
    # caller that did not use a private mount namespace) would take the host's files with it.
    if mounts_under(path):
        unmount(path)

    def onexc(func, p, exc):
        if not isinstance(exc, FileNotFoundError):
            raise exc

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=onexc)
    else:
        shutil.rmtree(path, onerror=lambda func, p, info: onexc(func, p, info[1]))


class Store:
    """A store of layers under `root`; `max_size` (bytes) is gc()'s default limit."""

    def __init__(self, root: Path, max_size: int | None = None):
        self.root = Path(root).absolute()
        self.max_size = max_size
        self.layers_dir = self.root / "layers"
        self.tmp_dir = self.root / "tmp"
        self.layers_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.cleanup_stale()

    # --- reading -------------------------------------------------------------------------

    def _check_id(self, layer_id: str) -> None:
        if not isinstance(layer_id, str) or not _ID_RE.fullmatch(layer_id):
            raise StoreError(
                f"invalid layer ID {layer_id!r}: use 1-128 characters from [A-Za-z0-9_.-] "
                "(typically a sha256 hex digest)"
            )

    def _layer_dir(self, layer_id: str) -> Path:
        self._check_id(layer_id)
        return self.layers_dir / layer_id

    def has(self, layer_id: str) -> bool:
        return (self._layer_dir(layer_id) / "layer.json").is_file()

    def _read(self, layer_id: str) -> dict:
        try:
            with open(self._layer_dir(layer_id) / "layer.json", encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            raise LayerNotFound(layer_id, self.root) from None
        except (OSError, ValueError) as exc:
            raise StoreError(
                f"layer {layer_id} in {self.root} has a broken layer.json: {exc}") from exc

    def get(self, layer_id: str) -> Layer:
        data = self._read(layer_id)
        path = self.layers_dir / layer_id
        return Layer(id=layer_id, path=path, tree=path / "tree", parent=data.get("parent"),
                     full=bool(data.get("full")), meta=data.get("meta") or {})

    def chain(self, layer_id: str) -> list[Layer]:
        """The layer and its ancestors, top first, ending with the first full layer."""
        out: list[Layer] = []
        seen: set[str] = set()
        current: str | None = layer_id
        while current is not None:
            if current in seen:
                raise StoreError(f"layer {layer_id} has a parent cycle at {current}")
            seen.add(current)
            try:
                layer = self.get(current)
            except LayerNotFound:
                if current == layer_id:
                    raise
                raise StoreError(
                    f"layer {layer_id} is broken: its ancestor {current} is missing from "
                    f"{self.root}"
                ) from None
            out.append(layer)
            if layer.full:
                break
            current = layer.parent
        return out

    def ls(self) -> list[LayerInfo]:
        out = []
        with os.scandir(self.layers_dir) as it:
            names = [e.name for e in it if e.is_dir(follow_symlinks=False)]
        for name in sorted(names):
            d = self.layers_dir / name
            try:
                with open(d / "layer.json", encoding="utf-8") as f:
                    data = json.load(f)
                last_used = os.stat(d / "last-used").st_mtime
            except FileNotFoundError:
                continue  # being removed right now
            out.append(LayerInfo(id=name, parent=data.get("parent"), full=bool(data.get("full")),
                                 size=int(data.get("size", 0)),
                                 created=float(data.get("created", 0)),
                                 last_used=last_used, meta=data.get("meta") or {}))
        return out

    def du(self) -> int:
        return sum(info.size for info in self.ls())

    # --- temporary directories -----------------------------------------------------------

    def _make_tmp(self, prefix: str) -> tuple[Path, int]:
        """Create tmp/<prefix>-<random> with its lock held; the lock exists before the dir."""
        if "/" in prefix or prefix.startswith("."):
            raise StoreError(f"invalid tempdir prefix {prefix!r}")
        while True:
            name = f"{prefix}-{secrets.token_hex(8)}"
            fd = _lock_fd(self.tmp_dir / f"{name}.lock", exclusive=True, wait=False, create=True)
            if fd is None:
                continue  # name collision with a live tmp dir
            try:
                os.mkdir(self.tmp_dir / name, 0o755)
            except FileExistsError:
                os.close(fd)
                continue
            except BaseException:
                os.close(fd)
                raise
            return self.tmp_dir / name, fd

    def _drop_tmp(self, path: Path, fd: int) -> None:
        """Remove a tmp dir (if still there), then its lock: that order (see cleanup_stale)."""
        try:
            if os.path.lexists(path):
                _rmtree(path)
            try:
                os.unlink(f"{path}.lock")
            except FileNotFoundError:
                pass
        finally:
            os.close(fd)

    @contextmanager
    def tempdir(self, prefix: str = "tmp") -> Iterator[Path]:
        """A fresh directory under root/tmp, removed on exit unless it was committed (renamed away).

        It sits on the store's filesystem, so commit() can rename it into place without copying.
        """
        path, fd = self._make_tmp(prefix)
        try:
            yield path
        finally:
            self._drop_tmp(path, fd)

    def cleanup_stale(self) -> int:
        """Remove tmp dirs whose owner died (lock not held); returns how many were removed."""
        removed = 0
        try:
            entries = list(os.scandir(self.tmp_dir))
        except FileNotFoundError:
            return 0
        for entry in entries:
            if not entry.name.endswith(".lock") and not entry.is_dir(follow_symlinks=False):
                continue  # not ours
            if entry.name.endswith(".lock"):
                dir_path = self.tmp_dir / entry.name[:-5]
                if os.path.lexists(dir_path):
                    continue  # handled with its dir
                # An orphan lock (owner died between removing its dir and its lock).
                fd = _lock_fd(Path(entry.path), exclusive=True, wait=False, create=False)
                if fd is not None:
                    try:
                        if not os.path.lexists(dir_path):
                            os.unlink(entry.path)
                    finally:
                        os.close(fd)
                continue
            # A dir whose lock file is missing is stale too: owners create the lock first.
            fd = _lock_fd(Path(f"{entry.path}.lock"), exclusive=True, wait=False, create=True)
            if fd is None:
                continue  # alive
            if not os.path.lexists(entry.path):
                # Its owner finished between our scandir and our lock: drop the lock we re-created.
                try:
                    os.unlink(f"{entry.path}.lock")
                except FileNotFoundError:
                    pass
                os.close(fd)
                continue
            self._drop_tmp(Path(entry.path), fd)
            removed += 1
        return removed

    # --- writing -------------------------------------------------------------------------

    def _store_lock(self) -> FileLock:
        return FileLock(self.root / "lock")

    def _discard(self, path: Path) -> None:
        """Remove a tree: rename it into tmp/ first, so an interruption leaves a stale tmp dir."""
        trash, fd = self._make_tmp("rm")
        try:
            os.rename(path, trash)  # replaces the empty dir atomically
        except OSError:
            self._drop_tmp(trash, fd)
            raise
        self._drop_tmp(trash, fd)

    def commit(self, src: Path, layer_id: str, parent: str | None, meta: dict | None = None,
               full: bool = False) -> Layer:
        """Make directory `src` (same filesystem as the store) the tree of layer `layer_id`.

        `src` is renamed, never copied: unmount an overlay before committing its upper dir. The
        layer appears atomically with its metadata. If the ID exists already (another process
        won), `src` is discarded and the existing layer is returned.
        """
        src = Path(src)
        self._check_id(layer_id)
        if parent is not None:
            self._check_id(parent)
        full = full or parent is None  # nothing below it: its tree is complete by definition
        meta = dict(meta or {})
        try:
            meta_json = json.dumps(meta, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"metadata of layer {layer_id} is not JSON: {exc}") from exc
        try:
            st = os.lstat(src)
        except FileNotFoundError:
            raise StoreError(f"cannot commit layer {layer_id}: {src} does not exist") from None
        if not stat.S_ISDIR(st.st_mode):
            raise StoreError(f"cannot commit layer {layer_id}: {src} is not a directory")
        if st.st_dev != os.stat(self.tmp_dir).st_dev:
            raise StoreError(
                f"cannot commit layer {layer_id}: {src} is on another filesystem than the store "
                f"{self.root}; create it with Store.tempdir() so it can be renamed into place"
            )

        if self.has(layer_id):
            self._discard(src)
            self.touch(layer_id)
            return self.get(layer_id)
        if parent is not None and not self.has(parent):
            raise StoreError(
                f"cannot commit layer {layer_id}: its parent {parent} is not in the store")

        size = tree_size(src)  # long walk: before taking any lock
        with self.tempdir("commit") as stage:
            try:
                os.rename(src, stage / "tree")
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                raise StoreError(
                    f"cannot commit layer {layer_id}: {src} is on another mount than the store "
                    f"{self.root}; create it with Store.tempdir() so it can be renamed into place"
                ) from None
            now = time.time()
            record = {"version": FORMAT_VERSION, "id": layer_id, "parent": parent, "full": full,
                      "size": size, "created": now, "meta": json.loads(meta_json)}
            with open(stage / "layer.json", "w", encoding="utf-8") as f:
                json.dump(record, f, indent=2, sort_keys=True)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            (stage / "lock").touch()
            (stage / "last-used").touch()
            # One syncfs makes the tree's data durable before the layer becomes visible: a layer
            # that survives a power cut with missing file contents would poison every later build.
            _syncfs(stage)
            final = self.layers_dir / layer_id
            with self._store_lock():
                if parent is not None and not self.has(parent):
                    os.rename(stage / "tree", src)  # give the caller's work back
                    raise StoreError(
                        f"cannot commit layer {layer_id}: its parent {parent} was removed "
                        "meanwhile (hold Store.using() on the parent while building on it)"
                    )
                try:
                    os.rename(stage, final)
                except OSError as exc:
                    if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
                    # Lost the race: the same content is there already; `stage` goes on exit.
            _fsync_dir(self.layers_dir)
        return self.get(layer_id)

    def touch(self, layer_id: str) -> None:
        """Record a use of the layer now (the mtime of its `last-used` file drives LRU eviction)."""
        try:
            os.utime(self._layer_dir(layer_id) / "last-used")
        except FileNotFoundError:
            raise LayerNotFound(layer_id, self.root) from None

    @contextmanager
    def using(self, layer_ids: Iterable[str]) -> Iterator[list[Layer]]:
        """Hold shared locks on the layers and their chains so gc/remove cannot take them away.

        Yields the requested layers (in order). Also records their use for LRU.
        """
        with ExitStack() as stack:
            locked: set[str] = set()
            requested = []
            for layer_id in layer_ids:
                for layer in self.chain(layer_id):
                    if layer.id in locked:
                        continue
                    fd = _lock_fd(layer.path / "lock", exclusive=False, wait=True, create=False)
                    if fd is None:
                        raise StoreError(f"layer {layer.id} was removed from {self.root} while "
                                         f"being opened for use (needed by {layer_id})")
                    stack.callback(os.close, fd)
                    locked.add(layer.id)
                    self.touch(layer.id)
                requested.append(self.get(layer_id))
            yield requested

    # --- removal -------------------------------------------------------------------------

    def _descendants(self, infos: list[LayerInfo], layer_id: str) -> list[str]:
        """Layers whose chain contains `layer_id`, except itself (a full layer starts a chain)."""
        children: dict[str, list[str]] = {}
        for info in infos:
            if info.parent is not None and not info.full:
                children.setdefault(info.parent, []).append(info.id)
        out, todo = [], list(children.get(layer_id, []))
        while todo:
            child = todo.pop()
            if child in out:
                continue
            out.append(child)
            todo.extend(children.get(child, []))
        return out

    def _take(self, ids: list[str]) -> list[tuple[Path, int]] | str:
        """Lock `ids` exclusively and rename them into tmp/; returns the trash, or the busy ID.

        Call with the store lock held. Nothing is moved unless every layer could be locked.
        """
        fds: list[int] = []
        try:
            for layer_id in ids:
                fd = _lock_fd(self.layers_dir / layer_id / "lock", exclusive=True, wait=False,
                              create=False)
                if fd is None:
                    if not self.has(layer_id):
                        continue  # already gone
                    return layer_id
                fds.append(fd)
            trash = []
            for layer_id in ids:
                path, fd = self._make_tmp("rm")
                try:
                    os.rename(self.layers_dir / layer_id, path)
                except FileNotFoundError:
                    self._drop_tmp(path, fd)
                    continue
                trash.append((path, fd))
            return trash
        finally:
            for fd in fds:
                os.close(fd)

    # --- pins ------------------------------------------------------------------------------

    def pin(self, layer_id: str, holder: str) -> None:
        """Keep `layer_id` (and so its chain) from eviction while `holder` needs it: an
        environment's snapshot or its current top. Pins outlive processes; unpin() ends one."""
        self._check_id(holder.replace("/", "_"))
        pins = self._layer_dir(layer_id) / "pins"
        pins.mkdir(exist_ok=True)
        (pins / holder.replace("/", "_")).touch()

    def unpin(self, layer_id: str, holder: str) -> None:
        try:
            (self._layer_dir(layer_id) / "pins" / holder.replace("/", "_")).unlink()
        except FileNotFoundError:
            pass

    def pinned(self, layer_id: str) -> bool:
        pins = self._layer_dir(layer_id) / "pins"
        return pins.is_dir() and any(pins.iterdir())

    def remove(self, layer_id: str) -> None:
        """Remove a layer and every layer built on it; StoreError if any of them is in use."""
        with self._store_lock():
            infos = self.ls()
            if not any(info.id == layer_id for info in infos):
                raise LayerNotFound(layer_id, self.root)
            victims = [layer_id] + self._descendants(infos, layer_id)
            result = self._take(victims)
        if isinstance(result, str):
            what = "it" if result == layer_id else f"its descendant {result}"
            raise StoreError(f"cannot remove layer {layer_id}: {what} is in use by a running "
                             "deb-mock or debian-forge process")
        for path, fd in result:
            self._drop_tmp(path, fd)

    def gc(self, max_size: int | None = None) -> list[str]:
        """Evict least-recently-used layers not in use until the store fits `max_size` bytes.

        A layer goes together with its descendants. Returns the evicted IDs.
        """
        limit = self.max_size if max_size is None else max_size
        if limit is None:
            return []
        evicted: list[str] = []
        trash: list[tuple[Path, int]] = []
        with self._store_lock():
            infos = self.ls()
            by_id = {info.id: info for info in infos}
            total = sum(info.size for info in infos)

            def depth(info: LayerInfo) -> int:
                d = 0
                while info.parent in by_id and not info.full and d < len(by_id):
                    info, d = by_id[info.parent], d + 1
                return d

            # Oldest first; on equal times deeper first, so a parent does not drag its children.
            order = sorted(infos, key=lambda i: (i.last_used, -depth(i)))
            for info in order:
                if total <= limit:
                    break
                if info.id in evicted:
                    continue
                group = [info.id] + [d for d in self._descendants(infos, info.id)
                                     if d not in evicted]
                if any(self.pinned(i) for i in group):
                    continue  # an environment's snapshot or state stands on it
                result = self._take(group)
                if isinstance(result, str):
                    continue  # in use
                trash.extend(result)
                evicted.extend(group)
                total -= sum(by_id[i].size for i in group)
        for path, fd in trash:
            self._drop_tmp(path, fd)
        return evicted
