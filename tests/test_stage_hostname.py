"""org.osbuild.hostname on a real Debian tree."""

import jsonschema
import pytest

from debian_forge import stages

pytestmark = pytest.mark.integration


def test_hostname_is_written_and_resolves_locally(stage_runner):
    tree = stage_runner.run("org.osbuild.hostname", {"hostname": "web1.example.org"})
    assert tree.read_text("/etc/hostname") == "web1.example.org\n"
    assert "127.0.1.1\tweb1.example.org web1\n" in tree.read_text("/etc/hosts")
    assert tree.read_text("/etc/hosts").startswith("127.0.0.1")


def test_hostname_schema_refuses_an_invalid_name():
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"hostname": "Bad_Name"},
                            stages.get("org.osbuild.hostname").options_schema())
