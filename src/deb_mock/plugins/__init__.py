"""deb-mock plugins: small modules that hook into an environment's life (docs/plugins.md).

A plugin is a module with `NAME`, `DEFAULT_ENABLED`, `DEFAULT_OPTIONS`, an optional
`OPTIONS_SCHEMA` and functions marked `@hookimpl`, named after the hook points of
`deb_mock.plugins.hookspecs`. The built-in ones live beside this file; others are found through
the entry point group `deb_mock.plugins`. `Plugins` is the set enabled for one environment.
"""

from __future__ import annotations

import pluggy

hookimpl = pluggy.HookimplMarker("deb_mock")

from deb_mock.plugins.manager import (BUILTIN, ENTRY_POINT_GROUP, PluginInfo, Plugins,  # noqa: E402
                                      available, check_cli_options)

__all__ = ["BUILTIN", "ENTRY_POINT_GROUP", "PluginInfo", "Plugins", "available",
           "check_cli_options", "hookimpl"]
