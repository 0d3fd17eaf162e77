"""Resolve: package names to exact packages, before any stage ID is computed (DESIGN.md, 3).

apt's own solver runs on the host against an isolated APT state whose repositories are verified
by signature (deb_mock.apt_host). For each pipeline the resolver follows what its stages do to
the tree's package world — repositories and pins (org.osbuild.apt.config), installed packages,
holds and automatic marks (org.osbuild.debootstrap, org.osbuild.apt) — so each stage is solved
against the tree exactly as the build will leave it before that stage.

Each package-installing stage gets an `inputs.packages` of sha256 references (name, version,
architecture and size as metadata) and the manifest gets `org.osbuild.curl` items for them: the
locked manifest, as osbuild does it for RPMs. A stage that already has `inputs.packages` is
locked and left as it is, unless `update` asks to refresh it.
"""

from __future__ import annotations

import base64
import copy
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from debian.debian_support import Version

from deb_mock.apt_host import HostApt, Plan, ResolvedPackage, SourceEntry
from deb_mock.errors import PackageManagerError
from deb_mock.package_cache import PackageRef
from debian_forge import stages
from debian_forge.manifest import Manifest, ManifestError, Stage

PACKAGES_INPUT = "packages"
DEFAULT_MAX_AGE = 3600.0  # seconds the archive indexes stay fresh, like deb-mock's metadata_expire
STRATEGIES = ("resolve", "conservative", "aggressive")

# name[:arch][/release][ OP version] — OP as in Debian relations; "=" is an exact version.
_REQUEST = re.compile(r"^(?P<name>[a-z0-9][a-z0-9.+-]*)(?::(?P<arch>[a-z0-9]+))?"
                      r"(?:/(?P<release>[A-Za-z0-9.+_-]+))?"
                      r"\s*(?:\(?\s*(?P<op>>=|<=|>>|<<|=|>|<)\s*(?P<version>[A-Za-z0-9.+:~_-]+)\s*\)?)?$")
PACKAGE_REQUEST_PATTERN = _REQUEST.pattern


@dataclass
class AptState:
    """What the stages of one pipeline so far make of its package world."""

    architecture: str | None = None
    mirrors: dict[str, str] = field(default_factory=dict)  # "@mirror" etc. → the bootstrap's URL
    sources: dict[str, list[SourceEntry]] = field(default_factory=dict)  # by sources file name
    preferences: dict[str, str] = field(default_factory=dict)  # by preferences file name
    settings: dict[str, str] = field(default_factory=dict)  # apt.conf options that steer apt
    installed: dict[str, ResolvedPackage] = field(default_factory=dict)
    auto: set[str] = field(default_factory=set)  # installed as dependencies
    holds: set[str] = field(default_factory=set)

    def all_sources(self) -> list[SourceEntry]:
        return [entry for entries in self.sources.values() for entry in entries]


@dataclass(frozen=True)
class Request:
    """One package of a stage's `packages`, as written and as apt is asked for it."""

    text: str
    name: str
    arch: str | None
    release: str | None
    op: str | None
    version: str | None


def parse_request(text: str) -> Request:
    match = _REQUEST.match(text.strip())
    if not match:
        raise PackageManagerError(f"cannot read the package request {text!r}: expected "
                                  "name, name=version, name/release or name (>= version)")
    return Request(text, match["name"], match["arch"], match["release"], match["op"],
                   match["version"])


def _satisfies(version: str, op: str, wanted: str) -> bool:
    have, want = Version(version), Version(wanted)
    return {">=": have >= want, "<=": have <= want, ">>": have > want, ">": have > want,
            "<<": have < want, "<": have < want, "=": have == want}[op]


class Resolver:
    """Isolated host APT states (one per set of repositories), refreshed when stale."""

    def __init__(self, cache_dir: Path, max_age: float = DEFAULT_MAX_AGE,
                 strategy: str = "resolve", previous: Manifest | None = None,
                 update: frozenset[str] | None = None):
        self.cache_dir = cache_dir
        self.max_age = max_age
        self.strategy = strategy  # default for stages that name none
        self.previous = previous  # an earlier lock: what `conservative` keeps
        self.update = update  # with `previous`: refresh only these names (empty: all)
        self.manifest: Manifest | None = None  # the manifest being resolved (its sources)
        self._apts: dict[str, HostApt] = {}

    def apt(self, state: AptState) -> HostApt:
        host_apt = HostApt.for_sources(self.cache_dir, state.architecture or "amd64",
                                       state.all_sources())
        key = str(host_apt.root)
        if key not in self._apts:
            host_apt.update(self.max_age)
            self._apts[key] = host_apt
        return self._apts[key]

    def candidates(self, state: AptState, name: str) -> list[str]:
        """Every version of `name` the repositories offer, newest first."""
        host_apt = self.apt(state)
        proc = subprocess.run(["apt-cache", *host_apt.options(), "madison", name],
                              capture_output=True, text=True)
        versions = {line.split("|")[1].strip() for line in proc.stdout.splitlines()
                    if line.count("|") >= 2}
        return sorted(versions, key=Version, reverse=True)

    def apt_request(self, state: AptState, request: Request) -> str:
        """The request as apt-get takes it; a version range becomes the newest exact match."""
        base = request.name + (f":{request.arch}" if request.arch else "")
        if request.op is None:
            return base + (f"/{request.release}" if request.release else "")
        if request.op == "=":
            return f"{base}={request.version}"
        found = [v for v in self.candidates(state, request.name)
                 if _satisfies(v, request.op, request.version)]
        if not found:
            raise PackageManagerError(
                f"no version of {request.name} satisfies {request.op} {request.version} "
                f"(the repositories offer: {', '.join(self.candidates(state, request.name)) or 'none'})")
        return f"{base}={found[0]}"

    def keep(self, stage: Stage) -> dict[str, str]:
        """The versions an earlier lock gave this stage that resolving should keep: all of them
        for the `conservative` strategy, all but the ones being updated for `--update NAME`."""
        strategy = stage.options.get("strategy", self.strategy)
        if self.previous is None or not (strategy == "conservative" or self.update):
            return {}
        return {name: version for name, version in self.previous_versions(stage.path).items()
                if name not in (self.update or ())}

    def previous_versions(self, stage_path: str) -> dict[str, str]:
        """name → version that the earlier lock gave the stage at `stage_path`."""
        if self.previous is None:
            return {}
        for pipeline in self.previous.pipelines:
            for stage in pipeline.stages:
                if stage.path == stage_path and PACKAGES_INPUT in stage.inputs:
                    return {ref["metadata"]["name"]: ref["metadata"]["version"]
                            for ref in stage.inputs[PACKAGES_INPUT]["references"].values()}
        return {}

    def plan(self, state: AptState, args: list[str], *, recommends: bool = False,
             target_release: str | None = None, exclude: tuple[str, ...] = (),
             keep: dict[str, str] | None = None, allow_downgrades: bool = False) -> Plan:
        """What `apt-get ARGS` does to the tree described by `state`."""
        host_apt = self.apt(state)
        preferences = "\n".join(state.preferences.values())
        for name in exclude:  # never install these: apt must find another way, or fail
            preferences += f"\nPackage: {name}\nPin: version *\nPin-Priority: -1\n"
        for name, version in (keep or {}).items():  # conservative: prefer what was locked
            preferences += f"\nPackage: {name}\nPin: version {version}\nPin-Priority: 1001\n"
        settings = dict(state.settings)
        settings["APT::Install-Recommends"] = "true" if recommends else "false"
        if target_release:
            settings["APT::Default-Release"] = target_release
        if allow_downgrades:
            args = ["--allow-downgrades", *args]
        with tempfile.TemporaryDirectory(dir=host_apt.root) as scratch:
            status = Path(scratch) / "status"
            status.write_text(host_apt.status_for(list(state.installed.values()),
                                                  frozenset(state.holds)))
            marks = Path(scratch) / "extended_states"
            marks.write_text("".join(f"Package: {p.name}\nArchitecture: {p.architecture}\n"
                                     "Auto-Installed: 1\n\n"
                                     for p in state.installed.values() if p.name in state.auto))
            return host_apt.plan(args, status=status, extended_states=marks,
                                 preferences=preferences, settings=settings)

    def source_bytes(self, checksum: str) -> bytes:
        """The content of a source item of the manifest being resolved (an inline one)."""
        items = (self.manifest.sources if self.manifest else {}).get(
            "org.osbuild.inline", {}).get("items", {})
        if checksum not in items:
            raise PackageManagerError(f"{checksum} is not an org.osbuild.inline item of the "
                                      "manifest's sources")
        return base64.b64decode(items[checksum]["data"])


def locked_packages(stage: Stage, manifest: Manifest) -> list[ResolvedPackage] | None:
    """The packages a locked stage carries, or None for an unlocked stage."""
    item = stage.inputs.get(PACKAGES_INPUT)
    if item is None:
        return None
    urls = manifest.curl_items()
    packages = []
    for checksum, ref in item["references"].items():
        meta = ref.get("metadata", {})
        url = urls[checksum]
        packages.append(ResolvedPackage(
            meta["name"], meta["version"], meta["architecture"],
            PackageRef(url=url, sha256=checksum.split(":", 1)[1], size=meta.get("size", 0),
                       filename=url.rsplit("/", 1)[-1])))
    return packages


def packages_input(packages: list[ResolvedPackage]) -> dict:
    return {"type": "org.osbuild.files", "origin": "org.osbuild.source", "references": {
        f"sha256:{p.ref.sha256}": {"metadata": {"name": p.name, "version": p.version,
                                                "architecture": p.architecture,
                                                "size": p.ref.size}}
        for p in sorted(packages, key=lambda p: (p.name, p.architecture))}}


def locks_packages(stage: Stage) -> bool:
    return bool(getattr(stages.get(stage.type).module, "LOCKS_PACKAGES", False))


def is_locked(manifest: Manifest) -> bool:
    """True when no stage needs resolving."""
    return all(PACKAGES_INPUT in stage.inputs
               for pipeline in manifest.pipelines for stage in pipeline.stages
               if locks_packages(stage))


@dataclass(frozen=True)
class Resolved:
    """One stage's resolution, for reports (dry-run, explain)."""

    stage: Stage
    pipeline: str
    packages: list[ResolvedPackage]
    installed_before: dict[str, ResolvedPackage]
    host_apt: HostApt


def lock(manifest: Manifest, resolver: Resolver, *, relock: bool = False,
         observe: Callable[[Resolved], None] | None = None) -> Manifest:
    """The locked copy of `manifest`; with `relock`, existing locks are resolved again (the
    resolver's `previous`/`update` decide what may change). Unknown or unsatisfiable packages
    are the user's error (exit 2, naming the stage)."""
    locked = copy.deepcopy(manifest)
    resolver.manifest = locked
    curl = locked.sources.setdefault("org.osbuild.curl", {}).setdefault("items", {})
    if relock:
        for pipeline in locked.pipelines:
            for stage in pipeline.stages:
                stage.inputs.pop(PACKAGES_INPUT, None)
        curl.clear()
    problems: list[tuple[str, str]] = []
    for pipeline in locked.pipelines:
        state = AptState()
        for stage in pipeline.stages:
            stage_type = stages.get(stage.type)
            if stage_type.resolve is None:
                continue
            before = dict(state.installed)
            try:
                options, packages = stage_type.resolve(
                    stage, state, resolver, locked_packages(stage, locked))
            except PackageManagerError as exc:
                problems.append((f"{stage.path}.options", exc.message))
                break  # later stages of this pipeline build on this one
            stage.options = options
            if packages is None:
                continue
            if observe is not None:
                observe(Resolved(stage, pipeline.name, packages, before, resolver.apt(state)))
            stage.inputs[PACKAGES_INPUT] = packages_input(packages)
            for package in packages:
                curl[f"sha256:{package.ref.sha256}"] = {"url": package.ref.url}
    if problems:
        raise ManifestError(manifest.origin, problems)
    if not curl:
        del locked.sources["org.osbuild.curl"]
    return locked
