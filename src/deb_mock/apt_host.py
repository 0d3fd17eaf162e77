"""An isolated APT on the host: its own sources, lists and empty dpkg status.

It never reads or writes the host's own APT state. It downloads and verifies (by signature) the
archive indexes, and asks apt's own solver which exact packages a request needs — the resolve
step of DESIGN.md decision 3 — without installing anything.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from deb_mock.errors import PackageManagerError
from deb_mock.ids import canonical_id
from deb_mock.locking import FileLock
from deb_mock.package_cache import PackageRef

DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

_URI_LINE = re.compile(r"^'(?P<url>[^']+)' (?P<file>\S+) (?P<size>\d+) SHA256:(?P<sha>[0-9a-f]{64})$")


@dataclass(frozen=True)
class SourceEntry:
    """One deb822 stanza: a repository with its suites and components."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str | None = DEBIAN_KEYRING
    trusted: bool = False
    # A repository's own key: installed at `signed_by` inside trees, and beside the host APT.
    key: bytes | None = None

    def deb822(self, keyring_dir: Path | None = None, types: str = "deb") -> str:
        """The stanza; with `keyring_dir`, an own key is referred to there (the host's copy)."""
        signed_by = self.signed_by
        if self.key is not None and keyring_dir is not None and signed_by:
            signed_by = str(keyring_dir / Path(signed_by).name)
        lines = [
            f"Types: {types}",
            f"URIs: {self.uri}",
            f"Suites: {' '.join(self.suites)}",
        ]
        if self.components:
            lines.append(f"Components: {' '.join(self.components)}")
        if signed_by:
            lines.append(f"Signed-By: {signed_by}")
        if self.trusted:
            lines.append("Trusted: yes")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ResolvedPackage:
    """An exact package: what the lock file and the base key are made of."""

    name: str
    version: str
    architecture: str
    ref: PackageRef

    @property
    def spec(self) -> str:
        return f"{self.name}={self.version}"


def parse_print_uris(output: str) -> list[ResolvedPackage]:
    """Parse `apt-get --print-uris -qq` lines (with Acquire::ForceHash=SHA256)."""
    packages = []
    for line in output.splitlines():
        match = _URI_LINE.match(line.strip())
        if not match:
            continue
        filename = match["file"]
        name, version, arch = filename[: -len(".deb")].split("_")
        packages.append(ResolvedPackage(
            name=name, version=unquote(version), architecture=arch,
            ref=PackageRef(url=match["url"], sha256=match["sha"], size=int(match["size"]),
                           filename=filename)))
    return packages


def apt_options(settings: dict[str, object]) -> list[str]:
    """`-o KEY=VALUE` arguments for apt-get from a mapping."""
    args: list[str] = []
    for key, value in settings.items():
        args += ["-o", f"{key}={value}"]
    return args


def apt_error_summary(stderr: str) -> str:
    """apt's reasons (E:/W: lines and the broken-package explanation) as one paragraph."""
    keep = [line.strip() for line in stderr.splitlines()
            if line.strip() and not line.startswith(("Reading", "Building", "NOTE:"))]
    return " ".join(keep) or "apt-get failed without a message"


class HostApt:
    """APT state under `root`, keyed by its caller (one per archive identity)."""

    def __init__(self, root: Path, architecture: str, sources: list[SourceEntry],
                 install_recommends: bool = False, with_sources: bool = False):
        self.root = root
        self.architecture = architecture
        self.sources = sources
        self.install_recommends = install_recommends
        self.lists = root / "lists"
        self._stamp = root / "updated"
        for sub in ("lists/partial", "cache/archives/partial", "etc/apt.conf.d",
                    "etc/preferences.d", "etc/sources.list.d", "etc/trusted.gpg.d"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "status").touch()
        self._stanzas: dict[tuple, dict[str, str]] = {}  # (name, version, arch) → stanza
        self.keyring_dir = root / "keys"
        self.keyring_dir.mkdir(exist_ok=True)
        for source in sources:
            if source.key is not None and source.signed_by:
                (self.keyring_dir / Path(source.signed_by).name).write_bytes(source.key)
        types = "deb deb-src" if with_sources else "deb"
        sources_text = "\n".join(source.deb822(self.keyring_dir, types) for source in sources)
        sources_file = root / "etc/sources.list.d/deb-mock.sources"
        if not sources_file.exists() or sources_file.read_text() != sources_text:
            sources_file.write_text(sources_text)
            self._stamp.unlink(missing_ok=True)  # other sources: the lists are stale

    @classmethod
    def for_sources(cls, cache_dir: Path, architecture: str, sources: list[SourceEntry],
                    with_sources: bool = False) -> "HostApt":
        """The shared APT state for these repositories under `cache_dir`/apt (both tools);
        `with_sources` adds their source package indexes (deb-src)."""
        identity = {"sources": [s.deb822() for s in sources], "arch": architecture}
        if with_sources:
            identity["deb-src"] = True
        return cls(cache_dir / "apt" / canonical_id(identity)[:16], architecture, sources,
                   with_sources=with_sources)

    def source_files(self, request: str) -> list[PackageRef]:
        """The files of a source package (`name` or `name=version`) from the signed Sources
        indexes: the .dsc and its tarballs, each with its sha256."""
        proc = subprocess.run(["apt-get", *self.options(), "source", "--print-uris", "-qq",
                               request], capture_output=True, text=True, env=_apt_env(),
                              cwd=self.root)
        if proc.returncode != 0:
            raise PackageManagerError(f"no source package {request} in the archive: "
                                      f"{apt_error_summary(proc.stderr)}")
        refs = []
        for line in proc.stdout.splitlines():
            match = _URI_LINE.match(line.strip())
            if match:
                refs.append(PackageRef(url=match["url"], sha256=match["sha"],
                                       size=int(match["size"]), filename=match["file"]))
        return refs

    def options(self, status: Path | None = None) -> list[str]:
        """apt-get -o options that confine apt to this state directory."""
        root = self.root
        settings = {
            "Dir::Etc": root / "etc",
            "Dir::Etc::sourcelist": "/dev/null",
            "Dir::Etc::sourceparts": root / "etc/sources.list.d",
            "Dir::Etc::Parts": root / "etc/apt.conf.d",
            "Dir::Etc::Preferences": "/dev/null",
            "Dir::Etc::PreferencesParts": root / "etc/preferences.d",
            "Dir::Etc::Trusted": "/dev/null",
            "Dir::Etc::TrustedParts": root / "etc/trusted.gpg.d",
            "Dir::State": root,
            "Dir::State::lists": self.lists,
            "Dir::State::status": status or root / "status",
            "Dir::Cache": root / "cache",
            "Dir::Cache::pkgcache": root / "cache/pkgcache.bin",
            "Dir::Cache::srcpkgcache": root / "cache/srcpkgcache.bin",
            "Dir::Log": root / "log",
            "APT::Architecture": self.architecture,
            "APT::Architectures": self.architecture,
            "APT::Install-Recommends": "true" if self.install_recommends else "false",
            "Acquire::Languages": "none",
            "Acquire::ForceHash": "SHA256",
            "Debug::NoLocking": "true",
        }
        return apt_options(settings)

    def age(self) -> float | None:
        """Seconds since the last successful update, None if never."""
        try:
            return time.time() - self._stamp.stat().st_mtime
        except FileNotFoundError:
            return None

    def update(self, max_age: float = 0, log=None) -> bool:
        """Download and verify the indexes unless they are younger than `max_age` seconds.

        Returns True when apt-get update ran. Concurrent callers serialise on a lock and the
        second one finds the indexes fresh.
        """
        with FileLock(self.root / "update.lock"):
            age = self.age()
            if age is not None and age < max_age:
                return False
            proc = subprocess.run(["apt-get", *self.options(), "update"], capture_output=True,
                                  text=True, env=_apt_env())
            if log is not None:
                log.write(proc.stdout + proc.stderr)
            # apt-get update exits 0 on some failures (a W: about an unreachable or unsigned
            # repository); a repository we could not verify is an error for us.
            problems = [line for line in proc.stderr.splitlines()
                        if line.startswith("E:") or ("W:" in line and (
                            "not signed" in line or "NO_PUBKEY" in line or "Failed to fetch" in line
                            or "could not be verified" in line))]
            if proc.returncode != 0 or problems:
                raise PackageManagerError(
                    "could not update the archive indexes: " + apt_error_summary(
                        "\n".join(problems) or proc.stderr))
            self._stamp.touch()
            return True

    def release_digest(self) -> str:
        """sha256 over the signed Release files: it changes exactly when the archive does."""
        digest = hashlib.sha256()
        for path in sorted(self.lists.glob("*Release")):
            digest.update(path.name.encode() + b"\0")
            digest.update(path.read_bytes())
        return digest.hexdigest()

    def index_files(self) -> list[Path]:
        """The verified Release and Packages files (what an environment's apt needs)."""
        return sorted(p for p in self.lists.iterdir()
                      if p.is_file() and ("Release" in p.name or "_Packages" in p.name))

    def resolve(self, request: list[str], status: Path | None = None) -> list[ResolvedPackage]:
        """Exact packages apt would download to install `request` (names, patterns, name=ver)."""
        if not request:
            return []
        return self.plan(["install", "--", *request], status=status).installs

    def plan(self, args: list[str], *, status: Path | None = None,
             extended_states: Path | None = None, preferences: str = "",
             settings: dict[str, str] | None = None) -> "Plan":
        """What `apt-get ARGS` would do to a system whose dpkg status is `status`: the exact
        packages it downloads, and the packages it removes.

        `preferences` (pin stanzas) and `settings` (apt options) steer the solver for this call
        only; `extended_states` holds the automatically-installed marks (for autoremove).
        """
        extra = dict(settings or {})
        with tempfile.TemporaryDirectory(dir=self.root) as scratch:
            parts = Path(scratch) / "preferences.d"
            parts.mkdir()
            if preferences:
                (parts / "steer.pref").write_text(preferences)
            extra["Dir::Etc::PreferencesParts"] = str(parts)
            extra["Dir::State::extended_states"] = str(extended_states or Path(scratch) / "none")
            options = self.options(status) + apt_options(extra)
            # One run gives both: the URIs to download and apt's summary of what it removes.
            proc = subprocess.run(["apt-get", *options, "--print-uris", *args],
                                  capture_output=True, text=True, env=_apt_env())
            if proc.returncode != 0:
                raise PackageManagerError(apt_problem(args, proc.stdout + proc.stderr))
            installs = parse_print_uris(proc.stdout)
            removals = _removed(proc.stdout)
        return Plan(sorted(installs, key=lambda p: p.name), removals)

    def show(self, packages: list[ResolvedPackage]) -> list[dict[str, str]]:
        """The index stanzas (field → value; "" → the stanza's text) of exactly these package
        versions. Remembered per process: resolving stage after stage asks again and again."""
        key = lambda p: (p.name, p.version, p.architecture)  # noqa: E731
        missing = [p for p in packages if key(p) not in self._stanzas]
        if missing:
            proc = subprocess.run(
                ["apt-cache", *self.options(), "show", "--no-all-versions", "--",
                 *(f"{p.name}:{p.architecture}={p.version}" if p.architecture != "all"
                   else f"{p.name}={p.version}" for p in missing)],
                capture_output=True, text=True, env=_apt_env())
            if proc.returncode != 0:
                raise PackageManagerError(
                    "the archive indexes no longer list packages the earlier stages installed "
                    f"({apt_error_summary(proc.stderr)}); resolve the manifest again")
            for text in proc.stdout.strip().split("\n\n"):
                fields = parse_stanza(text)
                fields[""] = text.strip()  # the stanza as apt printed it
                arch = fields.get("Architecture", "")
                self._stanzas.setdefault((fields.get("Package"), fields.get("Version"), arch),
                                         fields)
        return [self._stanzas[key(p)] for p in packages if key(p) in self._stanzas]

    def status_for(self, packages: list[ResolvedPackage], holds: frozenset[str] = frozenset()) -> str:
        """A dpkg status file in which exactly `packages` are installed (from the indexes), so
        that apt can resolve what a tree holding them still needs; `holds` are held."""
        stanzas = []
        for fields in self.show(packages):
            want = "hold" if fields.get("Package") in holds else "install"
            stanzas.append(fields[""] + f"\nStatus: {want} ok installed")
        return "\n\n".join(stanzas) + "\n" if stanzas else ""


@dataclass(frozen=True)
class Plan:
    """What an apt-get transaction does: packages to download (new or other versions) and
    packages it removes."""

    installs: list[ResolvedPackage]
    removals: list[str]


def _removed(output: str) -> list[str]:
    """The names under apt's "The following packages will be REMOVED:" (purges end in '*')."""
    names: list[str] = []
    inside = False
    for line in output.splitlines():
        if line.startswith("The following packages will be REMOVED"):
            inside = True
        elif inside and line.startswith(" "):
            names += [word.rstrip("*").split(":")[0] for word in line.split()]
        else:
            inside = False
    return sorted(set(names))


def parse_stanza(text: str) -> dict[str, str]:
    """A deb822 stanza's fields (continuation lines joined with newlines)."""
    fields: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and key:
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def apt_problem(args: list[str], output: str) -> str:
    """apt's refusal as one paragraph: which packages, which versions, why."""
    lines = [line.strip() for line in output.splitlines()]
    unmet = []
    if "The following packages have unmet dependencies:" in lines:
        start = lines.index("The following packages have unmet dependencies:") + 1
        current = ""
        for line in lines[start:]:
            if not line or line.startswith("E:"):
                break
            if " : " in line:
                current, _, line = line.partition(" : ")
            unmet.append(f"{current.strip()} {line.strip()}")
    errors = [line[2:].strip() for line in lines if line.startswith("E:")
              and "Unable to correct problems" not in line]
    request = " ".join(a for a in args if a != "--")
    if unmet:
        return (f"apt cannot do `{request}`: " + "; ".join(unmet) + "."
                + (" " + " ".join(errors) if errors else ""))
    return f"apt cannot do `{request}`: " + (" ".join(errors) or apt_error_summary(output))


def _apt_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LC_ALL": "C.UTF-8",
            "DEBIAN_FRONTEND": "noninteractive"}
