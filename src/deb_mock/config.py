"""deb-mock environment configs: YAML files naming a Debian suite, architecture and options.

A config is found by name in `config_dirs()` (later directories win) or given as a path. It may
`include:` another config to start from, and `--config-opts KEY=VALUE` overrides are applied on
top before validation. Every problem raises ConfigError naming the file and the dotted key, so
no traceback ever reaches the user. The reference of every key is docs/configs.md.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import jsonschema
import yaml

from deb_mock import host_sources
from deb_mock.errors import ConfigError
from deb_mock.schema_errors import describe, dotted, kind as _kind

CACHE_DIR_ENV = "DEBIAN_FORGE_CACHE_DIR"
STATE_DIR_ENV = "DEB_MOCK_STATE_DIR"
DEFAULT_CACHE_DIR = Path("/var/cache/debian-forge")
DEFAULT_STATE_DIR = Path("/var/lib/deb-mock")

VARIANTS = ("extract", "custom", "essential", "apt", "required", "minbase", "buildd",
            "important", "standard")

# Official release architectures plus the ports (dpkg names), so a typo is caught at load time
# rather than after minutes of bootstrapping.
ARCHITECTURES = ("amd64", "arm64", "armel", "armhf", "i386", "mips64el", "mipsel", "ppc64el",
                 "riscv64", "s390x", "loong64", "alpha", "hppa", "ia64", "m68k", "powerpc",
                 "ppc64", "sh4", "sparc64", "x32", "hurd-amd64", "hurd-i386")
# Names people type from other distributions, for a "did you mean" in the error.
_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "i686": "i386",
                 "i586": "i386", "i486": "i386", "x86": "i386", "ppc64le": "ppc64el",
                 "armv7l": "armhf", "armv7": "armhf", "armv7hl": "armhf"}

# Suites without -updates or -security archives.
UNSTABLE_SUITES = frozenset({"sid", "unstable", "experimental", "rc-buggy"})

_URL = {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9+.\-]*:/\S*$",
        "x-expected": "a URL such as http://mirror.example.org/debian or file:/srv/mirror/debian"}
_NULLABLE_URL = {**_URL, "type": ["string", "null"]}
_SUITE = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9.+_/\-]*$",
          "x-expected": "a suite or codename such as bookworm, trixie or sid"}
_COMPONENT = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._/\-]*$",
              "x-expected": "a component name such as main, contrib or non-free-firmware"}
_DIR = {"type": "string", "pattern": r"^[/~]",
        "x-expected": "an absolute directory path such as /var/cache/debian-forge"}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["suite", "architecture"],
    "properties": {
        "include": {"type": "string", "minLength": 1,
                    "description": "Name or path of a config to start from."},
        "description": {"type": "string"},
        "suite": _SUITE,
        "architecture": {"type": "string", "enum": list(ARCHITECTURES)},
        "mirror": _NULLABLE_URL,
        "security_mirror": _NULLABLE_URL,
        "updates": {"type": "boolean"},
        "security": {"type": "boolean"},
        "components": {"type": "array", "items": _COMPONENT, "minItems": 1, "uniqueItems": True},
        "extra_repositories": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["url", "suite"],
                "properties": {
                    "url": _URL,
                    # "/" or "./" (or "sub/dir/") for a flat repository.
                    "suite": {**_SUITE, "pattern": r"^(\.?/|[A-Za-z0-9.][A-Za-z0-9.+_/\-]*)$",
                              "x-expected": "a suite such as bookworm, or / for a flat "
                                            "repository"},
                    # Empty for flat repositories (suite "/" or "./").
                    "components": {"type": "array", "items": _COMPONENT, "uniqueItems": True},
                    "signed_by": {"type": ["string", "null"], "minLength": 1},
                    "trusted": {"type": "boolean"},
                },
            },
        },
        "packages": {
            "type": "array", "uniqueItems": True,
            "items": {"type": "string",
                      "pattern": r"^[a-z0-9][a-z0-9+.\-]*(:[a-z0-9\-]+)?([=/][^\s=/]+)?$",
                      "x-expected": "a Debian package name, optionally with :arch, =version "
                                    "or /suite"},
        },
        "variant": {"type": "string", "enum": list(VARIANTS)},
        "build_user": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "pattern": r"^[a-z_][a-z0-9_\-]{0,31}$",
                         "x-expected": "a user name such as builder (lower case, at most 32 "
                                       "characters)"},
                # Not 0: building as root is what the build user exists to avoid.
                "uid": {"type": "integer", "minimum": 1, "maximum": 4294967294},
            },
        },
        "network": {"type": "boolean"},
        "cache_dir": _DIR,
        "state_dir": _DIR,
        "metadata_expire": {"type": "integer", "minimum": 0},
        "store_max_size": {
            "type": ["string", "integer"], "minimum": 0,
            "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*([KkMmGgTt](i?[Bb])?|[Bb])?\s*$",
            "x-expected": "a size such as 20G, 512M, 1.5T or a number of bytes",
        },
        "root_cache": {"type": "boolean"},
        "package_cache": {"type": "boolean"},
        "environment": {
            "type": "object",
            "propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_]*$",
                              "x-expected": "an environment variable name (letters, digits, _)"},
            # Numbers are accepted and turned into strings (`JOBS: 4`); booleans are not, since
            # YAML turns `yes`/`no`/`on` into them and the intended text is ambiguous.
            "additionalProperties": {"type": ["string", "integer", "number"]},
        },
        # Plugin name -> its section; the names and the options are checked against the
        # plugins themselves (deb_mock.plugins.Plugins), which may come from other packages.
        "plugins": {
            "type": "object",
            "propertyNames": {"pattern": r"^[a-z][a-z0-9_\-]*$",
                              "x-expected": "a plugin name such as ccache or bind_mount"},
            "additionalProperties": {
                "type": "object",
                "properties": {"enabled": {"type": "boolean"}},
            },
        },
    },
}

# Each file of an include chain is checked on its own with this (no required keys, since a file
# meant to be included may be partial), so an error names the file it is really in.
_PARTIAL_SCHEMA = {k: v for k, v in SCHEMA.items() if k != "required"}

_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
_PARTIAL_VALIDATOR = jsonschema.Draft202012Validator(_PARTIAL_SCHEMA)


@dataclass(frozen=True)
class Repository:
    """An extra APT repository added to the environment's sources."""

    url: str
    suite: str
    components: tuple[str, ...] = ("main",)
    signed_by: str | None = None  # ASCII-armoured key text, or a path to a key file
    trusted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "suite": self.suite, "components": list(self.components),
                "signed_by": self.signed_by, "trusted": self.trusted}


@dataclass(frozen=True)
class BuildUser:
    """The unprivileged user packages are built as inside the environment."""

    name: str = "builder"
    uid: int = 1000


@dataclass(frozen=True)
class ConfigInfo:
    """What `deb-mock list-configs` shows; `error` is set when the config does not load."""

    name: str
    path: Path
    description: str
    suite: str
    architecture: str
    error: str | None = None


@dataclass(frozen=True)
class Config:
    """A loaded, validated environment config. Immutable; see docs/configs.md for each key."""

    name: str
    path: Path | None
    suite: str
    architecture: str
    description: str = ""
    mirror: str | None = None
    security_mirror: str | None = None
    updates: bool = True
    security: bool = True
    components: tuple[str, ...] = ("main",)
    extra_repositories: tuple[Repository, ...] = ()
    packages: tuple[str, ...] = ()
    variant: str = "buildd"
    build_user: BuildUser = BuildUser()
    network: bool = False
    cache_dir: Path = DEFAULT_CACHE_DIR
    state_dir: Path = DEFAULT_STATE_DIR
    metadata_expire: int = 3600
    store_max_size: str = "20G"
    root_cache: bool = True
    package_cache: bool = True
    # Read-only mapping; left out of the hash because mappingproxy is unhashable.
    environment: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), hash=False)
    # Plugin name -> {enabled, options...} as written (read-only, lists as tuples); what is
    # enabled in the end is decided by deb_mock.plugins.Plugins with the command line.
    plugins: Mapping[str, Mapping[str, Any]] = field(
        default_factory=lambda: MappingProxyType({}), hash=False)

    @property
    def is_unstable(self) -> bool:
        """True for sid/unstable/experimental, which have no -updates or -security suites."""
        return self.suite in UNSTABLE_SUITES

    def suites(self) -> tuple[str, ...]:
        """The suites taken from the main mirror: the suite, plus `<suite>-updates` if enabled."""
        return archive_suites(self.suite, self.updates)

    def security_suite(self) -> str | None:
        """`<suite>-security` when security updates apply to this suite, else None."""
        return security_suite(self.suite, self.security)

    def mirror_url(self, root: Path = Path("/")) -> str:
        """The Debian mirror: $DEBIAN_FORGE_MIRROR, else `mirror`, else the host's APT sources."""
        return host_sources.resolve_mirror(self.mirror, root)

    def security_mirror_url(self, root: Path = Path("/")) -> str | None:
        """The security archive, or None when `security_suite()` is None.

        `security_mirror` if set, else the host's security source, else the main mirror with its
        trailing `/debian` replaced by `/debian-security` (the archive's usual layout).
        """
        if self.security_suite() is None:
            return None
        found = host_sources.resolve_security_mirror(self.security_mirror,
                                                     self.mirror_url(root), root)
        if found:
            return found
        raise ConfigError(
            f"config {self.path or self.name}: security: no Debian security archive found in the "
            "host's APT sources and the mirror does not end in /debian to derive one from. Set "
            "'security_mirror: URL' (or --config-opts security_mirror=URL), or 'security: false'."
        )

    def identity(self, root: Path = Path("/")) -> dict[str, Any]:
        """The keys that determine the base environment's content, JSON-able, for cache keys."""
        return {
            "suite": self.suite,
            "architecture": self.architecture,
            "mirror": self.mirror_url(root),
            "security_mirror": self.security_mirror_url(root),
            "components": list(self.components),
            "extra_repositories": [r.to_dict() for r in self.extra_repositories],
            "packages": list(self.packages),
            "variant": self.variant,
            "updates": self.updates,
            "security": self.security,
        }

    def store_max_bytes(self) -> int:
        """`store_max_size` in bytes."""
        return parse_size(self.store_max_size, "store_max_size")


def archive_suites(suite: str, updates: bool = True) -> tuple[str, ...]:
    """The suites of a release on the main mirror: it, plus `<suite>-updates` if wanted."""
    if updates and suite not in UNSTABLE_SUITES:
        return (suite, f"{suite}-updates")
    return (suite,)


def security_suite(suite: str, security: bool = True) -> str | None:
    """`<suite>-security` when wanted and the release has one (sid has none), else None."""
    if security and suite not in UNSTABLE_SUITES:
        return f"{suite}-security"
    return None


def parse_size(value: str | int, key: str = "store_max_size") -> int:
    """Bytes in a size such as `20G`, `512M`, `1.5T`, `4096` (K/M/G/T are 1024-based)."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a size such as 20G, 512M or a number of bytes, "
                          f"got {value!r}.")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"{key}: expected a size of at least 0 bytes, got {value}.")
        return value
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KkMmGgTt])?(?:i?[Bb])?\s*", str(value))
    if not m:
        raise ConfigError(f"{key}: expected a size such as 20G, 512M, 1.5T or a number of "
                          f"bytes, got {value!r}.")
    unit = (m.group(2) or "").upper()
    return int(float(m.group(1)) * 1024 ** " KMGT".index(unit or " "))


# --- lookup ---------------------------------------------------------------------------------

def config_dirs() -> tuple[Path, ...]:
    """Directories searched for `NAME.yaml`, lowest precedence first."""
    dirs = [Path(__file__).parent / "configs", Path("/etc/deb-mock")]
    try:
        dirs.append(Path.home() / ".config" / "deb-mock")
    except RuntimeError:  # no $HOME and no passwd entry: there is no per-user directory
        pass
    return tuple(dirs)


def _is_path(name: str) -> bool:
    return "/" in name or name.endswith((".yaml", ".yml"))


def _candidates(name: str) -> list[Path]:
    """Files called NAME.yaml in the search directories, highest precedence first."""
    return [d / f"{name}.yaml" for d in reversed(config_dirs()) if _readable(d / f"{name}.yaml")]


def _readable(path: Path) -> bool:
    # Another user's home (sudo keeps HOME) is not ours to read: skip it rather than fail.
    try:
        return path.is_file() and os.access(path, os.R_OK)
    except OSError:
        return False


def _known() -> dict[str, Path]:
    """Every config name visible in the search directories -> the file that wins."""
    found: dict[str, Path] = {}
    for d in config_dirs():
        try:
            for p in sorted(d.glob("*.yaml")):
                if p.is_file():
                    found[p.stem] = p  # later directories win
        except OSError:
            continue
    return found


def _locate(name: str, base: Path | None = None, below: Path | None = None) -> Path:
    """The file a name or path refers to.

    `base` resolves relative include paths; `below` makes a name resolve to the next file of
    that name after `below` in precedence, so a user's config can include the shipped one it
    shadows.
    """
    if _is_path(name):
        path = Path(name).expanduser()
        if base is not None and not path.is_absolute():
            path = base.parent / path
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist (or is not a file).")
        return path
    if not re.fullmatch(r"[A-Za-z0-9_.+\-]+", name):
        raise ConfigError(f"{name!r} is not a config name (letters, digits, '.', '_', '+', '-') "
                          "or a path to a .yaml file.")
    candidates = _candidates(name)
    if below is not None:
        # A file outside the search directories (given by path) shadows nothing: plain lookup.
        if below in candidates:
            candidates = candidates[candidates.index(below) + 1:]
    if candidates:
        return candidates[0]
    known = ", ".join(sorted(_known())) or "none"
    where = ", ".join(str(d) for d in config_dirs())
    if below is not None:
        raise ConfigError(f"config {below}: include: {name!r} has no lower-precedence config of "
                          f"that name to include (searched {where}).")
    hint = difflib.get_close_matches(name, list(_known()), n=1)
    did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
    raise ConfigError(f"unknown config {name!r}.{did_you_mean} Known configs: {known} "
                      f"(searched {where}; a path to a .yaml file also works).")


# --- reading --------------------------------------------------------------------------------

class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: PyYAML silently keeps the last one."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {seen[key].start_mark.line + 1})",
                key_node.start_mark)
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}.") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        detail = f"{problem} ({context})" if context else problem
        raise ConfigError(f"config {path}: invalid YAML{where}: {detail}.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path}: expected a mapping of keys (suite: ..., "
                          f"architecture: ...) at the top level, got {_kind(data)}.")
    return data


def _read_chain(path: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The file and everything it includes, most basic first, each checked on its own."""
    chain: list[tuple[Path, dict[str, Any]]] = []
    current: Path | None = path
    while current is not None:
        if any(current.resolve() == p.resolve() for p, _ in chain):
            cycle = " -> ".join(str(p) for p, _ in chain) + f" -> {current}"
            raise ConfigError(f"config {path}: include: the includes form a cycle: {cycle}.")
        data = _read_yaml(current)
        _check(_PARTIAL_VALIDATOR, data, current)
        chain.append((current, data))
        include = data.get("include")
        if include is None:
            current = None
        elif not _is_path(include) and include == current.stem:
            current = _locate(include, below=current)
        else:
            current = _locate(include, base=current)
    chain.reverse()
    return chain


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key (build_user, environment); anything else, lists too, replaces."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def option_value(raw: str, where: str) -> Any:
    """The value of a KEY=VALUE command-line option, read as YAML (true, 3, [a, b], text)."""
    try:
        return yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: the value is not a valid YAML scalar or flow value "
                          f"({problem}); quote text that contains special characters, e.g. "
                          "description='a: b'.") from None


def _apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, str]:
    """Apply `KEY=VALUE` options in place; returns dotted key -> option text, for messages."""
    applied: dict[str, str] = {}
    for option in overrides:
        key, sep, raw = option.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[^.\s\[\]]+(\.[^.\s\[\]]+)*", key):
            raise ConfigError(
                f"--config-opts {option!r}: expected KEY=VALUE with a dotted key, such as "
                "network=true, build_user.name=builder or components=[main,contrib].")
        if key == "include":
            raise ConfigError(f"--config-opts {option!r}: 'include' can only be set in a config "
                              "file; pass the config to start from as the config name instead.")
        value = option_value(raw, f"--config-opts {option!r}")
        parts = key.split(".")
        target = data
        for i, part in enumerate(parts[:-1]):
            nxt = target.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"--config-opts {option!r}: {'.'.join(parts[:i + 1])} is "
                                  f"{_kind(nxt)}, not a mapping, so it has no key {parts[i + 1]!r}.")
            target = nxt
        target[parts[-1]] = value
        applied[key] = option
    return applied


# --- validation messages --------------------------------------------------------------------

def _check(validator: jsonschema.Draft202012Validator, data: dict[str, Any], path: Path | str,
           overrides: Mapping[str, str] | None = None) -> None:
    """Raise one ConfigError listing every schema error in `data`, each with its dotted key."""
    problems: list[str] = []
    errors = sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    for error in errors:
        for parts, what in describe(error, _ARCH_ALIASES):
            key = dotted(parts)
            origin = ""
            for okey, option in (overrides or {}).items():
                if key == okey or key.startswith(okey + ".") or key.startswith(okey + "["):
                    origin = f" (set by --config-opts {option})"
            problems.append(f"{key}: {what}{origin}")
    if problems:
        raise ConfigError(f"config {path} is invalid: " + "; ".join(problems)
                          + ". See docs/configs.md for every key.")


# --- building the Config --------------------------------------------------------------------

def _dir_setting(data: Mapping[str, Any], key: str, env: str, default: Path) -> Path:
    # An explicit value (file or --config-opts) beats the environment variable, which beats the
    # built-in default: the variable relocates everything for a host, a config is deliberate.
    if data.get(key):
        return Path(data[key]).expanduser()
    from_env = os.environ.get(env, "").strip()
    if from_env:
        if not from_env.startswith("/"):
            raise ConfigError(f"environment variable {env}: expected an absolute directory "
                              f"path, got {from_env!r}.")
        return Path(from_env)
    return default


def _freeze(value: Any) -> Any:
    """A read-only deep copy: mappings become mappingproxies, lists tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _plugin_sections(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The `plugins` sections, with the older switches `root_cache: false` and
    `package_cache: false` read as those plugins' `enabled` (a `plugins.<name>.enabled` wins)."""
    sections = {name: dict(section) for name, section in (data.get("plugins") or {}).items()}
    for switch in ("root_cache", "package_cache"):
        if switch in data:
            sections.setdefault(switch, {}).setdefault("enabled", data[switch])
    return sections


def _build(name: str, path: Path | None, data: Mapping[str, Any]) -> Config:
    user = data.get("build_user") or {}
    plugins = _plugin_sections(data)
    return Config(
        name=name,
        path=path,
        description=data.get("description", ""),
        suite=data["suite"],
        architecture=data["architecture"],
        mirror=data["mirror"].rstrip("/") if data.get("mirror") else None,
        security_mirror=data["security_mirror"].rstrip("/") if data.get("security_mirror") else None,
        updates=data.get("updates", True),
        security=data.get("security", True),
        components=tuple(data.get("components", ("main",))),
        extra_repositories=tuple(
            Repository(url=r["url"].rstrip("/"), suite=r["suite"],
                       components=tuple(r.get("components", ("main",))),
                       signed_by=r.get("signed_by"), trusted=r.get("trusted", False))
            for r in data.get("extra_repositories", ())),
        packages=tuple(data.get("packages", ())),
        variant=data.get("variant", "buildd"),
        build_user=BuildUser(name=user.get("name", "builder"), uid=user.get("uid", 1000)),
        network=data.get("network", False),
        cache_dir=_dir_setting(data, "cache_dir", CACHE_DIR_ENV, DEFAULT_CACHE_DIR),
        state_dir=_dir_setting(data, "state_dir", STATE_DIR_ENV, DEFAULT_STATE_DIR),
        metadata_expire=data.get("metadata_expire", 3600),
        store_max_size=str(data.get("store_max_size", "20G")).strip(),
        root_cache=plugins.get("root_cache", {}).get("enabled", True),
        package_cache=plugins.get("package_cache", {}).get("enabled", True),
        environment=MappingProxyType({k: str(v) for k, v in (data.get("environment") or {}).items()}),
        plugins=_freeze(plugins),
    )


def load_config(name_or_path: str, overrides: Sequence[str] = ()) -> Config:
    """Load, merge (includes), override (`KEY=VALUE` strings) and validate a config.

    Raises ConfigError, naming the file and the dotted key, for every kind of problem.
    """
    path = _locate(name_or_path)
    data: dict[str, Any] = {}
    for _, layer in _read_chain(path):
        data = _merge(data, layer)
    data.pop("include", None)
    applied = _apply_overrides(data, overrides)
    _check(_VALIDATOR, data, path, applied)
    return _build(path.stem, path, data)


def list_configs() -> list[ConfigInfo]:
    """Every config visible by name, sorted; one that fails to load carries its error."""
    infos = []
    for name, path in sorted(_known().items()):
        try:
            cfg = load_config(str(path))
        except ConfigError as exc:
            infos.append(ConfigInfo(name, path, "", "", "", error=exc.message))
            continue
        infos.append(ConfigInfo(name, path, cfg.description, cfg.suite, cfg.architecture))
    return infos
