"""Stage IDs like osbuild's (DESIGN.md, 5): same ID, same content.

A stage's ID is the sha256 of a canonical JSON of its type, its options (packages already
resolved into its inputs), the ID of the stage before it, the ID of its build root, its inputs'
IDs and the source epoch. A pipeline's ID is its last stage's ID (None when it has no stages).
"""

from __future__ import annotations

from dataclasses import dataclass

from deb_mock.ids import canonical_id
from debian_forge.manifest import Manifest, Stage

# Bump when the way stages are run changes what they produce: old layers are then not reused.
ENGINE_RECIPE = 2


@dataclass(frozen=True)
class StageKey:
    pipeline: str
    index: int


def input_id(item: dict, pipeline_ids: dict[str, str | None]) -> object:
    if item["origin"] == "org.osbuild.pipeline":
        refs = item["references"]
        names = list(refs) if isinstance(refs, (list, dict)) else []
        return {"pipelines": [pipeline_ids[name.removeprefix("name:")] for name in names]}
    # Sources are content-addressed already: their checksums (and metadata) are their identity.
    return {"type": item["type"], "references": item["references"]}


def compute(manifest: Manifest) -> tuple[dict[StageKey, str], dict[str, str | None]]:
    """Every stage's ID and every pipeline's ID."""
    stage_ids: dict[StageKey, str] = {}
    pipeline_ids: dict[str, str | None] = {}
    for pipeline in manifest.ordered():
        build_id = pipeline_ids[pipeline.build] if pipeline.build else None
        previous: str | None = None
        for stage in pipeline.stages:
            previous = stage_id(stage, previous, build_id, manifest.epoch(pipeline), pipeline_ids)
            stage_ids[StageKey(pipeline.name, stage.index)] = previous
        pipeline_ids[pipeline.name] = previous
    return stage_ids, pipeline_ids


def stage_id(stage: Stage, previous: str | None, build_id: str | None, epoch: int | None,
             pipeline_ids: dict[str, str | None]) -> str:
    data = {
        "recipe": ENGINE_RECIPE, "type": stage.type, "options": stage.options,
        "previous": previous, "build": build_id, "source-epoch": epoch,
        "inputs": {name: input_id(item, pipeline_ids) for name, item in stage.inputs.items()},
    }
    if stage.devices or stage.mounts:
        data.update(devices=stage.devices, mounts=stage.mounts)
    return canonical_id(data)
