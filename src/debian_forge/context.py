"""What a stage may touch: its tree, its inputs, commands through the one sandbox, a log.

A stage never mounts, never opens the network and never reads the host's /etc: the runner
prepares all of that and hands the stage a StageContext.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Mapping, Sequence

from deb_mock.paths import resolve_in_tree
from deb_mock.sandbox import Bind, ExecResult, run
from deb_mock.store import Layer
from debian_forge.repo import make_repository

# Where the build root sees the tree being built, the stage's inputs and its packages.
TREE_MOUNT = "/run/osbuild/tree"
INPUTS_MOUNT = "/run/osbuild/inputs"
REPO_MOUNT = "/run/osbuild/repo"
MOUNTS_MOUNT = "/run/osbuild/mounts"  # the stage's mounted filesystems, by their target
# The inputs of a package-installing stage: `packages`, which resolving adds (resolve.py).
PACKAGE_INPUTS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"packages": {"type": "object"}},
}


class StageError(Exception):
    """A stage found its options impossible to carry out in this tree (say why, for people):
    e.g. a timezone the tree's tzdata does not know. The runner reports it as a stage failure."""


class StageCommandFailed(Exception):
    """A command of a stage exited non-zero; the runner turns it into StageFailed."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str = ""):
        super().__init__(f"{' '.join(argv)} exited {returncode}")
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr


@dataclass(frozen=True)
class Tree:
    """A directory tree with path helpers that never leave it (`..` and symlinks included)."""

    root: Path

    def path(self, path: str) -> Path:
        """The host path of `path` (absolute inside the tree); PathEscape if it leaves."""
        return resolve_in_tree(self.root, path)

    def exists(self, path: str) -> bool:
        target = self.path(path)
        return target.exists() or target.is_symlink()

    def read_text(self, path: str) -> str:
        return self.path(path).read_text()

    def write_bytes(self, path: str, data: bytes, mode: int = 0o644) -> Path:
        """Write a file (replacing a symlink there rather than following it), creating parents."""
        target = self.path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():
            target.unlink()
        target.write_bytes(data)
        os.chmod(target, mode)
        return target

    def write_text(self, path: str, text: str, mode: int = 0o644) -> Path:
        return self.write_bytes(path, text.encode(), mode)


@dataclass(frozen=True)
class Input:
    """One resolved input of a stage.

    A tree input (`org.osbuild.tree`) has `path`: the referenced pipeline's tree, read-only,
    and `layers`: the stage layers that make it.
    A files input (`org.osbuild.files`) has `files`: checksum (`sha256:…`) → host path, the
    `metadata` each reference carries in the manifest, and `filenames`: the file's name at its
    source (the cache names files by checksum).
    """

    name: str
    type: str
    path: Path | None = None
    # A tree input's store layers, bottom first: the first a full tree, each later one the
    # overlayfs upper directory its stage left (whiteouts and opaque directories included).
    layers: tuple[Layer, ...] = ()
    files: Mapping[str, Path] = field(default_factory=dict)
    metadata: Mapping[str, dict] = field(default_factory=dict)
    filenames: Mapping[str, str] = field(default_factory=dict)  # checksum → name at its source


@dataclass
class StageContext:
    """Handed to a stage's `run(ctx, options)`."""

    tree: Tree
    inputs: Mapping[str, Input]
    buildroot: Path  # "/" for the host, or the build pipeline's tree (read-only)
    log: IO[str]
    scratch: Path  # a private directory on the store's filesystem, removed after the stage
    source_epoch: int | None = None
    on_line: Callable[[str], None] = lambda line: None  # progress: the latest output line
    package_repository: Path | None = None  # made by repository(), bound at REPO_MOUNT
    # The stage's `devices` (name → /dev/loopN; partitions as name + "p1"…) and the host
    # directory its `mounts` are mounted under (bound at MOUNTS_MOUNT in the build root).
    devices: Mapping[str, Path] = field(default_factory=dict)
    mounts: Path | None = None
    mount_targets: Mapping[str, str] = field(default_factory=dict)  # mount name → its target
    # Facts for the build record (build.json, the stage's "report"), e.g. bytes a stage saved;
    # kept with the stage's layer, so a cached stage reports them too. JSON values only.
    report: dict = field(default_factory=dict)

    def destination(self, location: str) -> tuple[Tree, str]:
        """Where `tree:///x` or `mount://<name>/x` points: the Tree to write in (paths stay
        inside it) and where the build root sees that Tree's root."""
        if location.startswith("mount://"):
            name = location[len("mount://"):].split("/", 1)[0]
            if self.mounts is None or name not in self.mount_targets:
                raise StageError(f"{location}: this stage has no mount {name!r} (its mounts: "
                                 f"{', '.join(self.mount_targets) or 'none'})")
            target = self.mount_targets[name].rstrip("/")
            return Tree(self.mounts / target.lstrip("/")), f"{MOUNTS_MOUNT}{target}"
        return self.tree, TREE_MOUNT

    def repository(self, suite: str, architecture: str,
                   extra: Sequence[Path] = ()) -> Path:
        """A local APT repository of the `packages` input (the stage's locked packages) and
        `extra` .debs."""
        if self.package_repository is None:
            packages = self.inputs.get("packages")
            files = dict(packages.files) if packages is not None else {}
            files.update({f"local:{index}": path for index, path in enumerate(extra)})
            self.package_repository = make_repository(self.scratch / "repo", files, suite,
                                                      architecture)
        return self.package_repository

    def _env(self, env: Mapping[str, str] | None) -> dict[str, str]:
        out = {}
        if self.source_epoch is not None:
            out["SOURCE_DATE_EPOCH"] = str(self.source_epoch)
        out.update(env or {})
        return out

    def _run(self, root: Path, argv: Sequence[str], *, readonly_root: bool, env, binds, stdin,
             check: bool) -> ExecResult:
        self.log.write("+ " + " ".join(argv) + "\n")
        self.log.flush()
        stdin_file = None
        if stdin is not None:
            stdin_file = tempfile.TemporaryFile(dir=self.scratch)
            stdin_file.write(stdin.encode())
            stdin_file.seek(0)
        try:
            result = run(root, argv, env=self._env(env), binds=binds, capture=True,
                         echo=False, log=_LineLog(self.log, self.on_line), stdin=stdin_file,
                         readonly_root=readonly_root, hostname="debian-forge")
        finally:
            if stdin_file is not None:
                stdin_file.close()
        if check and not result.ok:
            raise StageCommandFailed(argv, result.returncode, result.stderr)
        return result

    def run(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
            binds: Sequence[Bind] = (), stdin: str | None = None,
            check: bool = True) -> ExecResult:
        """Run `argv` inside the tree (the tree is `/`), without network."""
        return self._run(self.tree.root, argv, readonly_root=False, env=env, binds=binds,
                         stdin=stdin, check=check)

    def run_in_buildroot(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                         binds: Sequence[Bind] = (), stdin: str | None = None,
                         check: bool = True) -> ExecResult:
        """Run a build-root tool without network: the build root is `/` (read-only), the tree
        is at TREE_MOUNT, inputs at INPUTS_MOUNT/<name>, the package repository at REPO_MOUNT,
        mounted filesystems at MOUNTS_MOUNT, device nodes at their /dev paths."""
        mounts = [Bind(self.tree.root, TREE_MOUNT, readonly=False)]
        for name, item in self.inputs.items():
            if item.path is not None:
                mounts.append(Bind(item.path, f"{INPUTS_MOUNT}/{name}"))
        if self.package_repository is not None:
            mounts.append(Bind(self.package_repository, REPO_MOUNT))
        if self.mounts is not None:
            mounts.append(Bind(self.mounts, MOUNTS_MOUNT, readonly=False))
        mounts += [Bind(node, str(node), device=True) for node in self.devices.values()]
        return self._run(self.buildroot, argv, readonly_root=True, env=env,
                         binds=[*mounts, *binds], stdin=stdin, check=check)


class _LineLog:
    """A log file that also reports each line (the monitor shows the latest)."""

    def __init__(self, log: IO[str], on_line: Callable[[str], None]):
        self._log = log
        self._on_line = on_line

    def write(self, text: str) -> None:
        self._log.write(text)
        self._on_line(text)

    def flush(self) -> None:
        self._log.flush()
