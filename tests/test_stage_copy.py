"""org.osbuild.copy on a real Debian tree, from files inputs, tree inputs and inline text."""

import hashlib
import os
import stat

import jsonschema
import pytest

from deb_mock.paths import PathEscape
from debian_forge import stages
from debian_forge.context import Input, StageError

pytestmark = pytest.mark.integration


def files_input(tmp_path, *contents: bytes) -> tuple[Input, list[str]]:
    """A files input holding `contents`, as the store would: checksum → host path."""
    store = tmp_path / "sources"
    store.mkdir(exist_ok=True)
    files, keys = {}, []
    for data in contents:
        key = "sha256:" + hashlib.sha256(data).hexdigest()
        (store / key).write_bytes(data)
        files[key] = store / key
        keys.append(key)
    return Input(name="files", type="org.osbuild.files", files=files), keys


def tree_input(path) -> Input:
    return Input(name="root", type="org.osbuild.tree", path=path)


def mode_of(tree, path):
    return stat.S_IMODE(os.lstat(tree.path(path)).st_mode)


def test_a_file_input_is_copied_with_the_mode_and_owner_asked_for(stage_runner, tmp_path):
    """A sha256-keyed source lands at `to` with mode 0600 and the given numeric owner."""
    files, (key,) = files_input(tmp_path, b"Welcome to the forge\n")
    tree = stage_runner.run("org.osbuild.copy", {"paths": [
        {"from": f"input://files/{key}", "to": "tree:///etc/motd", "mode": "0600",
         "owner": {"uid": 1000, "gid": 100}}]}, inputs={"files": files})
    assert tree.read_text("/etc/motd") == "Welcome to the forge\n"
    assert mode_of(tree, "/etc/motd") == 0o600
    info = os.stat(tree.path("/etc/motd"))
    assert (info.st_uid, info.st_gid) == (1000, 100)


def test_inline_content_is_written_as_a_0644_file(stage_runner):
    """A `content` item writes its text, mode 0644 unless a mode is given."""
    tree = stage_runner.run("org.osbuild.copy", {"paths": [
        {"content": "net.ipv4.ip_forward = 1\n", "to": "tree:///etc/sysctl.d/90-forward.conf"},
        {"content": "#!/bin/sh\necho hi\n", "to": "tree:///usr/local/bin/hi", "mode": 493}]})
    assert tree.read_text("/etc/sysctl.d/90-forward.conf") == "net.ipv4.ip_forward = 1\n"
    assert mode_of(tree, "/etc/sysctl.d/90-forward.conf") == 0o644
    assert mode_of(tree, "/usr/local/bin/hi") == 0o755


def test_a_directory_of_a_tree_input_is_copied_recursively_with_its_symlinks(stage_runner,
                                                                           tmp_path):
    """A directory from another pipeline's tree is copied whole, owners and symlinks kept."""
    source = tmp_path / "other-tree"
    (source / "srv/site/css").mkdir(parents=True)
    (source / "srv/site/index.html").write_text("<h1>hi</h1>\n")
    (source / "srv/site/css/main.css").write_text("body {}\n")
    os.symlink("index.html", source / "srv/site/home.html")
    os.chown(source / "srv/site/css/main.css", 33, 33)
    tree = stage_runner.run("org.osbuild.copy", {"paths": [
        {"from": "input://root/srv/site", "to": "tree:///srv/www"}]},
        inputs={"root": tree_input(source)})
    assert tree.read_text("/srv/www/css/main.css") == "body {}\n"
    assert os.stat(tree.path("/srv/www/css/main.css")).st_uid == 33
    assert os.readlink(tree.path("/srv/www") / "home.html") == "index.html"


def test_an_existing_directory_as_destination_receives_the_source_under_its_name(stage_runner,
                                                                              tmp_path):
    """As cp does, copying a file to an existing directory puts it inside."""
    source = tmp_path / "other-tree"
    (source / "etc").mkdir(parents=True)
    (source / "etc/forge.conf").write_text("answer = 42\n")
    tree = stage_runner.run("org.osbuild.copy", {"paths": [
        {"from": "input://root/etc/forge.conf", "to": "tree:///etc"}]},
        inputs={"root": tree_input(source)})
    assert tree.read_text("/etc/forge.conf") == "answer = 42\n"


def test_a_trailing_slash_merges_a_directorys_contents_into_the_tree(stage_runner, tmp_path):
    """`input://root/` copies the contents of the whole input tree over the tree's root."""
    source = tmp_path / "overlay"
    (source / "etc/default").mkdir(parents=True)
    (source / "etc/default/forge").write_text("ENABLED=yes\n")
    (source / "opt/tool").mkdir(parents=True)
    (source / "opt/tool/run").write_text("#!/bin/sh\n")
    tree = stage_runner.run("org.osbuild.copy", {"paths": [
        {"from": "input://root/", "to": "tree:///"}]}, inputs={"root": tree_input(source)})
    assert tree.read_text("/etc/default/forge") == "ENABLED=yes\n"
    assert tree.read_text("/opt/tool/run") == "#!/bin/sh\n"
    assert tree.exists("/etc/debian_version")  # merged, not replaced


def test_remove_destination_replaces_a_hard_linked_file_instead_of_writing_through(
        stage_runner):
    """With remove_destination the other name of a hard link keeps its old content."""
    stage_runner.tree.write_text("/etc/forge-a", "old\n")
    os.link(stage_runner.tree.path("/etc/forge-a"), stage_runner.tree.path("/etc/forge-b"))
    tree = stage_runner.run("org.osbuild.copy", {"paths": [
        {"content": "new\n", "to": "tree:///etc/forge-a", "remove_destination": True}]})
    assert tree.read_text("/etc/forge-a") == "new\n"
    assert tree.read_text("/etc/forge-b") == "old\n"


def test_an_unknown_input_is_a_stage_error_naming_it(stage_runner, tmp_path):
    """`from` naming an input the stage was not given fails with that name."""
    files, (key,) = files_input(tmp_path, b"x")
    with pytest.raises(StageError, match="no input 'sources'"):
        stage_runner.run("org.osbuild.copy", {"paths": [
            {"from": f"input://sources/{key}", "to": "tree:///etc/x"}]},
            inputs={"files": files})


def test_an_unknown_checksum_is_a_stage_error_naming_it(stage_runner, tmp_path):
    """A checksum the files input does not hold fails with that checksum."""
    files, _ = files_input(tmp_path, b"x")
    missing = "sha256:" + "0" * 64
    with pytest.raises(StageError, match=missing):
        stage_runner.run("org.osbuild.copy", {"paths": [
            {"from": f"input://files/{missing}", "to": "tree:///etc/x"}]},
            inputs={"files": files})


def test_a_path_missing_from_a_tree_input_is_a_stage_error(stage_runner, tmp_path):
    """A tree input without the named path fails naming it."""
    with pytest.raises(StageError, match="/srv/nothing"):
        stage_runner.run("org.osbuild.copy", {"paths": [
            {"from": "input://root/srv/nothing", "to": "tree:///srv/x"}]},
            inputs={"root": tree_input(tmp_path)})


def test_a_source_path_cannot_climb_out_of_its_input_tree(stage_runner, tmp_path):
    """`..` in `from` cannot reach outside the input's tree."""
    (tmp_path / "input").mkdir()
    with pytest.raises(PathEscape):
        stage_runner.run("org.osbuild.copy", {"paths": [
            {"from": "input://root/../../../etc/shadow", "to": "tree:///root/shadow"}]},
            inputs={"root": tree_input(tmp_path / "input")})
    assert not stage_runner.tree.exists("/root/shadow")


def test_a_destination_climbing_out_of_the_tree_is_refused(stage_runner):
    """`to: tree:///../../etc/x` raises PathEscape and writes nothing on the host."""
    with pytest.raises(PathEscape):
        stage_runner.run("org.osbuild.copy", {"paths": [
            {"content": "pwned\n", "to": "tree:///../../etc/forge-copy-escape"}]})
    assert not os.path.exists("/etc/forge-copy-escape")


def test_a_symlink_to_slash_in_the_tree_cannot_make_a_copy_write_to_the_host(stage_runner,
                                                                           tmp_path):
    """Through a tree symlink pointing to /, the copy lands in the tree's /etc, not the host's."""
    os.symlink("/", stage_runner.tree.path("/hostroot"))
    files, (key,) = files_input(tmp_path, b"inside\n")
    tree = stage_runner.run("org.osbuild.copy", {"paths": [
        {"from": f"input://files/{key}", "to": "tree:///hostroot/etc/forge-copy-test"}]},
        inputs={"files": files})
    assert tree.read_text("/etc/forge-copy-test") == "inside\n"
    assert not os.path.exists("/etc/forge-copy-test")


def test_merging_through_an_absolute_symlink_in_the_tree_stays_in_the_tree(stage_runner,
                                                                          tmp_path):
    """A tree symlink to an absolute host directory is followed inside the tree when merging."""
    host_dir = tmp_path / "host-dir"
    host_dir.mkdir()
    stage_runner.tree.path(str(host_dir)).mkdir(parents=True)
    stage_runner.tree.path("/opt/app").mkdir(parents=True)
    os.symlink(str(host_dir), stage_runner.tree.path("/opt/app/conf"))
    source = tmp_path / "overlay"
    (source / "opt/app/conf").mkdir(parents=True)
    (source / "opt/app/conf/app.ini").write_text("[app]\n")
    tree = stage_runner.run("org.osbuild.copy", {"paths": [
        {"from": "input://root/", "to": "tree:///"}]}, inputs={"root": tree_input(source)})
    assert list(host_dir.iterdir()) == []
    assert tree.read_text(f"{host_dir}/app.ini") == "[app]\n"  # the tree's own copy of that path


def test_copy_schema_refuses_an_item_with_both_from_and_content_and_a_plain_destination():
    """An item is either `from` or `content`, and `to` is a tree:/// URL."""
    schema = stages.get("org.osbuild.copy").options_schema()
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"paths": [{"from": "input://files/sha256:" + "0" * 64,
                                        "content": "x", "to": "tree:///etc/x"}]}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"paths": [{"content": "x", "to": "/etc/x"}]}, schema)


def test_copy_inputs_must_be_files_or_trees():
    """A manifest giving copy an input of another kind is refused, naming the input."""
    from debian_forge.manifest import ManifestError, from_json

    stage = {"type": "org.osbuild.copy",
             "options": {"paths": [{"from": "input://root/x", "to": "tree:///x"}]},
             "inputs": {"root": {"type": "org.osbuild.containers",
                                 "origin": "org.osbuild.source", "references": []}}}
    with pytest.raises(ManifestError) as caught:
        from_json({"version": "2", "pipelines": [{"name": "os", "stages": [stage]}]})
    assert ".pipelines[0].stages[0].inputs.root.type" in dict(caught.value.problems)