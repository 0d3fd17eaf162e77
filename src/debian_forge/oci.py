"""OCI images (and docker-archives) from directory trees, byte-for-byte reproducibly.

Pure standard library: each tree becomes one gzip'd tar layer in an OCI image layout, which is
then written as a directory ("oci-dir"), a tar of that directory ("oci-archive") or a `docker
save`-style tar ("docker-archive"). With the same trees and epoch every blob and every output
file is identical: sorted entries, numeric owners, clamped mtimes, gzip without timestamp or
name, canonical JSON.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import queue
import shutil
import stat
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, BinaryIO

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
FORMATS = ("oci-dir", "oci-archive", "docker-archive")

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
# Kept in layers; trusted.* is overlayfs' (and other privileged) bookkeeping, never image content.
KEPT_XATTR_PREFIXES = ("security.", "user.")
# Opaque markers: trusted.* normally, user.* when the overlay was mounted with userxattr.
OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")
COPY_BUFSIZE = 1 << 20


@dataclass(frozen=True)
class LayerSource:
    """A directory tree that becomes one layer."""
    path: Path
    overlay: bool  # an overlayfs upper directory: convert its whiteouts and opaque directories
    created_by: str  # the layer's history text


@dataclass(frozen=True)
class Blob:
    """A content-addressed blob under blobs/sha256/."""
    digest: str  # "sha256:<hex>"
    size: int
    media_type: str


@dataclass(frozen=True)
class ImageConfig:
    """The runtime defaults that go into the image config's "config" object."""
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: Sequence[str] = ()  # "KEY=value"
    working_dir: str | None = None
    user: str | None = None
    exposed_ports: Sequence[str] = ()  # "80/tcp"
    volumes: Sequence[str] = ()
    labels: dict[str, str] = field(default_factory=dict)
    stop_signal: str | None = None


@dataclass(frozen=True)
class BuiltImage:
    """What build_image wrote."""
    manifest: Blob
    config: Blob
    layers: list[Blob]  # compressed layer blobs
    diff_ids: list[str]  # sha256 of each uncompressed layer tar
    outputs: dict[str, Path]  # format → path written


# --- layers -------------------------------------------------------------------------------------

class _HashingWriter:
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out, self.sha, self.size = out, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.out.write(data)

    def tell(self) -> int:  # tarfile asks where it starts
        return self.size

    def flush(self) -> None:
        self.out.flush()


class _BackgroundWriter:
    """Hands what is written to `out` in a second thread, in 1 MiB pieces: zlib and sha256
    release the GIL, so the layer is compressed while the next files are read and tarred."""

    PIECE = 1 << 20

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._pending = bytearray()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while (piece := self._queue.get()) is not None:
            if self._error is None:  # after a failure, only empty the queue
                try:
                    self._out.write(piece)
                except BaseException as exc:  # reported by the next write() or close()
                    self._error = exc

    def write(self, data: bytes) -> int:
        if self._error is not None:
            raise self._error
        self._pending += data
        if len(self._pending) >= self.PIECE:
            self._queue.put(bytes(self._pending))
            self._pending.clear()
        return len(data)

    def flush(self) -> None:  # `out` belongs to the other thread until close()
        pass

    def close(self) -> None:
        """Wait until everything reached `out`."""
        if self._pending:
            self._queue.put(bytes(self._pending))
            self._pending.clear()
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


def _kept_xattrs(path: Path, overlay: bool) -> dict[str, str]:
    """The xattrs worth shipping, as pax SCHILY.xattr.* records (sorted, for stable bytes)."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:  # the filesystem has no xattrs at all
        return {}
    records = {}
    for name in sorted(names):
        overlay_bookkeeping = overlay and name.startswith("user.overlay.")
        if not name.startswith(KEPT_XATTR_PREFIXES) or overlay_bookkeeping:
            continue
        value = os.getxattr(path, name, follow_symlinks=False)
        # tarfile writes str back as these exact bytes (hdrcharset=BINARY when not UTF-8).
        records["SCHILY.xattr." + name] = value.decode("utf-8", "surrogateescape")
    return records


def _is_opaque(path: Path) -> bool:
    for name in OPAQUE_XATTRS:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            pass
    return False


def _marker(name: str, mtime: int) -> tarfile.TarInfo:
    """An empty regular file that only means something to the image unpacker (a whiteout)."""
    info = tarfile.TarInfo(name)
    info.mode, info.mtime = 0, mtime
    return info


def _layer_entries(tar: tarfile.TarFile, source: LayerSource, epoch: int | None,
                   directory: Path, prefix: str) -> Iterator[tuple[tarfile.TarInfo, Path | None]]:
    """(TarInfo, file to read or None) for everything below `directory`, depth first, sorted."""
    for name in sorted(os.listdir(directory)):
        path = directory / name
        st = os.lstat(path)
        mtime = int(st.st_mtime) if epoch is None else min(int(st.st_mtime), epoch)
        if source.overlay and stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            yield _marker(prefix + WHITEOUT_PREFIX + name, mtime), None
            continue
        # gettarinfo turns a second name of an already added inode into a hard link.
        info = tar.gettarinfo(str(path), prefix + name)
        if info is None:  # a socket: meaningless in an image
            continue
        info.mtime, info.uname, info.gname = mtime, "", ""
        info.pax_headers = _kept_xattrs(path, source.overlay)
        yield info, path if info.isreg() else None
        if info.isdir():
            if source.overlay and _is_opaque(path):
                # First among the children, so unpackers clear the lower layers' content first.
                yield _marker(f"{prefix}{name}/{OPAQUE_MARKER}", mtime), None
            yield from _layer_entries(tar, source, epoch, path, f"{prefix}{name}/")


@contextmanager
def _temp_file(directory: Path) -> Iterator[tuple[BinaryIO, Path]]:
    """A new file in `directory`, deleted at the end unless the caller renamed it into place
    (so an interrupted build never leaves a half-written blob under its final name)."""
    fd, name = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    os.fchmod(fd, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f, Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


@contextmanager
def _new_file(dest: Path) -> Iterator[BinaryIO]:
    with _temp_file(dest.parent) as (f, tmp):
        yield f
        f.flush()
        os.replace(tmp, dest)


def _write_layer(source: LayerSource, blobs: Path, epoch: int | None) -> tuple[Blob, str, int]:
    """write_layer, plus the uncompressed tar's size (docker-archive needs it)."""
    directory = blobs / "sha256"
    directory.mkdir(parents=True, exist_ok=True)
    with _temp_file(directory) as (f, tmp):
        compressed = _HashingWriter(f)
        with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, compresslevel=6,
                           mtime=0) as gz:
            feeder = _BackgroundWriter(gz)
            try:
                plain = _HashingWriter(feeder)
                with tarfile.open(fileobj=plain, mode="w", format=tarfile.PAX_FORMAT,
                                  copybufsize=COPY_BUFSIZE) as tar:
                    for info, path in _layer_entries(tar, source, epoch, Path(source.path), ""):
                        if path is None:
                            tar.addfile(info)
                        else:
                            with open(path, "rb") as content:
                                tar.addfile(info, content)
            finally:
                feeder.close()
        f.flush()
        os.replace(tmp, directory / compressed.sha.hexdigest())
    blob = Blob("sha256:" + compressed.sha.hexdigest(), compressed.size, LAYER_TYPE)
    return blob, "sha256:" + plain.sha.hexdigest(), plain.size


def write_layer(source: LayerSource, blobs: Path, *, epoch: int | None) -> tuple[Blob, str]:
    """Tar `source` (sorted entries, numeric owners as in the tree, empty uname/gname, mtimes
    clamped to `epoch`, pax format keeping security.* and user.* xattrs but never trusted.*;
    overlay whiteouts converted when source.overlay), gzip it (mtime 0, no name, level 6) into
    blobs/sha256/<hex>; return the compressed Blob and the diff_id (sha256 of the plain tar)."""
    blob, diff_id, _ = _write_layer(source, blobs, epoch)
    return blob, diff_id


# --- image --------------------------------------------------------------------------------------

def _canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _rfc3339(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _put_json(blobs: Path, value: object, media_type: str) -> Blob:
    data = _canonical(value)
    hexdigest = hashlib.sha256(data).hexdigest()
    with _new_file(blobs / "sha256" / hexdigest) as f:
        f.write(data)
    return Blob("sha256:" + hexdigest, len(data), media_type)


def _descriptor(blob: Blob, **extra: object) -> dict:
    return {"mediaType": blob.media_type, "digest": blob.digest, "size": blob.size, **extra}


def _runtime_config(config: ImageConfig) -> dict:
    """The Docker-named keys of the config's "config" object; unset ones are left out."""
    values = {
        "Entrypoint": config.entrypoint, "Cmd": config.cmd,
        "Env": list(config.env) or None, "WorkingDir": config.working_dir, "User": config.user,
        "ExposedPorts": {port: {} for port in config.exposed_ports} or None,
        "Volumes": {volume: {} for volume in config.volumes} or None,
        "Labels": dict(config.labels) or None, "StopSignal": config.stop_signal,
    }
    return {key: value for key, value in values.items() if value is not None}


def _write_tar(dest: Path, members: Mapping[str, tuple[int, Callable[[], IO[bytes]]] | None],
               mtime: int) -> None:
    """A reproducible tar of `members` (name → (size, opener), or None for a directory)."""
    with _new_file(dest) as f, tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT,
                                            copybufsize=COPY_BUFSIZE) as tar:
        for name in sorted(members):
            info = tarfile.TarInfo(name)
            info.mtime = mtime
            if members[name] is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
                continue
            info.size, opener = members[name]
            info.mode = 0o644
            with opener() as content:
                tar.addfile(info, content)


def _file_member(path: Path) -> tuple[int, Callable[[], IO[bytes]]]:
    return path.stat().st_size, lambda: open(path, "rb")


def _oci_archive(layout: Path, dest: Path, mtime: int, ref_name: str) -> None:
    """The layout as a tar whose index names the image `ref_name` (<name>:<tag>): what podman
    load and skopeo's oci-archive: transport take as the image's name."""
    members: dict = {"blobs": None, "blobs/sha256": None}
    for path in [layout / "oci-layout", *(layout / "blobs/sha256").iterdir()]:
        members[path.relative_to(layout).as_posix()] = _file_member(path)
    index = json.loads((layout / "index.json").read_bytes())
    index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] = ref_name
    data = _canonical(index)
    members["index.json"] = (len(data), lambda: io.BytesIO(data))
    _write_tar(dest, members, mtime)


def _docker_archive(layout: Path, built: BuiltImage, sizes: list[int], repo_tag: str,
                    dest: Path, mtime: int) -> None:
    """`docker save` layout: manifest.json, <config hex>.json and <diff_id hex>/layer.tar,
    the layers uncompressed so they hash to their diff_ids as docker expects."""
    def blob(digest: str) -> Path:
        return layout / "blobs/sha256" / digest.removeprefix("sha256:")

    config_name = built.config.digest.removeprefix("sha256:") + ".json"
    members: dict = {config_name: _file_member(blob(built.config.digest))}
    layer_names = []
    for layer, diff_id, size in zip(built.layers, built.diff_ids, sizes):
        directory = diff_id.removeprefix("sha256:")
        layer_names.append(f"{directory}/layer.tar")
        members[directory] = None
        members[f"{directory}/layer.tar"] = (size, lambda path=blob(layer.digest): gzip.open(path))
    manifest = [{"Config": config_name, "RepoTags": [repo_tag], "Layers": layer_names}]
    data = _canonical(manifest)
    members["manifest.json"] = (len(data), lambda: io.BytesIO(data))
    _write_tar(dest, members, mtime)


def build_image(layers: Sequence[LayerSource], config: ImageConfig, out_dir: Path, *,
                basename: str, name: str, tag: str, formats: Sequence[str],
                architecture: str = "amd64", os_name: str = "linux",
                annotations: Mapping[str, str] = {}, epoch: int | None = None) -> BuiltImage:
    """Write the image in each of `formats` into out_dir: "oci-dir" → out_dir/<basename>/ (an OCI
    image layout whose index.json names the manifest <tag>, as umoci and skopeo's oci: refer to
    it), "oci-archive" → out_dir/<basename>.oci.tar (that layout as a reproducible tar, the
    manifest named <name>:<tag>, as podman load names the image), "docker-archive" →
    out_dir/<basename>.docker.tar (`docker save` format, tagged <name>:<tag>)."""
    unknown = [fmt for fmt in formats if fmt not in FORMATS]
    if unknown:
        raise ValueError(f"unknown OCI output format(s) {unknown}; known: {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    layout = out_dir / f".{basename}.oci-layout.tmp{os.getpid()}"
    shutil.rmtree(layout, ignore_errors=True)
    try:
        built, sizes = _write_layout(layout, layers, config, tag=tag, architecture=architecture,
                                     os_name=os_name, annotations=annotations, epoch=epoch)
        outputs: dict[str, Path] = {}
        mtime = epoch or 0
        if "oci-archive" in formats:
            outputs["oci-archive"] = out_dir / f"{basename}.oci.tar"
            _oci_archive(layout, outputs["oci-archive"], mtime, f"{name}:{tag}")
        if "docker-archive" in formats:
            outputs["docker-archive"] = out_dir / f"{basename}.docker.tar"
            _docker_archive(layout, built, sizes, f"{name}:{tag}", outputs["docker-archive"],
                            mtime)
        if "oci-dir" in formats:
            outputs["oci-dir"] = out_dir / basename
            shutil.rmtree(outputs["oci-dir"], ignore_errors=True)
            os.replace(layout, outputs["oci-dir"])
    finally:
        shutil.rmtree(layout, ignore_errors=True)
    return BuiltImage(built.manifest, built.config, built.layers, built.diff_ids, outputs)


def _write_layout(layout: Path, layers: Sequence[LayerSource], config: ImageConfig, *, tag: str,
                  architecture: str, os_name: str, annotations: Mapping[str, str],
                  epoch: int | None) -> tuple[BuiltImage, list[int]]:
    """An OCI image layout in `layout`; returns the image and each layer's uncompressed size."""
    blobs = layout / "blobs"
    written = [_write_layer(source, blobs, epoch) for source in layers]
    created = _rfc3339(int(time.time()) if epoch is None else epoch)
    image_config = {
        "architecture": architecture, "os": os_name, "created": created,
        "config": _runtime_config(config),
        "rootfs": {"type": "layers", "diff_ids": [diff_id for _, diff_id, _ in written]},
        "history": [{"created": created, "created_by": source.created_by,
                     "comment": "debian-forge"} for source in layers],
    }
    config_blob = _put_json(blobs, image_config, CONFIG_TYPE)
    manifest = {
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
        "config": _descriptor(config_blob),
        "layers": [_descriptor(blob) for blob, _, _ in written],
    }
    manifest_annotations = dict(annotations)
    if epoch is not None:
        manifest_annotations["org.opencontainers.image.created"] = created
    if manifest_annotations:
        manifest["annotations"] = manifest_annotations
    manifest_blob = _put_json(blobs, manifest, MANIFEST_TYPE)
    index = {
        "schemaVersion": 2, "mediaType": INDEX_TYPE,
        "manifests": [_descriptor(manifest_blob,
                                  annotations={"org.opencontainers.image.ref.name": tag},
                                  platform={"architecture": architecture, "os": os_name})],
    }
    (layout / "index.json").write_bytes(_canonical(index))
    (layout / "oci-layout").write_bytes(_canonical({"imageLayoutVersion": "1.0.0"}))
    built = BuiltImage(manifest_blob, config_blob, [blob for blob, _, _ in written],
                       [diff_id for _, diff_id, _ in written], {})
    return built, [size for _, _, size in written]
