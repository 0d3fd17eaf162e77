"""Stage types: one module per stage, named as in manifests (`org.osbuild.apt.py`).

A stage module has:
- a docstring whose first line is the summary (`debian-forge stages` prints it) and whose rest
  is the description;
- `SCHEMA`: the JSON schema of its options (the reference documentation is made from it);
- optionally `INPUTS`: the JSON schema of its `inputs` object;
- `run(ctx: StageContext, options: dict) -> None`;
- optionally `resolve(options, state) -> Resolution` when it installs packages (resolve.py).
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

_HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class StageType:
    name: str
    summary: str
    description: str
    schema: dict[str, Any]  # options
    inputs: dict[str, Any] | None  # schema of `inputs`, None when the stage takes none
    module: ModuleType

    @property
    def run(self) -> Callable:
        return self.module.run

    @property
    def resolve(self) -> Callable | None:
        return getattr(self.module, "resolve", None)

    def options_schema(self) -> dict[str, Any]:
        """The options schema as a complete object schema (defaults for the common keys)."""
        return {"type": "object", "additionalProperties": False, **self.schema}


def _load(path: Path) -> StageType:
    name = path.name[: -len(".py")]
    module_name = "debian_forge.stages._" + name.replace(".", "_").replace("-", "_")
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    doc = (module.__doc__ or "").strip()
    summary, _, description = doc.partition("\n")
    return StageType(name=name, summary=summary.strip(), description=description.strip(),
                     schema=module.SCHEMA, inputs=getattr(module, "INPUTS", None), module=module)


@functools.cache
def stage_types() -> dict[str, StageType]:
    """Every stage type, by name."""
    return {path.name[: -len(".py")]: _load(path)
            for path in sorted(_HERE.glob("org.*.py"))}


def get(name: str) -> StageType | None:
    return stage_types().get(name)


def suggest(name: str) -> str:
    """`did you mean …?` for an unknown stage type, or the empty string."""
    close = difflib.get_close_matches(name, list(stage_types()), n=1)
    return f"did you mean {close[0]!r}? " if close else ""
