"""The stage reference, made from each stage's docstring and schema (DESIGN.md, 6).

`python -m debian_forge.stage_docs docs/stages` writes one page per stage and an index; a test
checks the committed pages are current.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterator

from debian_forge import stages
from debian_forge.stages import StageType


def _type_of(schema: dict) -> str:
    if "enum" in schema:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    kind = schema.get("type", "")
    if isinstance(kind, list):
        kind = " or ".join(kind)
    if kind == "array" and isinstance(schema.get("items"), dict):
        inner = _type_of(schema["items"])
        return f"list of {inner}" if inner else "list"
    if not kind and "oneOf" in schema:
        return " or ".join(_type_of(s) for s in schema["oneOf"])
    return kind or "any"


def _nested(schema: dict) -> tuple[str, dict] | None:
    """Where an option's own fields are: `[]` items of a list, `<name>` values of a map."""
    items = schema.get("items")
    if isinstance(items, dict) and items.get("properties"):
        return "[]", items
    values = schema.get("additionalProperties")
    if isinstance(values, dict) and values.get("properties"):
        return ".<name>", values
    return None


def _rows(schema: dict, prefix: str = "") -> Iterator[str]:
    """One table row per option, nested fields (list items, map values) included."""
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        default = "required" if name in required else (
            f"`{json.dumps(prop['default'])}`" if "default" in prop else "")
        text = prop.get("description", "").replace("|", "\\|").replace("\n", " ")
        if "x-expected" in prop:
            text += f" ({prop['x-expected']})"
        yield f"| `{prefix}{name}` | {_type_of(prop)} | {default} | {text} |"
        nested = _nested(prop)
        if nested:
            yield from _rows(nested[1], f"{prefix}{name}{nested[0]}.")


def render(stage: StageType) -> str:
    """One stage's reference page, in Markdown."""
    schema = stage.options_schema()
    lines = [f"# {stage.name}", "", stage.summary, ""]
    if stage.description:
        lines += [stage.description, ""]
    rows = list(_rows(schema))
    if rows:
        lines += ["## Options", "", "| option | type | default | description |",
                  "| --- | --- | --- | --- |", *rows, ""]
    if stage.inputs:
        names = ", ".join(f"`{n}`" for n in stage.inputs.get("properties", {})) or "any name"
        lines += ["## Inputs", "", f"Takes inputs: {names}.", ""]
    lines += ["## Schema", "", "```json", json.dumps(schema, indent=2), "```", ""]
    return "\n".join(lines)


def index() -> str:
    lines = ["# Stage reference", "",
             "Generated from the stages' docstrings and schemas by "
             "`python -m debian_forge.stage_docs docs/stages`; `debian-forge stages NAME` "
             "prints the same.", "", "| stage | what it does |", "| --- | --- |"]
    for stage in stages.stage_types().values():
        lines.append(f"| [{stage.name}]({stage.name}.md) | {stage.summary} |")
    return "\n".join(lines) + "\n"


def pages() -> dict[str, str]:
    """File name → content of every page of the reference."""
    out = {f"{s.name}.md": render(s) for s in stages.stage_types().values()}
    out["README.md"] = index()
    return out


def main(target: str) -> None:
    directory = Path(target)
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in pages().items():
        (directory / name).write_text(text)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/stages")
