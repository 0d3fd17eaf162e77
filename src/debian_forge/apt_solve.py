"""What org.osbuild.apt and org.osbuild.apt.depsolve share: their solver options and how a
stage's request is solved against the pipeline's package world (resolve.AptState)."""

from __future__ import annotations

from debian.debian_support import Version

from deb_mock.apt_host import ResolvedPackage
from deb_mock.errors import PackageManagerError
from debian_forge.explain import dependency_chain
from debian_forge.resolve import (PACKAGE_REQUEST_PATTERN, STRATEGIES, AptState, Resolver,
                                  parse_request)

_NAME = {"type": "string", "pattern": "^[a-z0-9][a-z0-9.+-]*(:[a-z0-9]+)?$",
         "x-expected": "a Debian package name (optionally name:arch)"}

SOLVER_OPTIONS = {
    "packages": {"type": "array", "uniqueItems": True, "default": [],
                 "items": {"type": "string", "pattern": PACKAGE_REQUEST_PATTERN,
                           "x-expected": "a Debian package name, name=version, name/release or "
                                         "name (>= version)"},
                 "description": "Packages to install: `name`, an exact version `name=1.2-3`, "
                                "a release `name/bookworm-backports`, or a version range "
                                "`name (>= 1.2)` (the newest matching version is locked)."},
    "install_recommends": {"type": "boolean", "default": False,
                           "description": "Also install recommended packages."},
    "target_release": {"type": "string", "pattern": "^[A-Za-z0-9.+_-]+$",
                       "x-expected": "a suite or codename such as bookworm-backports",
                       "description": "Prefer this release for every package of the stage "
                                      "(apt's -t / APT::Default-Release)."},
    "exclude": {"type": "array", "items": _NAME, "uniqueItems": True, "default": [],
                "description": "Never install these. A request that needs one fails, naming "
                               "the dependency chain that leads to it."},
    "strategy": {"enum": list(STRATEGIES),
                 "description": "How apt chooses: `resolve` (apt's default: the candidate "
                                "version of each package, only what is needed), "
                                "`conservative` (keep the versions an earlier lock chose "
                                "wherever they are still available), `aggressive` (also "
                                "install recommends and upgrade every installed package to its "
                                "candidate). Default: `resolve`, or `debian-forge resolve "
                                "--strategy`."},
}


def _request_names(options: dict) -> list[str]:
    return [parse_request(text).name for text in options.get("packages", [])]


def solve(stage, state: AptState, resolver: Resolver, *, removals: list[str] = (),
          purge: bool = False, allow_downgrades: bool = False) -> tuple[list[ResolvedPackage], list[str]]:
    """(packages to download, packages removed) for the stage's request on `state`."""
    options = stage.options
    if not state.sources:
        raise PackageManagerError(f"{stage.type} needs an org.osbuild.debootstrap stage before "
                                  "it in the same pipeline (it gives the repositories)")
    exclude = tuple(options.get("exclude", []))
    requests = [parse_request(text) for text in options.get("packages", [])]
    clash = sorted({r.name for r in requests} & set(exclude))
    if clash:
        raise PackageManagerError(f"{', '.join(clash)} is both requested and excluded")
    strategy = options.get("strategy", resolver.strategy)
    keep = resolver.keep(stage)
    wanted = [resolver.apt_request(state, r) for r in requests]
    if strategy == "aggressive":
        wanted += sorted(name for name in state.installed if name not in state.holds
                         and name not in {r.name for r in requests})
    args = ["install", *(["--purge"] if purge else []), "--", *wanted,
            *(f"{name}-" for name in removals)]
    recommends = options.get("install_recommends", False) or strategy == "aggressive"
    settings = dict(recommends=recommends, target_release=options.get("target_release"),
                    keep=keep, allow_downgrades=allow_downgrades)
    try:
        plan = resolver.plan(state, args, exclude=exclude, **settings)
    except PackageManagerError as exc:
        if exclude:
            _explain_exclusion(stage, state, resolver, args, settings, exc)
        raise
    if not allow_downgrades:
        older = [f"{p.name} from {state.installed[p.name].version} to {p.version}"
                 for p in plan.installs if p.name in state.installed
                 and Version(p.version) < Version(state.installed[p.name].version)]
        if older:
            raise PackageManagerError(f"this would downgrade {', '.join(older)}; set "
                                      "\"allow_downgrades\": true if that is meant")
    return plan.installs, plan.removals


def _explain_exclusion(stage, state: AptState, resolver: Resolver, args: list[str],
                       settings: dict, failure: PackageManagerError) -> None:
    """When an excluded package is what makes the request fail, say which chain needs it."""
    try:
        unrestricted = resolver.plan(state, args, **settings)
    except PackageManagerError:
        return  # it fails anyway: apt's own reason stands
    excluded = set(stage.options["exclude"])
    for package in unrestricted.installs:
        if package.name in excluded:
            chain = dependency_chain(resolver.apt(state), _request_names(stage.options),
                                     package.name, unrestricted.installs
                                     + list(state.installed.values()),
                                     recommends=settings["recommends"])
            raise PackageManagerError(
                f"{package.name} is excluded, but the request needs it: "
                + " → ".join(chain) + f". Drop it from `exclude` or change the request. "
                f"(apt said: {failure.message})") from None


def apply(state: AptState, options: dict, installs: list[ResolvedPackage],
          removals: list[str]) -> None:
    """Carry the stage's effect into the state the next stage is solved against."""
    requested = set(_request_names(options))
    for name in removals:
        state.installed.pop(name, None)
        state.auto.discard(name)
        state.holds.discard(name)
    for package in installs:
        if package.name not in state.installed and package.name not in requested:
            state.auto.add(package.name)
        state.installed[package.name] = package
    state.auto -= requested
