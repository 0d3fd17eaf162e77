"""Real APT repositories for tests: packages built by dpkg-deb, indexed by apt-ftparchive, signed
by a throwaway GnuPG key and served over HTTP on 127.0.0.1.

Everything lives under TEST_CACHE/apt-repos and persists between runs: the keys, the port and
the built repositories. A build is stamped with a hash of its inputs and done again only when
they change, and every timestamp in it is fixed, so the served URL and bytes stay the same from
run to run and the caches downstream of them (the host APT, environment bases) keep hitting.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import gzip
import hashlib
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from conftest import TEST_CACHE
from deb_mock.locking import FileLock

WORK = TEST_CACHE / "apt-repos"
SIGNER = "forge-signer"
# 2024-01-01T00:00:00Z: the time of every key, signature, file and Release Date we make.
EPOCH = 1704067200
TAMPERS = (None, "package", "index")


@dataclass(frozen=True)
class Package:
    """One binary package; `files` maps paths in it to their text (usr/bin/* is executable)."""

    name: str
    version: str
    depends: str = ""
    conflicts: str = ""
    architecture: str = "all"
    files: dict[str, str] = field(default_factory=dict)

    @property
    def filename(self) -> str:
        """The pool file name (the epoch, if any, is not part of it, as in Debian)."""
        return f"{self.name}_{self.version.split(':', 1)[-1]}_{self.architecture}.deb"

    def contents(self) -> dict[str, str]:
        return self.files or {f"usr/share/doc/{self.name}/VERSION": self.version + "\n"}

    def control(self) -> str:
        fields = {"Package": self.name, "Version": self.version,
                  "Architecture": self.architecture, "Maintainer": "Forge Test <test@example.org>",
                  "Depends": self.depends, "Conflicts": self.conflicts,
                  "Description": f"{self.name} {self.version}, a package for the test suite"}
        return "".join(f"{key}: {value}\n" for key, value in fields.items() if value)


def hello(version: str) -> Package:
    """forge-hello at `version`: /usr/bin/forge-hello prints the version."""
    return Package("forge-hello", version,
                   files={"usr/bin/forge-hello": f"#!/bin/sh\necho forge-hello {version}\n"})


FORGE_PACKAGES = (
    hello("1.0"),
    hello("2.0"),
    Package("forge-lib", "1.0"),
    Package("forge-tool", "1.0", depends="forge-lib (>= 1.0)"),
    Package("forge-conflict", "1.0", conflicts="forge-tool"),
    # There is no forge-lib 2.0: this one can never be installed.
    Package("forge-needs-new-lib", "1.0", depends="forge-lib (>= 2.0)"),
)


def gpg(home: Path, *args: str) -> str:
    return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--yes",
                           "--faked-system-time", f"{EPOCH}!", *args],
                          check=True, capture_output=True, text=True).stdout


@contextlib.contextmanager
def _keyring(name: str) -> Iterator[Path]:
    """The GnuPG home of key `name` (made on first use), locked; its agent is stopped after."""
    home = WORK / f"gnupg-{name}"
    with FileLock(WORK / f"gnupg-{name}.lock"):
        try:
            if not (home / "public.asc").exists():
                shutil.rmtree(home, ignore_errors=True)  # a half-made key from an interrupted run
                home.mkdir(parents=True)
                home.chmod(0o700)
                gpg(home, "--passphrase", "", "--quick-gen-key", f"{name} <{name}@example.org>",
                    "ed25519", "sign", "never")
                public = gpg(home, "--export", "--armor")
                (home / "public.asc.tmp").write_text(public)
                (home / "public.asc.tmp").rename(home / "public.asc")
            yield home
        finally:
            subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                           capture_output=True)


def signing_key(name: str) -> tuple[Path, str]:
    """A throwaway ed25519 signing key (made once): its GnuPG home and ASCII-armoured public key."""
    with _keyring(name) as home:
        return home, (home / "public.asc").read_text()


def _run(argv: list[str], cwd: Path) -> str:
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH), "LC_ALL": "C.UTF-8"}
    return subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout


def _pool_dir(name: str) -> str:
    return name[:4] if name.startswith("lib") else name[0]


def _build_deb(package: Package, pool: Path, scratch: Path) -> None:
    tree = scratch / package.filename
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN/control").write_text(package.control())
    for path, text in package.contents().items():
        path = path.lstrip("/")
        target = tree / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(0o755 if path.startswith("usr/bin/") else 0o644)
    for path in tree.rglob("*"):
        if path.is_dir():
            path.chmod(0o755)
    target = pool / _pool_dir(package.name) / package.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    _run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(target)], cwd=scratch)


def _stanzas(text: str) -> list[str]:
    return [stanza.strip() + "\n" for stanza in text.split("\n\n") if stanza.strip()]


def build_repo(root: Path, packages: list[Package] | tuple[Package, ...], *, signer: str | None,
               suite: str = "forge", component: str = "main", codename: str | None = None,
               origin: str = "Forge Test", label: str = "Forge Test",
               tamper: str | None = None) -> None:
    """A standard repository of `packages` at `root`, signed by key `signer` (None: unsigned).

    `tamper="package"` appends a byte to the first package's .deb after indexing, so it no longer
    matches the Packages index; `tamper="index"` changes the Packages index after signing (and
    removes Packages.gz), so apt finds a hash sum mismatch against the Release file. Nothing is
    done when `root` already holds a build of the same inputs.
    """
    if tamper not in TAMPERS:
        raise ValueError(f"tamper must be one of {TAMPERS}, not {tamper!r}")
    key = signing_key(signer)[1] if signer else None
    inputs = {"packages": [asdict(p) for p in packages], "signer": signer, "key": key,
              "suite": suite, "component": component, "codename": codename or suite,
              "origin": origin, "label": label, "tamper": tamper,
              # A change to how repositories are built rebuilds them (byte for byte the same
              # when the change did not touch what is built).
              "code": Path(__file__).read_text()}
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    stamp = root / ".build-stamp"
    with FileLock(root.parent / f".{root.name}.lock"):
        if stamp.exists() and stamp.read_text() == digest:
            return
        work = root.parent / f".{root.name}.build"
        shutil.rmtree(work, ignore_errors=True)
        _build(work, list(packages), signer=signer, suite=suite, component=component,
               codename=codename or suite, origin=origin, label=label, tamper=tamper)
        (work / "repo/.build-stamp").write_text(digest)
        shutil.rmtree(root, ignore_errors=True)
        (work / "repo").rename(root)
        shutil.rmtree(work)


def _build(work: Path, packages: list[Package], *, signer: str | None, suite: str,
           component: str, codename: str, origin: str, label: str, tamper: str | None) -> None:
    repo = work / "repo"
    pool = repo / "pool" / component
    pool.mkdir(parents=True)
    for package in packages:
        _build_deb(package, pool, work)

    dist = repo / "dists" / suite
    index = dist / component / "binary-amd64"
    index.mkdir(parents=True)
    # apt-ftparchive lists in directory order; sorted, the index is the same on every filesystem.
    listing = _stanzas(_run(["apt-ftparchive", "packages", f"pool/{component}"], cwd=repo))
    packages_text = "\n".join(sorted(listing)).encode()
    (index / "Packages").write_bytes(packages_text)
    (index / "Packages.gz").write_bytes(gzip.compress(packages_text, 9, mtime=0))

    settings = {"Suite": suite, "Codename": codename, "Origin": origin, "Label": label,
                "Components": component, "Architectures": "amd64 all",
                "Date": email.utils.formatdate(EPOCH, usegmt=True)}
    options = [arg for key, value in settings.items()
               for arg in ("-o", f"APT::FTPArchive::Release::{key}={value}")]
    release = _run(["apt-ftparchive", *options, "release", f"dists/{suite}"], cwd=repo)
    (dist / "Release").write_text(release)
    if signer:
        with _keyring(signer) as home:
            gpg(home, "--clearsign", "-o", str(dist / "InRelease"), str(dist / "Release"))
            gpg(home, "--detach-sign", "--armor", "-o", str(dist / "Release.gpg"),
                str(dist / "Release"))

    if tamper == "package":
        with open(pool / _pool_dir(packages[0].name) / packages[0].filename, "ab") as deb:
            deb.write(b"\0")
    elif tamper == "index":
        # The first package's SHA256 reversed: the index now points at another .deb. Its size
        # stays the same, so apt finds the hash differing from the signed Release (a longer file
        # is refused as "File has unexpected size" instead). Packages.gz goes: apt fetches it
        # first, and after a 404 falls back to this Packages.
        sha = re.search(rb"^SHA256: ([0-9a-f]{64})$", packages_text, re.MULTILINE)[1]
        (index / "Packages").write_bytes(packages_text.replace(sha, sha[::-1], 1))
        (index / "Packages.gz").unlink()


@dataclass(frozen=True)
class Repo:
    """A served repository: what a sources entry for it needs."""

    url: str
    suite: str
    component: str
    key: str | None  # the ASCII-armoured public key that signs it; None when unsigned
    root: Path  # the directory served at `url`

    def deb822(self, signed_by: Path | str | None = None) -> str:
        """A deb822 sources stanza for this repository, with Signed-By when given."""
        lines = ["Types: deb", f"URIs: {self.url}", f"Suites: {self.suite}",
                 f"Components: {self.component}"]
        if signed_by:
            lines.append(f"Signed-By: {signed_by}")
        return "\n".join(lines) + "\n"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


class AptRepos:
    """Repositories built on demand under `www`, served at http://127.0.0.1:`port`/<name>."""

    def __init__(self, www: Path, port: int):
        self.www = www
        self.port = port

    def repo(self, name: str, packages: list[Package] | tuple[Package, ...], *,
             signer: str | None = SIGNER, suite: str = "forge", tamper: str | None = None,
             **kw) -> Repo:
        """Repository `name` holding `packages` (built unless already there), and its URL.

        `kw` goes to build_repo (component, codename, origin, label).
        """
        build_repo(self.www / name, packages, signer=signer, suite=suite, tamper=tamper, **kw)
        return Repo(url=f"http://127.0.0.1:{self.port}/{name}", suite=suite,
                    component=kw.get("component", "main"),
                    key=signing_key(signer)[1] if signer else None, root=self.www / name)


def fixed_port() -> int:
    """The loopback port of the last run if it is still free, else a new one (remembered)."""
    path = WORK / "port"
    if path.exists():
        port = int(path.read_text())
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    WORK.mkdir(parents=True, exist_ok=True)
    path.write_text(str(port))
    return port


@contextlib.contextmanager
def serve() -> Iterator[AptRepos]:
    """One HTTP server on 127.0.0.1 for WORK/www, running while the context is open."""
    www = WORK / "www"
    www.mkdir(parents=True, exist_ok=True)
    handler = functools.partial(_QuietHandler, directory=str(www))
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", fixed_port()), handler)
    except OSError:  # taken after all (bound, not listening): a new port from now on
        (WORK / "port").unlink()
        server = http.server.ThreadingHTTPServer(("127.0.0.1", fixed_port()), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="apt-repos", daemon=True)
    thread.start()
    try:
        yield AptRepos(www, server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
