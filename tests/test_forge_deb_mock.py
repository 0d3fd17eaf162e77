"""The integration: a manifest builds hello from source with deb-mock and ships that .deb."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile

import pytest

from conftest import REPO

pytestmark = pytest.mark.integration


def _member(tarball, name: str) -> bytes:
    with tarfile.open(tarball) as tar:
        return tar.extractfile(name).read()


def test_mock_build_example_ships_the_hello_it_built(forge, tmp_path):
    """examples/debian-mock-build.json: /usr/bin/hello in the exported tarball is the one in
    the .deb deb-mock built, and that .deb's sha256 is the one in deb-mock's build record."""
    out = tmp_path / "out"
    forge("build", REPO / "examples/debian-mock-build.json", "--export", "rootfs", "--export",
          "packages", "--output-directory", out, check=True, timeout=2400)
    deb = next((out / "packages").glob("hello_*_amd64.deb"))
    record = json.loads((out / "packages/hello.build.json").read_text())
    assert record["artifacts"][deb.name]["sha256"] == hashlib.sha256(deb.read_bytes()).hexdigest()
    assert record["ok"] and record["package"] == "hello"
    unpacked = tmp_path / "deb"
    subprocess.run(["dpkg-deb", "-x", deb, unpacked], check=True)
    shipped = _member(out / "rootfs/debian-with-hello.tar", "./usr/bin/hello")
    assert shipped == (unpacked / "usr/bin/hello").read_bytes()
    packages = {p["name"]: p["version"] for p in
                json.loads((out / "build.json").read_text())["exports"]["rootfs"]["packages"]}
    assert packages["hello"] == record["version"]


def test_deb_mock_stage_locks_the_source_package_by_sha256(forge, tmp_path):
    """Resolving locks hello's .dsc and tarballs, so the stage ID follows the source."""
    lock = json.loads(forge("resolve", REPO / "examples/debian-mock-build.json",
                            check=True).stdout)
    refs = lock["pipelines"][0]["stages"][0]["inputs"]["packages"]["references"]
    names = {r["metadata"]["name"] for r in refs.values()}
    assert names == {"hello"} and len(refs) >= 2
    urls = [lock["sources"]["org.osbuild.curl"]["items"][k]["url"] for k in refs]
    assert any(url.endswith(".dsc") for url in urls)
