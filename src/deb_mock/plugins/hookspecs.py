"""The hook points of deb-mock, named after Fedora mock's where they fit.

A plugin is a module or object with functions marked `@hookimpl` (from deb_mock.plugins)
named like these. Every hook gets the Environment (`env`; its `config`, `name`, `result_dir`,
`ui`, `execute()`…); a plugin reads its own options (the config's `plugins.<name>` section and
`--plugin-option NAME:KEY=VALUE`) with `env.plugins.options(NAME)`. Within a hook point,
built-in plugins are called first, then third-party ones by name.

Lifecycle order for `deb-mock build`:
  preinit → postinit (or initfailed) → prebuild → postdeps → (the build) → postbuild →
  process_logs; `chroot` adds prechroot/postchroot around the command.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("deb_mock")


@hookspec
def preinit(env) -> None:
    """Before the environment is created (base resolved, bootstrapped or taken from the cache)."""


@hookspec
def postinit(env) -> None:
    """After the environment exists and is mounted for the first time."""


@hookspec
def initfailed(env, error) -> None:
    """Creating the environment failed with `error` (a DebMockError)."""


@hookspec
def prebuild(env, build) -> None:
    """Before a package build; `build` describes it (source, package, version, result_dir)."""


@hookspec
def postdeps(env, build) -> None:
    """The build dependencies are installed (or taken from the cache); the build starts next."""


@hookspec
def postbuild(env, build, result) -> None:
    """After a package build, whether it succeeded or not (`result.ok`, `result.returncode`)."""


@hookspec
def prechroot(env, argv) -> None:
    """Before `deb-mock chroot -- ARGV` runs."""


@hookspec
def postchroot(env, argv, result) -> None:
    """After `deb-mock chroot -- ARGV` ran (`result.returncode`)."""


@hookspec
def make_snapshot(env, name) -> None:
    """A snapshot NAME of the environment was just taken."""


@hookspec
def rollback_to(env, name) -> None:
    """The environment was just rolled back to snapshot NAME."""


@hookspec
def clean(env) -> None:
    """The environment's state is being dropped (deb-mock clean)."""


@hookspec
def scrub(env, what) -> None:
    """`deb-mock scrub WHAT` is running (all, chroot, root-cache, package-cache, apt-cache)."""


@hookspec
def process_logs(env, result_dir) -> None:
    """The build's logs and results are complete in `result_dir` (compress, index, summarise)."""


@hookspec
def sandbox_mounts(env, purpose) -> list:
    """Extra mounts for commands in the environment: a list of deb_mock.sandbox.Bind or Tmpfs.
    `purpose` is "build" for the package build and "chroot" for other commands."""


@hookspec
def build_environment(env, build) -> dict:
    """Extra environment variables for the package build (e.g. CCACHE_DIR, PATH)."""


@hookspec
def build_packages(env, build) -> list:
    """Extra packages to install together with the build dependencies (e.g. ccache)."""
