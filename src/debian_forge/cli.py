"""The debian-forge command line: osbuild's habits as subcommands (`debian-forge build m.json`)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click

from debian_forge import __version__

DEFAULT_STORE_MAX = "20G"


def _cache_dir() -> Path:
    from deb_mock.config import CACHE_DIR_ENV, DEFAULT_CACHE_DIR

    return Path(os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR)


def _store(path: Path | None, max_size: str | None = None):
    from deb_mock.config import parse_size
    from deb_mock.store import Store

    size = parse_size(max_size or os.environ.get("DEBIAN_FORGE_STORE_MAX_SIZE")
                      or DEFAULT_STORE_MAX, "--max-size")
    return Store(path or _cache_dir() / "store", max_size=size)


def _resolver(refresh: bool = False, **kwargs):
    from debian_forge.resolve import DEFAULT_MAX_AGE, Resolver

    return Resolver(_cache_dir(), max_age=0 if refresh else DEFAULT_MAX_AGE, **kwargs)


def _write_json(data: object, path: Path | None) -> None:
    text = json.dumps(data, indent=2) + "\n"
    if path is None:
        click.echo(text, nl=False)
    else:
        path.write_text(text)


_refresh_option = click.option(
    "--refresh", is_flag=True,
    help="Download the archive indexes again even if younger than an hour.")
_store_option = click.option("--store", "store_dir", type=click.Path(path_type=Path),
                             help="The layer store (default: $DEBIAN_FORGE_CACHE_DIR/store).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="debian-forge")
def main_group() -> None:
    """Build Debian images from osbuild-style manifests (format version 2)."""


@main_group.command()
@click.argument("manifest", type=click.Path(path_type=Path))
def validate(manifest: Path) -> None:
    """Check a manifest against its schema and every stage's schema."""
    from debian_forge.manifest import load

    loaded = load(manifest)
    stages = sum(len(p.stages) for p in loaded.pipelines)
    click.echo(f"{manifest}: valid ({len(loaded.pipelines)} pipelines, {stages} stages)")


@main_group.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@click.argument("update_names", nargs=-1, metavar="[PKG]...")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Write the locked manifest here (default: standard output).")
@click.option("--update", is_flag=True,
              help="Resolve a locked manifest again: every package, or only the PKGs named.")
@click.option("--strategy", type=click.Choice(["resolve", "conservative", "aggressive"]),
              default="resolve", show_default=True,
              help="How apt chooses, for stages that do not say (see docs/apt.md).")
@click.option("--lock", "lock_file", type=click.Path(path_type=Path),
              help="An earlier lock: what `conservative` keeps and --dry-run compares with "
                   "(default: the manifest itself, if it is locked).")
@click.option("--dry-run", is_flag=True,
              help="Print the plan per stage (versions, sizes, changes) instead of the lock.")
@_refresh_option
def resolve(manifest: Path, update_names: tuple[str, ...], output: Path | None, update: bool,
            strategy: str, lock_file: Path | None, dry_run: bool, refresh: bool) -> None:
    """Resolve every package to an exact version: the locked manifest."""
    from deb_mock.errors import UsageError
    from debian_forge.manifest import load
    from debian_forge.reports import plan_lines
    from debian_forge.resolve import PACKAGES_INPUT, lock

    if update_names and not update:
        raise UsageError(f"package names ({' '.join(update_names)}) go with --update: "
                         "`resolve --update MANIFEST PKG…` refreshes only those")
    loaded = load(manifest)
    previous = load(lock_file) if lock_file else loaded
    if not any(PACKAGES_INPUT in stage.inputs for p in previous.pipelines for stage in p.stages):
        previous = None
    resolver = _resolver(refresh, strategy=strategy, previous=previous,
                         update=frozenset(update_names) if update else None)
    reports: list[str] = []

    def observe(resolved) -> None:
        if dry_run:
            old = resolver.previous_versions(resolved.stage.path) if previous else None
            reports.extend(plan_lines(resolved, old))

    relock = update or (strategy == "conservative" and lock_file is not None)
    locked = lock(loaded, resolver, relock=relock or dry_run, observe=observe)
    if dry_run:
        click.echo("\n".join(reports))
    else:
        _write_json(locked.to_json(), output)


@main_group.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@click.argument("package")
@_refresh_option
def explain(manifest: Path, package: str, refresh: bool) -> None:
    """Show the dependency chain that pulls PACKAGE into the image."""
    from deb_mock.errors import UsageError
    from debian_forge.manifest import load
    from debian_forge.reports import explain_lines
    from debian_forge.resolve import lock

    seen = []
    lock(load(manifest), _resolver(refresh), observe=seen.append)
    lines = explain_lines(seen, package)
    if not lines:
        raise UsageError(f"no stage of {manifest} installs {package!r}")
    click.echo("\n".join(lines))


@main_group.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@_refresh_option
def inspect(manifest: Path, refresh: bool) -> None:
    """Print the locked manifest with every pipeline's and stage's ID."""
    from debian_forge import ids
    from debian_forge.manifest import load
    from debian_forge.resolve import is_locked, lock

    loaded = load(manifest)
    locked = loaded if is_locked(loaded) else lock(loaded, _resolver(refresh))
    stage_ids, pipeline_ids = ids.compute(locked)
    data = locked.to_json()
    for pipeline, entry in zip(locked.pipelines, data["pipelines"]):
        entry["id"] = pipeline_ids[pipeline.name]
        for stage, stage_entry in zip(pipeline.stages, entry["stages"]):
            stage_entry["id"] = stage_ids[ids.StageKey(pipeline.name, stage.index)]
    _write_json(data, None)


@main_group.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the schema as JSON only.")
def stages(name: str | None, as_json: bool) -> None:
    """List the stage types, or describe one with its options schema."""
    from deb_mock.errors import UsageError
    from debian_forge import stages as registry
    from debian_forge.stage_docs import render

    if name is None:
        for stage in registry.stage_types().values():
            click.echo(f"{stage.name:<28} {stage.summary}")
        return
    stage = registry.get(name)
    if stage is None:
        raise UsageError(f"unknown stage type {name!r}; {registry.suggest(name)}"
                         "'debian-forge stages' lists them")
    if as_json:
        _write_json({"summary": stage.summary, "description": stage.description,
                     "options": stage.options_schema(), "inputs": stage.inputs}, None)
    else:
        click.echo(render(stage), nl=False)


@main_group.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@_store_option
@click.option("--output-directory", "output_dir", type=click.Path(path_type=Path),
              help="Where exports, the lock, build.json and the stage logs go.")
@click.option("--export", "exports", multiple=True, metavar="PIPELINE",
              help="Write this pipeline's result to the output directory (repeatable).")
@click.option("--offline", is_flag=True, help="Never use the network; fail naming missing files.")
@click.option("--json", "json_events", is_flag=True,
              help="Progress as JSON events on standard output, one per line.")
@click.option("--break", "break_at", metavar="STAGE",
              help="Open a shell in the sandbox of this stage (type name or ID prefix) first.")
@click.option("--no-cache", is_flag=True, help="Build every stage afresh in a throwaway store.")
@_refresh_option
def build(manifest: Path, store_dir: Path | None, output_dir: Path | None,
          exports: tuple[str, ...], offline: bool, json_events: bool, break_at: str | None,
          no_cache: bool, refresh: bool) -> None:
    """Build a manifest: resolve (unless locked), fetch, run every stage, export."""
    from deb_mock.errors import UsageError
    from deb_mock.namespace import enter_private_mount_namespace
    from deb_mock.package_cache import PackageCache
    from deb_mock.sandbox import require_tool
    from debian_forge import record
    from debian_forge.manifest import load
    from debian_forge.monitor import Monitor
    from debian_forge.resolve import is_locked, lock
    from debian_forge.runner import Runner

    started = time.time()
    loaded = load(manifest)
    names = [p.name for p in loaded.pipelines]
    for name in exports:
        if name not in names:
            raise UsageError(f"--export {name}: the manifest has no pipeline named {name!r} "
                             f"(pipelines: {', '.join(names)})")
    if exports and output_dir is None:
        raise UsageError("--export needs --output-directory DIR")
    enter_private_mount_namespace()
    require_tool("bwrap", "bubblewrap")
    monitor = Monitor(json_events=json_events)
    if is_locked(loaded):
        locked = loaded
    elif offline:
        raise UsageError(f"{manifest} is not locked and --offline cannot resolve it; run "
                         f"'debian-forge resolve {manifest} -o LOCKED' with network first")
    else:
        monitor.info("resolving packages")
        locked = lock(loaded, _resolver(refresh))
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        _write_json(locked.to_json(), output_dir / "manifest.lock.json")
    store = _store(store_dir)
    scratch_store = None
    if no_cache:
        import tempfile

        scratch_store = Path(tempfile.mkdtemp(prefix="no-cache-", dir=store.root.parent))
        store = _store(scratch_store)
    logs = (output_dir / "logs") if output_dir else store.root / "logs"
    runner = Runner(locked, store, PackageCache(_cache_dir() / "packages"), monitor=monitor,
                    sources_dir=_cache_dir() / "sources", logs_dir=logs, offline=offline,
                    break_at=break_at)
    try:
        runner.build(list(exports))
        for name in exports:
            target = output_dir / name
            runner.export(name, target)
            made = sorted(p for p in target.iterdir()) if target.is_dir() else []
            files = [p for p in made if p.is_file() and not p.is_symlink()]
            if files and len(made) <= 5:
                what = ", ".join(f"{p.name} ({_size(p.stat().st_size)})" for p in files)
            else:
                what = f"a tree of {len(made)} top-level entries"
            monitor.info(f"exported {name}: {target}/ holds {what}")
        if output_dir is not None:
            record.write(output_dir / "build.json", manifest_path=str(manifest), locked=locked,
                         runner=runner, exports=list(exports), started=started,
                         output_dir=output_dir)
        if output_dir is not None:
            monitor.info(f"build record: {output_dir / 'build.json'}; lock: "
                         f"{output_dir / 'manifest.lock.json'}")
        built = sum(1 for s in runner.result.stages if not s.cached)
        cached = len(runner.result.stages) - built
        monitor.info(f"done in {time.time() - started:.1f} s: {built} stages built, "
                     f"{cached} from the cache")
        monitor.event("result", result="success", duration=round(time.time() - started, 3))
    finally:
        if scratch_store is not None:
            import shutil

            shutil.rmtree(scratch_store, ignore_errors=True)
        else:
            store.gc()


@main_group.group("store")
def store_group() -> None:
    """Look after the layer store."""


@store_group.command("ls")
@_store_option
def store_ls(store_dir: Path | None) -> None:
    """List the layers: ID, size, last use, what made them."""
    for info in sorted(_store(store_dir).ls(), key=lambda i: i.last_used):
        meta = info.meta
        what = meta.get("type") or meta.get("kind", "")
        where = meta.get("pipeline") or meta.get("config", "")
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.last_used))
        click.echo(f"{info.id[:16]}  {_size(info.size):>9}  {used}  {what} {where}".rstrip())


@store_group.command("du")
@_store_option
def store_du(store_dir: Path | None) -> None:
    """Print the store's size."""
    store = _store(store_dir)
    click.echo(f"{_size(store.du())}\t{len(store.ls())} layers\t{store.root}")


@store_group.command("gc")
@_store_option
@click.option("--max-size", metavar="SIZE", help="Shrink to this size (e.g. 5G); default 20G.")
def store_gc(store_dir: Path | None, max_size: str | None) -> None:
    """Evict least recently used layers until the store fits its size limit."""
    from deb_mock.config import parse_size

    store = _store(store_dir, max_size)
    removed = store.gc(parse_size(max_size, "--max-size") if max_size else None)
    click.echo(f"removed {len(removed)} layers; the store holds {_size(store.du())}")


@main_group.command("boot")
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--uefi", is_flag=True, help="Boot with UEFI firmware (OVMF) instead of BIOS.")
@click.option("--timeout", type=click.IntRange(min=1), metavar="S",
              help="Give up after S seconds (default: 120 with KVM, 300 without).")
@click.option("--ssh-key", type=click.Path(path_type=Path), metavar="FILE",
              help="Public key for the user forge (default: a throwaway key).")
@click.option("--memory", type=click.IntRange(min=128), default=1024, show_default=True,
              metavar="MB", help="Guest memory in MiB.")
@click.option("--cpus", type=click.IntRange(min=1), metavar="N",
              help="Virtual CPUs (default: 2, or 1 on a one-core host).")
def boot_command(image: Path, uefi: bool, timeout: int | None, ssh_key: Path | None,
                 memory: int, cpus: int | None) -> None:
    """Boot IMAGE in QEMU until it shows a login prompt and cloud-init is done."""
    from debian_forge.boot import boot

    result = boot(image, uefi=uefi, timeout=timeout, ssh_key=ssh_key, memory=memory, cpus=cpus,
                  progress=lambda line: click.echo(line, err=True))
    click.echo(f"{image}: booted ({'UEFI' if uefi else 'BIOS'}, {result.accelerator.upper()}): "
               f"login prompt after {result.login_seconds:.1f} s, cloud-init done after "
               f"{result.cloud_init_seconds:.1f} s")


def _size(nbytes: int) -> str:
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{nbytes} B"


def main(argv: list[str] | None = None) -> None:
    """Entry point: errors become messages and exit codes (2 for a wrong manifest)."""
    from deb_mock.entry import run_group

    run_group(main_group, "debian-forge", argv)
