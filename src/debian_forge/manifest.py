"""Manifest format version 2, as osbuild defines it, read and checked before anything runs.

Every problem is collected — schema errors of the manifest and of every stage's options and
inputs, unknown stage types, references to pipelines or sources that do not exist, cycles —
and reported at once in a ManifestError, each with the JSON path of what is wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from deb_mock.errors import UsageError
from deb_mock.schema_errors import describe, json_path
from debian_forge import stages

_NAME = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$",
         "x-expected": "a name of letters, digits, '.', '_' and '-'"}
_CHECKSUM = "^sha256:[0-9a-f]{64}$"

INPUT_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["type", "origin", "references"],
    "properties": {
        "type": {"enum": ["org.osbuild.tree", "org.osbuild.files"]},
        "origin": {"enum": ["org.osbuild.pipeline", "org.osbuild.source"]},
        "references": {
            "oneOf": [
                {"type": "array", "items": {"type": "string"}},
                {"type": "object", "additionalProperties": {
                    "type": "object", "additionalProperties": False,
                    "properties": {"metadata": {"type": "object"}}}},
            ]
        },
    },
}

_TREE_PATH = {"type": "string", "pattern": "^(?!/)(?!.*(^|/)\\.\\.(/|$)).+$",
              "x-expected": "a path relative to the pipeline's tree, without '..'"}
DEVICE_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["type", "options"],
    "properties": {
        "type": {"const": "org.osbuild.loopback"},
        "options": {"type": "object", "additionalProperties": False, "required": ["filename"],
                    "properties": {
                        "filename": _TREE_PATH,
                        "start": {"type": "integer", "minimum": 0},
                        "size": {"type": "integer", "minimum": 1},
                        "sector-size": {"enum": [512, 4096]},
                        "partscan": {"type": "boolean"},
                    }},
    },
}
MOUNT_TYPES = {"org.osbuild.ext4": "ext4", "org.osbuild.fat": "vfat"}
MOUNT_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "required": ["name", "type", "source", "target"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "type": {"enum": list(MOUNT_TYPES)},
        "source": {"type": "string", "minLength": 1},
        "target": {"type": "string", "pattern": "^/", "x-expected": "an absolute path"},
        "partition": {"type": "integer", "minimum": 1},
        "options": {"type": "object"},
    },
}

MANIFEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "pipelines"],
    "properties": {
        "version": {"const": "2"},
        "pipelines": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name"],
                "properties": {
                    "name": _NAME,
                    "build": {"type": "string", "pattern": "^name:.+$",
                              "x-expected": "\"name:<pipeline>\""},
                    "runner": {"type": "string"},
                    "source-epoch": {"type": "integer", "minimum": 0},
                    "stages": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["type"],
                            "properties": {
                                "type": {"type": "string"},
                                "options": {"type": "object"},
                                "inputs": {"type": "object",
                                           "additionalProperties": INPUT_SCHEMA},
                                "devices": {"type": "object",
                                            "additionalProperties": DEVICE_SCHEMA},
                                "mounts": {"type": "array", "items": MOUNT_SCHEMA},
                            },
                        },
                    },
                },
            },
        },
        "sources": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "org.osbuild.curl": {
                    "type": "object", "additionalProperties": False, "required": ["items"],
                    "properties": {"items": {
                        "type": "object",
                        "propertyNames": {"pattern": _CHECKSUM, "x-expected": "sha256:<64 hex>"},
                        "additionalProperties": {"oneOf": [
                            {"type": "string"},
                            {"type": "object", "required": ["url"],
                             "properties": {"url": {"type": "string"}}},
                        ]}}}},
                "org.osbuild.inline": {
                    "type": "object", "additionalProperties": False, "required": ["items"],
                    "properties": {"items": {
                        "type": "object",
                        "propertyNames": {"pattern": _CHECKSUM, "x-expected": "sha256:<64 hex>"},
                        "additionalProperties": {
                            "type": "object", "additionalProperties": False,
                            "required": ["encoding", "data"],
                            "properties": {"encoding": {"enum": ["base64"]},
                                           "data": {"type": "string"}}}}}},
            },
        },
        "source-epoch": {"type": "integer", "minimum": 0},
        "metadata": {"type": "object"},
    },
}


class ManifestError(UsageError):
    """The manifest is wrong; `problems` are (JSON path, message) pairs, all reported at once."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"  {path}: {message}" for path, message in problems]
        count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
        super().__init__(f"{source} is not a valid manifest ({count}):\n" + "\n".join(lines))


@dataclass
class Stage:
    type: str
    options: dict[str, Any]
    inputs: dict[str, dict[str, Any]]
    path: str  # JSON path, for messages: .pipelines[0].stages[2]
    index: int
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    mounts: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type}
        if self.options:
            data["options"] = self.options
        if self.inputs:
            data["inputs"] = self.inputs
        if self.devices:
            data["devices"] = self.devices
        if self.mounts:
            data["mounts"] = self.mounts
        return data


@dataclass
class Pipeline:
    name: str
    build: str | None  # the build pipeline's name, None for the host
    stages: list[Stage]
    path: str
    source_epoch: int | None = None
    runner: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name}
        if self.build:
            data["build"] = f"name:{self.build}"
        if self.runner:
            data["runner"] = self.runner
        if self.source_epoch is not None:
            data["source-epoch"] = self.source_epoch
        data["stages"] = [stage.to_json() for stage in self.stages]
        return data

    def references(self, stages: list[Stage] | None = None) -> list[str]:
        """Pipelines this one needs: its build root and its stages' (or `stages`') tree inputs."""
        names = [self.build] if self.build else []
        for stage in self.stages if stages is None else stages:
            for item in stage.inputs.values():
                if item.get("origin") == "org.osbuild.pipeline":
                    names += [_pipeline_name(ref) for ref in _reference_keys(item)]
        return names


@dataclass
class Manifest:
    pipelines: list[Pipeline]
    sources: dict[str, Any] = field(default_factory=dict)
    source_epoch: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    origin: str = "manifest"  # where it was read from, for messages

    def pipeline(self, name: str) -> Pipeline:
        for pipeline in self.pipelines:
            if pipeline.name == name:
                return pipeline
        raise KeyError(name)

    def epoch(self, pipeline: Pipeline) -> int | None:
        return pipeline.source_epoch if pipeline.source_epoch is not None else self.source_epoch

    def ordered(self) -> list[Pipeline]:
        """Pipelines so that every pipeline comes after those it references (checked acyclic)."""
        done: dict[str, Pipeline] = {}

        def visit(pipeline: Pipeline) -> None:
            if pipeline.name in done:
                return
            for name in pipeline.references():
                visit(self.pipeline(name))
            done[pipeline.name] = pipeline

        for pipeline in self.pipelines:
            visit(pipeline)
        return list(done.values())

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"version": "2"}
        if self.source_epoch is not None:
            data["source-epoch"] = self.source_epoch
        data["pipelines"] = [p.to_json() for p in self.pipelines]
        if self.sources:
            data["sources"] = self.sources
        if self.metadata:
            data["metadata"] = self.metadata
        return data

    def curl_items(self) -> dict[str, str]:
        """sha256:<hex> → URL of every download item."""
        items = self.sources.get("org.osbuild.curl", {}).get("items", {})
        return {key: value if isinstance(value, str) else value["url"]
                for key, value in items.items()}


def _pipeline_name(reference: str) -> str:
    return reference[len("name:"):] if reference.startswith("name:") else reference


def _reference_keys(item: dict[str, Any]) -> list[str]:
    references = item.get("references", [])
    return list(references) if isinstance(references, (list, dict)) else []


def load(path: Path | str) -> Manifest:
    """Read and check a manifest file; ManifestError (exit 2) for anything wrong."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UsageError(f"manifest {path} does not exist") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read manifest {path}: {exc}") from None
    return parse(text, str(path))


def parse(text: str, origin: str = "manifest") -> Manifest:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(origin, [(".", f"not valid JSON: {exc.msg} at line {exc.lineno} "
                                           f"column {exc.colno}")]) from None
    return from_json(data, origin)


def from_json(data: Any, origin: str = "manifest") -> Manifest:
    problems = _schema_problems(data, MANIFEST_SCHEMA, [])
    if problems:
        # The structure is wrong: deeper checks would only repeat the same mistakes.
        raise ManifestError(origin, problems)
    manifest = Manifest(
        pipelines=[_pipeline(p, i) for i, p in enumerate(data["pipelines"])],
        sources=data.get("sources", {}), source_epoch=data.get("source-epoch"),
        metadata=data.get("metadata", {}), origin=origin)
    problems = check(manifest)
    if problems:
        raise ManifestError(origin, problems)
    return manifest


def _pipeline(data: dict[str, Any], index: int) -> Pipeline:
    path = f".pipelines[{index}]"
    build = data.get("build")
    return Pipeline(
        name=data["name"], build=_pipeline_name(build) if build else None, path=path,
        source_epoch=data.get("source-epoch"), runner=data.get("runner"),
        stages=[Stage(type=s["type"], options=s.get("options", {}), inputs=s.get("inputs", {}),
                      path=f"{path}.stages[{j}]", index=j, devices=s.get("devices", {}),
                      mounts=s.get("mounts", []))
                for j, s in enumerate(data.get("stages", []))])


def _schema_problems(data: Any, schema: dict[str, Any], base: list[Any]) -> list[tuple[str, str]]:
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]):
        for parts, message in describe(error, base=base):
            problems.append((json_path(parts), message))
    return problems


def check(manifest: Manifest) -> list[tuple[str, str]]:
    """Everything the schema cannot see: stage types and options, references, cycles."""
    problems: list[tuple[str, str]] = []
    names = [p.name for p in manifest.pipelines]
    seen: set[str] = set()
    for pipeline in manifest.pipelines:
        if pipeline.name in seen:
            problems.append((f"{pipeline.path}.name", f"pipeline name {pipeline.name!r} is used "
                                                      "more than once"))
        seen.add(pipeline.name)
        if pipeline.build and pipeline.build not in names:
            problems.append((f"{pipeline.path}.build",
                             f"no pipeline named {pipeline.build!r} (pipelines: {', '.join(names)})"))
        for stage in pipeline.stages:
            problems += _check_stage(manifest, stage, names)
    if not problems:
        cycle = _find_cycle(manifest)
        if cycle:
            problems.append((".pipelines", "pipelines depend on each other in a cycle: "
                                           + " → ".join(cycle)))
    return problems


def _check_stage(manifest: Manifest, stage: Stage, names: list[str]) -> list[tuple[str, str]]:
    stage_type = stages.get(stage.type)
    if stage_type is None:
        return [(f"{stage.path}.type", f"unknown stage type {stage.type!r}; "
                                       f"{stages.suggest(stage.type)}"
                                       "'debian-forge stages' lists them")]
    base = _path_parts(stage.path)
    problems = _schema_problems(stage.options, stage_type.options_schema(), base + ["options"])
    if stage.inputs and stage_type.inputs is None:
        problems.append((f"{stage.path}.inputs", f"{stage.type} takes no inputs"))
    elif stage_type.inputs is not None:
        problems += _schema_problems(stage.inputs, stage_type.inputs, base + ["inputs"])
    for index, mount in enumerate(stage.mounts):
        if mount["source"] not in stage.devices:
            problems.append((f"{stage.path}.mounts[{index}].source",
                             f"no device named {mount['source']!r} in this stage's devices "
                             f"({', '.join(stage.devices) or 'none'})"))
        elif "partition" in mount and not stage.devices[mount["source"]]["options"].get(
                "partscan"):
            problems.append((f"{stage.path}.mounts[{index}].partition",
                             f"device {mount['source']!r} needs \"partscan\": true to have "
                             "partitions"))
    sources = manifest.curl_items()
    inline = manifest.sources.get("org.osbuild.inline", {}).get("items", {})
    for name, item in stage.inputs.items():
        where = f"{stage.path}.inputs.{name}.references"
        for ref in _reference_keys(item):
            if item["origin"] == "org.osbuild.pipeline":
                if _pipeline_name(ref) not in names:
                    problems.append((where, f"no pipeline named {_pipeline_name(ref)!r} "
                                            f"(pipelines: {', '.join(names)})"))
            elif ref not in sources and ref not in inline:
                problems.append((where, f"{ref} is not an item of the manifest's sources"))
    return problems


def _path_parts(path: str) -> list[Any]:
    """`.pipelines[0].stages[2]` → ['pipelines', 0, 'stages', 2]."""
    parts: list[Any] = []
    for chunk in path.strip(".").split("."):
        name, *indexes = chunk.split("[")
        parts.append(name)
        parts += [int(i.rstrip("]")) for i in indexes]
    return parts


def _find_cycle(manifest: Manifest) -> list[str] | None:
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(name: str) -> list[str] | None:
        if state.get(name) == 2:
            return None
        if state.get(name) == 1:
            return stack[stack.index(name):] + [name]
        state[name] = 1
        stack.append(name)
        for ref in manifest.pipeline(name).references():
            found = visit(ref)
            if found:
                return found
        stack.pop()
        state[name] = 2
        return None

    for pipeline in manifest.pipelines:
        found = visit(pipeline.name)
        if found:
            return found
    return None
