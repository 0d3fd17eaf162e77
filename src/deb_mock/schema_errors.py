"""jsonschema errors as sentences a person can act on, with the path of what is wrong.

Both configs (dotted keys: `extra_repositories[0].url`) and manifests (JSON paths:
`.pipelines[1].stages[3].options.packages[2]`) describe their errors through here.
"""

from __future__ import annotations

import difflib
from typing import Any, Mapping, Sequence

import jsonschema

_TYPE_WORDS = {"string": "a string", "integer": "an integer", "number": "a number",
               "boolean": "true or false", "array": "a list", "object": "a mapping",
               "null": "null"}


def kind(value: Any) -> str:
    """What a value is, for messages: `string 'x'`, `number 3`, `a mapping`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!s}"


def dotted(path: Sequence[Any]) -> str:
    """Config style: `a.b[0].c`, or `(top level)`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def json_path(path: Sequence[Any]) -> str:
    """Manifest style (as osbuild prints it): `.pipelines[1].stages[3]`, or `.` for the root."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out or "."


def describe(error: jsonschema.ValidationError, aliases: Mapping[str, str] | None = None,
             base: Sequence[Any] = ()) -> list[tuple[list[Any], str]]:
    """(path, what was wrong) pairs for one schema error; `base` prefixes every path.

    `aliases` maps values people often write to the one the schema wants (x86_64 → amd64).
    """
    path = list(base) + list(error.absolute_path)
    v, inst, schema = error.validator, error.instance, error.schema
    if v == "additionalProperties" and isinstance(inst, dict):
        allowed = list(schema.get("properties", {}))
        out = []
        for extra in [k for k in inst if k not in allowed]:
            close = difflib.get_close_matches(str(extra), allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            known = f"known keys here: {', '.join(allowed)}" if allowed else "no keys are allowed here"
            out.append((path + [extra], f"unknown key; {hint}{known}"))
        return out
    if v == "required" and isinstance(inst, dict):
        return [(path + [k], "missing; this key is required")
                for k in error.validator_value if k not in inst]
    if v == "type":
        types = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        if "number" in types and "integer" in types:
            types = [t for t in types if t != "integer"]
        want = " or ".join(_TYPE_WORDS.get(t, t) for t in types)
        hint = ""
        if isinstance(inst, (bool, int, float)) and "string" in types:
            hint = " (quote it if you meant text)"
        return [(path, f"expected {want}, got {kind(inst)}{hint}")]
    if v in ("enum", "const"):
        values = error.validator_value if v == "enum" else [error.validator_value]
        choices = ", ".join(str(c) for c in values)
        if aliases and inst in aliases:
            hint = f" (Debian calls it {aliases[inst]!r})"
        else:
            close = difflib.get_close_matches(str(inst), [str(c) for c in values], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
        return [(path, f"expected one of {choices}, got {kind(inst)}{hint}")]
    if v in ("pattern", "format"):
        want = schema.get("x-expected", f"text matching {error.validator_value}")
        if error.absolute_schema_path and "propertyNames" in error.absolute_schema_path:
            return [(path + [inst], f"expected {want} as the key name")]
        return [(path, f"expected {want}, got {kind(inst)}")]
    if v == "uniqueItems":
        return [(path, "lists an item more than once")]
    if v == "minItems":
        return [(path, f"expected at least {error.validator_value} item(s), got {len(inst)}")]
    if v == "maxItems":
        return [(path, f"expected at most {error.validator_value} item(s), got {len(inst)}")]
    if v == "minLength":
        return [(path, "expected a non-empty string")]
    if v == "minProperties":
        return [(path, f"expected at least {error.validator_value} key(s)")]
    if v in ("minimum", "maximum"):
        word = "at least" if v == "minimum" else "at most"
        return [(path, f"expected {word} {error.validator_value}, got {kind(inst)}")]
    if v in ("oneOf", "anyOf") and error.context:
        # Report the alternative that got furthest: usually what the user meant.
        best = max(error.context, key=lambda e: len(list(e.absolute_path)))
        return describe(best, aliases, base)
    return [(path, error.message)]
