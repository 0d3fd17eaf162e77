"""org.osbuild.apt.config writes sources, apt.conf snippets and preferences the tree's apt reads."""

import subprocess

import jsonschema
import pytest

from debian_forge import stages

pytestmark = pytest.mark.integration


def test_apt_config_files_are_read_by_the_trees_apt(stage_runner):
    """apt-config and apt-cache inside the tree see what the stage wrote."""
    tree = stage_runner.run("org.osbuild.apt.config", {
        "sources": {"backports": [{"uris": ["http://deb.example.org/debian"],
                                   "suites": ["bookworm-backports"], "components": ["main"],
                                   "signed-by": "/usr/share/keyrings/debian-archive-keyring.gpg"}]},
        "config": {"90forge": {"APT::Install-Recommends": False,
                               "DPkg::Pre-Invoke": ["echo one", "echo two"]}},
        "preferences": {"backports": [{"package": "*", "pin": "release a=bookworm-backports",
                                       "pin-priority": 100}]},
    })
    sources = tree.read_text("/etc/apt/sources.list.d/backports.sources")
    assert "Suites: bookworm-backports" in sources and "Types: deb" in sources
    dump = subprocess.run(["chroot", str(tree.root), "apt-config", "dump"], capture_output=True,
                          text=True, check=True).stdout
    assert 'APT::Install-Recommends "false";' in dump
    assert 'DPkg::Pre-Invoke:: "echo two";' in dump
    assert "Pin-Priority: 100" in tree.read_text("/etc/apt/preferences.d/backports")


def test_apt_config_refuses_a_file_name_with_a_slash():
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"config": {"../evil": {"A::B": "c"}}},
                            stages.get("org.osbuild.apt.config").options_schema())
