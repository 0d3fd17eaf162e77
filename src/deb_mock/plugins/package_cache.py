"""package_cache — keep every downloaded .deb in the shared cache and reuse it.

On by default. Every package an environment needs — for its base, `install`, `update` or a
build's dependencies — is fetched into `<cache_dir>/packages/sha256/…`, verified against the
archive's sha256 and kept; environments and debian-forge share the directory, so a package is
downloaded once per host, and apt inside the environment installs offline from a bind-mounted
archive directory of hard links (docs/package-cache.md).

Disabled (`--disable-plugin package_cache`, `plugins: {package_cache: {enabled: false}}`, or the
older config key `package_cache: false`), each operation downloads (and verifies) what it needs
and keeps nothing afterwards: for measuring downloads, or a host short of disk.

No options and no hooks: the environment asks whether the plugin is enabled.
"""

NAME = "package_cache"
DEFAULT_ENABLED = True
DEFAULT_OPTIONS: dict = {}
OPTIONS_SCHEMA = {"type": "object", "additionalProperties": False, "properties": {}}
