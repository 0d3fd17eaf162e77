"""The build record, `build.json` (DESIGN.md, 7): what was built, from what, how long it took.

Per stage: ID, duration, cache hit, log file. Then the locked manifest, the source epoch and,
per exported pipeline, the installed packages of its tree (an SBOM): read from the tree's dpkg
database, or — for a pipeline that packs another (a tarball) — from the tree it packed.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from debian_forge.manifest import Manifest
from debian_forge.runner import Runner

RECORD_VERSION = 1


def installed_packages(tree: Path) -> list[dict[str, str]] | None:
    """name/version/architecture of every installed package, None without a dpkg database."""
    status = tree / "var/lib/dpkg/status"
    if status.is_symlink() or not status.is_file():
        return None
    packages = []
    for stanza in status.read_text(errors="replace").split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ": " in line:
                key, value = line.split(": ", 1)
                fields[key] = value
        if fields.get("Status", "").endswith(" installed"):
            packages.append({"name": fields["Package"], "version": fields.get("Version", ""),
                             "architecture": fields.get("Architecture", "")})
    return sorted(packages, key=lambda p: (p["name"], p["architecture"]))


def pipeline_packages(runner: Runner, manifest: Manifest, name: str,
                      seen: set[str] | None = None) -> list[dict[str, str]]:
    """The packages of a pipeline's tree, else of the trees its stages take as input."""
    seen = seen if seen is not None else set()
    if name in seen:
        return []
    seen.add(name)
    with runner.tree(name) as tree:
        found = installed_packages(tree) if tree is not None else None
    if found is not None:
        return found
    packages: list[dict[str, str]] = []
    for stage in manifest.pipeline(name).stages:
        for item in stage.inputs.values():
            if item["origin"] == "org.osbuild.pipeline":
                for ref in item["references"]:
                    packages += pipeline_packages(runner, manifest, ref.removeprefix("name:"), seen)
    return packages


def write(path: Path, *, manifest_path: str, locked: Manifest, runner: Runner,
          exports: list[str], started: float, output_dir: Path | None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "version": RECORD_VERSION,
        "manifest": manifest_path,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration": round(time.time() - started, 3),
        "source-epoch": locked.source_epoch,
        "pipelines": {name: {"id": pid} for name, pid in runner.pipeline_ids.items()},
        "stages": [_stage(asdict(s), output_dir) for s in runner.result.stages],
        "exports": {name: {"path": str(output_dir / name) if output_dir else None,
                           "id": runner.pipeline_ids[name],
                           "packages": pipeline_packages(runner, locked, name)}
                    for name in exports},
        "lock": locked.to_json(),
    }
    for pipeline in locked.pipelines:
        epoch = locked.epoch(pipeline)
        if epoch is not None:
            record["pipelines"][pipeline.name]["source-epoch"] = epoch
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)
    return record


def _stage(data: dict[str, Any], output_dir: Path | None) -> dict[str, Any]:
    if data["report"] is None:  # most stages report nothing
        del data["report"]
    if data["log"] and output_dir is not None:
        try:
            data["log"] = str(Path(data["log"]).relative_to(output_dir))
        except ValueError:
            pass
    return data
