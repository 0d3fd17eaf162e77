"""Source packages for builds: from a .dsc (a path or a URL), an unpacked tree with debian/, or
the archive by name — always ending as a .dsc with its files in a work directory, checked.

A source from the archive (`hello`, `hello=2.10-3`) is found in the signed Sources indexes and
every file is verified by sha256, as binary packages are. A .dsc given as a path or URL is
checked against its own Checksums-Sha256 (its signature is the user's business, as with dget).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from debian.deb822 import Dsc

from deb_mock.errors import DebMockError, ExitCode
from deb_mock.sandbox import require_tool

_ARCHIVE_NAME = re.compile(r"^[a-z0-9][a-z0-9.+-]+(=[A-Za-z0-9.+:~-]+)?$")


class BadSource(DebMockError):
    """The source package cannot be used: missing files, wrong checksums, no debian/."""

    exit_code = ExitCode.BAD_SOURCE


@dataclass(frozen=True)
class SourcePackage:
    dsc: Path  # in the work directory, next to its files
    package: str
    version: str
    files: tuple[Path, ...]  # the .dsc and everything it lists
    build_depends: str


def read_dsc(dsc: Path) -> SourcePackage:
    """Parse and check a .dsc whose files lie next to it."""
    try:
        with open(dsc) as handle:
            fields = Dsc(handle)
    except OSError as exc:
        raise BadSource(f"cannot read {dsc}: {exc.strerror}") from None
    if "Source" not in fields or "Version" not in fields:
        raise BadSource(f"{dsc} is not a source package description (no Source/Version)")
    files = [dsc]
    for entry in fields.get("Checksums-Sha256", []):
        path = dsc.parent / entry["name"]
        if not path.exists():
            raise BadSource(f"{dsc.name} lists {entry['name']}, which is not next to it")
        if sha256_of(path) != entry["sha256"]:
            raise BadSource(f"{entry['name']} does not match the sha256 in {dsc.name}")
        files.append(path)
    if len(files) == 1:
        raise BadSource(f"{dsc.name} lists no files with sha256 checksums")
    depends = ", ".join(v for k, v in fields.items()
                        if k in ("Build-Depends", "Build-Depends-Arch", "Build-Depends-Indep"))
    return SourcePackage(dsc, fields["Source"], fields["Version"], tuple(files), depends)


def sha256_of(path: Path) -> str:
    """The sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(url: str, target: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as exc:
        raise BadSource(f"cannot download {url}: {exc}") from None


def from_tree(tree: Path, work: Path) -> SourcePackage:
    """`dpkg-source -b` of an unpacked tree (its orig tarball, if any, taken from beside it)."""
    if not (tree / "debian/control").exists() or not (tree / "debian/changelog").exists():
        raise BadSource(f"{tree} has no debian/control and debian/changelog: not a source tree")
    copy = work / tree.resolve().name
    shutil.copytree(tree, copy, symlinks=True)
    for orig in tree.resolve().parent.glob("*.orig*.tar.*"):
        shutil.copy2(orig, work / orig.name)
    proc = subprocess.run([require_tool("dpkg-source", "dpkg-dev"), "-b", copy.name],
                          cwd=work, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BadSource(f"dpkg-source -b {tree} failed: {proc.stderr.strip()[-800:]}")
    shutil.rmtree(copy)
    found = sorted(work.glob("*.dsc"))
    if not found:
        raise BadSource(f"dpkg-source -b {tree} made no .dsc")
    return read_dsc(found[0])


def from_dsc_file(dsc: Path, work: Path) -> SourcePackage:
    """A local .dsc: it and the files it lists are copied into the work directory."""
    listed = read_dsc(dsc)
    for path in listed.files:
        shutil.copy2(path, work / path.name)
    return read_dsc(work / dsc.name)


def from_url(url: str, work: Path) -> SourcePackage:
    """A .dsc URL: the files it lists are downloaded from beside it and checked."""
    name = Path(urllib.parse.urlparse(url).path).name
    _download(url, work / name)
    with open(work / name) as handle:
        fields = Dsc(handle)
    for entry in fields.get("Checksums-Sha256", []):
        _download(urllib.parse.urljoin(url, entry["name"]), work / entry["name"])
    return read_dsc(work / name)


def acquire(spec: str, work: Path, archive=None) -> SourcePackage:
    """The source package SPEC in `work`: a .dsc path or URL, a source tree, or `name[=ver]`
    from the archive (`archive(request, work)` fetches it; see Environment)."""
    work.mkdir(parents=True, exist_ok=True)
    path = Path(spec)
    if "://" in spec:
        return from_url(spec, work)
    if path.is_dir():
        return from_tree(path, work)
    if path.is_file():
        if path.suffix != ".dsc":
            raise BadSource(f"{spec} is neither a .dsc nor a directory with debian/")
        return from_dsc_file(path, work)
    if _ARCHIVE_NAME.match(spec) and archive is not None and "/" not in spec:
        return read_dsc(archive(spec, work))
    raise BadSource(f"{spec}: no such file or directory, and not a source package name "
                    "(give a .dsc path or URL, a source tree with debian/, or NAME[=VERSION])")
