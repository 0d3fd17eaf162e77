"""bind_mount — make host directories visible inside the environment.

Off by default. Each `dirs` entry `[HOST_PATH, INSIDE_PATH]` binds a host directory (or file) at a
path inside the environment, for package builds and for `chroot`/`shell` alike; `readonly: true`
binds them all read-only. The host path must exist (a leading `~` is expanded); the inside path is
created if missing.

    plugins:
      bind_mount:
        enabled: true
        dirs: [[/srv/src, /src], [~/.gnupg, /root/.gnupg]]
        readonly: true
"""

from __future__ import annotations

from pathlib import Path

from deb_mock.errors import ConfigError
from deb_mock.plugins import hookimpl
from deb_mock.sandbox import Bind

NAME = "bind_mount"
DEFAULT_ENABLED = False
DEFAULT_OPTIONS = {"dirs": [], "readonly": False}
OPTIONS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "dirs": {
            "type": "array",
            "description": "Pairs [host path, path inside the environment].",
            "items": {
                "type": "array", "minItems": 2, "maxItems": 2,
                "prefixItems": [
                    {"type": "string", "pattern": r"^[/~]",
                     "x-expected": "an absolute host path such as /srv/src"},
                    {"type": "string", "pattern": r"^/(?!(.*/)?\.\.(/|$))[^\0]*$",
                     "x-expected": "an absolute path inside the environment, without '..', "
                                   "such as /src"},
                ],
            },
        },
        "readonly": {"type": "boolean", "description": "Bind every directory read-only."},
    },
}


@hookimpl
def sandbox_mounts(env, purpose) -> list:
    options = env.plugins.options(NAME)
    mounts = []
    for index, (host, inside) in enumerate(options["dirs"]):
        source = Path(host).expanduser()
        if not source.exists():
            raise ConfigError(f"plugins.{NAME}.dirs[{index}]: the host path {host} does not "
                              "exist.")
        mounts.append(Bind(source, inside, readonly=options["readonly"]))
    return mounts
