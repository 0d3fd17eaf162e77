"""org.osbuild.locale on a real Debian tree."""

import subprocess

import jsonschema
import pytest

from debian_forge import stages
from debian_forge.context import StageError

pytestmark = pytest.mark.integration


def chroot(tree, *argv):
    return subprocess.run(["chroot", str(tree.root), *argv], capture_output=True, text=True,
                          check=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})


def test_locale_is_generated_and_becomes_the_default(stage_runner):
    """A Debian locale is compiled inside the tree and is what LANG names there."""
    tree = stage_runner.run("org.osbuild.locale", {"language": "en_US.UTF-8"})
    assert "en_US.utf8" in chroot(tree, "locale", "-a").stdout.split()
    assert "\nen_US.UTF-8 UTF-8\n" in tree.read_text("/etc/locale.gen")
    used = chroot(tree, "sh", "-c", ". /etc/default/locale && export LANG && locale charmap")
    assert (used.stdout, used.stderr) == ("UTF-8\n", "")


def test_builtin_locale_needs_no_generation(stage_runner):
    """C.UTF-8 is set without touching /etc/locale.gen."""
    before = stage_runner.tree.read_text("/etc/locale.gen")
    tree = stage_runner.run("org.osbuild.locale", {"language": "C.UTF-8"})
    assert "LANG=C.UTF-8\n" in tree.read_text("/etc/default/locale")
    assert tree.read_text("/etc/locale.gen") == before


def test_keyboard_layout_goes_to_etc_default_keyboard(stage_runner):
    """The keymap's layout is written as XKBLAYOUT, beside Debian's other defaults."""
    tree = stage_runner.run("org.osbuild.locale",
                            {"language": "C.UTF-8", "keyboard": {"keymap": "de-latin1"}})
    keyboard = tree.read_text("/etc/default/keyboard")
    assert 'XKBLAYOUT="de"\n' in keyboard and 'XKBMODEL="pc105"\n' in keyboard
    assert tree.read_text("/etc/vconsole.conf") == "KEYMAP=de-latin1\n"


def test_keyboard_is_left_alone_without_the_option(stage_runner):
    """Without `keyboard`, no /etc/default/keyboard appears."""
    tree = stage_runner.run("org.osbuild.locale", {"language": "C.UTF-8"})
    assert not tree.exists("/etc/default/keyboard")


def test_unknown_locale_is_refused_with_close_matches(stage_runner):
    """A locale glibc does not support fails before anything runs, naming what is close."""
    with pytest.raises(StageError, match="en_US.UTF-8"):
        stage_runner.run("org.osbuild.locale", {"language": "en_US.UTF8"})


def test_locale_without_locales_package_asks_to_install_it(stage_runner):
    """A tree without locale-gen gets a StageError that says to install `locales`."""
    stage_runner.tree.path("/usr/sbin/locale-gen").unlink()
    with pytest.raises(StageError, match="install the package 'locales'"):
        stage_runner.run("org.osbuild.locale", {"language": "de_DE.UTF-8"})


def test_locale_schema_refuses_a_name_with_spaces():
    """The language must be one locale name, not a locale.gen line."""
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"language": "en_US.UTF-8 UTF-8"},
                            stages.get("org.osbuild.locale").options_schema())
