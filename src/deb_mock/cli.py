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
    """Global options, turned into an Environment on first use."""

    def __init__(self, config: str, uniqueext: str | None, config_opts: tuple[str, ...],
                 wait: bool, verbose: bool, quiet: bool):
        self.config_name = config
        self.uniqueext = uniqueext
        self.config_opts = config_opts
        self.wait = wait
        self.ui = UI(quiet=quiet, verbose=verbose)
        self._env = None

    @property
    def config(self):
        from deb_mock.config import load_config

        return load_config(self.config_name, self.config_opts)

    @property
    def env(self):
        if self._env is None:
            from deb_mock.environment import Environment

            self._env = Environment(self.config, self.uniqueext, wait=self.wait, ui=self.ui)
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
@click.version_option(__version__, prog_name="deb-mock")
@click.pass_context
def main_group(ctx: click.Context, config: str, uniqueext: str | None, config_opts: tuple[str, ...],
               wait: bool, verbose: bool, quiet: bool) -> None:
    """Cached, isolated Debian build environments."""
    ctx.obj = Context(config, uniqueext, config_opts, wait, verbose, quiet)


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
    result = ctx.env.execute(list(command), network=enable_network or None, as_user=as_user,
                             cwd=cwd, capture=False, echo=True)
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


def main(argv: list[str] | None = None) -> None:
    """Entry point: every DebMockError becomes a message and its exit code, never a traceback."""
    run_group(main_group, "deb-mock", argv)
