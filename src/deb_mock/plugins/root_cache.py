"""root_cache — start environments from a cached, bootstrapped base instead of bootstrapping.

On by default. The first `init` of a config bootstraps its base with mmdebstrap and commits it as a
layer to the store shared with debian-forge (`<cache_dir>/store`), keyed by everything that makes
its content: suite, architecture, mirrors, variant, extra packages, build user and the exact
resolved package set. Every later `init` whose key matches starts from that layer in seconds (an
overlay, or a copy where overlayfs is unavailable); a changed archive or config gives a new key,
hence a new base. Mock keeps a compressed tarball and invalidates it by age; here the key is the
content, so a base is never stale and never rebuilt needlessly.

Disabled (`--disable-plugin root_cache`, `plugins: {root_cache: {enabled: false}}`, or the older
config key `root_cache: false`), every `init` bootstraps its base afresh from the archive: slower
by minutes, useful to prove that the bootstrap itself still works.

No options and no hooks: the environment asks whether the plugin is enabled.
"""

NAME = "root_cache"
DEFAULT_ENABLED = True
DEFAULT_OPTIONS: dict = {}
OPTIONS_SCHEMA = {"type": "object", "additionalProperties": False, "properties": {}}
