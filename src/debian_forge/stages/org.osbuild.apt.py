"""Install and remove packages with the tree's own apt, from exactly the resolved packages.

At resolve time apt's solver works out what the request does to the tree as the earlier stages
leave it — their repositories, pins and apt options (org.osbuild.apt.config), installed
packages, holds and automatic marks — with this stage's version requests, target release,
recommends, exclusions and strategy; the lock records every package by sha256. The stage then
runs apt-get inside the tree, without network, against a local repository of just those files,
asking for each locked version exactly: the build does what the lock says, whatever the
repositories hold by then. Holds are recorded with `apt-mark hold`, so a later `apt-get
upgrade` inside the image keeps them. The tree's own sources, lists and pins are left as they
are.
"""

from __future__ import annotations

from types import SimpleNamespace

from deb_mock.apt_host import apt_options
from deb_mock.errors import PackageManagerError
from deb_mock.sandbox import Bind
from debian_forge import apt_solve
from debian_forge.context import PACKAGE_INPUTS, REPO_MOUNT, StageContext, StageError
from debian_forge.resolve import parse_request

LOCKS_PACKAGES = True
_NAME = {"type": "string", "pattern": "^[a-z0-9][a-z0-9.+-]*(:[a-z0-9]+)?$",
         "x-expected": "a Debian package name (optionally name:arch)"}
_SUITE = "debian-forge"  # of the local repository; nothing outside the stage sees it
_WORK = "/run/osbuild/apt"

SCHEMA = {
    "properties": {
        **apt_solve.SOLVER_OPTIONS,
        "remove": {"type": "array", "items": _NAME, "uniqueItems": True, "default": [],
                   "description": "Packages to remove (their configuration files stay unless "
                                  "`purge`)."},
        "purge": {"type": "boolean", "default": False,
                  "description": "Remove with configuration files (apt-get --purge)."},
        "autoremove": {"type": "boolean", "default": False,
                       "description": "Then remove packages installed only as dependencies "
                                      "that nothing needs any more."},
        "holds": {"type": "array", "items": _NAME, "uniqueItems": True, "default": [],
                  "description": "Hold these installed packages at their version (apt-mark "
                                 "hold): later stages and `apt-get upgrade` in the image keep "
                                 "them."},
        "local": {"type": "array", "items": _NAME, "uniqueItems": True, "default": [],
                  "description": "Packages to install from the .debs of the stage's pipeline "
                                 "inputs (e.g. built by org.osbuild.deb-mock) rather than from "
                                 "the archive. Those files are the other pipeline's result, "
                                 "not locked; their dependencies must already be installed or "
                                 "locked by this stage's `packages`."},
        "allow_downgrades": {"type": "boolean", "default": False,
                             "description": "Allow installing an older version than the tree "
                                            "has (with an exact version or a pin)."},
    },
    "anyOf": [{"required": ["packages"]}, {"required": ["remove"]},
              {"required": ["holds"]}, {"required": ["autoremove"]}, {"required": ["local"]}],
}

# `packages`: the locked packages (added by resolving); any other name: a pipeline whose tree
# holds .debs for `local`.
INPUTS = {**PACKAGE_INPUTS, "additionalProperties": {"type": "object"}}


def resolve(stage, state, resolver, locked):
    """The packages this stage adds to the tree (unless locked); the state after it."""
    options = stage.options
    removals = list(options.get("remove", []))
    if locked is None:
        archive = SimpleNamespace(type=stage.type, path=stage.path, options={
            **options, "packages": [p for p in options.get("packages", [])
                                    if parse_request(p).name not in options.get("local", [])]})
        locked, removed = apt_solve.solve(archive, state, resolver, removals=removals,
                                          purge=options.get("purge", False),
                                          allow_downgrades=options.get("allow_downgrades", False))
    else:
        removed = removals
    apt_solve.apply(state, options, locked, removed)
    if options.get("autoremove"):
        plan = resolver.plan(state, ["autoremove", *(["--purge"] if options.get("purge") else [])])
        apt_solve.apply(state, {}, [], plan.removals)
    missing = sorted(set(options.get("holds", [])) - set(state.installed))
    if missing:
        raise PackageManagerError(f"cannot hold {', '.join(missing)}: not installed at this "
                                  "point of the pipeline")
    state.holds |= set(options.get("holds", []))
    return dict(options), locked


def _apt_options(options: dict) -> list[str]:
    return apt_options({
        "Dir::Etc::SourceList": f"{_WORK}/sources.list",
        "Dir::Etc::SourceParts": f"{_WORK}/empty",
        # The lock decided; the tree's pins are for the finished system.
        "Dir::Etc::Preferences": "/dev/null",
        "Dir::Etc::PreferencesParts": f"{_WORK}/empty",
        "Dir::State::Lists": f"{_WORK}/lists",
        "Dir::Cache::pkgcache": "",
        "Dir::Cache::srcpkgcache": "",
        "Dir::Cache::Archives": f"{_WORK}/archives",
        "APT::Install-Recommends": "true" if options.get("install_recommends") else "false",
        "APT::Get::Allow-Downgrades": "true" if options.get("allow_downgrades") else "false",
        "Acquire::Languages": "none",
        "Dpkg::Options::": "--force-unsafe-io",
        "Dpkg::Use-Pty": "false",
        "APT::Sandbox::User": "root",  # the repository is a bind-mount _apt may not read
    })


def run(ctx: StageContext, options: dict) -> None:
    metadata = ctx.inputs["packages"].metadata.values() if "packages" in ctx.inputs else []
    versions = {p["name"]: p["version"] for p in metadata}
    work = ctx.scratch / "apt"
    for sub in ("lists/partial", "archives/partial", "empty"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    arch = ctx.run(["dpkg", "--print-architecture"]).stdout.strip()
    local_debs = [deb for name, item in ctx.inputs.items() if name != "packages" and item.path
                  for deb in sorted(item.path.rglob("*.deb"))]
    missing = [name for name in options.get("local", [])
               if not any(deb.name.startswith(f"{name}_") for deb in local_debs)]
    if missing:
        raise StageError(f"local: no .deb of {', '.join(missing)} in the stage's pipeline inputs "
                         f"({', '.join(deb.name for deb in local_debs) or 'none'})")
    repo = ctx.repository(_SUITE, arch, local_debs)
    (work / "sources.list").write_text(f"deb [trusted=yes] file:{REPO_MOUNT} {_SUITE} main\n")
    binds = [Bind(work, _WORK, readonly=False), Bind(repo, REPO_MOUNT)]
    apt = ["apt-get", *_apt_options(options)]
    installed = set(ctx.run(["dpkg-query", "-W", "-f", "${Package}\\n"]).stdout.split())
    auto_before = set(ctx.run(["apt-mark", "showauto"]).stdout.split())
    ctx.run([*apt, "update", "-q"], binds=binds)
    requested = [parse_request(text).name for text in options.get("packages", [])]
    requested += list(options.get("local", []))
    # Every requested package, and every installed one the lock changes, at its locked
    # version: apt's solver in the tree then makes the resolver's choices, from a repository
    # that holds nothing else.
    wanted = [f"{name}={versions[name]}" if name in versions else name for name in requested]
    wanted += [f"{name}={version}" for name, version in versions.items()
               if name in installed and name not in requested]
    removals = [f"{name}-" for name in options.get("remove", [])]
    purge = ["--purge"] if options.get("purge") else []
    if wanted or removals:
        ctx.run([*apt, "install", "-y", "-q", *purge, "--", *wanted, *removals], binds=binds)
    # Naming an installed package made it manual: it was a dependency, it stays one.
    remark = sorted((auto_before & set(versions)) - set(requested))
    if remark:
        ctx.run(["apt-mark", "auto", *remark])
    if options.get("autoremove"):
        ctx.run([*apt, "autoremove", "-y", "-q", *purge], binds=binds)
    if options.get("holds"):
        ctx.run(["apt-mark", "hold", *options["holds"]])
