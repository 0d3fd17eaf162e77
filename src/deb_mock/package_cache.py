"""The shared, content-addressed cache of `.deb` files, and its downloader.

Layout under `root`::

    sha256/<first2>/<sha256>.deb   complete, verified files (read-only; never rewritten)
    partial/<sha256>.part          a download in progress; resumed with an HTTP Range request
    partial/<sha256>.lock          one flock per sha256, so two processes never write the same part
    lock                           shared by every operation, exclusive for scrub()

A file appears under `sha256/` only by `os.replace` after its sha256 (and size, when known) was
verified and the data fsynced, so a reader that finds a path there finds the whole file.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence
from urllib.parse import urljoin, urlsplit

if TYPE_CHECKING:
    import urllib.request

# http.client and urllib.request are imported where downloads happen: they cost 30 ms at
# start-up, which every `deb-mock chroot` would pay.

from deb_mock import __version__
from deb_mock.errors import FetchError
from deb_mock.locking import FileLock, LockBusy

USER_AGENT = f"deb-mock/{__version__}"
_CHUNK = 256 * 1024
_SHA256 = re.compile(r"[0-9a-f]{64}")
# How many names an error message lists before it says "and N more".
_LIST_LIMIT = 10


@dataclass(frozen=True)
class PackageRef:
    """One exact package file, as the lock file names it."""

    url: str  # http(s):// or file:// URL
    sha256: str  # hex
    size: int | None  # bytes, if known (from the archive index)
    filename: str  # the name apt expects in /var/cache/apt/archives, e.g. hello_2.10-3_amd64.deb


@dataclass(frozen=True)
class FetchProgress:
    """A snapshot of a running fetch; `current` is the file that last made progress."""

    total_files: int
    done_files: int
    total_bytes: int
    done_bytes: int
    current: str


class _Retry(Exception):
    """A failure worth another attempt: a connection error, a timeout, a 5xx."""


class _Cancelled(Exception):
    """The calling thread was interrupted; workers stop at their next chunk."""


class _Progress:
    """Thread-safe progress accounting; calls the callback at most every `interval` seconds.

    The callback runs with the lock held, so calls never overlap and arrive in order.
    """

    def __init__(self, callback: Callable[[FetchProgress], None] | None, total_files: int,
                 total_bytes: int, interval: float = 0.1):
        self._callback = callback
        self._interval = interval
        self._lock = threading.Lock()
        self._per_file: dict[str, int] = {}
        self._sized: set[str] = set()
        self._last = 0.0
        self.total_files = total_files
        self.total_bytes = total_bytes
        self.done_files = 0
        self.done_bytes = 0
        self.current = ""

    def learn_size(self, sha: str, nbytes: int) -> None:
        """Count a file whose size the index did not give, once, when the server tells it."""
        with self._lock:
            if sha not in self._sized:
                self._sized.add(sha)
                self.total_bytes += nbytes

    def update(self, sha: str, nbytes: int, filename: str) -> None:
        """Record that `sha` now has `nbytes` on disk (may go down when a download restarts)."""
        with self._lock:
            self.done_bytes += nbytes - self._per_file.get(sha, 0)
            self._per_file[sha] = nbytes
            self.current = filename
            self._emit(force=False)

    def file_done(self, sha: str, nbytes: int, filename: str) -> None:
        with self._lock:
            self.done_bytes += nbytes - self._per_file.get(sha, 0)
            self._per_file[sha] = nbytes
            self.done_files += 1
            self.current = filename
            self._emit(force=False)

    def finish(self) -> None:
        with self._lock:
            self._emit(force=True)

    def _emit(self, force: bool) -> None:
        if self._callback is None:
            return
        now = time.monotonic()
        if not force and now - self._last < self._interval:
            return
        self._last = now
        self._callback(FetchProgress(self.total_files, self.done_files, self.total_bytes,
                                     self.done_bytes, self.current))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _names(refs: Sequence[PackageRef]) -> str:
    shown = ", ".join(r.filename for r in refs[:_LIST_LIMIT])
    more = len(refs) - _LIST_LIMIT
    return shown + (f" and {more} more" if more > 0 else "")


class _KeepAliveOpener:
    """Persistent HTTP(S) connections, one set per worker thread, as apt keeps them.

    A connection per file costs a DNS lookup and a handshake each; resolvers that drop a query
    now and then made that 5 s stalls (measured: 25 s instead of 1 s for 147 packages). With a
    proxy in the environment, urllib's own opener handles it.
    """

    _REDIRECTS = (301, 302, 303, 307, 308)

    def __init__(self) -> None:
        import urllib.request
        self._local = threading.local()
        # build_opener reads the proxy environment now, so each fetch sees the current one.
        self._fallback = urllib.request.build_opener() if urllib.request.getproxies() else None

    def open(self, request: urllib.request.Request, timeout: float):
        import http.client
        import urllib.error
        if self._fallback is not None:
            return self._fallback.open(request, timeout=timeout)
        connections: dict = self._local.__dict__.setdefault("connections", {})
        url = urlsplit(request.full_url)
        headers = dict(request.header_items())
        for _ in range(6):
            key = (url.scheme, url.netloc)
            connection = connections.get(key)
            fresh = connection is None
            if fresh:
                kind = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
                connection = connections[key] = kind(url.netloc, timeout=timeout)
            try:
                connection.request("GET", url.path + (f"?{url.query}" if url.query else ""),
                                   headers=headers)
                response = connection.getresponse()
            except (OSError, http.client.HTTPException):
                connection.close()
                del connections[key]
                if fresh:
                    raise
                continue  # the server closed an idle connection: once more on a new one
            location = response.getheader("Location")
            if response.status in self._REDIRECTS and location:
                response.read()
                url = urlsplit(urljoin(url.geturl(), location))
                continue
            if response.status >= 400:
                body = response.read()
                raise urllib.error.HTTPError(request.full_url, response.status, response.reason,
                                             response.headers, io.BytesIO(body))
            return response
        raise urllib.error.URLError(f"too many redirects or reconnects for {request.full_url}")


class PackageCache:
    """A content-addressed store of `.deb` files keyed by sha256, safe to share between processes."""

    # Class attributes rather than constructor arguments: callers rarely change them, tests do.
    timeout = 30.0  # seconds, for connecting and for each read
    backoff = 0.25  # seconds before the first retry; doubles each time

    def __init__(self, root: Path):
        self.root = Path(root)
        self._files = self.root / "sha256"
        self._partial = self.root / "partial"
        self._lock_path = self.root / "lock"

    # -- lookups -----------------------------------------------------------------------------

    def path(self, sha256: str) -> Path:
        """Where the file with this sha256 lives (whether or not it is there yet)."""
        sha = self._check_sha(sha256)
        return self._files / sha[:2] / f"{sha}.deb"

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def missing(self, refs: Iterable[PackageRef]) -> list[PackageRef]:
        """The refs not in the cache, one per sha256, in their first order."""
        return [r for r in self._unique(refs) if not self.has(r.sha256)]

    def size(self) -> int:
        """Bytes used by complete files and partial downloads."""
        total = 0
        for top in (self._files, self._partial):
            for dirpath, _dirs, files in os.walk(top):
                for name in files:
                    try:
                        total += os.lstat(os.path.join(dirpath, name)).st_size
                    except FileNotFoundError:  # removed by a concurrent commit
                        pass
        return total

    # -- fetching ----------------------------------------------------------------------------

    def fetch(self, refs: Sequence[PackageRef], *, jobs: int = 8, retries: int = 3,
              offline: bool = False,
              progress: Callable[[FetchProgress], None] | None = None) -> dict[str, Path]:
        """Make every ref present in the cache; return {sha256: path} for all of them.

        Only missing files are downloaded, each sha256 once, `jobs` at a time. Failures do not
        stop the other downloads; after all of them ended one FetchError lists every failure,
        and whatever did download stays in the cache.
        """
        unique = self._unique(refs)
        result = {r.sha256.lower(): self.path(r.sha256) for r in unique}
        todo = [r for r in unique if not self.has(r.sha256)]
        if offline and todo:
            raise FetchError(
                f"this run is offline, but {len(todo)} package file(s) are not in the package "
                f"cache at {self.root}: {_names(todo)}. Run once with network access to fetch them."
            )
        tracker = _Progress(progress, len(todo), sum(r.size or 0 for r in todo))
        if not todo:
            tracker.finish()
            return result

        self._partial.mkdir(parents=True, exist_ok=True)
        opener = _KeepAliveOpener()
        cancel = threading.Event()
        failures: list[str] = []
        with FileLock(self._lock_path, shared=True):
            pool = ThreadPoolExecutor(max_workers=max(1, min(jobs, len(todo))),
                                      thread_name_prefix="deb-mock-fetch")
            try:
                futures: dict[Future[None], PackageRef] = {
                    pool.submit(self._fetch_one, r, opener, retries, tracker, cancel): r
                    for r in todo
                }
                wait(futures)
            except BaseException:
                # Ctrl-C lands in this thread: tell the workers, drop queued work, then wait for
                # them so no thread is left writing into partial/ behind the caller's back.
                cancel.set()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            pool.shutdown(wait=True)
        tracker.finish()

        for future, ref in futures.items():
            exc = future.exception()
            if exc is None:
                continue
            if isinstance(exc, FetchError):
                failures.append(exc.message)
            elif isinstance(exc, OSError):  # disk full, permissions: local, but still per file
                failures.append(f"could not store {ref.filename} from {ref.url} in "
                                f"{self.root}: {exc}")
            else:
                raise exc  # a bug, not a download failure: let its traceback through
        if failures:
            shown = " ".join(failures[:_LIST_LIMIT])
            more = len(failures) - _LIST_LIMIT
            raise FetchError(
                f"could not fetch {len(failures)} of {len(todo)} package file(s) into the "
                f"package cache at {self.root}; the others are in the cache. {shown}"
                + (f" ({more} more failures not shown.)" if more > 0 else "")
            )
        return result

    def _fetch_one(self, ref: PackageRef, opener: "_KeepAliveOpener", retries: int,
                   tracker: _Progress, cancel: threading.Event) -> None:
        sha = ref.sha256.lower()
        final = self.path(sha)
        lock = self._take_lock(self._partial / f"{sha}.lock", cancel)
        try:
            # Another process may have committed it while we waited for the lock.
            if final.is_file():
                self._done(ref, sha, tracker)
                return
            last: _Retry | None = None
            for attempt in range(retries + 1):
                if attempt and cancel.wait(min(self.backoff * 2 ** (attempt - 1), 5.0)):
                    raise _Cancelled()
                try:
                    self._attempt(ref, sha, opener, tracker, cancel)
                    break
                except _Retry as exc:
                    last = exc
            else:
                raise FetchError(
                    f"could not download {ref.filename} from {ref.url} after {retries + 1} "
                    f"attempt(s); the last error was: {last}."
                )
            self._done(ref, sha, tracker)
        finally:
            lock.release()

    def _done(self, ref: PackageRef, sha: str, tracker: _Progress) -> None:
        size = self.path(sha).stat().st_size
        if ref.size is None:
            tracker.learn_size(sha, size)
        tracker.file_done(sha, size, ref.filename)

    @staticmethod
    def _take_lock(path: Path, cancel: threading.Event) -> FileLock:
        # Poll ourselves instead of FileLock's blocking wait so Ctrl-C is not stuck behind
        # another process's long download.
        while True:
            try:
                return FileLock(path, wait=False).acquire()
            except LockBusy:
                if cancel.wait(0.05):
                    raise _Cancelled() from None

    def _attempt(self, ref: PackageRef, sha: str, opener: "_KeepAliveOpener",
                 tracker: _Progress, cancel: threading.Event) -> None:
        """One try at bringing `ref` into the cache; raises _Retry when another try may help."""
        scheme = urlsplit(ref.url).scheme.lower()
        if scheme == "file":
            self._copy_local(ref, sha, tracker, cancel)
        elif scheme in ("http", "https"):
            self._download(ref, sha, opener, tracker, cancel)
        else:
            raise FetchError(f"cannot fetch {ref.filename} from {ref.url}: the URL scheme "
                             f"'{scheme}' is not supported (use http, https or file).")

    def _copy_local(self, ref: PackageRef, sha: str, tracker: _Progress,
                    cancel: threading.Event) -> None:
        import urllib.request
        parts = urlsplit(ref.url)
        if parts.netloc not in ("", "localhost"):
            raise FetchError(f"cannot fetch {ref.filename} from {ref.url}: file:// URLs must "
                             "name a local path (no host).")
        source = Path(urllib.request.url2pathname(parts.path))
        part = self._partial / f"{sha}.part"
        digest = hashlib.sha256()
        try:
            src = open(source, "rb")
        except OSError as exc:
            raise FetchError(f"cannot fetch {ref.filename} from {ref.url}: "
                             f"{exc.strerror or exc}.") from None
        with src, open(part, "wb") as out:
            if ref.size is None:
                tracker.learn_size(sha, os.fstat(src.fileno()).st_size)
            done = 0
            while chunk := src.read(_CHUNK):
                if cancel.is_set():
                    raise _Cancelled()
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                tracker.update(sha, done, ref.filename)
        self._commit(part, ref, sha, digest, resumed=False)

    def _download(self, ref: PackageRef, sha: str, opener: "_KeepAliveOpener",
                  tracker: _Progress, cancel: threading.Event) -> None:
        import http.client
        import urllib.error
        import urllib.request
        part = self._partial / f"{sha}.part"
        offset = part.stat().st_size if part.exists() else 0
        if ref.size is not None and offset > ref.size:
            part.unlink()
            offset = 0
        digest = hashlib.sha256()
        if offset:
            with open(part, "rb") as f:
                while chunk := f.read(_CHUNK):
                    digest.update(chunk)
            tracker.update(sha, offset, ref.filename)
            if ref.size is not None and offset == ref.size:
                # Complete already (a run died between download and rename): just verify.
                self._commit(part, ref, sha, digest, resumed=True)
                return
        resumed = offset > 0

        headers = {"User-Agent": USER_AGENT}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        request = urllib.request.Request(ref.url, headers=headers)
        try:
            response = opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 416 and offset:
                part.unlink(missing_ok=True)  # our part is not a prefix the server knows
                raise _Retry(f"HTTP 416 when resuming at byte {offset}") from None
            if exc.code >= 500 or exc.code in (408, 429):
                raise _Retry(f"HTTP {exc.code} {exc.reason}") from None
            raise FetchError(f"could not download {ref.filename} from {ref.url}: the server "
                             f"answered HTTP {exc.code} {exc.reason}.") from None
        except urllib.error.URLError as exc:
            raise _Retry(str(exc.reason)) from None
        except (OSError, http.client.HTTPException) as exc:
            raise _Retry(str(exc) or type(exc).__name__) from None

        with response:
            if offset and response.status == 206:
                start = _content_range_start(response.headers.get("Content-Range"))
                if start != offset:
                    part.unlink(missing_ok=True)
                    raise _Retry(f"server resumed at byte {start}, not {offset}")
            elif offset:
                # 200: the server ignored Range and sends the whole file, so start over.
                offset = 0
                resumed = False
                digest = hashlib.sha256()
                tracker.update(sha, 0, ref.filename)
            length = _int_or_none(response.headers.get("Content-Length"))
            end = None if length is None else offset + length
            if ref.size is None and end is not None:
                tracker.learn_size(sha, end)
            received = offset
            overflow = False
            with open(part, "ab" if offset else "wb") as out:
                try:
                    while chunk := response.read(_CHUNK):
                        if cancel.is_set():
                            raise _Cancelled()
                        out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        tracker.update(sha, received, ref.filename)
                        if ref.size is not None and received > ref.size:
                            overflow = True  # more than the index says: _commit reports it
                            break
                except (OSError, http.client.HTTPException) as exc:
                    raise _Retry(f"connection lost after {received} bytes "
                                 f"({exc or type(exc).__name__})") from None
            # http.client returns a short body without complaint when the peer hangs up.
            if end is not None and received < end and not overflow:
                raise _Retry(f"connection closed after {received} of {end} bytes")
        self._commit(part, ref, sha, digest, resumed=resumed)

    def _commit(self, part: Path, ref: PackageRef, sha: str, digest: "hashlib._Hash",
                resumed: bool) -> None:
        """Verify `part` and move it into place, or delete it and raise."""
        actual = digest.hexdigest()
        size = part.stat().st_size
        if actual != sha or (ref.size is not None and size != ref.size):
            part.unlink(missing_ok=True)
            expected_size = "" if ref.size is None else f" and {ref.size} bytes"
            message = (f"{ref.filename} from {ref.url} does not match the lock: expected sha256 "
                       f"{sha}{expected_size}, got sha256 {actual} and {size} bytes; the download "
                       "was discarded.")
            if resumed:
                # The old part may be what was wrong (another server, another file): retry clean.
                raise _Retry(message + " It had been resumed from a partial file")
            raise FetchError(message)
        # No fsync per file: it cost 10x the download time. fetch() syncs the filesystem once at
        # the end, and apt verifies every .deb's hash again before installing it.
        os.chmod(part, 0o444)  # content-addressed files are never rewritten in place
        final = self.path(sha)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, final)

    # -- other ways in and out ---------------------------------------------------------------

    def add_file(self, path: Path, sha256: str | None = None) -> Path:
        """Import a local .deb (verified against `sha256` when given); return its cache path."""
        path = Path(path)
        expected = None if sha256 is None else self._check_sha(sha256)
        self._partial.mkdir(parents=True, exist_ok=True)
        with FileLock(self._lock_path, shared=True):
            # Copy and hash in one pass, so what we verify is exactly what we store even if the
            # source changes under us.
            tmp = self._partial / f"import-{os.getpid()}-{threading.get_ident()}.tmp"
            digest = hashlib.sha256()
            try:
                with open(path, "rb") as src, open(tmp, "wb") as out:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                    out.flush()
                    os.fsync(out.fileno())
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise FetchError(f"cannot add {path} to the package cache at {self.root}: "
                                 f"{exc.strerror or exc}.") from None
            actual = digest.hexdigest()
            if expected is not None and actual != expected:
                tmp.unlink(missing_ok=True)
                raise FetchError(f"{path} does not match: expected sha256 {expected}, got "
                                 f"sha256 {actual}; it was not added to the package cache.")
            final = self.path(actual)
            if final.is_file():
                tmp.unlink()
                return final
            os.chmod(tmp, 0o444)
            final.parent.mkdir(parents=True, exist_ok=True)
            # Same content under the same name: a concurrent import of the same file is harmless.
            os.replace(tmp, final)
            _fsync_dir(final.parent)
            return final

    def link_into(self, refs: Iterable[PackageRef], directory: Path) -> list[Path]:
        """Put each cached file at directory/<ref.filename>: a hardlink, or a copy across devices."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        refs = list(refs)
        absent = [r for r in self._unique(refs) if not self.has(r.sha256)]
        if absent:
            raise FetchError(f"cannot link {len(absent)} package file(s) into {directory}: not in "
                             f"the package cache at {self.root}: {_names(absent)}. Fetch them first.")
        placed: list[Path] = []
        with FileLock(self._lock_path, shared=True):
            for ref in refs:
                name = ref.filename
                if not name or "/" in name or name in (".", "..") or "\0" in name:
                    raise FetchError(f"cannot link {ref.url} into {directory}: '{name}' is not a "
                                     "plain file name.")
                source = self.path(ref.sha256)
                target = directory / name
                try:
                    if os.path.samefile(source, target):
                        placed.append(target)
                        continue
                except FileNotFoundError:
                    pass
                # Build under a temporary name and rename, so apt never sees a half-copied .deb.
                tmp = directory / f".{name}.deb-mock-tmp"
                tmp.unlink(missing_ok=True)
                try:
                    os.link(source, tmp)
                except OSError as exc:
                    # EXDEV: another filesystem; EPERM: protected_hardlinks; EMLINK: link limit.
                    if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                        raise
                    shutil.copyfile(source, tmp)
                    os.chmod(tmp, 0o644)
                os.replace(tmp, target)
                placed.append(target)
        return placed

    def scrub(self) -> None:
        """Remove every cached and partial file (waits for running fetches to finish)."""
        with FileLock(self._lock_path):
            for top in (self._files, self._partial):
                if top.exists():
                    shutil.rmtree(top)

    # -- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _check_sha(sha256: str) -> str:
        sha = sha256.lower()
        if not _SHA256.fullmatch(sha):
            # Also keeps a hostile lock file from naming paths outside the cache.
            raise FetchError(f"'{sha256}' is not a sha256 (64 hex digits).")
        return sha

    def _unique(self, refs: Iterable[PackageRef]) -> list[PackageRef]:
        seen: set[str] = set()
        out: list[PackageRef] = []
        for ref in refs:
            sha = self._check_sha(ref.sha256)
            if sha not in seen:
                seen.add(sha)
                out.append(ref)
        return out


def _content_range_start(value: str | None) -> int | None:
    # "bytes 100-999/1000"
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", value or "")
    return int(match.group(1)) if match else None


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
