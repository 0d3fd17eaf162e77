"""deb-mock config loading: lookup order, include, overrides, validation messages, shipped files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deb_mock import config as config_mod
from deb_mock.config import (BuildUser, Config, Repository, list_configs, load_config,
                             parse_size)
from deb_mock.errors import ConfigError, ExitCode

SHIPPED = Path(config_mod.__file__).parent / "configs"
SHIPPED_NAMES = sorted(p.stem for p in SHIPPED.glob("*.yaml"))


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """Search directories: the shipped ones, then a fake /etc/deb-mock and ~/.config/deb-mock."""
    etc, home = tmp_path / "etc", tmp_path / "home"
    etc.mkdir()
    home.mkdir()
    monkeypatch.setattr(config_mod, "config_dirs", lambda: (SHIPPED, etc, home))
    for var in ("DEBIAN_FORGE_MIRROR", "DEBIAN_FORGE_CACHE_DIR", "DEB_MOCK_STATE_DIR"):
        monkeypatch.delenv(var, raising=False)
    return etc, home


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def error_of(*args, **kwargs) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(*args, **kwargs)
    assert err.value.exit_code == ExitCode.USAGE
    assert "\n" not in str(err.value)  # one paragraph
    return str(err.value)


# --- shipped configs -------------------------------------------------------------------------

@pytest.mark.parametrize("name", SHIPPED_NAMES)
def test_every_shipped_config_loads(name, dirs):
    cfg = load_config(name)
    assert cfg.name == name and cfg.path == SHIPPED / f"{name}.yaml"
    assert cfg.description and cfg.mirror is None
    assert name == f"debian-{cfg.suite}-{cfg.architecture}"


def test_the_five_promised_configs_are_shipped():
    assert set(SHIPPED_NAMES) >= {"debian-bookworm-amd64", "debian-trixie-amd64", "debian-sid-amd64",
                                  "debian-bookworm-i386", "debian-trixie-i386"}


def test_defaults_of_a_minimal_config(dirs):
    etc, _ = dirs
    write(etc, "mini.yaml", "suite: trixie\narchitecture: arm64\n")
    cfg = load_config("mini")
    assert cfg == Config(name="mini", path=etc / "mini.yaml", suite="trixie", architecture="arm64")
    assert cfg.components == ("main",) and cfg.variant == "buildd" and cfg.network is False
    assert cfg.build_user == BuildUser("builder", 1000)
    assert cfg.cache_dir == Path("/var/cache/debian-forge") and cfg.state_dir == Path("/var/lib/deb-mock")
    assert cfg.metadata_expire == 3600 and cfg.store_max_bytes() == 20 * 1024**3
    assert dict(cfg.environment) == {}
    hash(cfg)  # usable as a dict key


def test_every_key_is_read(dirs):
    etc, _ = dirs
    write(etc, "full.yaml", """
description: everything
suite: bookworm
architecture: armhf
mirror: http://mirror.example.org/debian/
security_mirror: http://security.example.org/debian-security
updates: false
security: false
components: [main, contrib]
extra_repositories:
  - url: http://repo.example.org/apt
    suite: stable
    signed_by: /etc/apt/keyrings/example.asc
  - {url: "file:/srv/repo", suite: /, components: [], trusted: true}
packages: [ccache, "hello:armhf", "vim=2:9.0"]
variant: minbase
build_user: {name: pkg, uid: 2000}
network: true
cache_dir: /srv/cache
state_dir: /srv/state
metadata_expire: 0
store_max_size: 1.5T
root_cache: false
package_cache: false
environment: {LANG: C.UTF-8, JOBS: 4}
""")
    cfg = load_config("full")
    assert cfg.mirror == "http://mirror.example.org/debian"
    assert cfg.extra_repositories == (
        Repository("http://repo.example.org/apt", "stable", ("main",), "/etc/apt/keyrings/example.asc"),
        Repository("file:/srv/repo", "/", (), None, True))
    assert cfg.packages == ("ccache", "hello:armhf", "vim=2:9.0")
    assert cfg.build_user == BuildUser("pkg", 2000) and cfg.variant == "minbase"
    assert (cfg.network, cfg.root_cache, cfg.package_cache) == (True, False, False)
    assert cfg.cache_dir == Path("/srv/cache") and cfg.state_dir == Path("/srv/state")
    assert cfg.store_max_bytes() == int(1.5 * 1024**4)
    assert dict(cfg.environment) == {"LANG": "C.UTF-8", "JOBS": "4"}
    with pytest.raises(TypeError):
        cfg.environment["X"] = "y"  # read-only


# --- lookup ----------------------------------------------------------------------------------

def test_later_directories_win_for_the_same_name(dirs):
    etc, home = dirs
    write(etc, "debian-sid-amd64.yaml", "description: etc\nsuite: sid\narchitecture: amd64\n")
    assert load_config("debian-sid-amd64").description == "etc"
    write(home, "debian-sid-amd64.yaml", "description: home\nsuite: sid\narchitecture: amd64\n")
    assert load_config("debian-sid-amd64").description == "home"


def test_a_path_argument_is_loaded_directly(dirs, tmp_path):
    path = write(tmp_path, "my-env.yaml", "suite: sid\narchitecture: riscv64\n")
    cfg = load_config(str(path))
    assert cfg.name == "my-env" and cfg.path == path


def test_a_missing_path_is_named(dirs, tmp_path):
    assert str(tmp_path / "nope.yaml") in error_of(str(tmp_path / "nope.yaml"))


def test_unknown_name_lists_the_known_ones(dirs):
    etc, _ = dirs
    write(etc, "local-env.yaml", "suite: sid\narchitecture: amd64\n")
    msg = error_of("debian-bookwrm-amd64")
    assert "'debian-bookwrm-amd64'" in msg and "did you mean 'debian-bookworm-amd64'" in msg.lower()
    for name in SHIPPED_NAMES + ["local-env"]:
        assert name in msg


def test_list_configs_shows_the_winning_file_and_marks_broken_ones(dirs):
    etc, home = dirs
    write(etc, "debian-sid-amd64.yaml", "description: mine\nsuite: sid\narchitecture: amd64\n")
    write(home, "broken.yaml", "suite: [\n")
    infos = {i.name: i for i in list_configs()}
    assert set(infos) == set(SHIPPED_NAMES) | {"broken"}
    assert infos["debian-sid-amd64"].description == "mine"
    assert infos["debian-sid-amd64"].path == etc / "debian-sid-amd64.yaml"
    assert infos["debian-bookworm-i386"].architecture == "i386"
    assert infos["broken"].error and "line" in infos["broken"].error


# --- include ---------------------------------------------------------------------------------

def test_include_starts_from_another_config_and_merges_mappings(dirs):
    etc, home = dirs
    write(etc, "base.yaml", "suite: trixie\narchitecture: amd64\npackages: [a]\n"
                            "build_user: {name: pkg, uid: 2000}\nenvironment: {A: '1'}\n")
    write(etc, "mid.yaml", "include: base\npackages: [b]\nenvironment: {B: '2'}\n")
    write(home, "top.yaml", "include: mid\nbuild_user: {uid: 3000}\n")
    cfg = load_config("top")
    assert cfg.name == "top" and cfg.suite == "trixie"
    assert cfg.packages == ("b",)  # lists replace
    assert cfg.build_user == BuildUser("pkg", 3000)  # mappings merge
    assert dict(cfg.environment) == {"A": "1", "B": "2"}


def test_a_config_can_include_the_shipped_one_it_shadows(dirs):
    _, home = dirs
    write(home, "debian-bookworm-amd64.yaml", "include: debian-bookworm-amd64\nnetwork: true\n")
    cfg = load_config("debian-bookworm-amd64")
    assert cfg.path == home / "debian-bookworm-amd64.yaml"
    assert (cfg.suite, cfg.network) == ("bookworm", True)


def test_a_config_given_by_path_can_include_the_config_of_its_own_name(dirs, tmp_path):
    path = write(tmp_path, "debian-sid-amd64.yaml", "include: debian-sid-amd64\npackages: [ccache]\n")
    cfg = load_config(str(path))
    assert (cfg.suite, cfg.packages, cfg.path) == ("sid", ("ccache",), path)


def test_include_by_relative_path(dirs, tmp_path):
    write(tmp_path, "base.yaml", "suite: sid\narchitecture: s390x\n")
    sub = tmp_path / "sub"
    sub.mkdir()
    path = write(sub, "child.yaml", "include: ../base.yaml\n")
    assert load_config(str(path)).architecture == "s390x"


def test_include_cycles_are_reported(dirs):
    etc, _ = dirs
    write(etc, "a.yaml", "include: b\nsuite: sid\n")
    write(etc, "b.yaml", "include: a\narchitecture: amd64\n")
    msg = error_of("a")
    assert "cycle" in msg and "a.yaml" in msg and "b.yaml" in msg


def test_an_error_in_an_included_file_names_that_file(dirs):
    etc, home = dirs
    bad = write(etc, "base.yaml", "suite: sid\narchitecture: amd64\nnetwrk: true\n")
    write(home, "top.yaml", "include: base\n")
    msg = error_of("top")
    assert str(bad) in msg and "netwrk" in msg and "did you mean 'network'" in msg


def test_an_unknown_include_lists_the_known_names(dirs):
    etc, _ = dirs
    write(etc, "top.yaml", "include: nothing-here\n")
    assert "unknown config 'nothing-here'" in error_of("top")


# --- overrides (--config-opts) ---------------------------------------------------------------

def test_overrides_set_dotted_keys_with_yaml_values(dirs):
    cfg = load_config("debian-trixie-amd64", [
        "network=true", "build_user.name=pkg", "components=[main,contrib]",
        "environment.DEB_BUILD_OPTIONS=nocheck parallel=4", "mirror=http://m.example.org/debian",
        "store_max_size=512M"])
    assert cfg.network is True and cfg.build_user == BuildUser("pkg", 1000)
    assert cfg.components == ("main", "contrib")
    assert cfg.environment["DEB_BUILD_OPTIONS"] == "nocheck parallel=4"
    assert cfg.mirror == "http://m.example.org/debian"
    assert cfg.store_max_bytes() == 512 * 1024**2


def test_an_empty_override_value_unsets_a_nullable_key(dirs):
    etc, _ = dirs
    write(etc, "m.yaml", "suite: sid\narchitecture: amd64\nmirror: http://m.example.org/debian\n")
    assert load_config("m", ["mirror="]).mirror is None


@pytest.mark.parametrize("option, expect", [
    ("network", "KEY=VALUE"),
    ("=true", "KEY=VALUE"),
    ("build_user..name=x", "KEY=VALUE"),
    ("components=[main", "not a valid YAML"),
    ("suite.codename=x", "not a mapping"),
    ("include=debian-sid-amd64", "include"),
])
def test_malformed_overrides_name_the_option(dirs, option, expect):
    msg = error_of("debian-sid-amd64", [option])
    assert f"--config-opts {option!r}" in msg and expect in msg


def test_an_override_with_a_bad_value_names_key_file_and_option(dirs):
    msg = error_of("debian-sid-amd64", ["build_user.uid=abc"])
    assert str(SHIPPED / "debian-sid-amd64.yaml") in msg
    assert "build_user.uid: expected an integer, got string 'abc'" in msg
    assert "--config-opts build_user.uid=abc" in msg


# --- validation ------------------------------------------------------------------------------

@pytest.mark.parametrize("body, key, expect", [
    ("colour: blue\n", "colour", "unknown key"),
    ("netwrok: true\n", "netwrok", "did you mean 'network'"),
    ("network: maybe\n", "network", "expected true or false, got string 'maybe'"),
    ("components: main\n", "components", "expected a list"),
    ("components: []\n", "components", "at least 1"),
    ("variant: huge\n", "variant", "expected one of extract, custom, essential"),
    ("store_max_size: 20X\n", "store_max_size", "expected a size such as 20G"),
    ("store_max_size: true\n", "store_max_size", "expected a string or an integer"),
    ("metadata_expire: -1\n", "metadata_expire", "at least 0"),
    ("mirror: mirror.example.org\n", "mirror", "expected a URL"),
    ("cache_dir: relative/dir\n", "cache_dir", "absolute directory"),
    ("build_user: {uid: 0}\n", "build_user.uid", "at least 1"),
    ("build_user: {name: Bad Name}\n", "build_user.name", "user name"),
    ("build_user: {home: /x}\n", "build_user.home", "unknown key"),
    ("packages: [Bad Name]\n", "packages[0]", "Debian package name"),
    ("environment: {LANG: yes}\n", "environment.LANG", "quote it"),
    ("environment: {'A-B': x}\n", "environment.A-B", "environment variable name"),
    ("extra_repositories: [{suite: sid}]\n", "extra_repositories[0].url", "required"),
    ("extra_repositories: [{url: 5, suite: sid}]\n", "extra_repositories[0].url", "expected a string"),
    ("extra_repositories: [{url: 'http://r.example.org', suite: sid, trusted: 1}]\n",
     "extra_repositories[0].trusted", "expected true or false"),
])
def test_each_validation_failure_names_file_and_key(dirs, body, key, expect):
    etc, _ = dirs
    path = write(etc, "bad.yaml", "suite: bookworm\narchitecture: amd64\n" + body)
    msg = error_of("bad")
    assert str(path) in msg and f"{key}: " in msg and expect in msg


def test_missing_required_keys_are_all_reported(dirs):
    etc, _ = dirs
    write(etc, "empty.yaml", "")
    msg = error_of("empty")
    assert "suite: missing" in msg and "architecture: missing" in msg


def test_all_errors_are_reported_at_once(dirs):
    etc, _ = dirs
    write(etc, "bad.yaml", "suite: sid\narchitecture: x86_64\nvariant: big\nnetwork: 3\n")
    msg = error_of("bad")
    assert "architecture:" in msg and "Debian calls it 'amd64'" in msg
    assert "variant:" in msg and "network:" in msg


def test_a_yaml_syntax_error_names_file_and_line(dirs):
    etc, _ = dirs
    path = write(etc, "broken.yaml", "suite: sid\narchitecture: amd64\ncomponents: [main\n")
    msg = error_of("broken")
    assert str(path) in msg and "invalid YAML at line 4" in msg


def test_a_duplicate_key_is_an_error_not_a_silent_overwrite(dirs):
    etc, _ = dirs
    write(etc, "dup.yaml", "suite: sid\narchitecture: amd64\nsuite: trixie\n")
    msg = error_of("dup")
    assert "duplicate key 'suite'" in msg and "line 3" in msg


def test_a_top_level_list_is_rejected(dirs):
    etc, _ = dirs
    write(etc, "list.yaml", "- suite: sid\n")
    assert "expected a mapping" in error_of("list")


# --- derived values --------------------------------------------------------------------------

def test_stable_suites_get_updates_and_security_sid_does_not(dirs):
    bookworm = load_config("debian-bookworm-amd64")
    assert bookworm.suites() == ("bookworm", "bookworm-updates")
    assert bookworm.security_suite() == "bookworm-security"
    sid = load_config("debian-sid-amd64")
    assert sid.suites() == ("sid",) and sid.security_suite() is None
    off = load_config("debian-bookworm-amd64", ["updates=false", "security=false"])
    assert off.suites() == ("bookworm",) and off.security_suite() is None


def test_mirror_url_follows_env_then_config_then_host(dirs, tmp_path, monkeypatch):
    apt = tmp_path / "root/etc/apt"
    apt.mkdir(parents=True)
    (apt / "sources.list").write_text(
        "deb http://host.example.org/debian bookworm main\n"
        "deb http://host.example.org/debian-security bookworm-security main\n")
    root = tmp_path / "root"
    cfg = load_config("debian-bookworm-amd64")
    assert cfg.mirror_url(root) == "http://host.example.org/debian"
    assert cfg.security_mirror_url(root) == "http://host.example.org/debian-security"
    cfg = load_config("debian-bookworm-amd64", ["mirror=http://cfg.example.org/debian"])
    assert cfg.mirror_url(root) == "http://cfg.example.org/debian"
    monkeypatch.setenv("DEBIAN_FORGE_MIRROR", "http://env.example.org/debian")
    assert cfg.mirror_url(root) == "http://env.example.org/debian"


def test_security_mirror_is_derived_from_a_debian_mirror_when_the_host_has_none(dirs, tmp_path):
    cfg = load_config("debian-bookworm-amd64", ["mirror=http://m.example.org/debian"])
    assert cfg.security_mirror_url(tmp_path) == "http://m.example.org/debian-security"
    odd = load_config("debian-bookworm-amd64", ["mirror=http://m.example.org/archive"])
    assert "security_mirror" in str(pytest.raises(ConfigError, odd.security_mirror_url, tmp_path).value)


def test_identity_is_json_and_changes_with_content_keys(dirs):
    base = load_config("debian-sid-amd64", ["mirror=http://m.example.org/debian"])
    ident = base.identity()
    assert json.loads(json.dumps(ident)) == ident
    assert ident["mirror"] == "http://m.example.org/debian" and ident["security_mirror"] is None
    assert {"suite", "architecture", "components", "extra_repositories", "packages", "variant",
            "updates", "security"} <= set(ident)
    same = load_config("debian-sid-amd64", ["mirror=http://m.example.org/debian", "network=true",
                                            "build_user.uid=4242"])
    assert same.identity() == ident  # runtime-only keys do not change the base
    other = load_config("debian-sid-amd64", ["mirror=http://m.example.org/debian", "packages=[ccache]"])
    assert other.identity() != ident


# --- directories and sizes -------------------------------------------------------------------

def test_env_vars_beat_default_dirs_and_explicit_values_beat_env_vars(dirs, monkeypatch):
    monkeypatch.setenv("DEBIAN_FORGE_CACHE_DIR", "/env/cache")
    monkeypatch.setenv("DEB_MOCK_STATE_DIR", "/env/state")
    cfg = load_config("debian-sid-amd64")
    assert (cfg.cache_dir, cfg.state_dir) == (Path("/env/cache"), Path("/env/state"))
    cfg = load_config("debian-sid-amd64", ["cache_dir=/opt/cache", "state_dir=/opt/state"])
    assert (cfg.cache_dir, cfg.state_dir) == (Path("/opt/cache"), Path("/opt/state"))


def test_a_relative_dir_env_var_is_named(dirs, monkeypatch):
    monkeypatch.setenv("DEB_MOCK_STATE_DIR", "state")
    assert "DEB_MOCK_STATE_DIR" in error_of("debian-sid-amd64")


@pytest.mark.parametrize("text, size", [
    ("20G", 20 * 1024**3), ("512M", 512 * 1024**2), ("1k", 1024), ("4096", 4096), (4096, 4096),
    ("2T", 2 * 1024**4), ("1.5G", int(1.5 * 1024**3)), ("10 GiB", 10 * 1024**3), ("7B", 7),
])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "G", "20X", "-1", "1,5G", True, -5])
def test_parse_size_rejects_nonsense_naming_the_key(text):
    with pytest.raises(ConfigError, match="store_max_size"):
        parse_size(text)
