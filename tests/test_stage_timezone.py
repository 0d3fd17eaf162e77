"""org.osbuild.timezone on a real Debian tree."""

import os
import shutil
import subprocess

import jsonschema
import pytest

from debian_forge import stages
from debian_forge.context import StageError

pytestmark = pytest.mark.integration


def test_zone_becomes_local_time_inside_the_tree(stage_runner):
    """After the stage, programs in the tree tell time in the chosen zone."""
    tree = stage_runner.run("org.osbuild.timezone", {"zone": "Asia/Kolkata"})
    date = subprocess.run(["chroot", str(tree.root), "date", "+%Z %z"], capture_output=True,
                          text=True, check=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert date.stdout == "IST +0530\n"
    assert tree.read_text("/etc/timezone") == "Asia/Kolkata\n"


def test_localtime_is_a_relative_symlink_into_zoneinfo(stage_runner):
    """/etc/localtime points at ../usr/share/zoneinfo/<zone>, replacing Debian's UTC link."""
    tree = stage_runner.run("org.osbuild.timezone", {"zone": "Europe/Berlin"})
    assert os.readlink(tree.root / "etc/localtime") == "../usr/share/zoneinfo/Europe/Berlin"


def test_unknown_zone_is_refused_with_close_matches(stage_runner):
    """A zone tzdata does not know fails, naming the zones it resembles."""
    with pytest.raises(StageError, match="Europe/Berlin"):
        stage_runner.run("org.osbuild.timezone", {"zone": "Europe/Berln"})
    assert os.readlink(stage_runner.tree.root / "etc/localtime") == "/usr/share/zoneinfo/Etc/UTC"


def test_files_beside_the_zones_are_not_zones(stage_runner):
    """zoneinfo's data tables and its link back to /etc/localtime are refused as zones."""
    for name in ("leapseconds", "localtime"):
        with pytest.raises(StageError, match=f"'{name}' is not"):
            stage_runner.run("org.osbuild.timezone", {"zone": name})


def test_tree_without_tzdata_is_told_to_install_it(stage_runner):
    """Without /usr/share/zoneinfo the error says to install tzdata."""
    shutil.rmtree(stage_runner.tree.path("/usr/share/zoneinfo"))
    with pytest.raises(StageError, match="install the package 'tzdata'"):
        stage_runner.run("org.osbuild.timezone", {"zone": "UTC"})


def test_timezone_schema_refuses_a_path_that_climbs_out():
    """'..' is not part of any zone name."""
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"zone": "../../etc/passwd"},
                            stages.get("org.osbuild.timezone").options_schema())
