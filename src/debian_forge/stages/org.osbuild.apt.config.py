"""Write APT configuration into the tree: deb822 sources, apt.conf snippets, preferences.

This configures the apt of the finished system. Packages installed by this build come from the
locked resolution of the org.osbuild.debootstrap repositories, whatever is written here.
"""

from __future__ import annotations

from debian_forge.context import StageContext

_FILE = {"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]*$",
         "x-expected": "a file name of letters, digits, '_', '.' and '-'"}
_WORDS = {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}

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
                    "uris": {**_WORDS, "description": "Repository URLs."},
                    "suites": {**_WORDS, "description": "Suites, or a path ending in / for "
                                                        "flat repositories."},
                    "components": {**_WORDS, "description": "Components."},
                    "signed-by": {"type": "string", "minLength": 1,
                                  "description": "Keyring path inside the tree."},
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
                           "list options such as DPkg::Pre-Invoke).",
        },
        "preferences": {
            "type": "object",
            "propertyNames": _FILE,
            "additionalProperties": {"type": "array", "minItems": 1, "items": {
                "type": "object", "additionalProperties": False,
                "required": ["package", "pin", "pin-priority"],
                "properties": {
                    "package": {"type": "string", "minLength": 1},
                    "pin": {"type": "string", "minLength": 1},
                    "pin-priority": {"type": "integer"},
                }}},
            "description": "/etc/apt/preferences.d/<name>: pinning stanzas.",
        },
    },
}


def _value(value) -> str:
    if isinstance(value, bool):
        value = "true" if value else "false"
    return '"' + str(value).replace('"', '\\"') + '"'


def _apt_conf(options: dict) -> str:
    lines = []
    for key, value in options.items():
        if isinstance(value, list):
            lines.append(f"{key} {{ " + " ".join(f"{_value(v)};" for v in value) + " };")
        else:
            lines.append(f"{key} {_value(value)};")
    return "\n".join(lines) + "\n"


def _deb822(stanzas: list[dict]) -> str:
    out = []
    for stanza in stanzas:
        fields = {"Types": " ".join(stanza.get("types", ["deb"])),
                  "URIs": " ".join(stanza["uris"]), "Suites": " ".join(stanza["suites"])}
        if "components" in stanza:
            fields["Components"] = " ".join(stanza["components"])
        if "architectures" in stanza:
            fields["Architectures"] = " ".join(stanza["architectures"])
        if "signed-by" in stanza:
            fields["Signed-By"] = stanza["signed-by"]
        if "enabled" in stanza:
            fields["Enabled"] = "yes" if stanza["enabled"] else "no"
        out.append("\n".join(f"{k}: {v}" for k, v in fields.items()))
    return "\n\n".join(out) + "\n"


def _preferences(stanzas: list[dict]) -> str:
    return "\n".join(f"Package: {s['package']}\nPin: {s['pin']}\nPin-Priority: {s['pin-priority']}\n"
                     for s in stanzas)


def run(ctx: StageContext, options: dict) -> None:
    for name, stanzas in options.get("sources", {}).items():
        ctx.tree.write_text(f"/etc/apt/sources.list.d/{name}.sources", _deb822(stanzas))
    for name, settings in options.get("config", {}).items():
        ctx.tree.write_text(f"/etc/apt/apt.conf.d/{name}", _apt_conf(settings))
    for name, stanzas in options.get("preferences", {}).items():
        ctx.tree.write_text(f"/etc/apt/preferences.d/{name}", _preferences(stanzas))
