"""Build a locked manifest: every stage in the sandbox, every result a layer in the store.

A stage whose ID is in the store is not run again. Otherwise its tree is an overlay of the
previous stage's layers with a fresh upper directory; after the stage the upper directory is
committed as the layer of the stage's ID (no copy). Sources are fetched just before the first
stage that needs them, so a fully cached build touches no network. Builds of the same stage in
two processes serialise on a per-ID lock and the second finds the layer committed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterator

from deb_mock.errors import DebMockError, ExitCode, FetchError
from deb_mock.locking import FileLock
from deb_mock.overlay import materialize, mount_overlay, overlay_supported, unmount
from deb_mock.package_cache import PackageCache, PackageRef
from deb_mock.paths import PathEscape, resolve_in_tree
from deb_mock.sandbox import Bind, run as sandbox_run
from deb_mock.store import Store
from debian_forge import ids, stages
from debian_forge.context import (INPUTS_MOUNT, TREE_MOUNT, Input, StageCommandFailed,
                                  StageContext, StageError, Tree)
from debian_forge.manifest import MOUNT_TYPES, Manifest, Pipeline, Stage
from debian_forge.monitor import Monitor

LOG_TAIL = 20


class StageFailed(DebMockError):
    """A stage failed: its name, ID, the failing command and the end of its log."""

    exit_code = ExitCode.BUILD_FAILED

    def __init__(self, pipeline: str, stage: Stage, stage_id: str, what: str, log: Path):
        try:
            tail = log.read_text(errors="replace").splitlines()[-LOG_TAIL:]
        except OSError:
            tail = []
        text = "\n".join("  | " + line for line in tail)
        super().__init__(
            f"stage {stage.type} of pipeline '{pipeline}' ({stage.path}, ID {stage_id[:16]}) "
            f"failed: {what}.\nLast lines of its log {log}:\n{text}\n"
            "Completed stages stay in the store: the next run resumes from here.")
        self.stage_id = stage_id


@dataclass
class StageRecord:
    pipeline: str
    index: int
    type: str
    id: str
    cached: bool
    duration: float
    log: str | None
    report: dict | None = None  # what the stage reported (StageContext.report)


@dataclass
class BuildResult:
    pipeline_ids: dict[str, str | None]
    stages: list[StageRecord] = field(default_factory=list)


class Runner:
    def __init__(self, manifest: Manifest, store: Store, packages: PackageCache, *,
                 monitor: Monitor, sources_dir: Path, logs_dir: Path, offline: bool = False,
                 break_at: str | None = None):
        self.manifest = manifest
        self.store = store
        self.packages = packages
        self.monitor = monitor
        self.sources_dir = sources_dir
        self.logs_dir = logs_dir
        self.offline = offline
        self.break_at = break_at
        self.stage_ids, self.pipeline_ids = ids.compute(manifest)
        self.result = BuildResult(dict(self.pipeline_ids))
        self._done: set[str] = set()
        self._overlay = None

    # ---- pipelines ---------------------------------------------------------------------
    def build(self, names: list[str]) -> BuildResult:
        """Build the named pipelines (and what they need); all of them when `names` is empty."""
        self.store.cleanup_stale()
        for pipeline in self.manifest.ordered():
            if not names or pipeline.name in names:
                self._ensure(pipeline)
        return self.result

    def _ensure(self, pipeline: Pipeline) -> None:
        if pipeline.name in self._done:
            return
        self._done.add(pipeline.name)
        keys = [self.stage_ids[ids.StageKey(pipeline.name, s.index)] for s in pipeline.stages]
        first = next((i for i, (stage, key) in enumerate(zip(pipeline.stages, keys))
                      if not self.store.has(key) or self._breaks_at(stage, key)), None)
        if first is None:
            # Nothing of it runs, so neither do the pipelines it needs; the record still
            # lists their stages, taken from the store.
            for name in pipeline.references():
                self._note_cached(self.manifest.pipeline(name))
        else:
            # What the stages that run need is built first (its output comes first, too).
            for name in pipeline.references(pipeline.stages[first:]):
                self._ensure(self.manifest.pipeline(name))
        self.monitor.pipeline(pipeline.name, self.pipeline_ids[pipeline.name])
        previous: str | None = None
        for stage, stage_id in zip(pipeline.stages, keys):
            if self.store.has(stage_id) and not self._breaks_at(stage, stage_id):
                self.store.touch(stage_id)
                self.monitor.stage_cached(pipeline.name, stage.type, stage_id)
                self._record(pipeline, stage, stage_id, cached=True, duration=0.0)
            else:
                self._build_stage(pipeline, stage, stage_id, previous)
            previous = stage_id

    def _note_cached(self, pipeline: Pipeline) -> None:
        """Record the stages of a pipeline that is not needed, as far as the store has them."""
        if pipeline.name in self._done:
            return
        self._done.add(pipeline.name)
        for name in pipeline.references():
            self._note_cached(self.manifest.pipeline(name))
        for stage in pipeline.stages:
            stage_id = self.stage_ids[ids.StageKey(pipeline.name, stage.index)]
            if not self.store.has(stage_id):
                return  # evicted: not needed for this build
            self._record(pipeline, stage, stage_id, cached=True, duration=0.0)

    def _record(self, pipeline: Pipeline, stage: Stage, stage_id: str, cached: bool,
                duration: float, log: Path | None = None, report: dict | None = None) -> None:
        if cached:
            report = self.store.get(stage_id).meta.get("report")
        self.result.stages.append(StageRecord(pipeline.name, stage.index, stage.type, stage_id,
                                              cached, round(duration, 3),
                                              str(log) if log else None, report or None))

    def _breaks_at(self, stage: Stage, stage_id: str) -> bool:
        wanted = self.break_at
        return bool(wanted) and (wanted == stage.type or wanted == "*"
                                 or (len(wanted) >= 6 and stage_id.startswith(wanted)))

    # ---- one stage ---------------------------------------------------------------------
    def _build_stage(self, pipeline: Pipeline, stage: Stage, stage_id: str,
                     previous: str | None) -> None:
        # Whatever this stage needs is built (or found) before its lock is taken.
        for name in pipeline.references([stage]):
            self._ensure(self.manifest.pipeline(name))
        files = self._fetch_sources(stage)
        lock = FileLock(self.store.root / "locks" / f"{stage_id}.lock")
        (self.store.root / "locks").mkdir(parents=True, exist_ok=True)
        with lock:
            if self.store.has(stage_id) and not self._breaks_at(stage, stage_id):
                # Another build made it while we waited.
                self.monitor.stage_cached(pipeline.name, stage.type, stage_id)
                self._record(pipeline, stage, stage_id, cached=True, duration=0.0)
                return
            self.logs_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.logs_dir / f"{pipeline.name}.{stage.index:02d}.{stage.type}.log"
            start = time.monotonic()
            with ExitStack() as stack:
                use = [i for i in (previous, self._build_root_id(pipeline)) if i]
                use += [i for i in self._input_pipeline_ids(stage) if i]
                stack.enter_context(self.store.using(use))
                tmp = stack.enter_context(self.store.tempdir("stage"))
                tree, upper, full = self._working_tree(stack, tmp, previous)
                inputs = self._inputs(stack, tmp, stage, files)
                buildroot = self._tree_of(stack, tmp, "buildroot",
                                          self._build_root_id(pipeline))
                log = stack.enter_context(open(log_path, "w", encoding="utf-8"))
                scratch = tmp / "scratch"
                scratch.mkdir()
                epoch = self.manifest.epoch(pipeline)
                if self._breaks_at(stage, stage_id):
                    self._shell(tree, buildroot, inputs, stage, stage_id, epoch)
                packages = inputs.get("packages")
                steps = 2 * len(packages.files) if packages else None  # unpack + set up each
                with self.monitor.stage(pipeline.name, stage.type, stage_id, steps) as on_line, \
                        ExitStack() as disks:  # released before the tree is unmounted
                    try:
                        devices, mounts = attach_devices(disks, stage, Tree(tree), tmp)
                    except StageError as exc:
                        raise StageFailed(pipeline.name, stage, stage_id, str(exc),
                                          log_path) from None
                    ctx = StageContext(tree=Tree(tree), inputs=inputs, buildroot=buildroot,
                                       log=log, scratch=scratch, source_epoch=epoch,
                                       on_line=on_line, devices=devices, mounts=mounts,
                                       mount_targets={m["name"]: m["target"]
                                                      for m in stage.mounts})
                    self._run_stage(pipeline, stage, stage_id, ctx, log_path)
                log.close()
                if not full:
                    unmount(tree)
                shutil.rmtree(scratch, ignore_errors=True)
                self.store.commit(upper, stage_id, parent=None if full else previous,
                                  full=full, meta={
                                      "kind": "debian-forge-stage", "type": stage.type,
                                      "pipeline": pipeline.name, "log": str(log_path),
                                      **({"report": ctx.report} if ctx.report else {})})
            self._record(pipeline, stage, stage_id, cached=False,
                         duration=time.monotonic() - start, log=log_path, report=ctx.report)

    def _run_stage(self, pipeline: Pipeline, stage: Stage, stage_id: str, ctx: StageContext,
                   log_path: Path) -> None:
        stage_type = stages.get(stage.type)
        try:
            try:
                stage_type.run(ctx, stage.options)
            finally:
                ctx.log.flush()  # the error message quotes the log's tail
        except StageCommandFailed as exc:
            raise StageFailed(pipeline.name, stage, stage_id,
                              f"command `{' '.join(exc.argv)[:300]}` exited {exc.returncode}",
                              log_path) from None
        except StageError as exc:
            ctx.log.write(f"error: {exc}\n")
            ctx.log.flush()
            raise StageFailed(pipeline.name, stage, stage_id, str(exc), log_path) from None
        except PathEscape as exc:
            raise PathEscape(f"{stage.path}.options: {exc.message}") from None

    def _working_tree(self, stack: ExitStack, tmp: Path,
                      previous: str | None) -> tuple[Path, Path, bool]:
        """(tree to work in, directory to commit, whether the commit is a full tree)."""
        upper = tmp / "upper"
        upper.mkdir()
        if previous is None:
            return upper, upper, True
        chain = [layer.tree for layer in self.store.chain(previous)]
        if not self._use_overlay():
            materialize(chain, upper)  # the fallback: a full copy, committed as a full layer
            return upper, upper, True
        (tmp / "work").mkdir()
        root = tmp / "root"
        root.mkdir()
        mount_overlay(chain, upper, tmp / "work", root)
        stack.callback(unmount, root)
        return root, upper, False

    def _use_overlay(self) -> bool:
        if self._overlay is None:
            self._overlay = (os.environ.get("DEB_MOCK_OVERLAY", "1") != "0"
                             and overlay_supported(self.store.tmp_dir))
        return self._overlay

    def _tree_of(self, stack: ExitStack, tmp: Path, name: str, layer_id: str | None) -> Path:
        """A read-only view of a layer's tree (the host's / when `layer_id` is None)."""
        if layer_id is None:
            return Path("/") if name == "buildroot" else _empty(tmp / name)
        chain = [layer.tree for layer in self.store.chain(layer_id)]
        if len(chain) == 1:
            return chain[0]
        view = tmp / name
        for sub in ("upper", "work", "root"):
            (view / sub).mkdir(parents=True)
        if not self._use_overlay():
            materialize(chain, view / "root")
            return view / "root"
        # Writes (there should be none: it is bound read-only) land in a throwaway upper dir.
        mount_overlay(chain, view / "upper", view / "work", view / "root")
        stack.callback(unmount, view / "root")
        return view / "root"

    def _build_root_id(self, pipeline: Pipeline) -> str | None:
        if not pipeline.build:
            return None
        build_id = self.pipeline_ids[pipeline.build]
        if build_id is None:
            raise StageError(f"build pipeline '{pipeline.build}' has no stages")
        return build_id

    def _input_pipeline_ids(self, stage: Stage) -> list[str | None]:
        return [self.pipeline_ids[ref.removeprefix("name:")]
                for item in stage.inputs.values() if item["origin"] == "org.osbuild.pipeline"
                for ref in item["references"]]

    def _inputs(self, stack: ExitStack, tmp: Path, stage: Stage,
                files: dict[str, Path]) -> dict[str, Input]:
        inputs = {}
        urls = self.manifest.curl_items()
        for name, item in stage.inputs.items():
            if item["origin"] == "org.osbuild.pipeline":
                (ref,) = list(item["references"])[:1]
                layer_id = self.pipeline_ids[ref.removeprefix("name:")]
                layers = tuple(reversed(self.store.chain(layer_id))) if layer_id else ()
                inputs[name] = Input(name, item["type"],
                                     path=self._tree_of(stack, tmp, f"input-{name}", layer_id),
                                     layers=layers)
            else:
                refs = item["references"]
                metadata = refs if isinstance(refs, dict) else {r: {} for r in refs}
                inputs[name] = Input(name, item["type"],
                                     files={ref: files[ref] for ref in metadata},
                                     metadata={ref: meta.get("metadata", {})
                                               for ref, meta in metadata.items()},
                                     filenames={ref: urls[ref].rsplit("/", 1)[-1]
                                                for ref in metadata if ref in urls})
        return inputs

    # ---- sources -----------------------------------------------------------------------
    def _fetch_sources(self, stage: Stage) -> dict[str, Path]:
        """Host paths of the stage's source references; downloads what the cache lacks."""
        curl = self.manifest.curl_items()
        inline = self.manifest.sources.get("org.osbuild.inline", {}).get("items", {})
        metadata = {ref: meta.get("metadata", {}) for item in stage.inputs.values()
                    if item["origin"] == "org.osbuild.source"
                    and isinstance(item["references"], dict)
                    for ref, meta in item["references"].items()}
        wanted = [ref for item in stage.inputs.values() if item["origin"] == "org.osbuild.source"
                  for ref in item["references"]]
        found: dict[str, Path] = {}
        refs: list[PackageRef] = []
        for ref in wanted:
            if ref in inline:
                found[ref] = self._inline(ref, inline[ref])
            else:
                url = curl[ref]
                refs.append(PackageRef(url=url, sha256=ref.split(":", 1)[1],
                                       size=metadata.get(ref, {}).get("size", 0),
                                       filename=url.rsplit("/", 1)[-1]))
        if refs:
            missing = self.packages.missing(refs)
            if missing and self.offline:
                raise FetchError(
                    f"--offline: {len(missing)} file(s) for stage {stage.type} ({stage.path}) "
                    f"are not in the package cache {self.packages.root}: "
                    + ", ".join(r.filename for r in missing[:10])
                    + (" …" if len(missing) > 10 else "")
                    + ". Run once with network access to fetch them.")
            if missing:
                with self.monitor.download(f"Downloading {len(missing)} packages") as progress:
                    self.packages.fetch(missing, progress=progress)
            for ref in refs:
                found[f"sha256:{ref.sha256}"] = self.packages.path(ref.sha256)
        return found

    def _inline(self, checksum: str, item: dict) -> Path:
        path = self.sources_dir / "org.osbuild.inline" / checksum.split(":", 1)[1]
        if not path.exists():
            data = base64.b64decode(item["data"])
            if "sha256:" + hashlib.sha256(data).hexdigest() != checksum:
                raise FetchError(f"inline source {checksum} does not match its data")
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return path

    # ---- --break -----------------------------------------------------------------------
    def _shell(self, tree: Path, buildroot: Path, inputs: dict[str, Input], stage: Stage,
               stage_id: str, epoch: int | None) -> None:
        binds = [Bind(i.path, f"{INPUTS_MOUNT}/{n}") for n, i in inputs.items() if i.path]
        env = {"SOURCE_DATE_EPOCH": str(epoch)} if epoch is not None else {}
        if (tree / "bin/sh").exists() or (tree / "usr/bin/sh").exists():
            root, readonly, where = tree, False, "the tree is /"
        else:
            root, readonly, where = buildroot, True, f"the build root is /, the tree {TREE_MOUNT}"
            binds.append(Bind(tree, TREE_MOUNT, readonly=False))
        self.monitor.ui.info(f"--break: a shell before {stage.type} ({stage_id[:12]}); {where}, "
                             f"inputs under {INPUTS_MOUNT}. Exit the shell to run the stage.")
        sandbox_run(root, ["/bin/sh"], env=env, binds=binds, interactive=True,
                    readonly_root=readonly, hostname="debian-forge")

    # ---- results -----------------------------------------------------------------------
    @contextmanager
    def tree(self, pipeline: str) -> Iterator[Path | None]:
        """The finished tree of a pipeline, read-only, for export and records."""
        layer_id = self.pipeline_ids[pipeline]
        if layer_id is None:
            yield None
            return
        with ExitStack() as stack:
            stack.enter_context(self.store.using([layer_id]))
            tmp = stack.enter_context(self.store.tempdir("view"))
            yield self._tree_of(stack, tmp, "tree", layer_id)

    def export(self, pipeline: str, target: Path) -> None:
        """Copy a pipeline's tree to `target` (its contents: a tree, or the files it made)."""
        layer_id = self.pipeline_ids[pipeline]
        if target.exists():
            shutil.rmtree(target)
        if layer_id is None:
            target.mkdir(parents=True)
            return
        with self.store.using([layer_id]):
            materialize([layer.tree for layer in self.store.chain(layer_id)], target)


def attach_devices(stack: ExitStack, stage: Stage, tree: Tree,
                   tmp: Path) -> tuple[dict[str, Path], Path | None]:
    """Loop devices for the stage's `devices` and its `mounts` mounted under tmp/mounts; all
    released by `stack` (and by the kernel if we die: autoclear, private mount namespace)."""
    from deb_mock.loop import loop_device, partition_devices

    devices: dict[str, Path] = {}
    partitions: dict[str, list[Path]] = {}
    for name, spec in stage.devices.items():
        options = spec["options"]
        sector = options.get("sector-size", 512)
        size = options.get("size")
        loop = stack.enter_context(loop_device(
            tree.path(options["filename"]), offset=options.get("start", 0) * sector,
            size=size * sector if size else None, partscan=options.get("partscan", False)))
        devices[name] = loop
        partitions[name] = partition_devices(loop) if options.get("partscan") else []
        for index, node in enumerate(partitions[name], start=1):
            devices[f"{name}p{index}"] = node
    if not stage.mounts:
        return devices, None
    root = tmp / "mounts"
    root.mkdir()
    stack.callback(unmount, root)
    for mount in sorted(stage.mounts, key=lambda m: len(PurePosixPath(m["target"]).parts)):
        node = devices[mount["source"]]
        if "partition" in mount:
            found = partitions[mount["source"]]
            if mount["partition"] > len(found):
                raise StageError(f"device {mount['source']!r} has {len(found)} partitions, "
                                 f"not {mount['partition']}")
            node = found[mount["partition"] - 1]
        target = resolve_in_tree(root, mount["target"])
        target.mkdir(parents=True, exist_ok=True)
        options = ",".join(f"{k}={v}" if v is not True else k
                           for k, v in mount.get("options", {}).items())
        proc = subprocess.run(["mount", "-t", MOUNT_TYPES[mount["type"]],
                               *(["-o", options] if options else []), str(node), str(target)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise StageError(f"cannot mount {mount['name']} ({node}) at {mount['target']}: "
                             f"{proc.stderr.strip()}")
    return devices, root


def _empty(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
