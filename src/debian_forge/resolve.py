"""Resolve: package names to exact packages, before any stage ID is computed (DESIGN.md, 3).

apt's own solver runs on the host against an isolated APT state whose repositories are verified
by signature (deb_mock.apt_host). Each package-installing stage gets an `inputs.packages` of
sha256 references (with name, version and architecture as metadata) and the manifest gets
`org.osbuild.curl` items for them: the locked manifest, as osbuild does it for RPMs. A stage
that already has `inputs.packages` is locked and left as it is.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from deb_mock.apt_host import HostApt, ResolvedPackage, SourceEntry
from deb_mock.errors import PackageManagerError
from deb_mock.package_cache import PackageRef
from debian_forge import stages
from debian_forge.manifest import Manifest, ManifestError, Stage

PACKAGES_INPUT = "packages"
DEFAULT_MAX_AGE = 3600.0  # seconds the archive indexes stay fresh, like deb-mock's metadata_expire


@dataclass
class AptState:
    """What the stages of one pipeline so far make of its package world."""

    architecture: str | None = None
    sources: list[SourceEntry] = field(default_factory=list)
    installed: dict[str, ResolvedPackage] = field(default_factory=dict)


class Resolver:
    """Isolated host APT states (one per set of repositories), refreshed when stale."""

    def __init__(self, cache_dir: Path, max_age: float = DEFAULT_MAX_AGE, scratch: Path | None = None):
        self.cache_dir = cache_dir
        self.max_age = max_age
        self.scratch = scratch or cache_dir / "tmp"
        self._apts: dict[str, HostApt] = {}

    def apt(self, state: AptState) -> HostApt:
        host_apt = HostApt.for_sources(self.cache_dir, state.architecture or "amd64", state.sources)
        key = str(host_apt.root)
        if key not in self._apts:
            host_apt.update(self.max_age)
            self._apts[key] = host_apt
        return self._apts[key]

    def resolve(self, state: AptState, request: list[str],
                recommends: bool = False) -> list[ResolvedPackage]:
        """What installing `request` into a tree holding `state.installed` downloads."""
        host_apt = self.apt(state)
        host_apt.install_recommends = recommends
        status = None
        if state.installed:
            self.scratch.mkdir(parents=True, exist_ok=True)
            status = self.scratch / f"status-{id(state)}"
            status.write_text(host_apt.status_for(list(state.installed.values())))
        try:
            return host_apt.resolve(request, status=status)
        finally:
            if status is not None:
                status.unlink(missing_ok=True)


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


def is_locked(manifest: Manifest) -> bool:
    """True when no stage needs resolving."""
    return all(stages.get(stage.type).resolve is None or PACKAGES_INPUT in stage.inputs
               for pipeline in manifest.pipelines for stage in pipeline.stages)


def lock(manifest: Manifest, resolver: Resolver) -> Manifest:
    """The locked copy of `manifest`. Unknown packages are the user's error (exit 2)."""
    locked = copy.deepcopy(manifest)
    items = locked.sources.setdefault("org.osbuild.curl", {}).setdefault("items", {})
    problems: list[tuple[str, str]] = []
    for pipeline in locked.pipelines:
        state = AptState()
        for stage in pipeline.stages:
            stage_type = stages.get(stage.type)
            if stage_type.resolve is None:
                continue
            try:
                options, packages = stage_type.resolve(
                    stage.options, state, resolver, locked_packages(stage, locked))
            except PackageManagerError as exc:
                problems.append((f"{stage.path}.options", exc.message))
                break  # later stages of this pipeline build on this one
            stage.options = options
            stage.inputs[PACKAGES_INPUT] = packages_input(packages)
            for package in packages:
                items[f"sha256:{package.ref.sha256}"] = {"url": package.ref.url}
    if problems:
        raise ManifestError(manifest.origin, problems)
    if not items:
        del locked.sources["org.osbuild.curl"]
    return locked

