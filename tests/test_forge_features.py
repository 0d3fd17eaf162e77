"""debian-forge's commands and guarantees: events, --break, build roots, interrupted and
concurrent builds, path confinement, the store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import FORGE, REPO, project_mounts

pytestmark = pytest.mark.integration

# The same bootstrap as examples/debian-minimal.json (same options and epoch, so the same ID):
# tests built on it find it in the shared store.
BOOT = {"type": "org.osbuild.debootstrap", "options": {"suite": "bookworm", "variant": "minbase"}}
EPOCH = 1700000000


def write_manifest(path: Path, *pipelines) -> Path:
    path.write_text(json.dumps({"version": "2", "source-epoch": EPOCH,
                                "pipelines": list(pipelines)}))
    return path


def tar_of(name: str, filename: str = "tree.tar", build: str | None = None) -> dict:
    pipeline = {"name": "image", "stages": [{
        "type": "org.osbuild.tar", "options": {"filename": filename},
        "inputs": {"tree": {"type": "org.osbuild.tree", "origin": "org.osbuild.pipeline",
                            "references": [f"name:{name}"]}}}]}
    if build:
        pipeline["build"] = f"name:{build}"
    return pipeline


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_json_events_give_pipeline_stage_id_duration_and_result(forge, minimal_build, tmp_path):
    """--json prints one JSON object per line: stage events with IDs, durations, results."""
    proc = forge("build", REPO / "examples/debian-minimal.json", "--json", "--export", "rootfs",
                 "--output-directory", tmp_path, check=True)
    stream = events(proc.stdout)
    stages = [e for e in stream if e["event"] == "stage"]
    assert stages and all(len(e["stage"]["id"]) == 64 and "duration" in e and e["result"]
                          for e in stages)
    assert stages[-1]["pipeline"]["name"] == "rootfs"
    assert stream[-1] == {**stream[-1], "event": "result", "result": "success"}


def test_stage_progress_is_reported_as_events_while_packages_install(forge, tmp_path):
    """A building apt stage emits stage-start, progress (packages set up) and its end."""
    manifest = write_manifest(tmp_path / "m.json", {"name": "os", "stages": [
        BOOT, {"type": "org.osbuild.apt", "options": {"packages": ["python3-minimal"]}},
        {"type": "org.osbuild.hostname", "options": {"hostname": f"h{uuid.uuid4().hex[:8]}"}}]})
    proc = forge("build", manifest, "--json", "--store", tmp_path / "store", check=True)
    stream = events(proc.stdout)
    kinds = [(e["event"], e.get("stage", {}).get("name")) for e in stream]
    assert ("stage-start", "org.osbuild.apt") in kinds
    assert any(e["event"] == "progress" and e.get("stage", {}).get("name") == "org.osbuild.apt"
               for e in stream)


def test_a_pipeline_tree_is_the_build_root_of_another(forge, minimal_build, tmp_path):
    """With build: name:build the tar stage runs the build pipeline's tar: a build root
    without tar fails naming the command, a Debian one works."""
    nothing = {"name": "empty", "stages": [
        {"type": "org.osbuild.mkdir", "options": {"paths": [{"path": "/srv"}]}}]}
    good = write_manifest(tmp_path / "good.json", {"name": "build", "stages": [BOOT]}, nothing,
                          tar_of("empty", build="build"))
    proc = forge("build", good, "--export", "image", "--output-directory", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out/image/tree.tar").stat().st_size > 0
    bad = write_manifest(tmp_path / "bad.json", nothing, tar_of("empty", build="empty"))
    proc = forge("build", bad)
    assert proc.returncode == 10, proc.stderr
    assert "org.osbuild.tar" in proc.stderr and "command `tar" in proc.stderr


def test_break_opens_a_shell_in_the_stage_sandbox(forge, minimal_build, tmp_path):
    """--break STAGE runs a shell inside the stage's tree first; the build then goes on."""
    manifest = write_manifest(tmp_path / "m.json", {"name": "os", "stages": [
        BOOT, {"type": "org.osbuild.hostname", "options": {"hostname": "brk"}}]})
    proc = forge("build", manifest, "--break", "org.osbuild.hostname",
                 "--store", tmp_path / "store", input="cat /etc/debian_version; hostname\nexit\n")
    assert proc.returncode == 0, proc.stderr
    assert "12." in proc.stdout and "debian-forge" in proc.stdout
    assert "--break" in proc.stderr


def test_sigkill_during_apt_then_rerun_resumes_and_leaves_nothing(forge, tmp_path, cache_env):
    """SIGKILL while apt installs: no mount is left; the rerun reuses the bootstrap and
    finishes; the store holds no half-written layer."""
    manifest = write_manifest(tmp_path / "m.json", {"name": "os", "stages": [
        BOOT, {"type": "org.osbuild.apt", "options": {"packages": ["python3", "perl"]}}]})
    store = tmp_path / "store"
    proc = subprocess.Popen([*FORGE, "build", str(manifest), "--json", "--store", str(store)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, **cache_env})
    try:
        for line in proc.stdout:
            event = json.loads(line)
            if event["event"] == "stage-start" and event["stage"]["name"] == "org.osbuild.apt":
                break
        else:
            pytest.fail("the apt stage never started")
        time.sleep(1.5)
        assert proc.poll() is None, "the apt stage ended before the kill"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.5)  # children die with their parent (PR_SET_PDEATHSIG)
    assert not project_mounts()
    rerun = forge("build", manifest, "--store", store, "--output-directory", tmp_path / "out",
                  check=True)
    stages = json.loads((tmp_path / "out/build.json").read_text())["stages"]
    assert [(s["type"], s["cached"]) for s in stages] == [("org.osbuild.debootstrap", True),
                                                          ("org.osbuild.apt", False)]
    assert not list((store / "tmp").glob("stage*")), rerun.stderr
    assert not project_mounts()


def test_two_builds_of_one_manifest_at_once_both_succeed(forge, cache_env, tmp_path):
    """Concurrent builds share the store: one builds each stage, the other waits and reuses
    it; both export the same tarball and the store holds each layer once."""
    manifest = write_manifest(tmp_path / "m.json", {"name": "os", "stages": [BOOT]},
                              tar_of("os"))
    store = tmp_path / "store"
    procs = [subprocess.Popen([*FORGE, "build", str(manifest), "--store", str(store), "--export",
                               "image", "--output-directory", str(tmp_path / f"out{i}")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, **cache_env}) for i in range(2)]
    results = [(p.wait(timeout=900), p.stderr.read()) for p in procs]
    assert [code for code, _ in results] == [0, 0], results
    tarballs = [(tmp_path / f"out{i}/image/tree.tar").read_bytes() for i in range(2)]
    assert tarballs[0] == tarballs[1]
    layers = sorted(p.name for p in (store / "layers").iterdir())
    assert len(layers) == 2 and all((store / "layers" / l / "layer.json").exists() for l in layers)
    records = [json.loads((tmp_path / f"out{i}/build.json").read_text()) for i in range(2)]
    built = [s for r in records for s in r["stages"] if not s["cached"]]
    assert len(built) == 2  # each stage built by exactly one of the two


def test_paths_leaving_the_tree_are_refused(forge, minimal_build, tmp_path):
    """A copy to tree:///../.. is a user error (exit 2, the stage's path named); through an
    absolute symlink it stays inside the tree."""
    marker = f"forge-escape-{uuid.uuid4().hex[:8]}"
    escape = write_manifest(tmp_path / "escape.json", {"name": "os", "stages": [BOOT, {
        "type": "org.osbuild.copy",
        "options": {"paths": [{"content": "x", "to": f"tree:///../../tmp/{marker}"}]}}]})
    proc = forge("build", escape, "--store", tmp_path / "store")
    assert proc.returncode == 2, proc.stderr
    assert ".pipelines[0].stages[1]" in proc.stderr and "Traceback" not in proc.stderr
    assert not Path("/tmp", marker).exists()
    via_link = write_manifest(tmp_path / "link.json", {"name": "os", "stages": [
        BOOT,
        {"type": "org.osbuild.script", "options": {"script": "ln -s / /etc/evil"}},
        {"type": "org.osbuild.copy",
         "options": {"paths": [{"content": "x", "to": f"tree:///etc/evil/tmp/{marker}"}]}}]},
        tar_of("os"))
    proc = forge("build", via_link, "--store", tmp_path / "store", "--export", "image",
                 "--output-directory", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert not Path("/tmp", marker).exists()
    listing = subprocess.run(["tar", "-tf", tmp_path / "out/image/tree.tar"],
                             capture_output=True, text=True).stdout
    assert f"./tmp/{marker}" in listing


def test_stages_lists_types_and_prints_a_schema(forge):
    """`stages` lists every stage with its summary; `stages NAME` documents one."""
    listing = forge("stages", check=True).stdout
    for name in ("org.osbuild.debootstrap", "org.osbuild.apt", "org.osbuild.tar",
                 "org.osbuild.users", "org.osbuild.script"):
        assert name in listing
    page = forge("stages", "org.osbuild.hostname", check=True).stdout
    assert page.startswith("# org.osbuild.hostname") and "`hostname`" in page
    schema = json.loads(forge("stages", "org.osbuild.tar", "--json", check=True).stdout)
    assert "filename" in schema["options"]["required"]
    proc = forge("stages", "org.osbuild.hostnme")
    assert proc.returncode == 2 and "did you mean 'org.osbuild.hostname'" in proc.stderr


def test_store_ls_du_and_gc(forge, minimal_build, tmp_path):
    """The store commands list layers with what made them, sum their size and evict."""
    manifest = write_manifest(tmp_path / "m.json", {"name": "os", "stages": [
        {"type": "org.osbuild.mkdir", "options": {"paths": [{"path": "/srv"}]}}]})
    store = tmp_path / "store"
    forge("build", manifest, "--store", store, check=True)
    listing = forge("store", "ls", "--store", store, check=True).stdout
    assert "org.osbuild.mkdir os" in listing
    assert "1 layers" in forge("store", "du", "--store", store, check=True).stdout
    assert "removed 1 layers" in forge("store", "gc", "--max-size", "0", "--store", store,
                                       check=True).stdout
    assert "0 layers" in forge("store", "du", "--store", store, check=True).stdout


def test_a_failing_stage_names_itself_and_the_next_run_resumes(forge, minimal_build, tmp_path):
    """A failing script: exit 10 with the stage, its ID, the command and its log's tail; the
    bootstrap before it stays in the store and the fixed manifest reuses it."""
    token = uuid.uuid4().hex[:8]
    failing = write_manifest(tmp_path / "fail.json", {"name": "os", "stages": [BOOT, {
        "type": "org.osbuild.script",
        "options": {"script": f"echo about to fail {token}; false"}}]})
    proc = forge("build", failing, "--output-directory", tmp_path / "out")
    assert proc.returncode == 10, proc.stderr
    assert "org.osbuild.script" in proc.stderr and ".pipelines[0].stages[1]" in proc.stderr
    assert f"about to fail {token}" in proc.stderr and "ID " in proc.stderr
    fixed = write_manifest(tmp_path / "fixed.json", {"name": "os", "stages": [BOOT, {
        "type": "org.osbuild.script", "options": {"script": f"echo fixed {token}"}}]})
    forge("build", fixed, "--output-directory", tmp_path / "out2", check=True)
    stages = json.loads((tmp_path / "out2/build.json").read_text())["stages"]
    assert [(s["type"], s["cached"]) for s in stages] == [("org.osbuild.debootstrap", True),
                                                          ("org.osbuild.script", False)]


def test_files_from_inline_sources_are_copied_into_the_tree(forge, minimal_build, tmp_path):
    """An org.osbuild.inline source, given to the copy stage as a files input, lands in the
    tree with its mode."""
    import base64
    import hashlib

    data = f"welcome {uuid.uuid4().hex}\n".encode()
    checksum = "sha256:" + hashlib.sha256(data).hexdigest()
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({
        "version": "2", "source-epoch": EPOCH,
        "sources": {"org.osbuild.inline": {"items": {
            checksum: {"encoding": "base64", "data": base64.b64encode(data).decode()}}}},
        "pipelines": [{"name": "os", "stages": [BOOT, {
            "type": "org.osbuild.copy",
            "inputs": {"motd": {"type": "org.osbuild.files", "origin": "org.osbuild.source",
                                "references": [checksum]}},
            "options": {"paths": [{"from": f"input://motd/{checksum}", "to": "tree:///etc/motd",
                                   "mode": "0640"}]}}]}, tar_of("os")]}))
    forge("build", manifest, "--export", "image", "--output-directory", tmp_path / "out",
          check=True)
    import tarfile

    with tarfile.open(tmp_path / "out/image/tree.tar") as tar:
        member = tar.getmember("./etc/motd")
        assert tar.extractfile(member).read() == data and member.mode == 0o640


def test_no_cache_builds_every_stage_and_keeps_the_store_as_it_was(forge, minimal_build,
                                                                   tmp_path, cache_env):
    """--no-cache runs every stage (none cached) and adds nothing to the store."""
    store = Path(cache_env["DEBIAN_FORGE_CACHE_DIR"]) / "store" / "layers"
    before = {p.name for p in store.iterdir()}
    manifest = write_manifest(tmp_path / "m.json", {"name": "os", "stages": [
        {"type": "org.osbuild.mkdir", "options": {"paths": [{"path": "/srv/nc", "parents": True}]}}]})
    forge("build", manifest, "--no-cache", "--output-directory", tmp_path / "out", check=True)
    stages = json.loads((tmp_path / "out/build.json").read_text())["stages"]
    assert stages and not any(s["cached"] for s in stages)
    assert {p.name for p in store.iterdir()} <= before | set()


def test_sigterm_mid_stage_exits_130_and_cleans_up(forge, tmp_path, cache_env):
    """SIGTERM while mmdebstrap runs: exit 130, no mount, no temporary stage directory."""
    manifest = write_manifest(tmp_path / "m.json", {"name": "os", "stages": [BOOT]})
    store = tmp_path / "store"
    proc = subprocess.Popen([*FORGE, "build", str(manifest), "--json", "--store", str(store)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **cache_env})
    try:
        for line in proc.stdout:
            if json.loads(line)["event"] == "stage-start":
                break
        time.sleep(2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "terminated" in proc.stderr.read()
    assert not project_mounts()
    assert not list((store / "tmp").iterdir())
    assert not (store / "layers").exists() or not list((store / "layers").iterdir())
