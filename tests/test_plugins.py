"""deb-mock plugins: discovery through entry points, enable/disable/option precedence, the hook
contract, and each built-in plugin doing what the sandbox and the build need.

Environments, builds and results are SimpleNamespace stand-ins with the attributes the hooks
use, so these tests do not depend on the build code; the mounts are checked in a real bubblewrap
sandbox (root only) and lintian runs for real on a package built here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import pytest

from conftest import DEB_MOCK, REPO
from deb_mock import sandbox
from deb_mock.config import load_config, parse_size
from deb_mock.errors import ConfigError, ExitCode, HostError
from deb_mock.plugins import BUILTIN, Plugins, available, chroot_scan, hookspecs, lintian, tmpfs
from deb_mock.sandbox import Bind, ExecResult, Tmpfs, User

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounts and chown need root")
BUILD_PATH = "/usr/lib/ccache:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The hook points in the order a `deb-mock build` (then `chroot`, snapshots, clean, scrub)
# reaches them, as hookspecs.py documents; sandbox_mounts etc. are asked for during the build.
LIFECYCLE = ["preinit", "postinit", "prebuild", "build_packages", "postdeps", "sandbox_mounts",
             "build_environment", "postbuild", "process_logs", "prechroot", "postchroot",
             "make_snapshot", "rollback_to", "clean", "scrub"]
CALLS = {  # hook point -> the arguments it is called with
    "preinit": {}, "postinit": {}, "initfailed": {"error": ConfigError("no")},
    "prebuild": {"build": "B"}, "postdeps": {"build": "B"}, "build_packages": {"build": "B"},
    "build_environment": {"build": "B"}, "sandbox_mounts": {"purpose": "build"},
    "postbuild": {"build": "B", "result": "R"}, "process_logs": {"result_dir": Path("/r")},
    "prechroot": {"argv": ["true"]}, "postchroot": {"argv": ["true"], "result": "R"},
    "make_snapshot": {"name": "s"}, "rollback_to": {"name": "s"}, "clean": {},
    "scrub": {"what": "all"},
}

RECORDER = '''
"""recorder — notes every hook point it is called at (a third-party test plugin)."""

from pathlib import Path

from deb_mock.plugins import hookimpl
from deb_mock.sandbox import Bind

NAME = "recorder"
DEFAULT_ENABLED = True
DEFAULT_OPTIONS = {"tag": "default"}
OPTIONS_SCHEMA = {"type": "object", "additionalProperties": False,
                  "properties": {"tag": {"type": "string"}}}


def note(env, point):
    env.calls.append((point, env.plugins.options(NAME)["tag"]))


@hookimpl
def preinit(env): note(env, "preinit")
@hookimpl
def postinit(env): note(env, "postinit")
@hookimpl
def initfailed(env, error): note(env, "initfailed")
@hookimpl
def prebuild(env, build): note(env, "prebuild")
@hookimpl
def postdeps(env, build): note(env, "postdeps")
@hookimpl
def postbuild(env, build, result): note(env, "postbuild")
@hookimpl
def prechroot(env, argv): note(env, "prechroot")
@hookimpl
def postchroot(env, argv, result): note(env, "postchroot")
@hookimpl
def make_snapshot(env, name): note(env, "make_snapshot")
@hookimpl
def rollback_to(env, name): note(env, "rollback_to")
@hookimpl
def clean(env): note(env, "clean")
@hookimpl
def scrub(env, what): note(env, "scrub")
@hookimpl
def process_logs(env, result_dir): note(env, "process_logs")


@hookimpl
def sandbox_mounts(env, purpose):
    note(env, "sandbox_mounts")
    return [Bind(Path("/srv"), "/srv/recorded")]


@hookimpl
def build_environment(env, build):
    note(env, "build_environment")
    return {"RECORDED": "1", "PATH": "/recorder/bin:/usr/bin:/bin"}


@hookimpl
def build_packages(env, build):
    note(env, "build_packages")
    return ["recorder-tools", "ccache"]
'''


# --- fixtures ------------------------------------------------------------------------------------

@pytest.fixture
def make_config(tmp_path, monkeypatch):
    """Load a config file written from `text` (on top of bookworm/amd64), with overrides."""
    for var in ("DEBIAN_FORGE_CACHE_DIR", "DEB_MOCK_STATE_DIR"):
        monkeypatch.delenv(var, raising=False)

    def make(text: str = "", overrides=(), name: str = "plugged"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"suite: bookworm\narchitecture: amd64\ncache_dir: {tmp_path}/cache\n"
                        + textwrap.dedent(text))
        return load_config(str(path), list(overrides))

    return make


@pytest.fixture
def install_plugin(tmp_path, monkeypatch):
    """Install a plugin module the way a package does: a distribution on sys.path whose
    entry_points.txt registers it in the group deb_mock.plugins."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    installed = []

    def install(module: str, source: str, entry: str | None = None) -> None:
        (site / f"{module}.py").write_text(source)
        dist = site / f"{module}-1.0.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
        (dist / "entry_points.txt").write_text(
            f"[deb_mock.plugins]\n{entry or module} = {module}\n")
        installed.append(module)

    yield install
    for module in installed:
        sys.modules.pop(module, None)


@pytest.fixture
def recorder(install_plugin):
    install_plugin("deb_mock_recorder", RECORDER, entry="recorder")


def stand_in_env(config, plugins, **attrs):
    return SimpleNamespace(config=config, plugins=plugins, calls=[], **attrs)


@pytest.fixture
def tiny_tree(tmp_path):
    """A small writable root: the host's /usr bound read-only, merged-/usr links, nothing else."""
    root = tmp_path / "tree"
    root.mkdir()
    for link in ("bin", "sbin", "lib", "lib64"):
        (root / link).symlink_to(f"usr/{link}")
    # As in a Debian tree; bubblewrap would create missing parents of a mount point as 0700.
    (root / "var/cache").mkdir(parents=True)
    return root


def run_in(tree: Path, argv, mounts=(), **kwargs) -> ExecResult:
    return sandbox.run(tree, argv, binds=[Bind(Path("/usr"), "/usr"), *mounts], capture=True,
                       echo=False, **kwargs)


# --- third-party plugins and the hook contract ---------------------------------------------------

def test_a_third_party_plugin_is_found_through_the_entry_point_group(recorder, make_config):
    info = available()["recorder"]
    assert "deb_mock_recorder 1.0" in info.origin
    assert info.summary.startswith("recorder — notes every hook point")
    plugins = Plugins(make_config())
    assert plugins.enabled() == ["root_cache", "package_cache", "recorder"]  # built-ins first


def test_every_hook_point_reaches_a_plugin_in_the_order_it_is_called(recorder, make_config):
    """Calling the hook points in lifecycle order, a third-party plugin receives exactly those
    calls in that order — and the test covers every hook point hookspecs.py declares."""
    declared = {name for name in dir(hookspecs)
                if hasattr(getattr(hookspecs, name), "deb_mock_spec")}
    assert declared == set(CALLS)
    config = make_config("plugins: {recorder: {tag: from-config}}\n")
    plugins = Plugins(config)
    env = stand_in_env(config, plugins)
    for point in LIFECYCLE:
        getattr(plugins.hook, point)(env=env, **CALLS[point])
    assert env.calls == [(point, "from-config") for point in LIFECYCLE]
    plugins.hook.initfailed(env=env, **CALLS["initfailed"])
    assert env.calls[-1] == ("initfailed", "from-config")


@pytest.mark.parametrize("how", ["command line", "config"])
def test_a_disabled_third_party_plugin_is_not_called(recorder, make_config, how):
    if how == "config":
        config, plugins_args = make_config("plugins: {recorder: {enabled: false}}\n"), {}
    else:
        config, plugins_args = make_config(), {"disable": ["recorder"]}
    plugins = Plugins(config, **plugins_args)
    env = stand_in_env(config, plugins)
    for point in LIFECYCLE:
        getattr(plugins.hook, point)(env=env, **CALLS[point])
    assert "recorder" not in plugins.enabled() and env.calls == []
    assert plugins.mounts(env, "build") == [] and plugins.build_packages(env, "B") == []


def test_built_in_plugins_answer_before_third_party_ones(recorder, make_config):
    """Within a hook point the built-ins come first; for environment variables later wins."""
    config = make_config()
    plugins = Plugins(config, enable=["ccache", "lintian"])
    env = stand_in_env(config, plugins)
    assert plugins.build_packages(env, "B") == ["ccache", "lintian", "recorder-tools"]
    variables = plugins.build_environment(env, "B")
    assert variables["CCACHE_DIR"] == "/var/cache/ccache" and variables["RECORDED"] == "1"
    assert variables["PATH"] == "/recorder/bin:/usr/bin:/bin"


def test_a_hook_function_with_a_misspelt_name_is_refused(install_plugin, make_config):
    install_plugin("deb_mock_typo", 'from deb_mock.plugins import hookimpl\nNAME = "typo"\n'
                   'DEFAULT_ENABLED = True\n@hookimpl\ndef post_build(env): pass\n')
    with pytest.raises(HostError, match=r"typo.*post_build"):
        Plugins(make_config())
    Plugins(make_config(), disable=["typo"])  # a disabled plugin is not registered


def test_a_plugin_that_fails_to_import_is_named(install_plugin, make_config):
    install_plugin("deb_mock_broken", "import no_such_module_anywhere\n", entry="broken")
    with pytest.raises(HostError, match=r"'broken = deb_mock_broken' of deb_mock_broken 1.0 "
                                        r"cannot be loaded: ModuleNotFoundError"):
        Plugins(make_config())


def test_a_plugin_may_not_take_a_built_in_name(install_plugin, make_config):
    install_plugin("deb_mock_impostor", 'NAME = "ccache"\n')
    with pytest.raises(HostError, match="'ccache', which the built-in plugin already is"):
        Plugins(make_config())


# --- enabling and options: defaults, config, command line ----------------------------------------

def test_defaults_enable_only_the_caches(make_config):
    plugins = Plugins(make_config())
    assert plugins.enabled() == ["root_cache", "package_cache"]
    assert list(plugins.available()) == list(BUILTIN)
    assert plugins.options("ccache") == {"max_size": "4G", "dir": None}
    assert plugins.options("tmpfs") == {"size": "4G", "dir": "/build"}


def test_the_command_line_beats_the_config_which_beats_the_defaults(make_config):
    config = make_config("""
        root_cache: false
        plugins:
          ccache: {enabled: true, max_size: 8G}
          tmpfs: {size: 1G}
          package_cache: {enabled: false}
        """)
    assert config.plugins["ccache"] == {"enabled": True, "max_size": "8G"}
    assert (config.root_cache, config.package_cache) == (False, False)
    plugins = Plugins(config)
    assert plugins.enabled() == ["ccache"]
    assert plugins.options("ccache")["max_size"] == "8G"  # config over default
    plugins = Plugins(config, enable=["root_cache", "tmpfs"], disable=["ccache"],
                      options=["ccache:max_size=16G", "tmpfs:dir=/build/scratch"])
    assert plugins.enabled() == ["root_cache", "tmpfs"]
    assert plugins.options("ccache") == {"max_size": "16G", "dir": None}  # CLI over config
    assert plugins.options("tmpfs") == {"size": "1G", "dir": "/build/scratch"}


def test_plugin_sections_merge_through_includes_and_config_opts(make_config, tmp_path):
    (tmp_path / "base.yaml").write_text(
        "suite: bookworm\narchitecture: amd64\nplugins: {ccache: {enabled: true, max_size: 8G}}\n")
    config = make_config("include: base.yaml\nplugins: {ccache: {dir: /srv/ccache}}\n",
                         overrides=["plugins.tmpfs.enabled=true"])
    assert config.plugins["ccache"] == {"enabled": True, "max_size": "8G", "dir": "/srv/ccache"}
    assert Plugins(config).enabled() == ["root_cache", "package_cache", "ccache", "tmpfs"]


def test_plugins_enabled_wins_over_the_older_root_cache_switch(make_config):
    config = make_config("root_cache: false\nplugins: {root_cache: {enabled: true}}\n")
    assert config.root_cache is True and "root_cache" in Plugins(config).enabled()


def test_config_plugin_sections_are_read_only(make_config):
    config = make_config("plugins: {bind_mount: {dirs: [[/srv, /srv]]}}\n")
    with pytest.raises(TypeError):
        config.plugins["bind_mount"]["readonly"] = True
    options = Plugins(config).options("bind_mount")
    options["dirs"].append(["/x", "/y"])  # a copy: the next caller sees the settled options
    assert Plugins(config).options("bind_mount")["dirs"] == [["/srv", "/srv"]]
    hash(config)


@pytest.mark.parametrize("where", ["config", "--enable-plugin", "--disable-plugin",
                                   "--plugin-option"])
def test_an_unknown_plugin_name_lists_the_known_ones(make_config, where):
    args, text = {}, ""
    if where == "config":
        text = "plugins: {cache: {enabled: true}}\n"
    elif where == "--plugin-option":
        args = {"options": ["cache:max_size=1G"]}
    else:
        args = {where.removeprefix("--").replace("-plugin", ""): ["cache"]}
    with pytest.raises(ConfigError) as err:
        Plugins(make_config(text), **args)
    message = str(err.value)
    assert err.value.exit_code == ExitCode.USAGE
    assert "unknown plugin 'cache' (did you mean 'ccache'?)" in message
    assert "known plugins: bind_mount, ccache, chroot_scan, lintian, package_cache, root_cache, " \
           "tmpfs" in message
    assert where in message if where != "config" else "plugins.cache" in message


@pytest.mark.parametrize("text,overrides,expected", [
    ("plugins: {tmpfs: {size: true}}\n", (),
     "plugins.tmpfs.size: expected a string or an integer or null, got boolean true"),
    ("", ["tmpfs:size=lots"],
     "plugins.tmpfs.size: expected a size such as 4G, 512M or a number of bytes, more than 0, "
     "got string 'lots' (set by --plugin-option tmpfs:size=lots)"),
    ("plugins: {tmpfs: {size: 0G}}\n", (), "plugins.tmpfs.size: expected a size"),
    ("plugins: {ccache: {max_sise: 1G}}\n", (),
     "plugins.ccache.max_sise: unknown key; did you mean 'max_size'?"),
    ("", ["bind_mount:dirs=[[/srv, srv]]"], "plugins.bind_mount.dirs[0][1]: expected an "
     "absolute path inside the environment"),
    ("", ["chroot_scan:only_failed=sometimes"], "plugins.chroot_scan.only_failed: expected "
     "true or false"),
])
def test_a_bad_option_is_named_with_its_key(make_config, text, overrides, expected):
    with pytest.raises(ConfigError) as err:
        Plugins(make_config(text), options=overrides)
    assert expected in str(err.value) and "plugged.yaml is invalid" in str(err.value)


@pytest.mark.parametrize("value", ["4G", "512M", "1.5T", "4096", 4096, " 2 GiB ", "8k", "0.5G",
                                   "0", 0, "0G", "lots", "4X", "-1", -1, "G", "1.", True, 1.5])
def test_the_tmpfs_size_schema_accepts_only_what_parse_size_and_bubblewrap_take(value):
    """Whatever the schema lets through, parse_size reads as more than 0 bytes (bubblewrap
    refuses a 0-byte tmpfs)."""
    valid = jsonschema.Draft202012Validator(tmpfs.OPTIONS_SCHEMA).is_valid(
        {"size": value, "dir": "/build"})
    try:
        accepted = parse_size(value, "size") > 0 and not isinstance(value, float)
    except ConfigError:
        accepted = False
    assert valid == accepted


@pytest.mark.parametrize("option,message", [
    ("tmpfs:size", "expected NAME:KEY=VALUE"),
    ("tmpfs:enabled=true", "use --enable-plugin tmpfs or --disable-plugin tmpfs"),
    ("tmpfs:size=[", "not a valid YAML"),
])
def test_malformed_plugin_options_are_refused(make_config, option, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        Plugins(make_config(), options=[option])


def test_enabling_and_disabling_the_same_plugin_is_refused(make_config):
    with pytest.raises(ConfigError, match="contradict"):
        Plugins(make_config(), enable=["ccache"], disable=["ccache"])


# --- the command line ----------------------------------------------------------------------------

def test_global_options_become_the_contexts_plugins(make_config, capsys):
    from deb_mock.cli import main_group

    path = make_config("plugins: {ccache: {max_size: 8G}}\n").path
    ctx = main_group.make_context("deb-mock", [
        "-r", str(path), "--enable-plugin", "ccache", "--enable-plugin", "tmpfs",
        "--disable-plugin", "package_cache", "--plugin-option", "tmpfs:size=1G",
        "--plugin-option", "tmpfs:dir=/scratch", "list-configs"])
    with ctx:
        main_group.invoke(ctx)
    plugins = ctx.obj.plugins
    assert plugins is ctx.obj.plugins  # made once
    assert plugins.enabled() == ["root_cache", "ccache", "tmpfs"]
    assert plugins.options("tmpfs") == {"size": "1G", "dir": "/scratch"}
    assert plugins.options("ccache")["max_size"] == "8G"


@pytest.mark.parametrize("args,expected", [
    (["--enable-plugin", "ccahce"], "--enable-plugin ccahce: unknown plugin 'ccahce' "
                                    "(did you mean 'ccache'?); known plugins: bind_mount,"),
    (["--plugin-option", "tmpfs=8G"], "--plugin-option 'tmpfs=8G': expected NAME:KEY=VALUE"),
])
def test_a_plugin_mistake_on_the_command_line_exits_2_before_any_work(args, expected):
    proc = subprocess.run([*DEB_MOCK, *args, "list-configs"], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert expected in proc.stderr and proc.stdout == ""


# --- ccache --------------------------------------------------------------------------------------

@needs_root
def test_ccache_binds_a_cache_owned_by_the_build_user_into_builds_only(make_config, tmp_path):
    config = make_config("build_user: {uid: 1500}\n")
    plugins = Plugins(config, enable=["ccache"])
    env = stand_in_env(config, plugins)
    host = tmp_path / "cache/ccache/plugged"
    assert plugins.mounts(env, "build") == [Bind(host, "/var/cache/ccache", readonly=False)]
    assert host.stat().st_uid == 1500 and host.stat().st_gid == 1500
    assert plugins.mounts(env, "chroot") == []
    assert plugins.build_packages(env, "B") == ["ccache"]
    assert plugins.build_environment(env, "B") == {
        "CCACHE_DIR": "/var/cache/ccache", "PATH": BUILD_PATH, "CCACHE_MAXSIZE": "4G"}


@needs_root
def test_ccache_cache_is_writable_by_the_build_user_in_the_sandbox(make_config, tmp_path,
                                                                   tiny_tree):
    config = make_config()
    plugins = Plugins(config, enable=["ccache"],
                      options=[f"ccache:dir={tmp_path}/cc", "ccache:max_size=500M"])
    env = stand_in_env(config, plugins)
    script = 'touch "$CCACHE_DIR/probe" && echo "$PATH $CCACHE_MAXSIZE"'
    result = run_in(tiny_tree, ["sh", "-c", script],
                    plugins.mounts(env, "build"), env=plugins.build_environment(env, "B"),
                    user=User("builder", 1000, 1000, "/"))
    assert result.ok, result.stderr
    assert result.stdout.strip() == f"{BUILD_PATH} 500M"
    assert (tmp_path / "cc/probe").stat().st_uid == 1000


# --- tmpfs and bind_mount ------------------------------------------------------------------------

def test_tmpfs_asks_for_a_tmpfs_on_build_for_builds_only(make_config):
    config = make_config()
    plugins = Plugins(config, enable=["tmpfs"], options=["tmpfs:size=512M"])
    env = stand_in_env(config, plugins)
    assert plugins.mounts(env, "build") == [Tmpfs("/build", "512M")]
    assert plugins.mounts(env, "chroot") == []


@needs_root
def test_tmpfs_is_mounted_at_its_directory_with_its_size(make_config, tiny_tree):
    config = make_config()
    plugins = Plugins(config, enable=["tmpfs"], options=["tmpfs:size=8M"])
    result = run_in(tiny_tree, ["sh", "-c", "findmnt -n -o FSTYPE,TARGET,OPTIONS --mountpoint "
                                "/build; stat -f -c '%T %b %S' /build"],
                    plugins.mounts(stand_in_env(config, plugins), "build"))
    assert result.ok, result.stderr
    mount, statfs = result.stdout.splitlines()
    assert mount.split()[:2] == ["tmpfs", "/build"] and "size=8192k" in mount
    kind, blocks, block_size = statfs.split()
    assert kind == "tmpfs" and int(blocks) * int(block_size) == 8 * 1024**2


def test_bind_mount_binds_its_directories_for_builds_and_chroots(make_config, tmp_path):
    (tmp_path / "src").mkdir()
    config = make_config(f"plugins: {{bind_mount: {{dirs: [[{tmp_path}/src, /src]], "
                         "readonly: true}}\n")
    plugins = Plugins(config, enable=["bind_mount"])
    env = stand_in_env(config, plugins)
    for purpose in ("build", "chroot"):
        assert plugins.mounts(env, purpose) == [Bind(tmp_path / "src", "/src", readonly=True)]


def test_bind_mount_names_a_missing_host_directory(make_config, tmp_path):
    config = make_config()
    plugins = Plugins(config, enable=["bind_mount"],
                      options=[f"bind_mount:dirs=[[{tmp_path}/missing, /src]]"])
    with pytest.raises(ConfigError, match=r"plugins.bind_mount.dirs\[0\]: the host path .*missing"):
        plugins.mounts(stand_in_env(config, plugins), "chroot")


@needs_root
def test_a_mount_inside_another_comes_after_it(make_config, tmp_path, tiny_tree):
    """tmpfs on /build/tmp and bind_mount on /build: the tmpfs is asked for first but mounted
    last, so it is not hidden by the bind, and the bind's read-only flag holds."""
    (tmp_path / "host").mkdir()
    (tmp_path / "host/hello").write_text("from the host\n")
    config = make_config()
    plugins = Plugins(config, enable=["tmpfs", "bind_mount"],
                      options=["tmpfs:dir=/build/tmp",
                               f"bind_mount:dirs=[[{tmp_path}/host, /build]]",
                               "bind_mount:readonly=true"])
    mounts = plugins.mounts(stand_in_env(config, plugins), "build")
    assert [m.target for m in mounts] == ["/build", "/build/tmp"]
    (tmp_path / "host/tmp").mkdir()  # the mount point, since /build is read-only inside
    result = run_in(tiny_tree, ["sh", "-c", "cat /build/hello; stat -f -c %T /build/tmp; "
                                "touch /build/tmp/ok && touch /build/no"], mounts)
    assert result.stdout.splitlines() == ["from the host", "tmpfs"]
    assert result.returncode != 0 and "Read-only file system" in result.stderr
    assert not (tmp_path / "host/no").exists()


# --- lintian -------------------------------------------------------------------------------------

SAMPLE = (Path(__file__).parent / "data/lintian-output.txt").read_text()


def test_lintian_output_is_summarised_by_severity():
    """A real lintian 2.116 output (tests/data/lintian-output.txt) of a package built below."""
    summary = lintian.parse(SAMPLE)
    assert (summary["errors"], summary["warnings"], summary["info"]) == (2, 3, 0)
    assert summary["tags"] == SAMPLE.splitlines()
    assert summary["tags"][2] == ("W: hello-tiny source: binary-arch-rules-but-pkg-is-arch-indep "
                                  "[debian/rules]")


def test_lintian_summary_skips_explanations_and_keeps_fifty_tags():
    output = ("N:\nI: hello: hardening-no-fortify-functions [usr/bin/hello]\nN:   Explains.\n"
              "warning: some message\n" + "W: hello: spelling-error-in-binary x y\n" * 60)
    summary = lintian.parse(output)
    assert (summary["errors"], summary["warnings"], summary["info"]) == (0, 60, 1)
    assert len(summary["tags"]) == 50 and summary["tags"][0].startswith("I: hello:")


def _lintian_env(config, plugins, execute):
    return stand_in_env(config, plugins, execute=execute)


def test_lintian_runs_on_the_changes_and_records_its_findings(make_config, tmp_path):
    config = make_config()
    plugins = Plugins(config, enable=["lintian"])
    result_dir = tmp_path / "result"
    result_dir.mkdir()
    seen = []

    def execute(argv, **kwargs):
        seen.append((argv, kwargs))
        return ExecResult(2, SAMPLE, "")

    env = _lintian_env(config, plugins, execute)
    build = SimpleNamespace(result_dir=result_dir, package="hello-tiny", version="1.0")
    changes = result_dir / "hello-tiny_1.0_amd64.changes"
    result = SimpleNamespace(ok=True, returncode=0, changes=changes, extra={})
    plugins.hook.postbuild(env=env, build=build, result=result)
    assert seen == [(["lintian", "--tag-display-limit", "0", f"/results/{changes.name}"],
                     {"as_user": True, "binds": [Bind(result_dir, "/results", readonly=True)],
                      "capture": True})]
    assert (result_dir / "lintian.log").read_text() == SAMPLE
    assert result.extra["lintian"] == {**lintian.parse(SAMPLE), "returncode": 2}

    failed = SimpleNamespace(ok=False, returncode=2, changes=None, extra={})
    plugins.hook.postbuild(env=env, build=build, result=failed)
    assert len(seen) == 1 and failed.extra == {}


def test_lintian_that_cannot_run_is_recorded_not_raised(make_config, tmp_path):
    config = make_config()
    plugins = Plugins(config, enable=["lintian"])
    missing = ExecResult(127, "", "bwrap: execvp lintian: No such file")
    env = _lintian_env(config, plugins, lambda argv, **kw: missing)
    result = SimpleNamespace(ok=True, changes=tmp_path / "a.changes", extra={})
    plugins.hook.postbuild(env=env, build=SimpleNamespace(result_dir=tmp_path), result=result)
    assert result.extra["lintian"]["error"] == "bwrap: execvp lintian: No such file"
    assert result.extra["lintian"]["returncode"] == 127


@needs_root
@pytest.mark.skipif(not (shutil.which("lintian") and shutil.which("dpkg-buildpackage")),
                    reason="needs lintian and dpkg-dev on the host")
def test_lintian_finds_the_problems_of_a_real_package(make_config, tmp_path, tiny_tree):
    """A package without copyright or changelog, built here, checked by the host's lintian in a
    sandbox as the plugin runs it: its summary counts what lintian found."""
    result_dir = _build_hello_tiny(tmp_path)
    config = make_config()
    plugins = Plugins(config, enable=["lintian"])

    def execute(argv, *, binds, as_user, capture):
        for path in ("etc", "var/lib/dpkg"):
            (tiny_tree / path).mkdir(parents=True, exist_ok=True)
        host = [Bind(Path("/etc"), "/etc"), Bind(Path("/var/lib/dpkg"), "/var/lib/dpkg")]
        user = User("nobody", 65534, 65534, "/tmp") if as_user else None
        return run_in(tiny_tree, argv, [*host, *binds], user=user, env={"HOME": "/tmp"})

    env = _lintian_env(config, plugins, execute)
    changes, = result_dir.glob("hello-tiny_1.0_*.changes")
    result = SimpleNamespace(ok=True, changes=changes, extra={})
    plugins.hook.postbuild(env=env, build=SimpleNamespace(result_dir=result_dir), result=result)
    summary = result.extra["lintian"]
    assert "error" not in summary, (result_dir / "lintian.log").read_text()
    assert summary["errors"] >= 2 and summary["warnings"] >= 1
    assert any(": no-copyright-file" in tag for tag in summary["tags"])
    assert "no-copyright-file" in (result_dir / "lintian.log").read_text()


def _build_hello_tiny(tmp_path: Path) -> Path:
    """A native package whose debian/rules uses only dpkg-dev; returns the results directory."""
    source = tmp_path / "results/hello-tiny-1.0"
    (source / "debian/source").mkdir(parents=True)
    (source / "debian/source/format").write_text("3.0 (native)\n")
    (source / "debian/control").write_text(
        "Source: hello-tiny\nSection: misc\nPriority: optional\nMaintainer: Test "
        "<test@example.org>\nStandards-Version: 4.6.2\n\nPackage: hello-tiny\nArchitecture: all\n"
        "Description: tiny test package\n Says hello.\n")
    (source / "debian/changelog").write_text(
        "hello-tiny (1.0) unstable; urgency=medium\n\n  * Initial release.\n\n"
        " -- Test <test@example.org>  Mon, 01 Jan 2024 00:00:00 +0000\n")
    (source / "debian/rules").write_text(
        "#!/usr/bin/make -f\nbuild build-arch build-indep:\nclean:\n\trm -rf debian/hello-tiny "
        "debian/files\nbinary binary-arch binary-indep:\n\tmkdir -p debian/hello-tiny/DEBIAN "
        "debian/hello-tiny/usr/bin\n\tprintf '#!/bin/sh\\necho hello\\n' > "
        "debian/hello-tiny/usr/bin/hello-tiny\n\tchmod 755 debian/hello-tiny/usr/bin/hello-tiny\n"
        "\tdpkg-gencontrol -phello-tiny -Pdebian/hello-tiny\n"
        "\tdpkg-deb --root-owner-group --build debian/hello-tiny ..\n")
    (source / "debian/rules").chmod(0o755)
    proc = subprocess.run(["dpkg-buildpackage", "-us", "-uc", "-b", "-d"],
                          cwd=source, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shutil.rmtree(source)
    results = tmp_path / "results"
    for path in [results, *results.rglob("*")]:  # readable by the unprivileged user
        path.chmod(path.stat().st_mode | (0o005 if path.is_dir() else 0o004))
    return results


# --- chroot_scan ---------------------------------------------------------------------------------

@pytest.fixture
def scanned_tree(tmp_path):
    """An environment's root after a failed autotools/CMake build, with traps for the scanner."""
    root = tmp_path / "root"
    files = {"build/hello-2.10/config.log": "configure: error: no C compiler\n",
             "build/hello-2.10/cmake/CMakeFiles/CMakeError.log": "cmake failed\n",
             "build/hello-2.10/tests/test-suite.log": "FAIL: 3\n",
             "build/hello-2.10/src/hello.c": "int main;\n",
             "var/log/dpkg.log": "not under /build\n"}
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    (root / "build/hello-2.10/passwd.log").symlink_to("/etc/passwd")  # would leave the tree
    (root / "build/hello-2.10/host").symlink_to("/")  # a walk must not enter the host's root
    return root


def _scan(config, plugins, root, result_dir, ok):
    @contextmanager
    def mounted():
        yield root

    env = stand_in_env(config, plugins, mounted=mounted)
    result = SimpleNamespace(ok=ok, returncode=0 if ok else 2, changes=None, extra={})
    plugins.hook.postbuild(env=env, build=SimpleNamespace(result_dir=result_dir), result=result)
    return result


def test_chroot_scan_copies_matching_files_after_a_failed_build(make_config, tmp_path,
                                                                scanned_tree):
    config = make_config()
    plugins = Plugins(config, enable=["chroot_scan"])
    result = _scan(config, plugins, scanned_tree, tmp_path / "result", ok=False)
    assert result.extra["chroot_scan"] == [
        "/build/hello-2.10/cmake/CMakeFiles/CMakeError.log", "/build/hello-2.10/config.log",
        "/build/hello-2.10/tests/test-suite.log"]
    copied = tmp_path / "result/chroot_scan"
    assert sorted(str(p.relative_to(copied)) for p in copied.rglob("*") if p.is_file()) == [
        "build/hello-2.10/cmake/CMakeFiles/CMakeError.log", "build/hello-2.10/config.log",
        "build/hello-2.10/tests/test-suite.log"]
    assert (copied / "build/hello-2.10/config.log").read_text().startswith("configure: error")


def test_chroot_scan_leaves_successful_builds_alone_unless_asked(make_config, tmp_path,
                                                                scanned_tree):
    config = make_config()
    plugins = Plugins(config, enable=["chroot_scan"])
    result = _scan(config, plugins, scanned_tree, tmp_path / "result", ok=True)
    assert result.extra == {} and not (tmp_path / "result").exists()
    plugins = Plugins(config, enable=["chroot_scan"], options=[
        "chroot_scan:only_failed=false", "chroot_scan:patterns=[/var/log/*.log, /build/*/src/*.c]"])
    result = _scan(config, plugins, scanned_tree, tmp_path / "result", ok=True)
    assert result.extra["chroot_scan"] == ["/build/hello-2.10/src/hello.c", "/var/log/dpkg.log"]


@pytest.mark.parametrize("pattern,path,matches", [
    ("/build/**/config.log", "/build/config.log", True),
    ("/build/**/config.log", "/build/a/b/config.log", True),
    ("/build/**/config.log", "/build/a/xconfig.log", False),
    ("/build/*.log", "/build/a/b.log", False),
    ("/build/?.log", "/build/a.log", True),
    ("/build/[!a]*.log", "/build/a.log", False),
    ("/build/[!a]*.log", "/build/b.log", True),
    ("/build/**", "/build/a/b", True),
])
def test_chroot_scan_patterns(pattern, path, matches):
    assert bool(chroot_scan.pattern_regex(pattern).match(path)) == matches
