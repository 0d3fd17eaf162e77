"""Write APT configuration into the tree: deb822 sources with their keys, apt.conf, preferences.

What is written is also what resolution uses from here on: later apt stages of the pipeline are
solved against these repositories (verified by their own keys), these pins and these `APT::`
options. A sources file named `debian` replaces the bootstrap's
(`/etc/apt/sources.list.d/debian.sources`); other names add repositories. Each repository's
Release file must be signed by its key — given inline (ASCII-armoured, in `key`), as a file of
the stage's `keys` input (`key-file`, by sha256), or as a keyring path that Debian packages
install (`signed-by`, e.g. /usr/share/keyrings/debian-archive-keyring.gpg). Only `trusted: true`
accepts a repository without a valid signature. Keys are written to
/etc/apt/keyrings/<file>-<n>.asc (or .gpg) and named in `Signed-By`.
"""

from __future__ import annotations

import copy

from deb_mock.apt_host import SourceEntry
from deb_mock.errors import PackageManagerError
from debian_forge.context import StageContext, StageError

_FILE = {"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]*$",
         "x-expected": "a file name of letters, digits, '_', '.' and '-'"}
_WORDS = {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}
_ARMOURED = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
KEYRINGS = "/etc/apt/keyrings"

SCHEMA = {
    "properties": {
        "sources": {
            "type": "object",
            "propertyNames": _FILE,
            "additionalProperties": {"type": "array", "minItems": 1, "items": {
                "type": "object", "additionalProperties": False,
                "required": ["uris", "suites"],
                "properties": {
                    "types": {**_WORDS, "items": {"enum": ["deb", "deb-src"]},
                              "description": "deb and/or deb-src (default deb)"},
                    "uris": {**_WORDS, "description": "Repository URLs; `@mirror` and "
                                                      "`@security-mirror` stand for the "
                                                      "bootstrap's (written into the lock)."},
                    "suites": {**_WORDS, "description": "Suites, or a path ending in / for "
                                                        "flat repositories."},
                    "components": {**_WORDS, "description": "Components."},
                    "key": {"type": "string", "pattern": f"^\\s*{_ARMOURED}",
                            "x-expected": "an ASCII-armoured OpenPGP public key",
                            "description": "The repository's signing key, inline."},
                    "key-file": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$",
                                 "x-expected": "sha256:<64 hex>",
                                 "description": "The signing key as a file of the `keys` "
                                                "input, by checksum."},
                    "signed-by": {"type": "string", "pattern": "^/usr/share/keyrings/[^/]+$",
                                  "x-expected": "a keyring under /usr/share/keyrings",
                                  "description": "A keyring a Debian package installs (the "
                                                 "host's copy verifies it at resolve time)."},
                    "trusted": {"type": "boolean",
                                "description": "Accept the repository without a valid "
                                               "signature (explicitly insecure)."},
                    "architectures": _WORDS,
                    "enabled": {"type": "boolean"},
                }}},
            "description": "/etc/apt/sources.list.d/<name>.sources: a list of deb822 stanzas.",
        },
        "config": {
            "type": "object",
            "propertyNames": _FILE,
            "additionalProperties": {
                "type": "object", "minProperties": 1,
                "propertyNames": {"pattern": "^[A-Za-z0-9:_-]+$",
                                  "x-expected": "an apt option name such as "
                                                "APT::Install-Recommends"},
                "additionalProperties": {"oneOf": [
                    {"type": ["string", "boolean", "integer"]},
                    {"type": "array", "items": {"type": "string"}}]}},
            "description": "/etc/apt/apt.conf.d/<name>: option → value (a list for "
                           "list options such as DPkg::Pre-Invoke). `APT::` options also "
                           "steer resolution of later stages.",
        },
        "preferences": {
            "type": "object",
            "propertyNames": _FILE,
            "additionalProperties": {"type": "array", "minItems": 1, "items": {
                "type": "object", "additionalProperties": False,
                "required": ["package", "pin", "pin-priority"],
                "properties": {
                    "package": {"type": "string", "minLength": 1,
                                "description": "Package names or patterns, or `*`."},
                    "pin": {"type": "string", "minLength": 1,
                            "description": "`release n=<codename>`, `release a=<suite>`, "
                                           "`release o=<origin>`, `origin <host>`, "
                                           "`version <glob>`."},
                    "pin-priority": {"type": "integer",
                                     "description": "apt_preferences(5): > 1000 allows "
                                                    "downgrades, 990 beats the target release, "
                                                    "500 is the default, < 0 never installs."},
                }}},
            "description": "/etc/apt/preferences.d/<name>: pinning stanzas, also used to "
                           "resolve later stages.",
        },
    },
}

INPUTS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"keys": {"type": "object", "description": "Key files for `key-file`."}},
}


def _key_path(name: str, index: int, key: bytes) -> str:
    suffix = ".asc" if key.lstrip().startswith(b"-----BEGIN") else ".gpg"
    return f"{KEYRINGS}/{name}-{index}{suffix}"


def _keys(name: str, stanzas: list[dict], read_file) -> list[tuple[bytes | None, str | None]]:
    """(key bytes, Signed-By path inside the tree) for each stanza."""
    out = []
    for index, stanza in enumerate(stanzas):
        key = None
        if "key" in stanza:
            key = stanza["key"].strip().encode() + b"\n"
        elif "key-file" in stanza:
            key = read_file(stanza["key-file"])
        if key is not None:
            out.append((key, _key_path(name, index, key)))
        else:
            out.append((None, stanza.get("signed-by")))
    return out


def resolve(stage, state, resolver, locked):
    """Later stages resolve against these repositories, pins and options."""
    options = copy.deepcopy(stage.options)
    for stanzas in options.get("sources", {}).values():
        for stanza in stanzas:
            for index, uri in enumerate(stanza["uris"]):
                if uri.startswith("@"):
                    if uri not in state.mirrors:
                        raise PackageManagerError(
                            f"{uri} stands for the bootstrap's mirror, but no "
                            "org.osbuild.debootstrap stage with one comes before")
                    stanza["uris"][index] = state.mirrors[uri]
    for name, stanzas in options.get("sources", {}).items():
        entries = []
        for stanza, (key, signed_by) in zip(stanzas, _keys(name, stanzas, resolver.source_bytes)):
            if "deb" not in stanza.get("types", ["deb"]) or not stanza.get("enabled", True):
                continue
            if signed_by is None and not stanza.get("trusted"):
                raise PackageManagerError(
                    f"sources '{name}': {stanza['uris'][0]} has no key: give `key`, `key-file` "
                    "or `signed-by` (or, knowingly insecure, `trusted: true`)")
            for uri in stanza["uris"]:
                entries.append(SourceEntry(uri.rstrip("/"), tuple(stanza["suites"]),
                                           tuple(stanza.get("components", [])),
                                           signed_by=signed_by,
                                           trusted=stanza.get("trusted", False), key=key))
        state.sources[name] = entries
    for name, stanzas in options.get("preferences", {}).items():
        state.preferences[name] = _preferences(stanzas)
    for settings in options.get("config", {}).values():
        for key, value in settings.items():
            if key.startswith("APT::") and not isinstance(value, list):
                state.settings[key] = _scalar(value)
    return options, None


def _scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _value(value) -> str:
    return '"' + _scalar(value).replace('"', '\\"') + '"'


def _apt_conf(options: dict) -> str:
    lines = []
    for key, value in options.items():
        if isinstance(value, list):
            lines.append(f"{key} {{ " + " ".join(f"{_value(v)};" for v in value) + " };")
        else:
            lines.append(f"{key} {_value(value)};")
    return "\n".join(lines) + "\n"


def _deb822(stanzas: list[dict], keys: list[tuple[bytes | None, str | None]]) -> str:
    out = []
    for stanza, (_, signed_by) in zip(stanzas, keys):
        fields = {"Types": " ".join(stanza.get("types", ["deb"])),
                  "URIs": " ".join(stanza["uris"]), "Suites": " ".join(stanza["suites"])}
        if "components" in stanza:
            fields["Components"] = " ".join(stanza["components"])
        if "architectures" in stanza:
            fields["Architectures"] = " ".join(stanza["architectures"])
        if signed_by:
            fields["Signed-By"] = signed_by
        if stanza.get("trusted"):
            fields["Trusted"] = "yes"
        if "enabled" in stanza:
            fields["Enabled"] = "yes" if stanza["enabled"] else "no"
        out.append("\n".join(f"{k}: {v}" for k, v in fields.items()))
    return "\n\n".join(out) + "\n"


def _preferences(stanzas: list[dict]) -> str:
    return "\n".join(f"Package: {s['package']}\nPin: {s['pin']}\nPin-Priority: {s['pin-priority']}\n"
                     for s in stanzas)


def run(ctx: StageContext, options: dict) -> None:
    def read_file(checksum: str) -> bytes:
        keys = ctx.inputs.get("keys")
        if keys is None or checksum not in keys.files:
            raise StageError(f"key-file {checksum} is not a file of the stage's `keys` input")
        return keys.files[checksum].read_bytes()

    for name, stanzas in options.get("sources", {}).items():
        keys = _keys(name, stanzas, read_file)
        for key, path in keys:
            if key is not None:
                ctx.tree.write_bytes(path, key)
        ctx.tree.write_text(f"/etc/apt/sources.list.d/{name}.sources", _deb822(stanzas, keys))
    for name, settings in options.get("config", {}).items():
        ctx.tree.write_text(f"/etc/apt/apt.conf.d/{name}", _apt_conf(settings))
    for name, stanzas in options.get("preferences", {}).items():
        ctx.tree.write_text(f"/etc/apt/preferences.d/{name}", _preferences(stanzas))
