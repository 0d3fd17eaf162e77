"""The deb-mock command line: mock's verbs as subcommands (`deb-mock -r CONFIG init`)."""

from __future__ import annotations

from pathlib import Path

import click

from deb_mock import __version__
from deb_mock.entry import run_group
from deb_mock.errors import CommandFailed, UsageError
from deb_mock.ui import UI

DEFAULT_CONFIG = "debian-bookworm-amd64"


class Context:
    """Global options, turned into a config, plugins and an Environment on first use."""

    def __init__(self, config: str, uniqueext: str | None, config_opts: tuple[str, ...],
                 wait: bool, verbose: bool, quiet: bool, enable_plugins: tuple[str, ...] = (),
                 disable_plugins: tuple[str, ...] = (), plugin_options: tuple[str, ...] = ()):
        self.config_name = config
        self.uniqueext = uniqueext
        self.config_opts = config_opts
        self.wait = wait
        self.enable_plugins = tuple(enable_plugins)
        self.disable_plugins = tuple(disable_plugins)
        self.plugin_options = tuple(plugin_options)
        self.ui = UI(quiet=quiet, verbose=verbose)
        self._config = None
        self._plugins = None
        self._env = None
        if enable_plugins or disable_plugins or plugin_options:
            # What needs no config is checked at once: a typo fails before any work starts.
            from deb_mock.plugins import check_cli_options

            check_cli_options(self.enable_plugins, self.disable_plugins, self.plugin_options)

    @property
    def config(self):
        if self._config is None:
            from deb_mock.config import load_config

            self._config = load_config(self.config_name, self.config_opts)
        return self._config

    @property
    def plugins(self):
        """The enabled plugins: defaults, then the config's `plugins`, then the options."""
        if self._plugins is None:
            from deb_mock.plugins import Plugins

            self._plugins = Plugins(self.config, self.enable_plugins, self.disable_plugins,
                                    self.plugin_options)
        return self._plugins

    @property
    def env(self):
        if self._env is None:
            from deb_mock.environment import Environment

            self._env = Environment(self.config, self.uniqueext, wait=self.wait, ui=self.ui,
                                    plugins=self.plugins)
        return self._env


pass_ctx = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-r", "--root", "config", default=DEFAULT_CONFIG, show_default=True,
              metavar="CONFIG", help="Environment config: a name from list-configs or a path.")
@click.option("--uniqueext", metavar="NAME", help="A separate environment from the same config.")
@click.option("--config-opts", "config_opts", multiple=True, metavar="KEY=VALUE",
              help="Override one config key (repeatable).")
@click.option("--wait", is_flag=True, help="Wait for a locked environment instead of failing.")
@click.option("-v", "--verbose", is_flag=True, help="More output.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@click.option("--enable-plugin", "enable_plugins", multiple=True, metavar="NAME",
              help="Enable a plugin, e.g. ccache (repeatable; see docs/plugins.md).")
@click.option("--disable-plugin", "disable_plugins", multiple=True, metavar="NAME",
              help="Disable a plugin, e.g. root_cache (repeatable).")
@click.option("--plugin-option", "plugin_options", multiple=True, metavar="NAME:KEY=VALUE",
              help="Set a plugin option, e.g. tmpfs:size=8G (repeatable).")
@click.version_option(__version__, prog_name="deb-mock")
@click.pass_context
def main_group(ctx: click.Context, config: str, uniqueext: str | None, config_opts: tuple[str, ...],
               wait: bool, verbose: bool, quiet: bool, enable_plugins: tuple[str, ...],
               disable_plugins: tuple[str, ...], plugin_options: tuple[str, ...]) -> None:
    """Cached, isolated Debian build environments."""
    ctx.obj = Context(config, uniqueext, config_opts, wait, verbose, quiet, enable_plugins,
                      disable_plugins, plugin_options)


@main_group.command("list-configs")
@pass_ctx
def list_configs(ctx: Context) -> None:
    """List the known environment configs."""
    from deb_mock.config import list_configs as known

    for info in known():
        if info.error:
            click.echo(f"{info.name:<28} (broken: {info.error})  [{info.path}]")
        else:
            click.echo(f"{info.name:<28} {info.suite}/{info.architecture:<8} {info.description}"
                       f"  [{info.path}]")


@main_group.command()
@click.option("--refresh", is_flag=True, help="Refresh the archive indexes even if fresh.")
@pass_ctx
def init(ctx: Context, refresh: bool) -> None:
    """Create the environment (bootstrapping and caching its base if needed)."""
    result = ctx.env.init(refresh=refresh)
    how = "from the cached base" if result.cache_hit else "bootstrapped a new base"
    ctx.ui.info(f"{ctx.env.name}: ready, {how} ({result.packages} packages, "
                f"{result.seconds:.2f} s, base {result.base_id[:12]})")


@main_group.command()
@click.argument("packages", nargs=-1, required=True)
@pass_ctx
def install(ctx: Context, packages: tuple[str, ...]) -> None:
    """Install packages into the environment."""
    installed = ctx.env.install(list(packages))
    ctx.ui.info(f"{ctx.env.name}: installed {' '.join(packages)} "
                f"({len(installed)} package files, through the package cache)")


@main_group.command()
@click.argument("packages", nargs=-1, required=True)
@pass_ctx
def remove(ctx: Context, packages: tuple[str, ...]) -> None:
    """Remove packages from the environment."""
    ctx.env.remove(list(packages))


@main_group.command()
@pass_ctx
def update(ctx: Context) -> None:
    """Refresh the environment's indexes and upgrade its packages."""
    upgraded = ctx.env.update()
    ctx.ui.info(f"{ctx.env.name}: {len(upgraded)} packages upgraded")


@main_group.command(context_settings={"ignore_unknown_options": True})
@click.option("--enable-network", is_flag=True, help="Give the command the host's network.")
@click.option("--user", "as_user", is_flag=True, help="Run as the unprivileged build user.")
@click.option("--cwd", default="/", show_default=True, help="Working directory inside.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_ctx
def chroot(ctx: Context, enable_network: bool, as_user: bool, cwd: str,
           command: tuple[str, ...]) -> None:
    """Run COMMAND inside the environment; its exit status becomes deb-mock's."""
    env = ctx.env
    env.plugins.hook.prechroot(env=env, argv=list(command))
    result = env.execute(list(command), network=enable_network or None, as_user=as_user,
                         cwd=cwd, capture=False, echo=True)
    env.plugins.hook.postchroot(env=env, argv=list(command), result=result)
    if result.returncode != 0:
        raise CommandFailed("", result.returncode)


@main_group.command()
@click.option("--enable-network", is_flag=True, help="Give the shell the host's network.")
@pass_ctx
def shell(ctx: Context, enable_network: bool) -> None:
    """Open an interactive shell inside the environment."""
    status = ctx.env.shell(network=enable_network or None)
    if status != 0:
        raise CommandFailed("", status)


@main_group.command()
@click.argument("paths", nargs=-1, required=True)
@pass_ctx
def copyin(ctx: Context, paths: tuple[str, ...]) -> None:
    """Copy host files into the environment: copyin SRC... DEST."""
    if len(paths) < 2:
        raise UsageError("copyin needs at least one source and a destination: copyin SRC... DEST")
    ctx.env.copyin([Path(p) for p in paths[:-1]], paths[-1])


@main_group.command()
@click.argument("paths", nargs=-1, required=True)
@pass_ctx
def copyout(ctx: Context, paths: tuple[str, ...]) -> None:
    """Copy files out of the environment: copyout SRC... DEST."""
    if len(paths) < 2:
        raise UsageError("copyout needs at least one source and a destination: copyout SRC... DEST")
    ctx.env.copyout(list(paths[:-1]), Path(paths[-1]))


@main_group.command()
@pass_ctx
def clean(ctx: Context) -> None:
    """Drop the environment's state; caches stay."""
    ctx.env.clean()
    ctx.ui.info(f"{ctx.env.name}: cleaned")


@main_group.command()
@click.argument("what", type=click.Choice(["all", "chroot", "root-cache", "package-cache",
                                           "apt-cache"]))
@pass_ctx
def scrub(ctx: Context, what: str) -> None:
    """Remove caches: all, chroot (this environment), root-cache, package-cache, apt-cache."""
    from deb_mock.scrub import scrub as do_scrub

    for line in do_scrub(ctx.env, what):
        ctx.ui.info(line)


@main_group.command("print-root-path")
@pass_ctx
def print_root_path(ctx: Context) -> None:
    """Print where the environment's root is mounted while deb-mock works on it."""
    click.echo(ctx.env.root_path)


@main_group.command()
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@click.option("--resultdir", type=click.Path(path_type=Path),
              help="Where results and logs go (default: the environment's result/).")
@click.option("--arch-any", "selection", flag_value="any", help="Only architecture-dependent "
              "packages (dpkg-buildpackage -B).")
@click.option("--arch-all", "selection", flag_value="all", help="Only Architecture: all "
              "packages (-A).")
@click.option("--source", "selection", flag_value="source", help="Only the source package (-S).")
@click.option("--full", "selection", flag_value="full", help="Source and every binary package.")
@click.option("--enable-network", is_flag=True, help="Let the build use the network.")
@click.option("--deb-build-options", "deb_build_options", default="", metavar="OPTIONS",
              help="DEB_BUILD_OPTIONS for the build, e.g. 'nocheck parallel=2' (default: "
                   "$DEB_BUILD_OPTIONS).")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Build this many sources at once, each in its own environment.")
@pass_ctx
def build(ctx: Context, sources: tuple[str, ...], resultdir: Path | None, selection: str | None,
          enable_network: bool, deb_build_options: str, jobs: int) -> None:
    """Build .debs from SOURCE: a .dsc (path or URL), a source tree with debian/, or a source
    package NAME[=VERSION] from the archive (mock --rebuild, sbuild)."""
    import os

    from deb_mock.build import build_package
    from deb_mock.parallel import build_many

    options = deb_build_options or os.environ.get("DEB_BUILD_OPTIONS", "")
    selection = selection or "binary"
    if len(sources) > 1:
        failed = build_many(ctx, list(sources), resultdir, jobs=jobs, selection=selection,
                            deb_build_options=options, network=enable_network)
        if failed:
            raise CommandFailed("", 4 if len(failed) < len(sources) else 10)
        return
    env = ctx.env
    target = resultdir or env.result_dir
    with env:
        result = build_package(env, sources[0], target, selection=selection,
                               deb_build_options=options, network=enable_network)
    cached = "cached" if result.deps_cached else "installed"
    ctx.ui.info(f"built {sources[0]}: {len(result.artifacts)} files in {target} "
                f"(build dependencies {cached} in {result.durations['install']:.1f} s, "
                f"build {result.durations['build']:.1f} s)")


@main_group.command()
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@click.option("--resultdir", type=click.Path(path_type=Path),
              help="Results: one directory per source, and repo/ with every built .deb.")
@click.option("--continue", "keep_going", is_flag=True, help="Go on after a failed build.")
@click.option("--recurse", is_flag=True,
              help="Retry failed builds after the others, while that builds more.")
@click.option("--enable-network", is_flag=True, help="Let the builds use the network.")
@click.option("--deb-build-options", "deb_build_options", default="", metavar="OPTIONS",
              help="DEB_BUILD_OPTIONS for the builds.")
@pass_ctx
def chain(ctx: Context, sources: tuple[str, ...], resultdir: Path | None, keep_going: bool,
          recurse: bool, enable_network: bool, deb_build_options: str) -> None:
    """Build SOURCEs in order; each result is available to the later ones (mock --chain)."""
    import os

    from deb_mock.chain import build_chain

    env = ctx.env
    target = resultdir or env.result_dir / "chain"
    with env:
        outcome = build_chain(env, list(sources), target, keep_going=keep_going,
                              recurse=recurse, network=enable_network,
                              deb_build_options=deb_build_options
                              or os.environ.get("DEB_BUILD_OPTIONS", ""))
    for source in outcome.built:
        click.echo(f"built   {source}")
    for source, why in outcome.failed.items():
        click.echo(f"FAILED  {source}: {why}")
    click.echo(f"{len(outcome.built)} of {len(sources)} built; local repository: {target / 'repo'}")
    if outcome.failed:
        raise CommandFailed("", 4 if outcome.built else 10)


@main_group.command()
@click.argument("name")
@pass_ctx
def snapshot(ctx: Context, name: str) -> None:
    """Keep the environment as it is now under NAME (a layer: instantaneous)."""
    layer = ctx.env.snapshot(name)
    ctx.ui.info(f"{ctx.env.name}: snapshot {name} ({layer[:12]})")


@main_group.command("rollback-to")
@click.argument("name")
@pass_ctx
def rollback_to(ctx: Context, name: str) -> None:
    """Return the environment to snapshot NAME, dropping what was done since."""
    ctx.env.rollback_to(name)
    ctx.ui.info(f"{ctx.env.name}: back at snapshot {name}")


@main_group.command("list-snapshots")
@pass_ctx
def list_snapshots(ctx: Context) -> None:
    """List the environment's snapshots (the current one is marked *)."""
    record = ctx.env.record() or {}
    for name, layer in ctx.env.list_snapshots().items():
        mark = "*" if layer == record.get("base") else " "
        click.echo(f"{mark} {name:<24} {layer[:12]}")


@main_group.command("remove-snapshot")
@click.argument("name")
@pass_ctx
def remove_snapshot(ctx: Context, name: str) -> None:
    """Forget snapshot NAME."""
    ctx.env.remove_snapshot(name)
    ctx.ui.info(f"{ctx.env.name}: snapshot {name} removed")


def main(argv: list[str] | None = None) -> None:
    """Entry point: every DebMockError becomes a message and its exit code, never a traceback."""
    run_group(main_group, "deb-mock", argv)
