"""org.osbuild.apt through real builds: install, remove, recommends, exact locked versions."""

from __future__ import annotations

import json
import subprocess

import pytest

from test_forge_features import BOOT, tar_of, write_manifest

pytestmark = pytest.mark.integration


def _locked_names(lock: dict, stage: int) -> set[str]:
    refs = lock["pipelines"][0]["stages"][stage]["inputs"]["packages"]["references"]
    return {r["metadata"]["name"] for r in refs.values()}


def test_recommends_switch_decides_what_is_locked(forge, tmp_path):
    """recommends: true locks openssh-client's recommended xauth; the default does not."""
    names = []
    for recommends in (False, True):
        manifest = write_manifest(tmp_path / f"m{recommends}.json", {"name": "os", "stages": [
            BOOT, {"type": "org.osbuild.apt", "options": {"packages": ["openssh-client"],
                                                          "install_recommends": recommends}}]})
        names.append(_locked_names(json.loads(forge("resolve", manifest, check=True).stdout), 1))
    assert "openssh-client" in names[0] and "xauth" not in names[0]
    assert "xauth" in names[1]


def test_packages_already_in_the_tree_are_not_locked_again(forge, tmp_path):
    """An apt stage locks only what the tree lacks: bash is in minbase, hello is not."""
    manifest = write_manifest(tmp_path / "m.json", {"name": "os", "stages": [
        BOOT, {"type": "org.osbuild.apt", "options": {"packages": ["bash", "hello"]}}]})
    assert _locked_names(json.loads(forge("resolve", manifest, check=True).stdout), 1) == {"hello"}


def test_install_then_remove_in_a_later_stage(forge, minimal_build, tmp_path):
    """hello installed at its locked version, then removed while less is installed."""
    manifest = write_manifest(tmp_path / "m.json", {"name": "os", "stages": [
        BOOT,
        {"type": "org.osbuild.apt", "options": {"packages": ["hello"]}},
        {"type": "org.osbuild.apt", "options": {"packages": ["less"], "remove": ["hello"],
                                                "purge": True}}]}, tar_of("os"))
    out = tmp_path / "out"
    forge("build", manifest, "--export", "image", "--output-directory", out, check=True)
    listing = subprocess.run(["tar", "-tf", out / "image/tree.tar"], capture_output=True,
                             text=True, check=True).stdout.splitlines()
    assert "./usr/bin/less" in listing and "./usr/bin/hello" not in listing
    record = json.loads((out / "build.json").read_text())
    installed = {p["name"]: p["version"] for p in record["exports"]["image"]["packages"]}
    assert "hello" not in installed
    locked = record["lock"]["pipelines"][0]["stages"][2]["inputs"]["packages"]["references"]
    assert {r["metadata"]["name"]: r["metadata"]["version"] for r in locked.values()}["less"] \
        == installed["less"]
