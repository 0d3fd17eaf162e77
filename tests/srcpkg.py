"""Tiny real Debian source packages for tests: a tree with debian/, turned into a .dsc by the
host's `dpkg-source -b` (format 3.0 (native)).

Most packages use no debhelper at all: debian/rules is a plain Makefile that stages the files in
debian/tmp and builds the .deb with dpkg-gencontrol and `dpkg-deb --root-owner-group`, so
`Rules-Requires-Root: no` holds, `dpkg-buildpackage -us -uc -b` works as an unprivileged user
without fakeroot, and the only build dependency is dpkg-dev (part of build-essential, which
every build environment has). `use_debhelper=True` gives a `dh $@` package with
`debhelper-compat (= 13)` instead.

In the source tree, `payload/` holds the package's files and `debian/forge-build` the build
script. The script runs in the tree at build time with $OUT set to a directory whose contents
are shipped too, beside `payload/`.

make_source() keeps work/<name>/ (the tree, .dsc and .tar.xz) with a stamp of a hash of its
inputs, and reuses it while they are the same. Every timestamp is fixed, so the same inputs give
the same bytes on every run and every machine with the same dpkg.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from deb_mock.locking import FileLock

# 2024-01-01T00:00:00Z: the changelog date and the time of every file of the source package.
EPOCH = 1704067200
MAINTAINER = "Forge Test <test@example.org>"
STANDARDS_VERSION = "4.6.2"


@dataclass(frozen=True)
class SourcePackage:
    """One source package building one binary package of the same name."""

    name: str
    version: str = "1.0"  # native: no Debian revision
    build_depends: str = ""  # extra Build-Depends (besides what debian/rules needs)
    depends: str = ""  # Depends of the binary package
    build_script: str = ""  # shell run by debian/rules' build target; $OUT is shipped too
    files: dict[str, str] = field(default_factory=dict)  # path in the .deb -> text; usr/bin/* 0755
    architecture: str = "all"  # "all" or "any"
    use_debhelper: bool = False

    @property
    def upstream_version(self) -> str:
        """The version without its epoch, as in file and directory names."""
        return self.version.split(":", 1)[-1]

    @property
    def dsc_name(self) -> str:
        return f"{self.name}_{self.upstream_version}.dsc"

    @property
    def tarball_name(self) -> str:
        return f"{self.name}_{self.upstream_version}.tar.xz"

    @property
    def tree_name(self) -> str:
        """The directory `dpkg-source -x` unpacks into."""
        return f"{self.name}-{self.upstream_version}"

    def all_build_depends(self) -> str:
        """The Build-Depends field: what debian/rules needs, then `build_depends`."""
        base = "debhelper-compat (= 13)" if self.use_debhelper else "dpkg-dev"
        return ", ".join(part for part in (base, self.build_depends) if part)

    def binary_depends(self) -> str:
        # No ${shlibs:Depends}: the files are text, there is never a shared library to depend on.
        parts = ["${misc:Depends}" if self.use_debhelper else "", self.depends]
        return ", ".join(part for part in parts if part)

    def contents(self) -> dict[str, str]:
        """The payload: `files`, or a VERSION file for a package without any."""
        return dict(self.files) or {f"usr/share/doc/{self.name}/VERSION": self.version + "\n"}


def _control(package: SourcePackage) -> str:
    source = {"Source": package.name, "Section": "misc", "Priority": "optional",
              "Maintainer": MAINTAINER, "Build-Depends": package.all_build_depends(),
              "Standards-Version": STANDARDS_VERSION, "Rules-Requires-Root": "no"}
    binary = {"Package": package.name, "Architecture": package.architecture,
              "Depends": package.binary_depends(),
              "Description": f"{package.name}, a source package made by the test suite\n"
                             " Built from tests/srcpkg.py in deb-mock's test suite."}
    return "\n".join("".join(f"{key}: {value}\n" for key, value in stanza.items() if value)
                     for stanza in (source, binary))


def _changelog(package: SourcePackage) -> str:
    date = email.utils.formatdate(EPOCH, usegmt=False).replace("-0000", "+0000")
    return (f"{package.name} ({package.version}) unstable; urgency=medium\n\n"
            "  * Made by the test suite (tests/srcpkg.py).\n\n"
            f" -- {MAINTAINER}  {date}\n")


def _rules(package: SourcePackage) -> str:
    if package.use_debhelper:
        return f"""#!/usr/bin/make -f
# Made by tests/srcpkg.py: dh with the build script and payload/ as the install step.

%:
\tdh $@

override_dh_auto_build:
\trm -rf debian/out
\tinstall -d debian/out
\tOUT="$(CURDIR)/debian/out" sh debian/forge-build

override_dh_auto_install:
\tinstall -d debian/{package.name}
\tcp -R payload/. debian/out/. debian/{package.name}/

override_dh_auto_clean:
\trm -rf debian/out
"""
    # The targets of the package's architecture do the work; the others have nothing to do.
    does, idle = ("indep", "arch") if package.architecture == "all" else ("arch", "indep")
    return f"""#!/usr/bin/make -f
# Made by tests/srcpkg.py: no debhelper. The .deb is built with dpkg-gencontrol and
# dpkg-deb --root-owner-group, so an unprivileged user builds it without fakeroot.

STAGE := debian/tmp

.PHONY: clean build build-arch build-indep binary binary-arch binary-indep

clean:
\trm -rf $(STAGE) debian/out debian/files debian/substvars debian/build-stamp

build: build-arch build-indep
build-{does}: debian/build-stamp
build-{idle}:

debian/build-stamp:
\trm -rf debian/out
\tinstall -d debian/out
\tOUT="$(CURDIR)/debian/out" sh debian/forge-build
\ttouch $@

binary: binary-arch binary-indep
binary-{does}: build-{does}
\trm -rf $(STAGE)
\tinstall -d $(STAGE)/DEBIAN
\tcp -R payload/. debian/out/. $(STAGE)/
\tchmod -R go-w,a+rX $(STAGE)
\tdpkg-gencontrol -P$(STAGE)
\tdpkg-deb --root-owner-group --build $(STAGE) ..
binary-{idle}:
"""


def _build_script(package: SourcePackage) -> str:
    body = package.build_script.strip("\n") or ": nothing to build"
    return (f"#!/bin/sh\n# {package.name}'s build, run by debian/rules in the tree; "
            f"$OUT is shipped.\nset -e\n{body}\n")


def _tree_files(package: SourcePackage) -> dict[str, tuple[str, int]]:
    """Every file of the source tree: relative path -> (text, mode)."""
    files = {
        "debian/changelog": (_changelog(package), 0o644),
        "debian/control": (_control(package), 0o644),
        "debian/rules": (_rules(package), 0o755),
        "debian/source/format": ("3.0 (native)\n", 0o644),
        "debian/forge-build": (_build_script(package), 0o755),
    }
    for path, text in package.contents().items():
        relative = PurePosixPath(path.lstrip("/"))
        if ".." in relative.parts or relative.parts[:1] == ("DEBIAN",) or not relative.parts:
            raise ValueError(f"{package.name}: bad path in files: {path!r}")
        files[f"payload/{relative}"] = (text, 0o755 if relative.parts[:2] == ("usr", "bin")
                                        else 0o644)
    return dict(sorted(files.items()))


def _write_tree(tree: Path, package: SourcePackage) -> None:
    (tree / "payload").mkdir(parents=True)
    for path, (text, mode) in _tree_files(package).items():
        target = tree / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)
    for path in sorted(tree.rglob("*"), reverse=True):  # children before their directories
        if path.is_dir():
            path.chmod(0o755)
        os.utime(path, (EPOCH, EPOCH))
    os.utime(tree, (EPOCH, EPOCH))


def make_source(work: Path, package: SourcePackage) -> Path:
    """The .dsc of `package` in work/<name>/ (made unless a build of the same inputs is there).

    work/<name>/ holds the tree (<name>-<version>/), the .dsc and the .tar.xz.
    """
    inputs = {"package": asdict(package),
              # A change to how packages are made remakes them.
              "code": Path(__file__).read_text()}
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    root = work / package.name
    stamp = root / ".build-stamp"
    with FileLock(work / f".{package.name}.lock"):
        made = [root / package.dsc_name, root / package.tarball_name, root / package.tree_name]
        if stamp.exists() and stamp.read_text() == digest and all(p.exists() for p in made):
            return root / package.dsc_name
        scratch = work / f".{package.name}.build"
        shutil.rmtree(scratch, ignore_errors=True)
        _write_tree(scratch / package.tree_name, package)
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH), "LC_ALL": "C.UTF-8", "TZ": "UTC"}
        proc = subprocess.run(["dpkg-source", "-b", package.tree_name], cwd=scratch, env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"dpkg-source -b {package.tree_name} failed (exit "
                               f"{proc.returncode}):\n{proc.stdout}{proc.stderr}")
        (scratch / ".build-stamp").write_text(digest)
        shutil.rmtree(root, ignore_errors=True)
        scratch.rename(root)
        return root / package.dsc_name


def unpacked_tree(work: Path, package: SourcePackage) -> Path:
    """The source tree of `package` (with debian/), as its .dsc unpacks: for "build from a tree".

    It is the cached tree the .dsc was made from: copy it before building in place.
    """
    return make_source(work, package).parent / package.tree_name


FORGE_A = SourcePackage("forge-a", files={"usr/bin/forge-a": "#!/bin/sh\necho forge-a\n"})

# Build-depends on forge-a and runs it at build time: its output, shipped in from-a, proves the
# build dependency was installed. /usr/bin/forge-b prints it.
FORGE_B = SourcePackage(
    "forge-b", build_depends="forge-a",
    build_script='install -d "$OUT/usr/share/forge-b"\nforge-a > "$OUT/usr/share/forge-b/from-a"',
    files={"usr/bin/forge-b": "#!/bin/sh\ncat /usr/share/forge-b/from-a\n"})

# Opens a TCP connection (the first nameserver, else 1.1.1.1, port 53) at build time and fails
# the build if it cannot: it builds only where the build has network, so building it offline
# (deb-mock's default) must fail. Needs only bash and coreutils' timeout, both essential.
FORGE_NET = SourcePackage("forge-net", build_script="""\
server=$(sed -n 's/^nameserver[[:space:]]*\\([^[:space:]]*\\).*/\\1/p' /etc/resolv.conf \\
    2>/dev/null | head -n 1)
for address in $server 1.1.1.1; do
    if timeout 3 bash -c "exec 3<>/dev/tcp/$address/53" 2>/dev/null; then
        echo "forge-net: reached $address port 53"
        install -d "$OUT/usr/share/forge-net"
        echo "reached" > "$OUT/usr/share/forge-net/network"
        exit 0
    fi
done
echo "forge-net: no network, failing"
exit 1""")

FORGE_FAIL = SourcePackage("forge-fail", build_script="""\
echo "forge-fail: failing on purpose"
exit 1""")
