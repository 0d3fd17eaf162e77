"""Finding plugins, settling which are enabled with which options, and calling their hooks.

For both the enabled state and every option, later wins: the plugin's defaults
(`DEFAULT_ENABLED`, `DEFAULT_OPTIONS`), then the config's `plugins.<name>` section, then the
command line (`--enable-plugin`, `--disable-plugin`, `--plugin-option NAME:KEY=VALUE`). Every
mistake — an unknown plugin, an option of the wrong type — is a ConfigError naming the plugin
and the key, raised before anything runs.
"""

from __future__ import annotations

import copy
import difflib
import importlib
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import PurePosixPath
from typing import Any, Mapping, Sequence

import jsonschema
import pluggy

from deb_mock.config import option_value
from deb_mock.errors import ConfigError, DebMockError, HostError
from deb_mock.plugins import hookspecs
from deb_mock.sandbox import Bind, Tmpfs
from deb_mock.schema_errors import describe, dotted

PROJECT = "deb_mock"
ENTRY_POINT_GROUP = "deb_mock.plugins"
# Registration order, which is the call order within a hook point; third-party plugins follow,
# sorted by name.
BUILTIN = ("root_cache", "package_cache", "ccache", "tmpfs", "bind_mount", "lintian",
           "chroot_scan")
NAME_PATTERN = r"[a-z][a-z0-9_\-]*"


@dataclass(frozen=True, eq=False)
class PluginInfo:
    """An available plugin: its module, where it comes from and its defaults."""

    name: str
    module: Any = field(repr=False)
    origin: str  # "built-in", or the entry point and the distribution that provides it
    default_enabled: bool
    default_options: Mapping[str, Any] = field(repr=False)
    validator: jsonschema.Draft202012Validator | None = field(default=None, repr=False)

    @property
    def summary(self) -> str:
        """The first line of the plugin's docstring."""
        doc = (getattr(self.module, "__doc__", None) or "").strip()
        return doc.splitlines()[0] if doc else ""


def available() -> dict[str, PluginInfo]:
    """Every plugin that can be enabled: the built-ins, then the entry points by name."""
    found: dict[str, PluginInfo] = {}
    for name in BUILTIN:
        found[name] = _info(importlib.import_module(f"deb_mock.plugins.{name}"), "built-in")
    for entry in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = getattr(entry, "dist", None)
        origin = f"entry point '{entry.name} = {entry.value}'"
        if dist is not None:
            origin += f" of {dist.name} {dist.version}"
        try:
            module = entry.load()
        except Exception as exc:  # whatever a broken third-party import raises
            raise HostError(f"plugin {origin} cannot be loaded: {type(exc).__name__}: {exc}. "
                            "Fix or uninstall the package that provides it.") from None
        info = _info(module, origin, entry.name)
        if info.name in found:
            if found[info.name].module is module:
                continue  # the same distribution seen twice on sys.path
            raise HostError(f"plugin {origin} is called {info.name!r}, which the "
                            f"{found[info.name].origin} plugin already is; rename one of them.")
        found[info.name] = info
    return found


def _info(module: Any, origin: str, fallback_name: str | None = None) -> PluginInfo:
    """Check a plugin module's attributes (a broken plugin is the host's problem, not input)."""
    name = getattr(module, "NAME", fallback_name)
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise HostError(f"plugin {origin}: NAME must be a lower-case name such as my_plugin, "
                        f"got {name!r}.")
    enabled = getattr(module, "DEFAULT_ENABLED", False)
    options = getattr(module, "DEFAULT_OPTIONS", {})
    if not isinstance(enabled, bool) or not isinstance(options, Mapping):
        raise HostError(f"plugin {origin}: DEFAULT_ENABLED must be true or false and "
                        "DEFAULT_OPTIONS a dict.")
    schema = getattr(module, "OPTIONS_SCHEMA", None)
    validator = None
    if schema is not None:
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise HostError(f"plugin {origin}: OPTIONS_SCHEMA is not a valid JSON schema: "
                            f"{exc.message}.") from None
        validator = jsonschema.Draft202012Validator(schema)
        if not validator.is_valid(_thaw(options)):
            raise HostError(f"plugin {origin}: DEFAULT_OPTIONS do not match its OPTIONS_SCHEMA.")
    return PluginInfo(name, module, origin, enabled, options, validator)


# --- the command line -------------------------------------------------------------------------

def check_cli_options(enable: Sequence[str] = (), disable: Sequence[str] = (),
                      options: Sequence[str] = (), known: Mapping[str, PluginInfo] | None = None,
                      ) -> list[tuple[str, str, Any, str]]:
    """Check --enable-plugin/--disable-plugin/--plugin-option values against the known plugins.

    Returns the parsed options as (plugin, key, value, option text). Needs no config, so the
    command line can be checked before one is loaded.
    """
    if not (enable or disable or options):
        return []
    if known is None:
        known = available()
    for flag, names in (("--enable-plugin", enable), ("--disable-plugin", disable)):
        for name in names:
            if name not in known:
                raise ConfigError(f"{flag} {name}: {_unknown(name, known)}")
    both = sorted(set(enable) & set(disable))
    if both:
        raise ConfigError(f"--enable-plugin {both[0]} and --disable-plugin {both[0]} contradict "
                          "each other; give only one.")
    parsed = []
    for text in options:
        match = re.fullmatch(r"([^:=\s]+):([^:=\s]+)=(.*)", text, re.S)
        if not match:
            raise ConfigError(f"--plugin-option {text!r}: expected NAME:KEY=VALUE, such as "
                              "tmpfs:size=8G or ccache:max_size=10G.")
        name, key, raw = match.groups()
        if name not in known:
            raise ConfigError(f"--plugin-option {text}: {_unknown(name, known)}")
        if key == "enabled":
            raise ConfigError(f"--plugin-option {text}: use --enable-plugin {name} or "
                              f"--disable-plugin {name} to switch a plugin.")
        value = option_value(raw, f"--plugin-option {text!r}")
        parsed.append((name, key, value, text))
    return parsed


def _unknown(name: str, known: Mapping[str, PluginInfo]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (f"unknown plugin {name!r}{hint}; known plugins: {', '.join(sorted(known))} "
            f"(others come from packages registering in the entry point group "
            f"{ENTRY_POINT_GROUP}).")


# --- the enabled plugins of one environment ---------------------------------------------------

class Plugins:
    """The enabled plugins of one environment, with their options settled and checked."""

    def __init__(self, config, enable: Sequence[str] = (), disable: Sequence[str] = (),
                 options: Sequence[str] = ()):
        self.config = config
        self._available = available()
        cli = check_cli_options(enable, disable, options, self._available)
        where = f"config {config.path or config.name}"
        sections = {}
        for name, section in getattr(config, "plugins", {}).items():
            if name not in self._available:
                raise ConfigError(f"{where}: plugins.{name}: {_unknown(name, self._available)}")
            sections[name] = _thaw(section)
        self._enabled: list[str] = []
        self._options: dict[str, dict[str, Any]] = {}
        problems: list[str] = []
        for name, info in self._available.items():
            section = dict(sections.get(name, {}))
            on = section.pop("enabled", info.default_enabled)
            if name in enable:
                on = True
            if name in disable:
                on = False
            values = _thaw(info.default_options)
            values.update(section)
            origins = {}
            for plugin, key, value, text in cli:
                if plugin == name:
                    values[key] = value
                    origins[key] = text
            problems += _problems(info, values, origins)
            self._options[name] = values
            if on:
                self._enabled.append(name)
        if problems:
            raise ConfigError(f"{where} is invalid: " + "; ".join(problems)
                              + ". See docs/plugins.md for every plugin's options.")
        self._pm = pluggy.PluginManager(PROJECT)
        self._pm.add_hookspecs(hookspecs)
        # pluggy calls the last registered first: register backwards so that calls go in
        # BUILTIN order, then the third-party plugins.
        for name in reversed(self._enabled):
            info = self._available[name]
            try:
                self._pm.register(info.module, name=name)
            except (pluggy.PluginValidationError, ValueError) as exc:
                raise HostError(f"plugin {name} ({info.origin}) cannot be used: "
                                f"{' '.join(str(exc).split())}.") from None
        for name in self._enabled:  # a hook function named like no hook point: a typo
            for hook in self._pm.get_hookcallers(self._pm.get_plugin(name)) or ():
                if not hook.has_spec():
                    points = sorted(n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n),
                                                                         f"{PROJECT}_spec"))
                    raise HostError(f"plugin {name} ({self._available[name].origin}): "
                                    f"{hook.name!r} is not a hook point; they are: "
                                    f"{', '.join(points)}.")

    def __repr__(self) -> str:
        return f"Plugins(enabled={self._enabled!r})"

    @property
    def hook(self) -> pluggy.HookRelay:
        """The hook points: `plugins.hook.prebuild(env=env, build=build)` calls every plugin's."""
        return self._pm.hook

    def available(self) -> dict[str, PluginInfo]:
        """Every known plugin, enabled or not, in registration order."""
        return dict(self._available)

    def enabled(self) -> list[str]:
        """The names of the enabled plugins, in call order."""
        return list(self._enabled)

    def is_enabled(self, name: str) -> bool:
        return name in self._enabled

    def options(self, name: str) -> dict[str, Any]:
        """A plugin's settled options (a copy: defaults, then the config, then the command line)."""
        if name not in self._options:
            raise ConfigError(_unknown(name, self._available))
        return copy.deepcopy(self._options[name])

    def mounts(self, env, purpose: str) -> list[Bind | Tmpfs]:
        """Every plugin's extra mounts for commands of this `purpose` ("build" or "chroot").

        Sorted so that a mount comes after the one it lies in (a tmpfs on /build before a bind
        on /build/src), plugin order otherwise, as bubblewrap wants them.
        """
        mounts = []
        for result in self.hook.sandbox_mounts(env=env, purpose=purpose):
            for mount in result:
                if not isinstance(mount, (Bind, Tmpfs)):
                    raise DebMockError(f"a plugin's sandbox_mounts hook returned {mount!r}, not a "
                                       f"deb_mock.sandbox.Bind or Tmpfs (enabled plugins: "
                                       f"{', '.join(self._enabled)}).")
                mounts.append(mount)
        return sorted(mounts, key=lambda m: len(PurePosixPath("/", m.target).parts))

    def build_environment(self, env, build) -> dict[str, str]:
        """The plugins' extra environment variables for a package build; later plugins win."""
        merged: dict[str, str] = {}
        for result in self.hook.build_environment(env=env, build=build):
            merged.update({str(k): str(v) for k, v in result.items()})
        return merged

    def build_packages(self, env, build) -> list[str]:
        """The plugins' extra packages for a package build, each once, in plugin order."""
        packages: list[str] = []
        for result in self.hook.build_packages(env=env, build=build):
            packages += [p for p in result if p not in packages]
        return packages


def _problems(info: PluginInfo, values: dict[str, Any], origins: Mapping[str, str]) -> list[str]:
    """Schema errors of a plugin's options, each as `plugins.NAME.KEY: what`."""
    if info.validator is None:
        return []
    problems = []
    errors = sorted(info.validator.iter_errors(values),
                    key=lambda e: [str(p) for p in e.absolute_path])
    for error in errors:
        for parts, what in describe(error, base=["plugins", info.name]):
            option = origins.get(parts[2]) if len(parts) > 2 else None
            origin = f" (set by --plugin-option {option})" if option else ""
            problems.append(f"{dotted(parts)}: {what}{origin}")
    return problems


def _thaw(value: Any) -> Any:
    """A plain, mutable deep copy (dicts and lists) of a config's read-only plugin section."""
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_thaw(v) for v in value]
    return copy.deepcopy(value)


__all__ = ["BUILTIN", "ENTRY_POINT_GROUP", "PluginInfo", "Plugins", "available",
           "check_cli_options"]
