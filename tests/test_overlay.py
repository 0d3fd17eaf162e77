"""Real overlayfs mounts of store layers, and the copy fallback that must show the same tree."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from deb_mock import overlay
from deb_mock.overlay import (OverlayError, materialize, mount_overlay, mounts_under,
                              overlay_supported, unmount)
from deb_mock.store import Layer, Store

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting overlayfs needs root")


def lid(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


@pytest.fixture(autouse=True)
def nothing_stays_mounted(tmp_path):
    if not overlay_supported(tmp_path):
        pytest.skip(f"overlayfs with whiteouts is not usable on {tmp_path}")
    yield
    left = mounts_under(tmp_path)
    for point in reversed(left):  # do not leak into later tests, then fail
        subprocess.run(["umount", "-l", point], check=False)
    assert left == []


def snapshot(tree: Path) -> dict[str, tuple]:
    """What a user sees in a tree: type, permission bits and content of every path."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, tree)
            st = os.lstat(path)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", mode)
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", mode, Path(path).read_bytes())
            else:
                out[rel] = ("other", st.st_mode, st.st_rdev)
    return out


def overlay_bookkeeping(tree: Path) -> list[str]:
    """Whiteout nodes and trusted.overlay.* xattrs left in a tree."""
    found = []
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in [".", *dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if overlay.is_whiteout(st):
                found.append(f"whiteout {path}")
            for attr in os.listxattr(path, follow_symlinks=False):
                if attr.startswith("trusted.overlay."):
                    found.append(f"{attr} on {path}")
    return found


@contextmanager
def mounted(store: Store, top: str) -> Iterator[tuple[Path, Path]]:
    """A writable overlay of `top`'s chain; yields (merged, upper). Unmounted on exit."""
    with store.tempdir("env") as env, store.using([top]):
        upper, work, merged = env / "upper", env / "work", env / "merged"
        for d in (upper, work, merged):
            d.mkdir()
        mount_overlay([layer.tree for layer in store.chain(top)], upper, work, merged)
        try:
            yield merged, upper
        finally:
            unmount(merged)


def build_layer(store: Store, parent: str, name: str, change: Callable[[Path], None]) -> Layer:
    """Mount `parent`, let `change` edit the merged view, unmount and commit the upper dir."""
    with store.tempdir("env") as env, store.using([parent]):
        upper, work, merged = env / "upper", env / "work", env / "merged"
        for d in (upper, work, merged):
            d.mkdir()
        mount_overlay([layer.tree for layer in store.chain(parent)], upper, work, merged)
        try:
            change(merged)
        finally:
            unmount(merged)
        return store.commit(upper, lid(name), parent, meta={"name": name})


def make_base(store: Store) -> Layer:
    with store.tempdir("base") as tree:
        for rel, text in {"etc/a": "a", "etc/b": "b", "usr/lib/x/1": "1", "usr/lib/x/2": "2",
                          "usr/lib/y/keep": "k", "opt/dir/f": "f", "home/user/file": "u",
                          "usr/bin/sh": "#!"}.items():
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            (tree / rel).write_text(text)
        os.symlink("usr/bin", tree / "bin")
        os.symlink("../etc/a", tree / "usr/link")
        return store.commit(tree, lid("base"), None, full=True)


def test_deletions_in_a_committed_upper_hold_when_it_is_stacked_again(tmp_path):
    store = Store(tmp_path / "store")
    base = make_base(store)

    def second(m: Path) -> None:
        (m / "usr/bin/tool").write_text("tool")
        (m / "etc/b").unlink()
        (m / "etc/a").chmod(0o600)

    def third(m: Path) -> None:
        subprocess.run(["rm", "-rf", m / "usr/lib/x"], check=True)
        (m / "usr/lib/x").mkdir()  # re-created: opaque, hides 1 and 2
        (m / "usr/lib/x/3").write_text("3")
        (m / "usr/bin/tool").unlink()  # whiteout over the layer below, not the base

    l2 = build_layer(store, base.id, "second", second)
    l3 = build_layer(store, l2.id, "third", third)
    assert [layer.id for layer in store.chain(l3.id)] == [l3.id, l2.id, base.id]
    assert overlay.is_opaque(l3.tree / "usr/lib/x")
    assert overlay.is_whiteout(os.lstat(l3.tree / "usr/bin/tool"))

    # Edit the 3-layer stack, keep the upper dir, commit it as a fourth layer.
    with store.tempdir("env") as env, store.using([l3.id]):
        upper, work, merged = env / "upper", env / "work", env / "merged"
        for d in (upper, work, merged):
            d.mkdir()
        mount_overlay([layer.tree for layer in store.chain(l3.id)], upper, work, merged)
        try:
            (merged / "etc/a").unlink()
            subprocess.run(["rm", "-rf", merged / "opt/dir"], check=True)
            subprocess.run(["rm", "-rf", merged / "home/user"], check=True)
            (merged / "home/user").write_text("now a file")
            (merged / "usr/link").unlink()
            (merged / "usr/link").mkdir()
            # With redirect_dir=off the kernel refuses rename(2) of a lower dir (EXDEV); mv copies.
            subprocess.run(["mv", merged / "usr/lib/y", merged / "usr/lib/z"], check=True)
            (merged / "new").write_text("new")
            expected = snapshot(merged)
        finally:
            unmount(merged)
        l4 = store.commit(upper, lid("fourth"), l3.id)
    for gone in ("etc/a", "etc/b", "opt/dir", "home/user/file", "usr/lib/x/1", "usr/lib/y",
                 "usr/bin/tool"):
        assert gone not in expected
    assert expected["usr/lib/x/3"][2] == b"3" and expected["usr/lib/z/keep"][2] == b"k"

    with mounted(store, l4.id) as (merged, _):
        assert snapshot(merged) == expected
    for layer in store.chain(l4.id):
        attrs = [a for a in overlay_bookkeeping(layer.tree)
                 if "redirect" in a or "metacopy" in a]
        assert attrs == [], "layers must not point into other layers"

    materialized = tmp_path / "copy"
    materialize([layer.tree for layer in store.chain(l4.id)], materialized)
    assert snapshot(materialized) == expected
    assert overlay_bookkeeping(materialized) == []


def test_a_stack_of_45_layers_with_long_store_paths_mounts(tmp_path):
    store = Store(tmp_path / "var/cache/debian-forge/store")
    with store.tempdir() as tree:
        (tree / "base").write_text("base")
        top = store.commit(tree, lid("layer-0"), None, full=True)
    for i in range(1, 45):
        with store.tempdir() as tree:
            (tree / f"f{i}").write_text(str(i))
            if i % 2 == 0:  # delete the file the layer below added
                os.mknod(tree / f"f{i - 1}", 0o600 | stat.S_IFCHR, os.makedev(0, 0))
            top = store.commit(tree, lid(f"layer-{i}"), top.id)
    chain = store.chain(top.id)
    assert len(chain) == 45
    assert len(":".join(str(layer.tree) for layer in chain)) > 4096  # too long for mount(2) as is
    expected = {"base"} | {f"f{i}" for i in range(2, 45, 2)}

    with mounted(store, top.id) as (merged, _):
        assert set(os.listdir(merged)) == expected
        assert (merged / "f44").read_text() == "44"
    materialize([layer.tree for layer in chain], tmp_path / "copy")
    assert set(os.listdir(tmp_path / "copy")) == expected


def test_mount_errors_carry_the_kernels_reason(tmp_path):
    for d in ("lower", "upper/work", "merged"):
        (tmp_path / d).mkdir(parents=True)
    with pytest.raises(OverlayError) as info:
        mount_overlay([tmp_path / "lower"], tmp_path / "upper", tmp_path / "upper/work",
                      tmp_path / "merged")
    message = str(info.value)
    assert message.startswith(f"cannot mount overlayfs on {tmp_path / 'merged'}")
    if os.access("/dev/kmsg", os.R_OK):
        assert "the kernel said: overlayfs:" in message and "workdir" in message
    with pytest.raises(OverlayError, match="lower layer .*/missing is not a directory"):
        mount_overlay([tmp_path / "missing"], tmp_path / "upper", tmp_path / "upper/work",
                      tmp_path / "merged")


def test_unmount_detaches_a_busy_mount_unless_told_not_to(tmp_path, monkeypatch):
    monkeypatch.setattr(overlay, "BUSY_RETRY_SECONDS", 0.1)
    for d in ("lower", "upper", "work", "merged"):
        (tmp_path / d).mkdir()
    (tmp_path / "lower/f").write_text("still readable")
    mount_overlay([tmp_path / "lower"], tmp_path / "upper", tmp_path / "work", tmp_path / "merged")
    with open(tmp_path / "merged/f") as busy:
        with pytest.raises(OverlayError, match="busy"):
            unmount(tmp_path / "merged", lazy_fallback=False)
        assert mounts_under(tmp_path) == [str(tmp_path / "merged")]
        unmount(tmp_path / "merged")
        assert mounts_under(tmp_path) == []
        assert busy.read() == "still readable"
    unmount(tmp_path / "merged")  # nothing mounted: not an error


def test_unmount_takes_nested_mounts_and_mounts_under_unescapes_spaces(tmp_path):
    for d in ("lower", "upper", "work", "with space", "l2", "u2", "w2"):
        (tmp_path / d).mkdir()
    (tmp_path / "lower/inner").mkdir()
    target = tmp_path / "with space"
    mount_overlay([tmp_path / "lower"], tmp_path / "upper", tmp_path / "work", target)
    mount_overlay([tmp_path / "l2"], tmp_path / "u2", tmp_path / "w2", target / "inner")
    assert mounts_under(tmp_path) == [str(target), str(target / "inner")]
    unmount(target)
    assert mounts_under(tmp_path) == []


def test_overlay_probe_leaves_nothing_behind(tmp_path):
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    overlay._supported.clear()
    assert overlay_supported(probe_dir)
    assert os.listdir(probe_dir) == []
    assert mounts_under(tmp_path) == []


def test_materialize_never_writes_through_a_symlink_in_the_lower_tree(tmp_path):
    """An absolute symlink in a lower layer points into the host when the tree is not mounted."""
    outside = tmp_path / "host-file"
    outside.write_text("host")
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    (lower / "etc").mkdir(parents=True)
    (upper / "etc").mkdir(parents=True)
    os.symlink(outside, lower / "etc/localtime")
    (upper / "etc/localtime").write_text("replaced")
    materialize([upper, lower], tmp_path / "copy")
    assert (tmp_path / "copy/etc/localtime").read_text() == "replaced"
    assert not (tmp_path / "copy/etc/localtime").is_symlink()
    assert outside.read_text() == "host"


def test_layer_paths_with_option_separators_mount(tmp_path):
    """',' and ':' split overlay options and layers; such paths go in as /proc/self/fd names."""
    lower, upper, work, merged = (tmp_path / n for n in ("lo:wer,1", "up,per", "wo:rk", "merged"))
    for d in (lower, upper, work, merged):
        d.mkdir()
    (lower / "f").write_text("x")
    mount_overlay([lower], upper, work, merged)
    try:
        assert (merged / "f").read_text() == "x"
        (merged / "g").write_text("y")
    finally:
        unmount(merged)
    assert (upper / "g").read_text() == "y"


def test_removing_a_tempdir_never_deletes_through_a_mount_left_inside(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "file").write_text("keep")
    store = Store(tmp_path / "store")
    with pytest.raises(RuntimeError):
        with store.tempdir("env") as tmp:
            (tmp / "bind").mkdir()
            subprocess.run(["mount", "--bind", precious, tmp / "bind"], check=True)
            raise RuntimeError("the caller forgot to unmount")
    assert not tmp.exists()
    assert (precious / "file").read_text() == "keep"
