"""The layered store: atomic commits, chains, crash-safe tmp dirs, locking and LRU eviction."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from deb_mock.locking import FileLock
from deb_mock.store import LayerNotFound, Store, StoreError, tree_size

ROOT = os.geteuid() == 0


def lid(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def commit_files(store: Store, name: str, files: dict[str, str], parent: str | None = None,
                 full: bool = False, size: int = 0):
    """Commit a layer holding `files` (plus `size` bytes of padding); its ID is sha256(name)."""
    with store.tempdir("test") as tmp:
        tree = tmp / "tree"
        tree.mkdir()
        for rel, text in files.items():
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            (tree / rel).write_text(text)
        if size:
            (tree / "padding").write_bytes(os.urandom(size))
        return store.commit(tree, lid(name), parent, meta={"name": name}, full=full)


def run_child(store_root: Path, body: str) -> subprocess.Popen:
    """A separate Python process with `store` opened on `store_root`; stdout is a pipe."""
    code = "import sys, time\nfrom pathlib import Path\nfrom deb_mock.store import Store\n" \
           f"store = Store(Path({str(store_root)!r}))\n" + textwrap.dedent(body)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def test_commit_then_get_and_chain_stop_at_first_full_layer(tmp_path):
    store = Store(tmp_path / "store")
    base = commit_files(store, "base", {"etc/os-release": "debian"}, full=True)
    mid = commit_files(store, "mid", {"usr/bin/a": "a"}, parent=base.id)
    flat = commit_files(store, "flat", {"etc/os-release": "debian", "usr/bin/a": "a"},
                        parent=mid.id, full=True)
    top = commit_files(store, "top", {"usr/bin/b": "b"}, parent=flat.id)

    got = store.get(mid.id)
    assert got == mid and got.parent == base.id and not got.full
    assert got.tree == tmp_path / "store" / "layers" / mid.id / "tree"
    assert (got.tree / "usr/bin/a").read_text() == "a"
    assert got.meta == {"name": "mid"}
    assert [layer.id for layer in store.chain(mid.id)] == [mid.id, base.id]
    assert [layer.id for layer in store.chain(top.id)] == [top.id, flat.id]
    assert store.has(top.id) and not store.has(lid("nothing"))
    assert os.listdir(store.tmp_dir) == []


def test_commit_renames_the_source_instead_of_copying_it(tmp_path):
    store = Store(tmp_path / "store")
    with store.tempdir() as tmp:
        (tmp / "big").write_bytes(b"x" * 4096)
        inode = os.stat(tmp / "big").st_ino
        layer = store.commit(tmp, lid("moved"), None)
    assert os.stat(layer.tree / "big").st_ino == inode
    assert not tmp.exists()
    assert layer.full  # no parent: the tree is complete


def test_missing_layer_is_a_key_error_naming_the_layer(tmp_path):
    store = Store(tmp_path / "store")
    with pytest.raises(KeyError):
        store.get(lid("missing"))
    with pytest.raises(LayerNotFound, match=lid("missing")):
        store.chain(lid("missing"))


def test_commit_refuses_a_missing_parent_and_a_bad_id(tmp_path):
    store = Store(tmp_path / "store")
    with store.tempdir() as tmp:
        with pytest.raises(StoreError, match="parent .* is not in the store"):
            store.commit(tmp, lid("orphan"), lid("nope"))
        assert tmp.is_dir()  # the caller's work is untouched
        with pytest.raises(StoreError, match="invalid layer ID"):
            store.commit(tmp, "../escape", None)


@pytest.mark.skipif(not ROOT, reason="whiteouts (mknod) and trusted.* xattrs need root")
def test_commit_keeps_whiteouts_and_opaque_dirs_intact(tmp_path):
    store = Store(tmp_path / "store")
    base = commit_files(store, "base", {"gone": "x", "dir/old": "x"}, full=True)
    with store.tempdir() as tmp:
        os.mknod(tmp / "gone", 0o600 | 0o020000, os.makedev(0, 0))
        (tmp / "dir").mkdir()
        os.setxattr(tmp / "dir", "trusted.overlay.opaque", b"y")
        layer = store.commit(tmp, lid("diff"), base.id)
    st = os.lstat(layer.tree / "gone")
    assert st.st_rdev == 0 and (st.st_mode & 0o170000) == 0o020000
    assert os.getxattr(layer.tree / "dir", "trusted.overlay.opaque") == b"y"


def test_commit_of_an_existing_id_discards_the_source_and_returns_the_layer(tmp_path):
    store = Store(tmp_path / "store")
    first = commit_files(store, "same", {"f": "first"}, full=True)
    second = commit_files(store, "same", {"f": "second"}, full=True)
    assert second == first
    assert (first.tree / "f").read_text() == "first"
    assert os.listdir(store.tmp_dir) == []


def test_two_processes_committing_the_same_id_get_one_layer(tmp_path):
    """Both commits are staged before either publishes (the store lock holds them back), so the
    rename race really happens; exactly one tree wins and both processes return it."""
    store = Store(tmp_path / "store")
    body = """
        with store.tempdir("src") as tmp:
            (tmp / "who").write_text(sys.argv[0] + str(time.monotonic()))
            layer = store.commit(tmp, "%s", None, full=True)
        print(layer.path, (layer.tree / "who").read_text())
    """ % lid("raced")
    with FileLock(store.root / "lock"):
        children = [run_child(store.root, body) for _ in range(2)]
        deadline = time.monotonic() + 10
        while len([n for n in os.listdir(store.tmp_dir) if n.startswith("commit-")
                   and not n.endswith(".lock")]) < 2:
            assert time.monotonic() < deadline, "children did not stage their commits"
            time.sleep(0.01)
    outputs = {child.communicate(timeout=10)[0] for child in children}
    assert all(child.returncode == 0 for child in children)
    assert len(outputs) == 1, outputs  # same path, same winning content
    assert os.listdir(store.layers_dir) == [lid("raced")]
    assert os.listdir(store.tmp_dir) == []


def test_tempdir_is_removed_on_exception(tmp_path):
    store = Store(tmp_path / "store")
    with pytest.raises(RuntimeError):
        with store.tempdir("work") as tmp:
            (tmp / "sub").mkdir()
            (tmp / "sub" / "f").write_text("x")
            raise RuntimeError("boom")
    assert not tmp.exists()
    assert os.listdir(store.tmp_dir) == []


def test_cleanup_stale_removes_tmp_dirs_of_killed_processes_only(tmp_path):
    store = Store(tmp_path / "store")
    body = """
        with store.tempdir("held") as tmp:
            (tmp / "data").write_text("x")
            print(tmp, flush=True)
            time.sleep(60)
    """
    killed, alive = run_child(store.root, body), run_child(store.root, body)
    try:
        killed_dir = Path(killed.stdout.readline().strip())
        alive_dir = Path(alive.stdout.readline().strip())
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(timeout=10)
        assert killed_dir.is_dir()  # SIGKILL ran no cleanup

        assert store.cleanup_stale() == 1
        assert not killed_dir.exists() and not Path(f"{killed_dir}.lock").exists()
        assert (alive_dir / "data").read_text() == "x"
    finally:
        for child in (killed, alive):
            if child.poll() is None:
                child.kill()
            child.wait(timeout=10)
            child.stdout.close()
    # Once its owner is gone, a new Store (the constructor cleans up) removes it too.
    Store(store.root)
    assert os.listdir(store.tmp_dir) == []


def test_sizes_are_measured_at_commit_and_add_up(tmp_path):
    store = Store(tmp_path / "store")
    a = commit_files(store, "a", {"f": "x"}, full=True, size=100_000)
    b = commit_files(store, "b", {"g": "y"}, parent=a.id, size=50_000)
    sizes = {info.id: info.size for info in store.ls()}
    assert sizes[a.id] == tree_size(a.tree) >= 100_000
    assert sizes[b.id] == tree_size(b.tree) >= 50_000
    assert store.du() == sizes[a.id] + sizes[b.id]
    assert {info.id: info.parent for info in store.ls()} == {a.id: None, b.id: a.id}


def test_tree_size_counts_hard_links_once_and_does_not_follow_symlinks(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_bytes(os.urandom(64 * 1024))
    base = tree_size(tree)
    os.link(tree / "f", tree / "hardlink")
    os.symlink("/usr", tree / "usr")
    assert tree_size(tree) - base < 8192  # one symlink, no second copy, not the host's /usr


def test_gc_evicts_least_recently_used_first(tmp_path):
    store = Store(tmp_path / "store")
    old = commit_files(store, "old", {}, full=True, size=100_000)
    new = commit_files(store, "new", {}, full=True, size=100_000)
    os.utime(old.path / "last-used", (1, 1))
    evicted = store.gc(max_size=store.du() - 1)
    assert evicted == [old.id]
    assert store.has(new.id) and not store.has(old.id)
    assert os.listdir(store.tmp_dir) == []


def test_touch_and_using_record_use_for_lru(tmp_path):
    store = Store(tmp_path / "store")
    a = commit_files(store, "a", {}, full=True, size=50_000)
    b = commit_files(store, "b", {}, full=True, size=50_000)
    for layer in (a, b):
        os.utime(layer.path / "last-used", (1, 1))
    with store.using([a.id]):
        pass
    assert store.gc(max_size=store.du() - 1) == [b.id]


def test_gc_keeps_layers_in_use_and_their_ancestors(tmp_path):
    store = Store(tmp_path / "store")
    base = commit_files(store, "base", {}, full=True, size=100_000)
    child = commit_files(store, "child", {}, parent=base.id, size=100_000)
    other = commit_files(store, "other", {}, full=True, size=100_000)
    for layer, when in ((base, 1), (child, 2), (other, 3)):
        os.utime(layer.path / "last-used", (when, when))
    with store.using([child.id]) as layers:
        assert layers == [child]
        # The oldest are in use (child directly, base through child's chain): only other goes.
        assert store.gc(max_size=0) == [other.id]
        assert store.has(base.id) and store.has(child.id)
        with pytest.raises(StoreError, match="in use"):
            store.remove(base.id)
    assert sorted(store.gc(max_size=0)) == sorted([base.id, child.id])
    assert store.ls() == []


def test_gc_evicts_descendants_with_their_parent(tmp_path):
    store = Store(tmp_path / "store")
    base = commit_files(store, "base", {}, full=True, size=100_000)
    child = commit_files(store, "child", {}, parent=base.id, size=10_000)
    grandchild = commit_files(store, "grandchild", {}, parent=child.id, size=10_000)
    flat = commit_files(store, "flat", {}, parent=child.id, full=True, size=10_000)
    keep = commit_files(store, "keep", {}, full=True, size=10_000)
    for layer, when in ((child, 1), (base, 2), (grandchild, 3), (flat, 4), (keep, 5)):
        os.utime(layer.path / "last-used", (when, when))
    sizes = {info.id: info.size for info in store.ls()}
    # Evicting child alone frees enough; grandchild's chain contains it, flat's (full) does not.
    limit = store.du() - sizes[child.id]
    evicted = store.gc(max_size=limit)
    assert sorted(evicted) == sorted([child.id, grandchild.id])
    assert {info.id for info in store.ls()} == {base.id, flat.id, keep.id}
    assert store.du() <= limit


def test_remove_takes_descendants_and_refuses_when_one_is_in_use(tmp_path):
    store = Store(tmp_path / "store")
    base = commit_files(store, "base", {}, full=True)
    child = commit_files(store, "child", {}, parent=base.id)
    with store.using([child.id]):
        with pytest.raises(StoreError, match=f"layer {base.id}: it is in use"):
            store.remove(base.id)
        with pytest.raises(StoreError, match="in use"):
            store.remove(child.id)
    store.remove(base.id)
    assert store.ls() == []
    with pytest.raises(LayerNotFound):
        store.remove(base.id)
    with pytest.raises(StoreError, match="removed|not in the store"):
        with store.using([child.id]):
            pass


def test_using_blocks_removal_from_another_process(tmp_path):
    store = Store(tmp_path / "store")
    layer = commit_files(store, "base", {}, full=True)
    child = run_child(store.root, f"""
        with store.using(["{layer.id}"]):
            print("using", flush=True)
            time.sleep(60)
    """)
    try:
        assert child.stdout.readline().strip() == "using"
        with pytest.raises(StoreError, match="in use"):
            store.remove(layer.id)
        assert store.gc(max_size=0) == []
    finally:
        child.kill()
        child.wait(timeout=10)
        child.stdout.close()
    store.remove(layer.id)
    assert not store.has(layer.id)
