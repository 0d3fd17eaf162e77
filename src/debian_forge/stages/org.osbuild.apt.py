"""Install and remove packages with the tree's own apt, from exactly the resolved packages.

At resolve time apt's solver works out what installing `packages` into the tree as the earlier
stages leave it needs (with or without Recommends); the lock records each package by sha256.
The stage runs apt-get inside the tree, without network, against a local repository of just
those files, so it cannot install anything else. The tree's own APT configuration, sources and
lists are left as they were.
"""

from __future__ import annotations

from deb_mock.apt_host import apt_options
from deb_mock.errors import PackageManagerError
from deb_mock.sandbox import Bind
from debian_forge.context import PACKAGE_INPUTS, REPO_MOUNT, StageContext

_NAME = {"type": "string", "pattern": "^[a-z0-9][a-z0-9.+-]*(:[a-z0-9]+)?$",
         "x-expected": "a Debian package name (optionally name:arch)"}
_SUITE = "debian-forge"  # of the local repository; nothing outside the stage sees it
_WORK = "/run/osbuild/apt"

SCHEMA = {
    "properties": {
        "packages": {"type": "array", "items": _NAME, "uniqueItems": True, "default": [],
                     "description": "Packages to install (their dependencies come along)."},
        "remove": {"type": "array", "items": _NAME, "uniqueItems": True, "default": [],
                   "description": "Packages to remove (apt-get remove; their configuration "
                                  "files stay unless `purge`)."},
        "purge": {"type": "boolean", "default": False,
                  "description": "Remove with their configuration files (apt-get purge)."},
        "recommends": {"type": "boolean", "default": False,
                       "description": "Also install recommended packages."},
    },
    "anyOf": [{"required": ["packages"]}, {"required": ["remove"]}],
}

INPUTS = PACKAGE_INPUTS  # the locked packages, added by resolving


def resolve(options: dict, state, resolver, locked):
    """The packages this stage adds to the tree (unless locked)."""
    if not state.sources:
        raise PackageManagerError("an apt stage needs an org.osbuild.debootstrap stage before it "
                                  "in the same pipeline (it gives the repositories)")
    for name in options.get("remove", []):
        state.installed.pop(name.split(":")[0], None)
    if locked is None:
        locked = resolver.resolve(state, list(options.get("packages", [])),
                                  recommends=options.get("recommends", False))
    for package in locked:
        state.installed[package.name] = package
    return dict(options), locked


def _apt_options(options: dict) -> list[str]:
    settings = {
        "Dir::Etc::SourceList": f"{_WORK}/sources.list",
        "Dir::Etc::SourceParts": f"{_WORK}/sources.list.d",
        "Dir::State::Lists": f"{_WORK}/lists",
        "Dir::Cache::pkgcache": "",
        "Dir::Cache::srcpkgcache": "",
        "Dir::Cache::Archives": f"{_WORK}/archives",
        "APT::Install-Recommends": "true" if options.get("recommends") else "false",
        "Acquire::Languages": "none",
        "Dpkg::Options::": "--force-unsafe-io",
        "Dpkg::Use-Pty": "false",
        "APT::Sandbox::User": "root",  # the repository is a bind-mount _apt may not read
    }
    return apt_options(settings)


def run(ctx: StageContext, options: dict) -> None:
    metadata = ctx.inputs["packages"].metadata.values() if "packages" in ctx.inputs else []
    versions = {p["name"]: p["version"] for p in metadata}
    work = ctx.scratch / "apt"
    for sub in ("lists/partial", "archives/partial", "sources.list.d"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    arch = ctx.run(["dpkg", "--print-architecture"]).stdout.strip()
    repo = ctx.repository(_SUITE, arch)
    (work / "sources.list").write_text(f"deb [trusted=yes] file:{REPO_MOUNT} {_SUITE} main\n")
    binds = [Bind(work, _WORK, readonly=False), Bind(repo, REPO_MOUNT)]
    apt = ["apt-get", *_apt_options(options)]
    ctx.run([*apt, "update", "-q"], binds=binds)
    # The requested names at their resolved versions: apt's solver in the tree then picks the
    # same dependencies as the resolver did, from a repository that holds nothing else.
    requests = [f"{name}={versions[name.split(':')[0]]}" if name.split(":")[0] in versions
                else name for name in options.get("packages", [])]
    removals = [f"{name}-" for name in options.get("remove", [])]  # apt-get install's "remove"
    purge = ["--purge"] if options.get("purge") else []
    ctx.run([*apt, "install", "-y", "-q", *purge, "--", *requests, *removals], binds=binds)
