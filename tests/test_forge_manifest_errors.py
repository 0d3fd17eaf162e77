"""Bad manifests: every mistake is reported with its JSON path and exit status 2, before
anything runs, never with a traceback."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import FORGE, REPO

from debian_forge.manifest import ManifestError, parse

BOOT = {"type": "org.osbuild.debootstrap", "options": {"suite": "bookworm"}}
TREE_INPUT = {"tree": {"type": "org.osbuild.tree", "origin": "org.osbuild.pipeline",
                       "references": ["name:os"]}}
SHA = "sha256:" + "0" * 64


def manifest(*pipelines, **top) -> str:
    return json.dumps({"version": "2", "pipelines": list(pipelines), **top})


def os_pipeline(*stages) -> dict:
    return {"name": "os", "stages": [BOOT, *stages]}


BAD = [
    ("not JSON", '{"version": "2", "pipelines": [}', ".", "not valid JSON"),
    ("wrong version", json.dumps({"version": "1", "pipelines": [os_pipeline()]}),
     ".version", "expected one of 2"),
    ("no pipelines", json.dumps({"version": "2"}), ".pipelines", "required"),
    ("empty pipelines", json.dumps({"version": "2", "pipelines": []}), ".pipelines",
     "at least 1"),
    ("misspelled top-level key", manifest(os_pipeline(), pipline=[]), ".pipline", "unknown key"),
    ("pipeline without name", manifest({"stages": [BOOT]}), ".pipelines[0].name", "required"),
    ("unknown stage type", manifest(os_pipeline({"type": "org.example.magic"})),
     ".pipelines[0].stages[1].type", "unknown stage type"),
    ("misspelled stage type", manifest(os_pipeline({"type": "org.osbuild.hostnam",
                                                    "options": {"hostname": "a"}})),
     ".pipelines[0].stages[1].type", "did you mean 'org.osbuild.hostname'"),
    ("missing required option", manifest({"name": "os", "stages": [
        {"type": "org.osbuild.debootstrap", "options": {}}]}),
     ".pipelines[0].stages[0].options.suite", "required"),
    ("bad package name", manifest(os_pipeline({"type": "org.osbuild.apt",
                                               "options": {"packages": ["vim", "Bad Name"]}})),
     ".pipelines[0].stages[1].options.packages[1]", "Debian package name"),
    ("misspelled option", manifest({"name": "os", "stages": [
        {"type": "org.osbuild.debootstrap", "options": {"suite": "bookworm",
                                                        "varient": "minbase"}}]}),
     ".pipelines[0].stages[0].options.varient", "did you mean 'variant'"),
    ("unknown variant", manifest({"name": "os", "stages": [
        {"type": "org.osbuild.debootstrap", "options": {"suite": "bookworm",
                                                        "variant": "minibase"}}]}),
     ".pipelines[0].stages[0].options.variant", "did you mean 'minbase'"),
    ("bad hostname", manifest(os_pipeline({"type": "org.osbuild.hostname",
                                           "options": {"hostname": "Not_Valid"}})),
     ".pipelines[0].stages[1].options.hostname", "hostname"),
    ("unknown build pipeline", manifest(os_pipeline(), {"name": "image", "build": "name:tools",
                                                        "stages": []}),
     ".pipelines[1].build", "no pipeline named 'tools'"),
    ("input from unknown pipeline", manifest(os_pipeline(), {"name": "image", "stages": [
        {"type": "org.osbuild.tar", "options": {"filename": "a.tar"}, "inputs": {
            "tree": {**TREE_INPUT["tree"], "references": ["name:nothere"]}}}]}),
     ".pipelines[1].stages[0].inputs.tree.references", "no pipeline named 'nothere'"),
    ("cycle", manifest({"name": "a", "build": "name:b", "stages": []},
                       {"name": "b", "build": "name:a", "stages": []}),
     ".pipelines", "cycle: a → b → a"),
    ("duplicate pipeline name", manifest(os_pipeline(), os_pipeline()),
     ".pipelines[1].name", "more than once"),
    ("negative source epoch", manifest(os_pipeline(), **{"source-epoch": -1}),
     ".source-epoch", "at least 0"),
    ("inputs on a stage that takes none", manifest(os_pipeline(
        {"type": "org.osbuild.hostname", "options": {"hostname": "a"}, "inputs": TREE_INPUT})),
     ".pipelines[0].stages[1].inputs", "takes no inputs"),
    ("source reference not in sources", manifest(os_pipeline({
        "type": "org.osbuild.copy", "options": {"paths": [{"from": f"input://f/{SHA}",
                                                           "to": "tree:///etc/x"}]},
        "inputs": {"f": {"type": "org.osbuild.files", "origin": "org.osbuild.source",
                         "references": [SHA]}}})),
     ".pipelines[0].stages[1].inputs.f.references", "not an item of the manifest's sources"),
    ("bad source checksum", manifest(os_pipeline(), sources={
        "org.osbuild.curl": {"items": {"md5:abc": "http://example.org/x"}}}),
     ".sources.org.osbuild.curl.items.md5:abc", "sha256:<64 hex>"),
    ("tar without its tree input", manifest(os_pipeline(), {"name": "image", "stages": [
        {"type": "org.osbuild.tar", "options": {"filename": "a.tar"}}]}),
     ".pipelines[1].stages[0].inputs.tree", "required"),
    ("options not a mapping", manifest(os_pipeline({"type": "org.osbuild.hostname",
                                                    "options": ["x"]})),
     ".pipelines[0].stages[1].options", "expected a mapping"),
]


@pytest.mark.parametrize("text,path,words", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_manifest_names_the_path(text, path, words):
    """The error lists the JSON path of the mistake and says what is wrong."""
    with pytest.raises(ManifestError) as caught:
        parse(text, "m.json")
    problems = dict(caught.value.problems)
    assert path in problems, f"{path} not in {problems}"
    assert words in problems[path], problems[path]


def test_every_problem_is_reported_at_once():
    """Three mistakes in three stages: one error lists all three."""
    text = manifest({"name": "os", "stages": [
        {"type": "org.osbuild.debootstrap", "options": {}},
        {"type": "org.osbuild.hostname", "options": {"hostname": "A"}},
        {"type": "org.osbuild.nope"}]})
    with pytest.raises(ManifestError) as caught:
        parse(text)
    assert len(caught.value.problems) == 3


@pytest.mark.parametrize("text,path,words", [BAD[0][1:], BAD[9][1:], BAD[15][1:]],
                         ids=["json", "package", "cycle"])
def test_cli_exits_2_with_the_path_and_no_traceback(forge, tmp_path, text, path, words):
    """`debian-forge validate` and `build` print the path and exit 2."""
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    for command in (["validate", bad], ["build", bad]):
        proc = forge(*command)
        assert proc.returncode == 2, proc.stderr
        assert path in proc.stderr and words in proc.stderr
        assert "Traceback" not in proc.stderr


def test_missing_manifest_file_is_a_usage_error(forge, tmp_path):
    proc = forge("validate", tmp_path / "nothere.json")
    assert proc.returncode == 2 and "does not exist" in proc.stderr


@pytest.mark.integration
def test_unknown_package_fails_resolution_with_the_stage_path(forge, tmp_path):
    """apt cannot find the package: exit 2, the stage's path and apt's reason."""
    bad = tmp_path / "bad.json"
    bad.write_text(manifest(os_pipeline({"type": "org.osbuild.apt",
                                         "options": {"packages": ["no-such-package-xyz"]}})))
    proc = forge("resolve", bad)
    assert proc.returncode == 2, proc.stderr
    assert ".pipelines[0].stages[1].options" in proc.stderr
    assert "no-such-package-xyz" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_build_as_a_normal_user_is_refused_with_the_reason(tmp_path):
    """Not root: exit 2 and the reason, before anything is mounted or downloaded."""
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           *FORGE, "build", str(REPO / "examples/debian-minimal.json")],
                          capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "DEBIAN_FORGE_CACHE_DIR": str(tmp_path / "c")})
    assert proc.returncode == 2, proc.stderr
    assert "needs root" in proc.stderr and "Traceback" not in proc.stderr
