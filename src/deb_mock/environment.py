"""Environments: an overlay of a cached base layer and a private writable upper directory.

This is deb-mock's stable Python API (docs/api.md). An environment's state lives in
`<state_dir>/<name>/` (upper, work, env.json, result/); its base is a layer in the store shared with
debian-forge. Every mount is made in deb-mock's private mount namespace and undone when the
operation ends — or by the kernel, if the process dies.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from deb_mock import bootstrap
from deb_mock.apt_host import HostApt, ResolvedPackage, SourceEntry, apt_error_summary, parse_print_uris
from deb_mock.config import Config
from deb_mock.ids import canonical_id
from deb_mock.errors import (ConfigError, DebMockError, EnvironmentLocked, PackageManagerError,
                             UsageError)
from deb_mock.locking import FileLock, LockBusy
from deb_mock.logs import ResultLogs
from deb_mock.namespace import enter_private_mount_namespace
from deb_mock.overlay import materialize, mount_overlay, overlay_supported, unmount
from deb_mock.package_cache import PackageCache
from deb_mock.paths import resolve_in_tree
from deb_mock.sandbox import Bind, ExecResult, User, require_tool, run
from deb_mock.store import Layer, Store
from deb_mock.ui import UI

# Bump when the way a base is made changes, so old bases are not reused.
BASE_RECIPE = 1
# Host tools an environment needs, with the Debian package that provides each.
HOST_TOOLS = {"bwrap": "bubblewrap", "mmdebstrap": "mmdebstrap", "apt-get": "apt",
              "unshare": "util-linux", "mount": "mount", "cp": "coreutils"}
# Set to 0 to make environments full copies of their base instead of overlays (the fallback
# used automatically where overlayfs is unavailable).
OVERLAY_ENV = "DEB_MOCK_OVERLAY"
# Fresh tmpfs in every command: files copied there would vanish at once.
_VOLATILE_DIRS = ("/tmp", "/run")


@dataclass(frozen=True)
class InitResult:
    base_id: str
    cache_hit: bool
    packages: int
    seconds: float


def archive_sources(config: Config) -> list[SourceEntry]:
    """The repositories of an environment: the suite, its updates and security, extra ones."""
    components = tuple(config.components)
    sources = [SourceEntry(config.mirror_url(), config.suites(), components)]
    security = config.security_suite()
    if security:
        sources.append(SourceEntry(config.security_mirror_url(), (security,), components))
    for index, repo in enumerate(config.extra_repositories):
        key = _repository_key(config, index, repo.signed_by) if repo.signed_by else None
        signed_by = None
        if key is not None:
            kind = ".asc" if key.lstrip().startswith(b"-----BEGIN") else ".gpg"
            signed_by = f"{bootstrap.KEYRING_DIR}/deb-mock-{hashlib.sha256(key).hexdigest()[:16]}{kind}"
        sources.append(SourceEntry(repo.url, (repo.suite,), tuple(repo.components),
                                   signed_by=signed_by, trusted=repo.trusted, key=key))
    return sources


def _repository_key(config: Config, index: int, signed_by: str) -> bytes:
    """The key of an extra repository: ASCII-armoured text in the config, or a key file."""
    if "-----BEGIN PGP PUBLIC KEY BLOCK-----" in signed_by:
        return signed_by.strip().encode() + b"\n"
    try:
        return Path(signed_by).expanduser().read_bytes()
    except OSError as exc:
        raise ConfigError(f"config {config.path or config.name}: extra_repositories[{index}]."
                          f"signed_by: cannot read the key file '{signed_by}': {exc.strerror}. "
                          "Give a readable key file or the ASCII-armoured key itself.") from None


class Environment:
    """One deb-mock environment made from a config (mock's "root").

    Methods lock the environment and mount it for their own duration; inside a `with` block the
    lock and the mount are held once for all calls.
    """

    def __init__(self, config: Config, uniqueext: str | None = None, *, wait: bool = False,
                 ui: UI | None = None, plugins=None):
        self.config = config
        self.name = f"{config.name}-{uniqueext}" if uniqueext else config.name
        self.wait = wait
        self.ui = ui or UI(quiet=True)
        self.dir = Path(config.state_dir) / self.name
        self.root_path = self.dir / "root"
        self.result_dir = self.dir / "result"
        cache_dir = Path(config.cache_dir)
        self.store = Store(cache_dir / "store", max_size=config.store_max_bytes())
        self.logs = ResultLogs(self.result_dir)
        self._plugins = plugins  # deb_mock.plugins.Plugins; the config's defaults when None
        self._lock: FileLock | None = None
        self._mounted_root: Path | None = None
        self._layers_in_use = None  # the store's shared locks on the mounted base
        self._depth = 0

    # The archive side is needed only to initialise: commands on an existing environment
    # (chroot, copyin, ...) skip reading the host's sources and preparing the host APT.
    @functools.cached_property
    def sources(self) -> list[SourceEntry]:
        return archive_sources(self.config)

    @functools.cached_property
    def host_apt(self) -> HostApt:
        return HostApt.for_sources(Path(self.config.cache_dir), self.config.architecture,
                                   self.sources)

    @functools.cached_property
    def packages(self) -> PackageCache:
        """The shared package cache; with the package_cache plugin off, a private one that is
        removed when the process ends (downloads are then kept by nothing)."""
        cache_dir = Path(self.config.cache_dir)
        if "package_cache" in self.plugins.enabled():
            return PackageCache(cache_dir / "packages")
        private = Path(tempfile.mkdtemp(prefix="packages-", dir=_ensure(cache_dir)))
        atexit.register(shutil.rmtree, private, True)
        return PackageCache(private)

    @property
    def plugins(self):
        """The enabled plugins (deb_mock.plugins.Plugins) whose hooks this environment calls."""
        if self._plugins is None:
            from deb_mock.plugins import Plugins

            self._plugins = Plugins(self.config)
        return self._plugins

    # ---- state -------------------------------------------------------------------------
    @property
    def record_path(self) -> Path:
        return self.dir / "env.json"

    def record(self) -> dict | None:
        try:
            return json.loads(self.record_path.read_text())
        except FileNotFoundError:
            return None

    @property
    def initialized(self) -> bool:
        record = self.record()
        return bool(record) and self.store.has(record["base"])

    @property
    def user(self) -> User:
        build_user = self.config.build_user
        return User(build_user.name, build_user.uid, build_user.uid, f"/home/{build_user.name}")

    # ---- locking and mounting -------------------------------------------------------------
    def __enter__(self) -> "Environment":
        self._acquire()
        return self

    def __exit__(self, *exc) -> None:
        self._release()

    def _acquire(self) -> None:
        self._depth += 1
        if self._depth > 1:
            return
        enter_private_mount_namespace()
        for tool, package in HOST_TOOLS.items():
            require_tool(tool, package)
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.dir.parent / f"{self.name}.lock", wait=self.wait)
        try:
            lock.acquire()
        except LockBusy:
            self._depth -= 1
            raise EnvironmentLocked(self.name) from None
        self._lock = lock

    def _release(self) -> None:
        self._depth -= 1
        if self._depth > 0:
            return
        self._unmount()
        if self._lock:
            self._lock.release()
            self._lock = None

    @contextmanager
    def _session(self) -> Iterator[None]:
        self._acquire()
        try:
            yield
        finally:
            self._release()

    def _mount(self) -> Path:
        """Mount the environment (initialising it first if needed); returns its root."""
        if self._mounted_root is not None:
            return self._mounted_root
        if not self.initialized:
            self.init()
        record = self.record()
        assert record is not None
        if record.get("mode") == "copy":
            self._mounted_root = self.root_path  # a full copy: nothing to mount
            return self.root_path
        chain = self.store.chain(record["base"])
        self._layers_in_use = self.store.using([record["base"]])
        self._layers_in_use.__enter__()
        for sub in ("upper", "work"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.root_path.mkdir(parents=True, exist_ok=True)
        try:
            mount_overlay([layer.tree for layer in chain], self.dir / "upper", self.dir / "work",
                          self.root_path)
        except Exception:
            self._layers_in_use.__exit__(None, None, None)
            self._layers_in_use = None
            raise
        self._mounted_root = self.root_path
        return self.root_path

    def _unmount(self) -> None:
        if self._mounted_root is None:
            return
        self._mounted_root = None
        if self._layers_in_use is None:
            return  # copy mode: nothing was mounted
        try:
            unmount(self.root_path)
        finally:
            self._layers_in_use.__exit__(None, None, None)
            self._layers_in_use = None

    @contextmanager
    def mounted(self) -> Iterator[Path]:
        """The environment's root directory, mounted for the duration of the block."""
        with self._session():
            yield self._mount()

    # ---- lifecycle ----------------------------------------------------------------------
    def init(self, refresh: bool = False) -> InitResult:
        """Create the environment from its cached base, bootstrapping the base if needed.

        The archive indexes are refreshed when older than the config's metadata_expire (or
        always with `refresh`); the base is keyed by the resolved package set, so a changed
        archive gives a new base and an unchanged one a cache hit.
        """
        start = time.monotonic()
        with self._session(), self.logs.state("init"):
            self._unmount()
            self.plugins.hook.preinit(env=self)
            try:
                base_id, resolved = self._resolve_base(refresh)
                if "root_cache" not in self.plugins.enabled():
                    # Bootstrap afresh into a layer of its own; the shared base stays for others.
                    base_id = canonical_id({"base": base_id, "uncached": time.time()})
                hit = self.store.has(base_id)
                if not hit:
                    self._build_base(base_id, resolved)
            except DebMockError as exc:
                self.plugins.hook.initfailed(env=self, error=exc)
                raise
            self._release_pins()
            self._reset_state()
            mode = "overlay" if self._use_overlay() else "copy"
            if mode == "copy":
                with self.store.using([base_id]), self.logs.state("copy base"):
                    materialize([layer.tree for layer in self.store.chain(base_id)],
                                self.root_path)
            self.record_path.write_text(json.dumps(
                {"base": base_id, "config": self.config.name, "created": time.time(),
                 "mode": mode, "packages": bootstrap.package_specs(resolved)}, indent=1))
            self.store.touch(base_id)
            self.plugins.hook.postinit(env=self)
            return InitResult(base_id, hit, len(resolved), time.monotonic() - start)

    def _use_overlay(self) -> bool:
        if os.environ.get(OVERLAY_ENV, "1") == "0":
            return False
        self.dir.mkdir(parents=True, exist_ok=True)
        return overlay_supported(self.dir)

    def _reset_state(self) -> None:
        if os.path.ismount(self.root_path):  # never delete through a mount
            unmount(self.root_path)
        for sub in ("upper", "work", "root"):
            _remove_tree(self.dir / sub)
        self.record_path.unlink(missing_ok=True)
        self.dir.mkdir(parents=True, exist_ok=True)

    def _resolve_base(self, refresh: bool) -> tuple[str, list[ResolvedPackage]]:
        config = self.config
        with self.logs.open("root.log") as log, self.ui.activity("Updating archive indexes"):
            if self.host_apt.update(0 if refresh else config.metadata_expire, log=log):
                self.ui.debug("archive indexes refreshed")
        request = bootstrap.base_request(config.variant, config.packages)
        cache_file = self.host_apt.root / "resolved" / (
            canonical_id({"request": request, "release": self.host_apt.release_digest()}) + ".json")
        if cache_file.exists():
            resolved = [_resolved_from_json(item) for item in json.loads(cache_file.read_text())]
        else:
            resolved = self.host_apt.resolve(request)
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps([_resolved_to_json(p) for p in resolved]))
            os.replace(tmp, cache_file)
        base_id = canonical_id({
            "recipe": BASE_RECIPE, "suite": config.suite, "variant": config.variant,
            "architecture": config.architecture, "sources": bootstrap.mirror_lines(self.sources),
            "includes": list(config.packages),
            "user": [config.build_user.name, config.build_user.uid],
            "packages": sorted(f"{p.name}={p.version}:{p.architecture}:{p.ref.sha256}"
                               for p in resolved)})
        return base_id, resolved

    def _build_base(self, base_id: str, resolved: list[ResolvedPackage]) -> Layer:
        # One builder per base; a second process waits and then finds the layer committed.
        with FileLock(self.store.root / "locks" / f"{base_id}.lock"):
            if self.store.has(base_id):
                return self.store.get(base_id)
            refs = [p.ref for p in resolved]
            with self.logs.state("fetch"), self.ui.download("Downloading packages") as progress:
                self.packages.fetch(refs, progress=progress)
            with self.store.tempdir("base") as tmp, self.logs.state("bootstrap"), \
                    self.logs.open("root.log", "bootstrap") as log, \
                    self.ui.activity(f"Bootstrapping {self.config.suite}") as on_line:
                archives = tmp / "archives"
                archives.mkdir()
                self.packages.link_into(refs, archives)
                bootstrap.run_mmdebstrap(
                    target=tmp / "tree", suite=self.config.suite, variant=self.config.variant,
                    architecture=self.config.architecture, sources=self.sources,
                    includes=list(self.config.packages), archives=archives,
                    host_apt=self.host_apt, log=log, on_line=on_line,
                    customize=bootstrap.user_hooks(self.config.build_user.name,
                                                   self.config.build_user.uid))
                layer = self.store.commit(tmp / "tree", base_id, parent=None, full=True, meta={
                    "kind": "deb-mock-base", "config": self.config.name,
                    "suite": self.config.suite, "architecture": self.config.architecture,
                    "packages": bootstrap.package_specs(resolved)})
            self.store.gc()
            return layer

    def clean(self) -> None:
        """Drop the environment's state (its changes and record); caches stay."""
        with self._session(), self.logs.state("clean"):
            self.plugins.hook.clean(env=self)
            self._unmount()
            self._release_pins()
            self._reset_state()

    # ---- layers: the environment's state as a stack in the store ----------------------------
    def _write_record(self, record: dict) -> None:
        tmp = self.record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, self.record_path)

    def _release_pins(self) -> None:
        record = self.record() or {}
        for layer_id in [record.get("base"), *record.get("snapshots", {}).values()]:
            if layer_id and self.store.has(layer_id):
                self.store.unpin(layer_id, self.name)

    def _require_layers(self, what: str) -> dict:
        record = self.record()
        if not record or not self.store.has(record["base"]):
            raise UsageError(f"{self.name} is not initialised: run `deb-mock init` before {what}")
        if record.get("mode") == "copy":
            raise UsageError(f"{what} needs overlayfs; {self.name} is a full copy "
                             f"({OVERLAY_ENV}=0 or no overlayfs here)")
        return record

    def _drop_changes(self) -> None:
        for sub in ("upper", "work"):
            _remove_tree(self.dir / sub)

    def commit_state(self, layer_id: str, meta: dict) -> str:
        """Make the environment's changes a layer of the store, on top of its current stack,
        and go on from it with no changes of its own. If `layer_id` exists already (the same
        content made before), the changes are dropped and that layer is used."""
        with self._session():
            record = self._require_layers("committing its state")
            self._unmount()
            upper = self.dir / "upper"
            if not self.store.has(layer_id):
                upper.mkdir(parents=True, exist_ok=True)
                meta = {"kind": "deb-mock-state", "environment": self.name, **meta}
                if os.stat(upper).st_dev == os.stat(self.store.tmp_dir).st_dev:
                    self.store.commit(upper, layer_id, parent=record["base"], meta=meta)
                else:  # state and store on different filesystems: copy, then commit
                    with self.store.tempdir("state") as tmp:
                        _copy(upper, tmp / "tree")
                        self.store.commit(tmp / "tree", layer_id, parent=record["base"],
                                          meta=meta)
            self._switch_top(record, layer_id)
            return layer_id

    def use_layer(self, layer_id: str) -> None:
        """Continue from an existing layer (built on this environment's base), dropping the
        current changes."""
        with self._session():
            record = self._require_layers("switching layers")
            self._unmount()
            self._switch_top(record, layer_id)

    def _switch_top(self, record: dict, layer_id: str) -> None:
        if record["base"] not in record.get("snapshots", {}).values():
            self.store.unpin(record["base"], self.name)
        self.store.pin(layer_id, self.name)
        self._drop_changes()
        record["base"] = layer_id
        self._write_record(record)

    def snapshot(self, name: str) -> str:
        """Keep the environment as it is now under NAME (mock --snapshot): a layer, no copy."""
        record = self._require_layers("a snapshot")
        if name in record.get("snapshots", {}):
            raise UsageError(f"{self.name} has a snapshot named {name!r} already; remove it "
                             "first (remove-snapshot) or choose another name")
        layer_id = canonical_id({"snapshot": name, "environment": self.name,
                                 "parent": record["base"], "time": time.time()})
        self.commit_state(layer_id, {"snapshot": name})
        record = self.record()
        record.setdefault("snapshots", {})[name] = layer_id
        self._write_record(record)
        self.plugins.hook.make_snapshot(env=self, name=name)
        return layer_id

    def list_snapshots(self) -> dict[str, str]:
        """Snapshot name → layer ID."""
        return dict((self.record() or {}).get("snapshots", {}))

    def rollback_to(self, name: str) -> None:
        """Return to snapshot NAME; everything done since is dropped (mock --rollback-to)."""
        with self._session():
            snapshots = self._require_layers("a rollback").get("snapshots", {})
            if name not in snapshots:
                raise UsageError(f"{self.name} has no snapshot {name!r} (snapshots: "
                                 f"{', '.join(snapshots) or 'none'})")
            self.use_layer(snapshots[name])
            self.plugins.hook.rollback_to(env=self, name=name)

    def remove_snapshot(self, name: str) -> None:
        """Forget snapshot NAME; its layer is evicted later unless something stands on it."""
        with self._session():
            record = self._require_layers("removing a snapshot")
            snapshots = record.get("snapshots", {})
            if name not in snapshots:
                raise UsageError(f"{self.name} has no snapshot {name!r} (snapshots: "
                                 f"{', '.join(snapshots) or 'none'})")
            layer_id = snapshots.pop(name)
            if layer_id != record["base"]:
                self.store.unpin(layer_id, self.name)
            self._write_record(record)

    # ---- running commands ------------------------------------------------------------------
    def execute(self, argv: Sequence[str], *, network: bool | None = None,
                as_user: bool = False, env: dict[str, str] | None = None,
                binds: Sequence[Bind] = (), cwd: str = "/", capture: bool = True,
                echo: bool = False, interactive: bool = False,
                timeout: float | None = None) -> ExecResult:
        """Run a command inside the environment; its output is also appended to chroot.log."""
        if network is None:
            network = self.config.network
        environment = dict(self.config.environment)
        environment.update(env or {})
        binds = [*self.plugins.mounts(self, "chroot"), *binds]
        with self.mounted() as root, self.logs.open("chroot.log", f"$ {' '.join(argv)}") as log:
            return run(root, argv, network=network, user=self.user if as_user else None,
                       env=environment, binds=binds, cwd=cwd, capture=capture, echo=echo,
                       log=None if interactive else log, interactive=interactive,
                       timeout=timeout)

    def shell(self, network: bool | None = None) -> int:
        """An interactive login shell in the environment; returns its exit status."""
        return self.execute(["/bin/bash", "-l"], network=network, interactive=True,
                            capture=False).returncode

    # ---- packages ------------------------------------------------------------------------
    def install(self, packages: Sequence[str]) -> list[ResolvedPackage]:
        """Install packages (names, name=version, patterns); downloads go through the cache."""
        if not packages:
            raise UsageError("install needs at least one package name")
        with self.logs.state(f"install {' '.join(packages)}"):
            return self._apt_transaction(["install", "--", *packages])

    def remove(self, packages: Sequence[str]) -> None:
        if not packages:
            raise UsageError("remove needs at least one package name")
        with self.mounted() as root, self.logs.state(f"remove {' '.join(packages)}"), \
                self.logs.open("root.log", f"remove {' '.join(packages)}") as log:
            result = run(root, ["apt-get", "remove", "-y", "--", *packages], capture=True,
                         echo=False, log=log)
            if not result.ok:
                raise PackageManagerError(f"apt-get remove failed: {apt_error_summary(result.stderr)}")

    def update(self) -> list[ResolvedPackage]:
        """Refresh the environment's indexes (with network) and upgrade it."""
        with self.mounted() as root, self.logs.state("update"), \
                self.logs.open("root.log", "update") as log:
            result = run(root, ["apt-get", "update"], network=True, capture=True, echo=False,
                         log=log)
            if not result.ok:
                raise PackageManagerError(f"apt-get update failed: {apt_error_summary(result.stderr)}")
            return self._apt_transaction(["upgrade"])

    def _apt_transaction(self, args: list[str], binds: Sequence[Bind] = ()) -> list[ResolvedPackage]:
        """apt-get ARGS offline: resolve with --print-uris, fetch through the cache, install."""
        return self.apt_apply(args, self.apt_plan(args, binds), binds)

    def apt_plan(self, args: list[str], binds: Sequence[Bind] = ()) -> list[ResolvedPackage]:
        """The exact packages `apt-get ARGS` inside the environment would download."""
        with self.mounted() as root, self.logs.open("root.log", "apt-get " + " ".join(args)) as log:
            plan = run(root, ["apt-get", "--print-uris", "-qq", "-o", "Acquire::ForceHash=SHA256",
                              *args], capture=True, echo=False, log=log, binds=binds)
            if not plan.ok:
                raise PackageManagerError(apt_error_summary(plan.stderr))
            return parse_print_uris(plan.stdout)

    def apt_apply(self, args: list[str], needed: list[ResolvedPackage],
                  binds: Sequence[Bind] = ()) -> list[ResolvedPackage]:
        """Run `apt-get ARGS` with `needed` (from apt_plan) fetched through the package cache."""
        with self.mounted() as root, self.logs.open("root.log", "apt-get " + " ".join(args)) as log:
            missing = self.packages.missing([p.ref for p in needed])
            summary = (f"packages: {len(needed)} needed, {len(missing)} downloaded, "
                       f"{len(needed) - len(missing)} from the package cache")
            log.write(summary + "\n")
            self.ui.debug(summary)
            with self.ui.download("Downloading packages") as progress:
                self.packages.fetch(missing, progress=progress)
            with self.store.tempdir("archives") as archives:
                (archives / "partial").mkdir()
                self.packages.link_into([p.ref for p in needed], archives)
                with self.ui.activity("apt-get " + " ".join(args)) as on_line:
                    result = run(root, ["apt-get", "-y", "--no-download", *args], capture=True,
                                 echo=False, log=log, binds=[
                                     *binds, Bind(archives, "/var/cache/apt/archives",
                                                  readonly=False)])
                    on_line("done")
            if not result.ok:
                raise PackageManagerError(f"apt-get {' '.join(args)} failed: "
                                          f"{apt_error_summary(result.stderr)}")
            return needed

    # ---- files ---------------------------------------------------------------------------
    def copyin(self, sources: Sequence[Path | str], dest: str) -> None:
        """Copy host files or directories into the environment (mock --copyin)."""
        if any(dest == d or dest.startswith(d + "/") for d in _VOLATILE_DIRS):
            raise UsageError(f"copyin: '{dest}' is a fresh tmpfs in every command, the copy would "
                             "vanish; copy into /build, /root or /home/<user> instead")
        with self.mounted() as root:
            target = resolve_in_tree(root, dest)
            for source in sources:
                source = Path(source)
                if not source.exists():
                    raise UsageError(f"copyin: '{source}' does not exist")
                final = target / source.name if target.is_dir() else target
                _copy(source, final)

    def copyout(self, sources: Sequence[str], dest: Path | str) -> None:
        """Copy files or directories out of the environment (mock --copyout)."""
        dest = Path(dest)
        with self.mounted() as root:
            for source in sources:
                path = resolve_in_tree(root, source)
                if not path.exists() and not path.is_symlink():
                    raise UsageError(f"copyout: '{source}' does not exist in {self.name}")
                _copy(path, dest / path.name if dest.is_dir() else dest)

    def collect(self, patterns: Sequence[str], dest: Path | str, directory: str = "/") -> list[Path]:
        """Copy files matching glob patterns (relative to `directory` in the environment)."""
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        collected: list[Path] = []
        with self.mounted() as root:
            base = resolve_in_tree(root, directory)
            for pattern in patterns:
                for match in sorted(base.glob(pattern)):
                    real = resolve_in_tree(root, "/" + str(match.relative_to(root)))
                    if real.is_file():
                        target = dest / match.name
                        shutil.copy2(real, target)
                        collected.append(target)
        return collected


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["cp", "-a", "--reflink=auto", "--no-target-directory", str(source),
                           str(target)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise UsageError(f"cannot copy '{source}' to '{target}': {proc.stderr.strip()}")


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _remove_tree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _resolved_to_json(package: ResolvedPackage) -> dict:
    ref = package.ref
    return {"name": package.name, "version": package.version, "arch": package.architecture,
            "url": ref.url, "sha256": ref.sha256, "size": ref.size, "filename": ref.filename}


def _resolved_from_json(item: dict) -> ResolvedPackage:
    from deb_mock.package_cache import PackageRef

    return ResolvedPackage(item["name"], item["version"], item["arch"],
                           PackageRef(item["url"], item["sha256"], item["size"], item["filename"]))
