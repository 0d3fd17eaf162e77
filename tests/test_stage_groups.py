"""org.osbuild.groups on a real Debian tree."""

import subprocess

import jsonschema
import pytest

from debian_forge import stages
from debian_forge.context import StageError

pytestmark = pytest.mark.integration


def getent_group(tree, name):
    return subprocess.run(["chroot", str(tree.root), "getent", "group", name],
                          capture_output=True, text=True,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}).stdout


def test_groups_are_created_with_the_asked_gid(stage_runner):
    """A group with a gid gets exactly it; one without gets a free one from groupadd."""
    tree = stage_runner.run("org.osbuild.groups",
                            {"groups": {"web-admins": {"gid": 2500}, "auditors": {}}})
    assert getent_group(tree, "web-admins") == "web-admins:x:2500:\n"
    assert getent_group(tree, "auditors").startswith("auditors:x:")


def test_existing_group_with_the_same_gid_is_left_alone(stage_runner):
    """Asking again for a group that is already there (sudo, GID 27) changes nothing."""
    before = stage_runner.tree.read_text("/etc/group")
    tree = stage_runner.run("org.osbuild.groups", {"groups": {"sudo": {"gid": 27}, "adm": {}}})
    assert tree.read_text("/etc/group") == before


def test_existing_group_with_another_gid_is_an_error(stage_runner):
    """A group that exists with a different GID fails the stage, saying both GIDs."""
    with pytest.raises(StageError, match="'sudo' already exists with GID 27, not 4000"):
        stage_runner.run("org.osbuild.groups", {"groups": {"sudo": {"gid": 4000}}})


def test_gid_taken_by_another_group_is_an_error(stage_runner):
    """A new group cannot take the GID of an existing one."""
    with pytest.raises(StageError, match="group 'sudo' already has it"):
        stage_runner.run("org.osbuild.groups", {"groups": {"wheel": {"gid": 27}}})


def test_groups_schema_refuses_a_name_with_a_colon():
    """A ':' would break /etc/group, so the schema refuses such a name."""
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"groups": {"a:b": {}}},
                            stages.get("org.osbuild.groups").options_schema())
