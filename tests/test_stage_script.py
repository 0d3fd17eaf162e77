"""org.osbuild.script on a real Debian tree: inside the tree, no network, -e for shells."""

import os

import jsonschema
import pytest

from debian_forge import stages
from debian_forge.context import StageCommandFailed, StageError

pytestmark = pytest.mark.integration


def test_the_script_runs_inside_the_tree(stage_runner):
    """The script reads the tree's /etc/debian_version and its output file appears in the tree."""
    tree = stage_runner.run("org.osbuild.script", {
        "script": "cat /etc/debian_version > /root/seen-version\n"})
    assert tree.read_text("/root/seen-version") == tree.read_text("/etc/debian_version")
    assert tree.read_text("/root/seen-version").startswith("12.")


def test_the_script_has_no_network_only_loopback(stage_runner):
    """Only `lo` exists in the script's network namespace and an outside address is unreachable."""
    tree = stage_runner.run("org.osbuild.script", {"interpreter": "/bin/bash", "script": (
        "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' > /root/interfaces\n"
        "if (: > /dev/tcp/1.1.1.1/53) 2>/dev/null; then echo reachable; else echo unreachable;"
        " fi > /root/outside\n")})
    assert tree.read_text("/root/interfaces") == "lo\n"
    assert tree.read_text("/root/outside") == "unreachable\n"


def test_environment_variables_reach_the_script(stage_runner):
    """Each `environment` entry is set, next to the sandbox's own PATH."""
    tree = stage_runner.run("org.osbuild.script", {
        "script": 'printf "%s %s\\n" "$GREETING" "$PATH" > /root/env\n',
        "environment": {"GREETING": "hello forge"}})
    greeting, path = tree.read_text("/root/env").split("\n")[0].rsplit(" ", 1)
    assert greeting == "hello forge"
    assert "/usr/bin" in path.split(":")


def test_a_failing_command_stops_the_script_and_fails_the_stage(stage_runner):
    """Shells run with -e: after `false` nothing runs, and the stage raises StageCommandFailed."""
    with pytest.raises(StageCommandFailed):
        stage_runner.run("org.osbuild.script", {"script": "false\ntouch /root/after-false\n"})
    assert not stage_runner.tree.exists("/root/after-false")


def test_the_scripts_output_goes_to_the_stage_log(stage_runner):
    """What the script prints is in the stage log."""
    stage_runner.run("org.osbuild.script", {"script": "echo forge-script-says-hi\n"})
    assert "forge-script-says-hi" in stage_runner.log_path.read_text()


def test_another_interpreter_gets_the_script_without_the_shell_flag(stage_runner):
    """perl runs the file as a program (given -e it would run the path as code)."""
    tree = stage_runner.run("org.osbuild.script", {"interpreter": "/usr/bin/perl", "script": (
        'open(my $out, ">", "/root/perl-ran") or die;\nprint $out "perl $^V\\n";\n')})
    assert tree.read_text("/root/perl-ran").startswith("perl v5.")


def test_an_interpreter_missing_from_the_tree_is_a_stage_error(stage_runner):
    """A tree without python3 cannot run a python3 script; the error names the interpreter."""
    with pytest.raises(StageError, match="/usr/bin/python3"):
        stage_runner.run("org.osbuild.script", {"interpreter": "/usr/bin/python3",
                                                "script": "print('hi')\n"})


def test_the_script_cannot_write_to_the_hosts_tmp(stage_runner):
    """/tmp in the sandbox is private: a file written there is on neither the host nor the tree."""
    marker = f"forge-script-{os.getpid()}"
    stage_runner.run("org.osbuild.script", {"script": f"echo x > /tmp/{marker}\n"})
    assert not os.path.exists(f"/tmp/{marker}")
    assert not stage_runner.tree.exists(f"/tmp/{marker}")


def test_script_schema_refuses_a_missing_script_and_a_bad_variable_name():
    """`script` is required and environment names are shell variable names."""
    schema = stages.get("org.osbuild.script").options_schema()
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"interpreter": "/bin/bash"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"script": "true", "environment": {"BAD-NAME": "x"}}, schema)
