"""deb-mock builds .debs from source for real: the archive's hello, tiny packages made here."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from conftest import TEST_CACHE
from srcpkg import FORGE_A, FORGE_FAIL, FORGE_NET, make_source, unpacked_tree

pytestmark = pytest.mark.integration
SOURCES = TEST_CACHE / "sources"


def _changes_files(changes: Path) -> dict[str, str]:
    """name → sha256 from a .changes file's Checksums-Sha256."""
    from debian.deb822 import Changes

    with open(changes) as handle:
        return {f["name"]: f["sha256"] for f in Changes(handle)["Checksums-Sha256"]}


@pytest.fixture(scope="module")
def hello_build(deb_mock, bookworm, tmp_path_factory):
    """`deb-mock build hello`: the archive's source package, built once for the module."""
    result = tmp_path_factory.mktemp("hello")
    deb_mock("build", "hello", "--resultdir", str(result), "--deb-build-options", "nocheck",
             check=True, timeout=1800)
    return result


def test_hello_from_the_archive_builds_a_deb_with_changes_and_buildinfo(hello_build):
    """The .changes lists the .deb and .buildinfo with their real checksums; build.json has
    durations and the sha256 of every artifact."""
    debs = sorted(hello_build.glob("hello_*.deb"))
    assert debs, sorted(p.name for p in hello_build.iterdir())
    changes = next(hello_build.glob("*.changes"))
    listed = _changes_files(changes)
    for name, sha in listed.items():
        assert hashlib.sha256((hello_build / name).read_bytes()).hexdigest() == sha
    assert debs[0].name in listed and any(n.endswith(".buildinfo") for n in listed)
    record = json.loads((hello_build / "build.json").read_text())
    assert record["package"] == "hello" and record["ok"] and record["exit_status"] == 0
    assert set(record["durations"]) >= {"install", "build", "collect"}
    assert record["artifacts"][debs[0].name]["sha256"] == \
        hashlib.sha256(debs[0].read_bytes()).hexdigest()
    for log in ("build.log", "installed-packages.log", "root.log", "state.log"):
        assert (hello_build / log).stat().st_size > 0
    assert "dpkg-buildpackage" in (hello_build / "build.log").read_text()


def test_the_built_hello_installs_and_runs_in_a_fresh_environment(deb_mock, hello_build):
    env = ("-r", "debian-bookworm-amd64", "--uniqueext", "hello-check")
    deb = next(hello_build.glob("hello_*_amd64.deb"))
    deb_mock(*env, "init", check=True)
    deb_mock(*env, "copyin", str(deb), "/root/", check=True)
    deb_mock(*env, "chroot", "--", "dpkg", "-i", f"/root/{deb.name}", check=True)
    assert deb_mock(*env, "chroot", "--", "hello", check=True).stdout.strip() == "Hello, world!"
    deb_mock(*env, "scrub", "chroot", check=True)


def test_a_rebuild_takes_the_build_dependencies_from_the_cache(deb_mock, hello_build, tmp_path):
    deb_mock("build", "hello", "--resultdir", str(tmp_path), "--deb-build-options", "nocheck",
             check=True, timeout=1800)
    record = json.loads((tmp_path / "build.json").read_text())
    assert record["build_deps_cached"] is True


def test_a_build_has_no_network_unless_asked(deb_mock, tmp_path):
    """forge-net connects to the nameserver while building: it fails without network (exit
    10, its own message in build.log) and builds with --enable-network."""
    dsc = make_source(SOURCES, FORGE_NET)
    proc = deb_mock("build", str(dsc), "--resultdir", str(tmp_path / "off"))
    assert proc.returncode == 10, proc.stderr
    assert "forge-net: no network" in (tmp_path / "off/build.log").read_text()
    deb_mock("build", str(dsc), "--resultdir", str(tmp_path / "on"), "--enable-network",
             check=True)
    assert list((tmp_path / "on").glob("forge-net_*.deb"))


def test_a_failing_build_exits_10_with_the_end_of_its_log(deb_mock, tmp_path):
    proc = deb_mock("build", str(make_source(SOURCES, FORGE_FAIL)), "--resultdir", str(tmp_path))
    assert proc.returncode == 10
    assert "forge-fail: failing on purpose" in proc.stderr
    assert json.loads((tmp_path / "build.json").read_text())["ok"] is False


def test_a_source_tree_with_debian_builds(deb_mock, tmp_path):
    tree = unpacked_tree(tmp_path / "src", FORGE_A)
    deb_mock("build", str(tree), "--resultdir", str(tmp_path / "out"), check=True)
    assert list((tmp_path / "out").glob("forge-a_1.0_all.deb"))


def test_a_bad_source_exits_40(deb_mock, tmp_path):
    dsc = make_source(tmp_path / "bad", FORGE_A)
    tarball = next(dsc.parent.glob("*.tar.*"))
    tarball.write_bytes(tarball.read_bytes() + b"tampered")
    proc = deb_mock("build", str(dsc), "--resultdir", str(tmp_path / "out"))
    assert proc.returncode == 40 and "sha256" in proc.stderr


def test_two_builds_at_once_both_succeed(deb_mock, tmp_path):
    """-j 2 builds two sources in two environments at the same time."""
    proc = deb_mock("build", "-j", "2", str(make_source(SOURCES, FORGE_A)),
                    str(make_source(SOURCES, FORGE_NET)), "--resultdir", str(tmp_path),
                    "--enable-network")
    assert proc.returncode == 0, proc.stderr
    assert list(tmp_path.glob("forge-a*/forge-a_1.0_all.deb"))
    assert list(tmp_path.glob("forge-net*/forge-net_1.0_all.deb"))
    assert "2 of 2 built" in proc.stderr


def test_chain_builds_a_dependent_package_after_its_dependency(deb_mock, tmp_path):
    """`chain B A --recurse`: B needs A, fails first, and builds once A is in the local
    repository; the summary says both built."""
    from srcpkg import FORGE_B

    b, a = make_source(SOURCES, FORGE_B), make_source(SOURCES, FORGE_A)
    proc = deb_mock("chain", str(b), str(a), "--recurse", "--resultdir", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 of 2 built" in proc.stdout
    assert list((tmp_path / "repo").glob("forge-b_1.0_all.deb"))
    assert "Package: forge-a" in (tmp_path / "repo/Packages").read_text()


def test_chain_without_recurse_stops_at_the_first_failure_with_exit_4(deb_mock, tmp_path):
    b, a = make_source(SOURCES, FORGE_FAIL), make_source(SOURCES, FORGE_A)
    proc = deb_mock("chain", str(a), str(b), "--resultdir", str(tmp_path))
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "FAILED" in proc.stdout and "1 of 2 built" in proc.stdout


BUILD_HOOKS = {"preinit": "env", "postinit": "env", "prebuild": "env, build",
               "postdeps": "env, build", "postbuild": "env, build, result",
               "process_logs": "env, result_dir"}
# filerecorder: appends each hook point it sees to the file in its `log` option.
FILE_RECORDER = "\n".join([
    "from deb_mock.plugins import hookimpl",
    'NAME = "filerecorder"', "DEFAULT_ENABLED = False", 'DEFAULT_OPTIONS = {"log": "/dev/null"}',
    "def note(env, point):",
    '    with open(env.plugins.options(NAME)["log"], "a") as log:',
    '        log.write(point + "\\n")',
    *(f"@hookimpl\ndef {hook}({args}): note(env, {hook!r})" for hook, args in BUILD_HOOKS.items()),
]) + "\n"


def test_plugin_hooks_fire_in_the_documented_order_during_a_real_build(deb_mock, tmp_path):
    """A third-party plugin, installed through the entry point group, sees a real build's
    hook points in lifecycle order."""
    site = tmp_path / "site"
    (site / "filerecorder-1.0.dist-info").mkdir(parents=True)
    (site / "filerecorder.py").write_text(FILE_RECORDER)
    (site / "filerecorder-1.0.dist-info/METADATA").write_text(
        "Metadata-Version: 2.1\nName: filerecorder\nVersion: 1.0\n")
    (site / "filerecorder-1.0.dist-info/entry_points.txt").write_text(
        "[deb_mock.plugins]\nfilerecorder = filerecorder\n")
    log = tmp_path / "hooks.log"
    deb_mock("--enable-plugin", "filerecorder", "--plugin-option", f"filerecorder:log={log}",
             "build", str(make_source(SOURCES, FORGE_A)), "--resultdir", str(tmp_path / "out"),
             check=True, env={"PYTHONPATH": str(site)})
    assert log.read_text().split() == list(BUILD_HOOKS)
