"""The package cache against a real HTTP server on 127.0.0.1 that can misbehave on request."""

from __future__ import annotations

import hashlib
import http.server
import multiprocessing
import os
import re
import tempfile
import threading
import time
from pathlib import Path

import pytest

from deb_mock import __version__
from deb_mock.errors import FetchError
from deb_mock.package_cache import FetchProgress, PackageCache, PackageRef

# One-shot faults fire on the first request for a file, then the file is served normally.
ONE_SHOT = {"500-once", "drop-once"}


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves server.docroot with Range support and the faults named in server.faults."""

    server: "_Server"

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        srv = self.server
        name = self.path.lstrip("/")
        with srv.lock:
            srv.requests.append((name, self.headers.get("Range"), self.headers.get("User-Agent")))
            fault = srv.faults.get(name)
            if fault in ONE_SHOT:
                del srv.faults[name]
            srv.inflight += 1
            srv.max_inflight = max(srv.max_inflight, srv.inflight)
        try:
            self._serve(name, fault)
        finally:
            with srv.lock:
                srv.inflight -= 1

    def _serve(self, name: str, fault: str | None) -> None:
        srv = self.server
        if fault == "500-once":
            self.send_error(500)
            return
        file = srv.docroot / name
        if "/" in name or not file.is_file():
            self.send_error(404)
            return
        data = file.read_bytes()
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and fault != "norange":
            start = int(match.group(1))
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.delay:
            time.sleep(srv.delay)
        if fault == "drop-once":
            # Promise the whole body, send half, hang up: the client must resume with Range.
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if fault == "slow":
            for i in range(0, len(body), 16384):
                self.wfile.write(body[i:i + 16384])
                time.sleep(0.005)
            return
        self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, docroot: Path):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.docroot = docroot
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str | None, str | None]] = []
        self.faults: dict[str, str] = {}
        self.delay = 0.0
        self.inflight = 0
        self.max_inflight = 0

    def handle_error(self, request, client_address) -> None:
        pass  # clients that hang up mid-body are part of the tests, not news

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}"

    def add(self, name: str, data: bytes, *, sha256: str | None = None,
            size: bool = True) -> PackageRef:
        """Publish `data` as `name`; the ref claims `sha256` if given (to make a liar)."""
        (self.docroot / name).write_bytes(data)
        return PackageRef(url=self.url(name), sha256=sha256 or hashlib.sha256(data).hexdigest(),
                          size=len(data) if size else None, filename=name)

    def gets(self, name: str | None = None) -> list[tuple[str, str | None, str | None]]:
        with self.lock:
            return [r for r in self.requests if name is None or r[0] == name]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    # A proxy from the environment would make urllib leave 127.0.0.1.
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")


@pytest.fixture
def server(tmp_path):
    docroot = tmp_path / "www"
    docroot.mkdir()
    srv = _Server(docroot)
    thread = threading.Thread(target=srv.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def cache(tmp_path):
    c = PackageCache(tmp_path / "cache")
    c.backoff = 0.01  # retries are exercised, not waited for
    return c


def deb(name: str, size: int = 40_000) -> bytes:
    """Deterministic, distinct content per name."""
    seed = hashlib.sha256(name.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def cached_files(cache: PackageCache) -> list[Path]:
    return sorted(p for p in (cache.root / "sha256").rglob("*") if p.is_file())


def test_parallel_fetch_brings_every_file_verified(server, cache):
    """Twenty files arrive in parallel, each under its sha256, with our User-Agent."""
    server.delay = 0.05
    refs = [server.add(f"p{i}_1.0_amd64.deb", deb(f"p{i}", 10_000 + 3_000 * i)) for i in range(20)]

    paths = cache.fetch(refs, jobs=8)

    assert set(paths) == {r.sha256 for r in refs}
    for ref in refs:
        assert paths[ref.sha256] == cache.path(ref.sha256)
        assert hashlib.sha256(paths[ref.sha256].read_bytes()).hexdigest() == ref.sha256
    assert len(server.gets()) == 20
    assert server.max_inflight > 1
    assert {ua for _, _, ua in server.gets()} == {f"deb-mock/{__version__}"}
    assert not list((cache.root / "partial").glob("*.part"))


def test_cache_hits_make_no_requests(server, cache):
    """A second fetch of the same refs is answered from the cache without touching the server."""
    refs = [server.add(f"h{i}.deb", deb(f"h{i}")) for i in range(5)]
    cache.fetch(refs)
    before = len(server.gets())

    cache.fetch(refs)

    assert len(server.gets()) == before == 5
    assert cache.missing(refs) == []


def test_duplicate_sha256_is_fetched_once(server, cache):
    """Two refs with the same content cause one download."""
    ref = server.add("dup.deb", deb("dup"))
    twin = PackageRef(url=ref.url, sha256=ref.sha256.upper(), size=ref.size, filename="twin.deb")

    paths = cache.fetch([ref, twin])

    assert list(paths) == [ref.sha256]
    assert len(server.gets("dup.deb")) == 1


def test_dropped_connection_resumes_with_range(server, cache):
    """A body cut off halfway is resumed from where it stopped, and the result verifies."""
    ref = server.add("big.deb", deb("big", 700_000))
    server.faults["big.deb"] = "drop-once"

    path = cache.fetch([ref])[ref.sha256]

    ranges = [rng for _, rng, _ in server.gets("big.deb")]
    assert ranges[0] is None
    assert ranges[1] == f"bytes={700_000 // 2}-"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == ref.sha256


def test_part_file_left_by_an_earlier_run_is_resumed(server, cache):
    """A .part from an interrupted run is continued, not downloaded again."""
    data = deb("left", 100_000)
    ref = server.add("left.deb", data)
    (cache.root / "partial").mkdir(parents=True)
    (cache.root / "partial" / f"{ref.sha256}.part").write_bytes(data[:30_000])

    cache.fetch([ref])

    assert [rng for _, rng, _ in server.gets()] == ["bytes=30000-"]
    assert cache.path(ref.sha256).read_bytes() == data


def test_server_ignoring_range_restarts_from_zero(server, cache):
    """When the server answers 200 to a Range request, the part is rewritten from the start."""
    data = deb("norange", 100_000)
    ref = server.add("norange.deb", data)
    server.faults["norange.deb"] = "norange"
    (cache.root / "partial").mkdir(parents=True)
    (cache.root / "partial" / f"{ref.sha256}.part").write_bytes(data[:30_000])

    cache.fetch([ref])

    assert cache.path(ref.sha256).read_bytes() == data


def test_stale_part_with_other_content_is_retried_from_scratch(server, cache):
    """A resumed download that fails verification starts over instead of failing."""
    data = deb("stale", 100_000)
    ref = server.add("stale.deb", data)
    (cache.root / "partial").mkdir(parents=True)
    (cache.root / "partial" / f"{ref.sha256}.part").write_bytes(b"x" * 30_000)

    cache.fetch([ref])

    assert [rng for _, rng, _ in server.gets()] == ["bytes=30000-", None]
    assert cache.path(ref.sha256).read_bytes() == data


def test_server_error_is_retried(server, cache):
    """A 500 is retried and the file then arrives."""
    ref = server.add("flaky.deb", deb("flaky"))
    server.faults["flaky.deb"] = "500-once"

    cache.fetch([ref])

    assert len(server.gets("flaky.deb")) == 2
    assert cache.has(ref.sha256)


def test_sha256_mismatch_raises_and_stores_nothing(server, cache):
    """Content that does not match its sha256 is discarded and the error names both hashes."""
    wrong = "0" * 64
    ref = server.add("liar.deb", deb("liar"), sha256=wrong)
    actual = hashlib.sha256(deb("liar")).hexdigest()

    with pytest.raises(FetchError) as info:
        cache.fetch([ref])

    message = str(info.value)
    assert ref.url in message and wrong in message and actual in message
    assert cached_files(cache) == []
    assert not list((cache.root / "partial").glob("*.part"))
    assert len(server.gets("liar.deb")) == 1  # a mismatch is not retried


def test_404_fails_at_once_and_others_stay(server, cache):
    """A 404 is not retried; every failure is reported together and good files are kept."""
    good = server.add("good.deb", deb("good"))
    gone = PackageRef(url=server.url("gone.deb"), sha256="1" * 64, size=10, filename="gone.deb")
    liar = server.add("liar.deb", deb("liar"), sha256="2" * 64)

    with pytest.raises(FetchError) as info:
        cache.fetch([good, gone, liar])

    message = str(info.value)
    assert "2 of 3" in message
    assert gone.url in message and "404" in message
    assert liar.url in message and "2" * 64 in message
    assert len(server.gets("gone.deb")) == 1
    assert cache.has(good.sha256)


def test_retries_give_up_with_the_last_error(server, cache):
    """A server that keeps failing is tried retries+1 times, then reported."""
    ref = server.add("down.deb", deb("down"))
    server.faults["down.deb"] = "500-once"

    with pytest.raises(FetchError) as info:
        cache.fetch([ref], retries=0)

    assert "HTTP 500" in str(info.value) and ref.url in str(info.value)
    assert len(server.gets("down.deb")) == 1


def test_offline_with_missing_files_lists_them(server, cache):
    """Offline, a missing file is an error naming it; the server is never asked."""
    present = server.add("present.deb", deb("present"))
    cache.fetch([present])
    absent = [server.add(f"absent{i}.deb", deb(f"absent{i}")) for i in range(12)]
    before = len(server.gets())

    with pytest.raises(FetchError) as info:
        cache.fetch([present, *absent], offline=True)

    message = str(info.value)
    assert "offline" in message and "12 package" in message
    assert "absent0.deb" in message and "2 more" in message
    assert "present.deb" not in message
    assert len(server.gets()) == before


def test_offline_with_everything_cached_succeeds(server, cache):
    refs = [server.add(f"o{i}.deb", deb(f"o{i}")) for i in range(3)]
    cache.fetch(refs)
    before = len(server.gets())

    paths = cache.fetch(refs, offline=True)

    assert set(paths) == {r.sha256 for r in refs}
    assert len(server.gets()) == before


def test_file_urls_are_copied_and_verified(tmp_path, cache):
    data = deb("local")
    src = tmp_path / "local.deb"
    src.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    ref = PackageRef(url=src.as_uri(), sha256=sha, size=None, filename="local.deb")
    bad = PackageRef(url=src.as_uri(), sha256="3" * 64, size=None, filename="bad.deb")

    assert cache.fetch([ref])[sha].read_bytes() == data
    with pytest.raises(FetchError, match="3" * 64):
        cache.fetch([bad])


def test_link_into_makes_hardlinks(server, cache, tmp_path):
    """Linked files share the cached inode and carry the name apt expects."""
    refs = [server.add(f"l{i}_1_amd64.deb", deb(f"l{i}")) for i in range(3)]
    cache.fetch(refs)
    archives = tmp_path / "root" / "var" / "cache" / "apt" / "archives"

    placed = cache.link_into(refs, archives)
    again = cache.link_into(refs, archives)  # idempotent

    assert placed == again == [archives / r.filename for r in refs]
    for ref, path in zip(refs, placed):
        assert path.stat().st_ino == cache.path(ref.sha256).stat().st_ino


def test_link_into_copies_across_filesystems(server, cache, tmp_path):
    """Where a hardlink cannot cross devices (EXDEV), the file is copied instead."""
    if not os.path.isdir("/dev/shm") or os.stat("/dev/shm").st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on a filesystem other than the test's tmp_path")
    ref = server.add("x_1_all.deb", deb("x"))
    cache.fetch([ref])
    with tempfile.TemporaryDirectory(dir="/dev/shm") as other:
        [placed] = cache.link_into([ref], Path(other))
        assert placed.read_bytes() == cache.path(ref.sha256).read_bytes()
        assert placed.stat().st_ino != cache.path(ref.sha256).stat().st_ino


def test_link_into_refuses_uncached_and_odd_names(server, cache, tmp_path):
    ref = server.add("n.deb", deb("n"))
    with pytest.raises(FetchError, match="n.deb"):
        cache.link_into([ref], tmp_path / "out")
    cache.fetch([ref])
    evil = PackageRef(url=ref.url, sha256=ref.sha256, size=ref.size, filename="../escape.deb")
    with pytest.raises(FetchError, match="plain file name"):
        cache.link_into([evil], tmp_path / "out")


def test_add_file_imports_and_verifies(tmp_path, cache):
    data = deb("imported")
    src = tmp_path / "imported.deb"
    src.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()

    with pytest.raises(FetchError, match=sha):
        cache.add_file(src, "4" * 64)
    assert cached_files(cache) == []
    assert cache.add_file(src) == cache.add_file(src, sha) == cache.path(sha)
    assert cache.path(sha).read_bytes() == data


def test_progress_is_throttled_and_ends_complete(server, cache):
    """Progress calls come at most ~10 per second, and the last one shows everything done."""
    server.faults.update({f"s{i}.deb": "slow" for i in range(6)})
    refs = [server.add(f"s{i}.deb", deb(f"s{i}", 400_000), size=(i % 2 == 0)) for i in range(6)]
    calls: list[tuple[float, FetchProgress]] = []

    cache.fetch(refs, jobs=3, progress=lambda p: calls.append((time.monotonic(), p)))

    last = calls[-1][1]
    assert last.total_files == last.done_files == 6
    assert last.total_bytes == last.done_bytes == 6 * 400_000
    gaps = [b[0] - a[0] for a, b in zip(calls[:-2], calls[1:-1])]
    assert all(gap >= 0.09 for gap in gaps)
    assert len(calls) >= 2


def test_size_and_scrub(server, cache):
    refs = [server.add(f"z{i}.deb", deb(f"z{i}", 1000)) for i in range(3)]
    cache.fetch(refs)
    assert cache.size() == 3000

    cache.scrub()

    assert cache.size() == 0 and cache.missing(refs) == refs


def _fetch_in_child(root: str, refs: list[PackageRef], barrier, results) -> None:
    os.environ["no_proxy"] = "*"
    try:
        cache = PackageCache(Path(root))
        barrier.wait(20)  # both children are imported and ready: start together
        began = time.monotonic()
        cache.fetch(refs, jobs=4)
        results.put(("ok", began, time.monotonic()))
    except Exception as exc:  # report, so the parent's assertion shows what went wrong
        results.put((repr(exc), 0.0, 0.0))


def test_two_processes_fetching_the_same_files_both_succeed(server, tmp_path):
    """Concurrent processes share the work through per-file locks: each file is downloaded once."""
    names = [f"m{i}.deb" for i in range(8)]
    server.faults.update({n: "slow" for n in names})
    refs = [server.add(n, deb(n, 200_000)) for n in names]
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_fetch_in_child,
                         args=(str(tmp_path / "shared"), refs, barrier, results))
             for _ in range(2)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(10)

    assert [o[0] for o in outcomes] == ["ok", "ok"]
    (_, a0, a1), (_, b0, b1) = outcomes
    assert a0 < b1 and b0 < a1  # CLOCK_MONOTONIC is system-wide: the fetches overlapped
    cache = PackageCache(tmp_path / "shared")
    for ref in refs:
        assert hashlib.sha256(cache.path(ref.sha256).read_bytes()).hexdigest() == ref.sha256
        assert len(server.gets(ref.filename)) == 1
