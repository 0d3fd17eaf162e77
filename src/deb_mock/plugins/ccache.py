"""ccache — compiler cache for package builds, kept on the host between builds.

Off by default. Installs `ccache` with the build dependencies, binds a host directory (by default
`<cache_dir>/ccache/<config name>`, owned by the build user; shared by every `--uniqueext` copy of
the config, which ccache handles safely) at `/var/cache/ccache` in the build's sandbox, and puts
`/usr/lib/ccache` first on the build's PATH so `gcc`, `cc`, `g++`… go through ccache. Only the
package build sees it, not `chroot` or `shell`. `deb-mock scrub all` leaves it alone; delete the
directory to empty it.
"""

from __future__ import annotations

import os
from pathlib import Path

from deb_mock.plugins import hookimpl
from deb_mock.sandbox import DEFAULT_PATH, Bind

NAME = "ccache"
DEFAULT_ENABLED = False
DEFAULT_OPTIONS = {"max_size": "4G", "dir": None}
OPTIONS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "max_size": {"type": "string",
                     "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*([kKMGT]i?)?\s*$",
                     "x-expected": "a ccache size such as 4G, 500M or 0 for no limit",
                     "description": "Largest size of the cache (CCACHE_MAXSIZE); ccache's "
                                    "units: k, M, G, T are powers of 1000, Ki, Mi, Gi, Ti of "
                                    "1024."},
        "dir": {"type": ["string", "null"], "pattern": r"^[/~]",
                "x-expected": "an absolute directory path such as /srv/ccache",
                "description": "The host directory of the cache; null: "
                               "<cache_dir>/ccache/<config name>."},
    },
}
INSIDE = "/var/cache/ccache"


def host_dir(env) -> Path:
    """The cache's directory on the host."""
    options = env.plugins.options(NAME)
    if options["dir"]:
        return Path(options["dir"]).expanduser()
    return Path(env.config.cache_dir) / "ccache" / env.config.name


@hookimpl
def build_packages(env, build) -> list:
    return ["ccache"]


@hookimpl
def sandbox_mounts(env, purpose) -> list:
    if purpose != "build":
        return []
    directory = host_dir(env)
    directory.mkdir(parents=True, exist_ok=True)
    uid = env.config.build_user.uid
    if directory.stat().st_uid != uid:
        os.chown(directory, uid, uid)  # the build user writes it
    return [Bind(directory, INSIDE, readonly=False)]


@hookimpl
def build_environment(env, build) -> dict:
    return {"CCACHE_DIR": INSIDE, "PATH": f"/usr/lib/ccache:{DEFAULT_PATH}",
            "CCACHE_MAXSIZE": env.plugins.options(NAME)["max_size"].strip()}
