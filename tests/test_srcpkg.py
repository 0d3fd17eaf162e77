"""tests/srcpkg.py makes real Debian source packages: dpkg-source unpacks each .dsc to its tree,
and dpkg-buildpackage builds them as the build user in a throwaway bookworm environment."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import TEST_CACHE
from srcpkg import (FORGE_A, FORGE_B, FORGE_FAIL, FORGE_NET, SourcePackage, make_source,
                    unpacked_tree)

pytestmark = pytest.mark.integration

WORK = TEST_CACHE / "source-packages"
UNIQUEEXT = "srcpkg"
# The dh flavour, architecture-dependent; its build installs debhelper first.
FORGE_DH = SourcePackage("forge-dh", architecture="any", use_debhelper=True,
                         build_script='install -d "$OUT/usr/share/forge-dh"\n'
                                      'echo built > "$OUT/usr/share/forge-dh/built"')
PACKAGES = (FORGE_A, FORGE_B, FORGE_NET, FORGE_FAIL, FORGE_DH)


def snapshot(tree: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path under `tree`: its mode and, for files, its bytes."""
    return {str(path.relative_to(tree)): (path.stat().st_mode,
                                          path.read_bytes() if path.is_file() else None)
            for path in sorted(tree.rglob("*"))}


def deb_listing(deb: Path) -> dict[str, str]:
    """`dpkg-deb -c`: path -> "mode owner/group"."""
    listing = {}
    for line in subprocess.run(["dpkg-deb", "-c", str(deb)], check=True, capture_output=True,
                               text=True).stdout.splitlines():
        mode, owner, *_, path = line.split()
        listing[path] = f"{mode} {owner}"
    return listing


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_dpkg_source_unpacks_the_dsc_to_the_tree(package, tmp_path):
    """`dpkg-source -x` of the .dsc gives back the tree it was made from, modes included."""
    dsc = make_source(WORK, package)
    subprocess.run(["dpkg-source", "-x", str(dsc), str(tmp_path / "x")], check=True,
                   capture_output=True)
    assert snapshot(tmp_path / "x") == snapshot(unpacked_tree(WORK, package))


def test_same_inputs_give_the_same_bytes(tmp_path):
    """A source package made afresh elsewhere is byte for byte the cached one."""
    cached = make_source(WORK, FORGE_B)
    fresh = make_source(tmp_path, FORGE_B)
    for name in (FORGE_B.dsc_name, FORGE_B.tarball_name):
        assert (fresh.parent / name).read_bytes() == (cached.parent / name).read_bytes()


def test_unchanged_inputs_reuse_the_dsc_and_changed_ones_remake_it(tmp_path):
    """make_source keeps a build while its inputs stay the same and remakes it when they change."""
    first = make_source(tmp_path, FORGE_A)
    made = first.stat().st_mtime_ns
    assert make_source(tmp_path, FORGE_A).stat().st_mtime_ns == made
    changed = dataclasses.replace(FORGE_A, files={"usr/bin/forge-a": "#!/bin/sh\necho changed\n"})
    assert make_source(tmp_path, changed) == first
    assert first.stat().st_mtime_ns != made
    script = unpacked_tree(tmp_path, changed) / "payload/usr/bin/forge-a"
    assert "echo changed" in script.read_text()


@pytest.fixture(scope="module")
def build_env(deb_mock, bookworm):
    """deb-mock on a throwaway environment of bookworm, scrubbed after the module."""

    def call(*args: str, **kwargs):
        return deb_mock("-r", bookworm, "--uniqueext", UNIQUEEXT, *args, **kwargs)

    call("init", check=True)
    yield call
    call("scrub", "chroot", check=True)


def build(build_env, package: SourcePackage, *network: str):
    """Copy the .dsc in and build it as the build user with `dpkg-buildpackage -us -uc -b`."""
    dsc = make_source(WORK, package)
    build_env("copyin", str(dsc), str(dsc.parent / package.tarball_name), "/build", check=True)
    script = (f"cd /build && rm -rf {package.tree_name} && dpkg-source -x {package.dsc_name} "
              f"&& cd {package.tree_name} && dpkg-buildpackage -us -uc -b")
    return build_env("chroot", *network, "--user", "--", "sh", "-c", script)


def copy_out(build_env, path: str, dest: Path) -> Path:
    build_env("copyout", path, str(dest), check=True)
    return dest / Path(path).name


@pytest.fixture(scope="module")
def forge_a_deb(build_env, tmp_path_factory):
    """FORGE_A built in the environment; the .deb stays in /build there, a copy is returned."""
    proc = build(build_env, FORGE_A)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return copy_out(build_env, "/build/forge-a_1.0_all.deb", tmp_path_factory.mktemp("forge-a"))


def test_forge_a_builds_without_debhelper_or_fakeroot_as_the_build_user(forge_a_deb):
    """The debhelper-free rules give a .deb of root-owned files with the executable kept."""
    assert deb_listing(forge_a_deb) == {"./": "drwxr-xr-x root/root",
                                        "./usr/": "drwxr-xr-x root/root",
                                        "./usr/bin/": "drwxr-xr-x root/root",
                                        "./usr/bin/forge-a": "-rwxr-xr-x root/root"}


def test_forge_b_needs_forge_a_installed_and_runs_it_at_build_time(build_env, forge_a_deb,
                                                                    tmp_path):
    """forge-b refuses to build without forge-a; with it installed, it ships forge-a's output."""
    refused = build(build_env, FORGE_B)
    assert refused.returncode != 0
    assert "Unmet build dependencies: forge-a" in refused.stdout + refused.stderr
    build_env("chroot", "--", "dpkg", "-i", f"/build/{forge_a_deb.name}", check=True)
    proc = build(build_env, FORGE_B)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    deb = copy_out(build_env, "/build/forge-b_1.0_all.deb", tmp_path)
    assert deb_listing(deb)["./usr/share/forge-b/from-a"] == "-rw-r--r-- root/root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path / "x")], check=True)
    assert (tmp_path / "x/usr/share/forge-b/from-a").read_text() == "forge-a\n"


def test_a_debhelper_package_builds_once_debhelper_is_installed(build_env, tmp_path):
    """use_debhelper gives a `dh $@` package (debhelper-compat 13) the build user builds."""
    build_env("install", "debhelper", check=True)
    proc = build(build_env, FORGE_DH)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listing = deb_listing(copy_out(build_env, "/build/forge-dh_1.0_amd64.deb", tmp_path))
    assert listing["./usr/share/forge-dh/built"] == "-rw-r--r-- root/root"
    assert listing["./usr/share/doc/forge-dh/VERSION"] == "-rw-r--r-- root/root"


def test_forge_net_fails_to_build_without_network(build_env):
    """deb-mock builds offline by default, and forge-net's build notices."""
    proc = build(build_env, FORGE_NET)
    assert proc.returncode != 0
    assert "forge-net: no network, failing" in proc.stdout


def host_reaches(address: str, port: int = 53) -> bool:
    try:
        socket.create_connection((address, port), timeout=3).close()
    except OSError:
        return False
    return True


def test_forge_net_builds_with_network(build_env):
    """With --enable-network the same package builds: its failure offline is the network's."""
    if not host_reaches("1.1.1.1"):
        pytest.skip("this host cannot reach 1.1.1.1 port 53")
    proc = build(build_env, FORGE_NET, "--enable-network")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "forge-net: reached" in proc.stdout


def test_forge_fail_fails_with_its_line(build_env):
    """forge-fail's build exits 1 after saying why, and the build fails with that line shown."""
    proc = build(build_env, FORGE_FAIL)
    assert proc.returncode != 0
    assert "forge-fail: failing on purpose" in proc.stdout
