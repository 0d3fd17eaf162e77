"""org.osbuild.mkdir on a real Debian tree."""

import os
import stat

import jsonschema
import pytest

from deb_mock.paths import PathEscape
from debian_forge import stages
from debian_forge.context import StageError

pytestmark = pytest.mark.integration


def mode_of(tree, path):
    return stat.S_IMODE(os.lstat(tree.path(path)).st_mode)


def test_directories_get_exactly_the_mode_asked_for_whatever_the_umask(stage_runner):
    """An integer mode and an octal string both set the directory's mode exactly."""
    old = os.umask(0o077)
    try:
        tree = stage_runner.run("org.osbuild.mkdir", {"paths": [
            {"path": "/srv/public", "mode": 0o775},
            {"path": "tree:///srv/shared", "mode": "1777"},
            {"path": "/srv/plain"},
        ]})
    finally:
        os.umask(old)
    assert mode_of(tree, "/srv/public") == 0o775
    assert mode_of(tree, "/srv/shared") == 0o1777
    assert mode_of(tree, "/srv/plain") == 0o755


def test_parents_creates_every_missing_directory_on_the_way(stage_runner):
    """With parents, missing ancestors are created with mode 0755 and the leaf with its mode."""
    tree = stage_runner.run("org.osbuild.mkdir", {"paths": [
        {"path": "/opt/vendor/app/data", "mode": "0700", "parents": True}]})
    assert mode_of(tree, "/opt/vendor") == 0o755
    assert mode_of(tree, "/opt/vendor/app") == 0o755
    assert mode_of(tree, "/opt/vendor/app/data") == 0o700


def test_a_missing_parent_without_parents_is_a_stage_error(stage_runner):
    """Without parents, a path whose parent does not exist fails and creates nothing."""
    with pytest.raises(StageError, match="parent directory does not exist"):
        stage_runner.run("org.osbuild.mkdir", {"paths": [{"path": "/opt/vendor/app"}]})
    assert not stage_runner.tree.exists("/opt/vendor")


def test_an_existing_directory_fails_unless_exist_ok_and_is_then_left_alone(stage_runner):
    """/etc exists: an error by default; with exist_ok it passes and keeps its mode."""
    with pytest.raises(StageError, match="already exists"):
        stage_runner.run("org.osbuild.mkdir", {"paths": [{"path": "/etc"}]})
    tree = stage_runner.run("org.osbuild.mkdir",
                            {"paths": [{"path": "/etc", "mode": "0700", "exist_ok": True}]})
    assert mode_of(tree, "/etc") == 0o755


def test_an_existing_file_is_an_error_even_with_exist_ok(stage_runner):
    """/etc/hostname is a file, so it cannot be accepted as a directory."""
    with pytest.raises(StageError, match="not a directory"):
        stage_runner.run("org.osbuild.mkdir",
                         {"paths": [{"path": "/etc/hostname", "exist_ok": True}]})


def test_a_symlink_to_slash_in_the_tree_keeps_mkdir_inside_the_tree(stage_runner):
    """A tree symlink pointing to / resolves to the tree's root, never the host's."""
    os.symlink("/", stage_runner.tree.path("/hostroot"))
    tree = stage_runner.run("org.osbuild.mkdir",
                            {"paths": [{"path": "/hostroot/forge-mkdir-test"}]})
    assert os.path.isdir(tree.path("/forge-mkdir-test"))
    assert not os.path.exists("/forge-mkdir-test")


def test_a_path_climbing_out_of_the_tree_is_refused(stage_runner):
    """`..` above the tree's root raises PathEscape and creates nothing on the host."""
    with pytest.raises(PathEscape):
        stage_runner.run("org.osbuild.mkdir",
                         {"paths": [{"path": "tree:///../../forge-mkdir-escape"}]})
    assert not os.path.exists("/forge-mkdir-escape")


def test_mkdir_schema_refuses_a_relative_path_and_a_non_octal_mode():
    """Paths must be absolute and string modes octal."""
    schema = stages.get("org.osbuild.mkdir").options_schema()
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"paths": [{"path": "srv/data"}]}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"paths": [{"path": "/srv/data", "mode": "0789"}]}, schema)
