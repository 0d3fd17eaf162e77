"""Package builds: a .deb from a source package in a fresh environment (mock --rebuild, sbuild).

1. The source is acquired and checked (deb_mock.source) into a work directory.
2. The environment starts from its cached base. The build dependencies are resolved by apt
   inside it (`apt-get build-dep` on the .dsc: alternatives, arch and profile restrictions
   handled by apt); the resulting set keys a layer of the store, so the next build with the same
   set mounts it instead of installing anything.
3. The build runs as the unprivileged build user under /build, without network unless asked,
   with DEB_BUILD_OPTIONS passed through and SOURCE_DATE_EPOCH from the changelog
   (dpkg-buildpackage sets it).
4. Results — .debs, .changes, .buildinfo, the source files — and logs land in the result
   directory with build.json (durations, sha256 of every artifact, exit status).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from deb_mock import source as sources
from deb_mock.apt_host import HostApt
from deb_mock.errors import DebMockError, ExitCode, PackageManagerError
from deb_mock.ids import canonical_id
from deb_mock.logs import ResultLogs
from deb_mock.sandbox import Bind, run

# dpkg-buildpackage's selection flags, and apt-get build-dep's matching ones.
SELECTIONS = {"binary": (["-b"], []), "any": (["-B"], ["--arch-only"]),
              "all": (["-A"], ["--indep-only"]), "source": (["-S"], []), "full": ([], [])}
DEPS_RECIPE = 1  # bump when the way build-dependency layers are made changes
_SOURCE_MOUNT = "/run/deb-mock/source"
_RESULTS_MOUNT = "/run/deb-mock/results"
_ARTIFACTS = ("*.deb", "*.udeb", "*.ddeb", "*.changes", "*.buildinfo")


class BuildFailed(DebMockError):
    exit_code = ExitCode.BUILD_FAILED


@dataclass
class Build:
    """One package build, as the hooks see it."""

    spec: str
    package: str
    version: str
    dsc: Path
    result_dir: Path
    selection: str = "binary"
    deb_build_options: str = ""
    network: bool = False


@dataclass
class BuildResult:
    ok: bool
    returncode: int
    changes: Path | None
    artifacts: list[Path]
    durations: dict[str, float]
    deps_cached: bool
    deps: list[str]
    extra: dict = field(default_factory=dict)


def _profiles(options: str) -> str:
    """DEB_BUILD_PROFILES for DEB_BUILD_OPTIONS, as sbuild does: nocheck ⇒ the nocheck profile."""
    return "nocheck" if "nocheck" in options.split() else ""


def fetch_from_archive(env, request: str, work: Path) -> Path:
    """A source package from the environment's archive, through the signed Sources indexes."""
    host_apt = HostApt.for_sources(Path(env.config.cache_dir), env.config.architecture,
                                   env.sources, with_sources=True)
    host_apt.update(env.config.metadata_expire)
    refs = host_apt.source_files(request)
    env.packages.fetch(refs)
    for ref in refs:
        shutil.copy2(env.packages.path(ref.sha256), work / ref.filename)
    dsc = [ref for ref in refs if ref.filename.endswith(".dsc")]
    if not dsc:
        raise sources.BadSource(f"the archive lists no .dsc for {request}")
    return work / dsc[0].filename


def build_package(env, spec: str, result_dir: Path, *, selection: str = "binary",
                  deb_build_options: str = "", network: bool = False,
                  extra_repo: Path | None = None) -> BuildResult:
    """Build SPEC in `env`; results and logs go to `result_dir`. BuildFailed if it fails.

    `extra_repo`: a flat repository (deb_mock.repository) the build dependencies may come
    from, e.g. the results of earlier builds of a chain."""
    started = time.monotonic()
    result_dir.mkdir(parents=True, exist_ok=True)
    for old in result_dir.iterdir():  # a result directory holds one build
        if old.is_file():
            old.unlink()
    plugins = env.plugins
    saved_logs, env.logs = env.logs, ResultLogs(result_dir)  # root.log, state.log go there too
    try:
        return _build(env, spec, result_dir, started, plugins, selection=selection,
                      deb_build_options=deb_build_options, network=network,
                      extra_repo=extra_repo)
    finally:
        env.logs = saved_logs


def _build(env, spec: str, result_dir: Path, started: float, plugins, *, selection: str,
           deb_build_options: str, network: bool, extra_repo: Path | None) -> BuildResult:
    with env.store.tempdir("build") as work, env.logs.state(f"build {spec}"):
        source = sources.acquire(spec, work / "source",
                                 archive=lambda request, where: fetch_from_archive(env, request, where))
        build = Build(spec, source.package, source.version, source.dsc, result_dir, selection,
                      deb_build_options, network)
        (work / "source").chmod(0o755)  # the build user reads it where it is bound
        for path in source.files:
            path.chmod(0o644)
        env.init()
        plugins.hook.prebuild(env=env, build=build)
        durations: dict[str, float] = {"source": time.monotonic() - started}

        step = time.monotonic()
        deps, cached = install_build_deps(env, build, work / "source", extra_repo)
        durations["install"] = time.monotonic() - step
        plugins.hook.postdeps(env=env, build=build)

        step = time.monotonic()
        staging = work / "results"
        staging.mkdir()
        os.chown(staging, env.config.build_user.uid, env.config.build_user.uid)
        returncode = _run_build(env, build, work / "source", staging)
        durations["build"] = time.monotonic() - step

        step = time.monotonic()
        artifacts = _collect(build, staging, source)
        with env.mounted() as root:
            listing = run(root, ["dpkg-query", "-W", "-f", "${Package} ${Version} ${Architecture}\\n"],
                          capture=True, echo=False)
        (result_dir / "installed-packages.log").write_text(listing.stdout)
        durations["collect"] = time.monotonic() - step
        changes = next((p for p in artifacts if p.suffix == ".changes"), None)
        result = BuildResult(returncode == 0, returncode, changes, artifacts,
                             {k: round(v, 3) for k, v in durations.items()}, cached, deps)
        plugins.hook.postbuild(env=env, build=build, result=result)
        _record(build, result, env)
        plugins.hook.process_logs(env=env, result_dir=result_dir)
    if not result.ok:
        tail = (result_dir / "build.log").read_text(errors="replace").splitlines()[-15:]
        raise BuildFailed(f"{build.package} {build.version} failed to build (exit "
                          f"{returncode}); last lines of {result_dir / 'build.log'}:\n  "
                          + "\n  ".join(tail))
    return result


def install_build_deps(env, build: Build, source_dir: Path,
                       extra_repo: Path | None = None) -> tuple[list[str], bool]:
    """Install the build dependencies — or mount the layer that has them — and return
    (the resolved set as name=version, whether the layer was cached)."""
    _, apt_flags = SELECTIONS[build.selection]
    profiles = _profiles(build.deb_build_options)
    args = ["build-dep", *apt_flags]
    if profiles:
        args += ["-o", f"APT::Build-Profiles={profiles}"]
    args.append(f"{_SOURCE_MOUNT}/{build.dsc.name}")
    binds = [Bind(source_dir, _SOURCE_MOUNT)]
    # fakeroot: packages without `Rules-Requires-Root: no` need it, as on Debian's buildds.
    extra = sorted({"fakeroot", *env.plugins.build_packages(env, build)})
    with env.logs.state("build dependencies"):
        if extra_repo is not None:
            binds.append(Bind(extra_repo, str(extra_repo)))  # the same path inside: file: URLs
            _add_local_repository(env, extra_repo, binds)
        plan = env.apt_plan(args, binds)
        extra_plan = env.apt_plan(["install", "--", *extra]) if extra else []
        deps = sorted({f"{p.name}={p.version}" for p in plan + extra_plan})
        record = env.record()
        layer_id = canonical_id({"recipe": DEPS_RECIPE, "base": record["base"], "extra": extra,
                                 "packages": sorted(f"{p.name}={p.version}:{p.ref.sha256}"
                                                    for p in plan + extra_plan)})
        if record.get("mode") == "copy" or "root_cache" not in env.plugins.enabled():
            _apply(env, args, plan, extra, extra_plan, binds)
            return deps, False
        if env.store.has(layer_id):
            env.use_layer(layer_id)
            return deps, True
        _apply(env, args, plan, extra, extra_plan, binds)
        env.commit_state(layer_id, {"build-deps": build.package, "packages": deps})
        return deps, False


def _add_local_repository(env, repo: Path, binds: list[Bind]) -> None:
    """Make the environment's apt see `repo` (offline: only its index is read)."""
    sources = "/etc/apt/sources.list.d/deb-mock-local.list"
    line = f"deb [trusted=yes] file:{repo} ./"
    script = (f"echo {shlex.quote(line)} > {sources} && apt-get update -q "
              f"-o Dir::Etc::SourceList={sources} -o Dir::Etc::SourceParts=/dev/null "
              "-o APT::Get::List-Cleanup=false")
    result = env.execute(["sh", "-c", script], binds=binds, network=False)
    if not result.ok:
        raise PackageManagerError(f"cannot add the local repository {repo}: "
                                  f"{result.stderr.strip()[-500:]}")


def _apply(env, args, plan, extra, extra_plan, binds) -> None:
    if plan:
        env.apt_apply(args, plan, binds)
    if extra:
        env.apt_apply(["install", "--", *extra], extra_plan)


def _run_build(env, build: Build, source_dir: Path, staging: Path) -> int:
    """dpkg-buildpackage as the build user under /build; artifacts copied to `staging`."""
    flags, _ = SELECTIONS[build.selection]
    script = f"""set -e
rm -rf /build/{build.package}-build && mkdir -p /build/{build.package}-build
cd /build/{build.package}-build
dpkg-source --no-copy -x {_SOURCE_MOUNT}/{shlex.quote(build.dsc.name)} src
cd src
rc=0
dpkg-buildpackage -us -uc {' '.join(flags)} || rc=$?
cd ..
for f in {' '.join(_ARTIFACTS)}; do [ -e "$f" ] && cp "$f" {_RESULTS_MOUNT}/; done
exit $rc
"""
    environment = dict(env.config.environment)
    if build.deb_build_options:
        environment["DEB_BUILD_OPTIONS"] = build.deb_build_options
    profiles = _profiles(build.deb_build_options)
    if profiles:
        environment["DEB_BUILD_PROFILES"] = profiles
    environment.update(env.plugins.build_environment(env, build))
    binds = [Bind(source_dir, _SOURCE_MOUNT), Bind(staging, _RESULTS_MOUNT, readonly=False),
             *env.plugins.mounts(env, "build")]
    with env.mounted() as root, open(build.result_dir / "build.log", "w") as log:
        log.write(f"deb-mock: building {build.package} {build.version} in {env.name} "
                  f"({'with' if build.network else 'without'} network)\n")
        log.flush()
        with env.ui.activity(f"Building {build.package} {build.version}") as on_line:
            result = run(root, ["/bin/sh", "-c", script], user=env.user, env=environment,
                         binds=binds, network=build.network, cwd="/build", capture=False,
                         echo=False, log=_Tee(log, on_line))
    return result.returncode


class _Tee:
    def __init__(self, log, on_line):
        self.log, self.on_line = log, on_line

    def write(self, text: str) -> None:
        self.log.write(text)
        self.on_line(text)

    def flush(self) -> None:
        self.log.flush()


def _collect(build: Build, staging: Path, source) -> list[Path]:
    """The artifacts and the source files, copied (not linked) into the result directory."""
    artifacts = []
    for path in sorted(staging.iterdir()):
        target = build.result_dir / path.name
        shutil.copy2(path, target)
        artifacts.append(target)
    for path in source.files:
        target = build.result_dir / path.name
        if not target.exists():
            shutil.copy2(path, target)
            artifacts.append(target)
    return artifacts


def _record(build: Build, result: BuildResult, env) -> None:
    debs = [p for p in result.artifacts if p.suffix in (".deb", ".udeb")]
    architectures = sorted({p.stem.rsplit("_", 1)[-1] for p in debs})
    record = {
        "package": build.package, "version": build.version, "source": build.spec,
        "architecture": architectures, "environment": env.name, "config": env.config.name,
        "selection": build.selection, "deb_build_options": build.deb_build_options,
        "network": build.network, "exit_status": result.returncode, "ok": result.ok,
        "durations": result.durations, "build_deps_cached": result.deps_cached,
        "build_deps": result.deps,
        "artifacts": {p.name: {"sha256": sources.sha256_of(p), "size": p.stat().st_size}
                      for p in result.artifacts},
        "plugins": result.extra,
    }
    (build.result_dir / "build.json").write_text(json.dumps(record, indent=2) + "\n")

