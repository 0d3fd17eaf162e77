"""Bootstrap a Debian tree with mmdebstrap, from exactly the resolved packages.

At resolve time apt selects the variant's package set (mmdebstrap's own definition of the
variants) plus `packages` from the suite, its `-updates` and its security archive, verified by
signature; the lock records each package by sha256. The stage then runs mmdebstrap in the build
root, without network, from a local repository of just those files, so the tree holds exactly the
locked set. The tree gets deb822 sources for the real mirror (`/etc/apt/sources.list.d/
debian.sources`), hostname `localhost`, no `/etc/resolv.conf`, an empty `/etc/machine-id`, and
none of the bootstrap's apt lists, caches or logs; with a source epoch the result is
reproducible bit for bit.
"""

from __future__ import annotations

import shlex
import subprocess

from deb_mock import bootstrap
from deb_mock.apt_host import SourceEntry
from deb_mock.config import archive_suites, security_suite
from deb_mock.errors import PackageManagerError
from deb_mock.host_sources import resolve_mirror, resolve_security_mirror
from debian_forge.context import PACKAGE_INPUTS, REPO_MOUNT, TREE_MOUNT, StageContext, StageError
from debian_forge.repo import source_line
from debian_forge.stagelib import SLIM_DPKG_CONFIG, slim_dpkg_config, slim_excluded

_NAME = "^[a-z0-9][a-z0-9.+-]*$"
LOCKS_PACKAGES = True
SOURCES_NAME = "debian"  # /etc/apt/sources.list.d/debian.sources; apt.config may replace it

SCHEMA = {
    "required": ["suite"],
    "properties": {
        "suite": {"type": "string", "pattern": "^[a-z][a-z0-9-]*$",
                  "x-expected": "a suite or codename such as bookworm, trixie, sid",
                  "description": "The release to bootstrap (codename or suite name)."},
        "mirror": {"type": "string", "pattern": "^(https?|file)://",
                   "x-expected": "an http(s):// or file:// URL",
                   "description": "The Debian mirror. Default: $DEBIAN_FORGE_MIRROR, else the "
                                  "Debian mirror of the host's APT sources. Resolving writes the "
                                  "mirror used into the locked manifest."},
        "security-mirror": {"type": "string", "pattern": "^(https?|file)://",
                            "x-expected": "an http(s):// or file:// URL",
                            "description": "The security archive. Default: the host's, else "
                                           "the mirror with /debian-security for /debian."},
        "variant": {"enum": list(bootstrap.VARIANT_REQUESTS), "default": "minbase",
                    "description": "mmdebstrap's variant: which priority classes are installed "
                                   "(minbase = required + apt)."},
        "architecture": {"type": "string", "pattern": "^[a-z0-9]+$",
                         "x-expected": "a Debian architecture such as amd64, arm64, i386",
                         "description": "Debian architecture. Default: the host's."},
        "components": {"type": "array", "items": {"type": "string", "pattern": "^[a-z-]+$"},
                       "minItems": 1, "uniqueItems": True, "default": ["main"],
                       "description": "Archive components (main, contrib, non-free, "
                                      "non-free-firmware)."},
        "packages": {"type": "array", "uniqueItems": True,
                     "items": {"type": "string", "pattern": _NAME,
                               "x-expected": "a Debian package name"},
                     "default": [],
                     "description": "Extra packages installed with the bootstrap."},
        "updates": {"type": "boolean", "default": True,
                    "description": "Also use <suite>-updates (not for sid)."},
        "security": {"type": "boolean", "default": True,
                     "description": "Also use the security archive, <suite>-security "
                                    "(not for sid)."},
        "merged-usr": {"type": "boolean", "default": True,
                       "description": "A merged /usr (/bin → usr/bin …). Debian bookworm and "
                                      "later are merged-/usr only; false is for older suites."},
        "slim": {"type": "boolean", "default": False,
                 "description": "dpkg leaves out documentation (copyright kept), manual pages "
                                "and translations, now and in later installs (path-exclude, "
                                "the trick of Debian's container images); the bytes left out "
                                "go into the build record."},
    },
}

INPUTS = PACKAGE_INPUTS  # the locked packages, added by resolving


def _host_architecture() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()


def sources(options: dict) -> list[SourceEntry]:
    """The repositories of the tree: the mirror's suites and the security archive."""
    suite = options["suite"]
    components = tuple(options.get("components", ["main"]))
    entries = [SourceEntry(options["mirror"],
                           archive_suites(suite, options.get("updates", True)), components)]
    security = security_suite(suite, options.get("security", True))
    if security:
        entries.append(SourceEntry(options["security-mirror"], (security,), components))
    return entries


def resolve(stage, state, resolver, locked):
    """Fill in mirror and architecture; resolve the variant's set (unless locked)."""
    options = dict(stage.options)
    options["mirror"] = resolve_mirror(options.get("mirror"))
    options.setdefault("architecture", _host_architecture())
    if security_suite(options["suite"], options.get("security", True)):
        found = resolve_security_mirror(options.get("security-mirror"), options["mirror"])
        if found is None:
            raise PackageManagerError(
                "no security archive: the host's APT sources have none and the mirror does not "
                "end in /debian; set \"security-mirror\" or \"security\": false")
        options["security-mirror"] = found
    state.architecture = options["architecture"]
    state.mirrors = {"@mirror": options["mirror"]}
    if "security-mirror" in options:
        state.mirrors["@security-mirror"] = options["security-mirror"]
    state.sources = {SOURCES_NAME: sources(options)}
    state.installed, state.auto, state.holds = {}, set(), set()
    if locked is None:
        request = bootstrap.base_request(options.get("variant", "minbase"),
                                         options.get("packages", []))
        locked = resolver.plan(state, ["install", "--", *request],
                               keep=resolver.keep(stage)).installs
    # Every bootstrap package is installed by name (--include): none is automatic.
    state.installed = {p.name: p for p in locked}
    return options, locked


def run(ctx: StageContext, options: dict) -> None:
    suite, arch = options["suite"], options["architecture"]
    packages = ctx.inputs["packages"].metadata.values()
    if not packages:
        raise StageError("the stage has no locked packages: resolve the manifest first")
    ctx.repository(suite, arch)
    deb822 = "\n".join(entry.deb822() for entry in sources(options))
    hooks = [
        f"printf %s {shlex.quote(deb822)} > \"$1\"/etc/apt/sources.list.d/{SOURCES_NAME}.sources",
        'rm -f "$1"/etc/apt/sources.list "$1"/etc/resolv.conf',
        # mmdebstrap leaves its --dpkgopt in the tree; an installed system must fsync.
        'rm -f "$1"/etc/dpkg/dpkg.cfg.d/99mmdebstrap',
        'echo localhost > "$1"/etc/hostname',
    ]
    argv = ["mmdebstrap", "--mode=root", "--variant=essential", f"--architectures={arch}",
            "--dpkgopt=force-unsafe-io",  # fsync costs minutes in a tree that is committed anyway
            "--include=" + ",".join(f"{p['name']}={p['version']}" for p in
                                    sorted(packages, key=lambda p: p["name"]))]
    if not options.get("merged-usr", True):
        argv.append("--hook-dir=/usr/share/mmdebstrap/hooks/no-merged-usr")
    if options.get("slim"):
        argv += [f"--dpkgopt={line}" for line in slim_dpkg_config().splitlines()[1:]]
        argv.append(f"--customize-hook=printf %s {shlex.quote(slim_dpkg_config())} "
                    f"> \"$1\"{SLIM_DPKG_CONFIG}")
        ctx.report["slim"] = _excluded_by_slim(ctx.inputs["packages"].files.values())
    argv += [f"--customize-hook={hook}" for hook in hooks]
    argv += [suite, TREE_MOUNT, source_line(f"copy://{REPO_MOUNT}", suite)]
    ctx.run_in_buildroot(argv)


def _excluded_by_slim(debs) -> dict:
    """What `slim` leaves out of these packages: regular files and their bytes, from each
    package's contents list (dpkg-deb --contents)."""
    files = size = 0
    for deb in debs:
        listing = subprocess.run(["dpkg-deb", "--contents", str(deb)], capture_output=True,
                                 text=True, check=True).stdout
        for line in listing.splitlines():
            fields = line.split(None, 5)  # mode owner size date time path
            if len(fields) == 6 and fields[0].startswith("-"):
                path = fields[5].removeprefix(".")
                if slim_excluded(path):
                    files += 1
                    size += int(fields[2])
    return {"files_excluded": files, "bytes_excluded": size}
