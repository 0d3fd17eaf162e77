"""Shared fixtures: one persistent store and package cache for the whole suite (and across runs),
so real bootstraps happen once per machine rather than once per test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TEST_CACHE = Path(os.environ.get("DEBIAN_FORGE_TEST_CACHE", "/var/cache/debian-forge-tests"))
DEB_MOCK = [sys.executable, "-m", "deb_mock"]
FORGE = [sys.executable, "-m", "debian_forge"]


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="integration tests need root (they mount and bootstrap)")
        for item in items:
            if "integration" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def cache_env() -> dict[str, str]:
    """Environment variables that point deb-mock at the shared test cache and a fresh state dir."""
    TEST_CACHE.mkdir(parents=True, exist_ok=True)
    state = Path(tempfile.mkdtemp(prefix="deb-mock-state-", dir=TEST_CACHE))
    values = {"DEBIAN_FORGE_CACHE_DIR": str(TEST_CACHE / "cache"),
              "DEB_MOCK_STATE_DIR": str(state)}
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    yield values
    for key, old in saved.items():
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old
    shutil.rmtree(state, ignore_errors=True)


def cli_runner(prefix: list[str], name: str, cache_env: dict[str, str], default_timeout: float):
    """Run a CLI as a user would (stringified args, the test cache's environment plus `env=`);
    returns CompletedProcess (text, captured); `check=True` fails with its output."""

    def call(*args, check: bool = False, timeout: float = default_timeout, **kwargs):
        env = {**os.environ, **cache_env, **kwargs.pop("env", {})}
        argv = [str(arg) for arg in args]
        proc = subprocess.run([*prefix, *argv], capture_output=True, text=True,
                              timeout=timeout, env=env, **kwargs)
        if check and proc.returncode != 0:
            raise AssertionError(f"{name} {' '.join(argv)} exited {proc.returncode}:\n"
                                 f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
        return proc

    return call


@pytest.fixture(scope="session")
def deb_mock(cache_env):
    """Run the deb-mock CLI as a user would; returns CompletedProcess (text, captured)."""
    return cli_runner(DEB_MOCK, "deb-mock", cache_env, 600)


@pytest.fixture(scope="session")
def bookworm(deb_mock):
    """The default bookworm environment, initialised once for the session."""
    deb_mock("-r", "debian-bookworm-amd64", "init", check=True)
    return "debian-bookworm-amd64"


def project_mounts() -> list[str]:
    """Mount points of ours (store, state, test cache) in this process's and the host's view."""
    found = []
    for table in ("/proc/self/mountinfo", "/proc/1/mountinfo"):
        with open(table) as mountinfo:
            for line in mountinfo:
                point = line.split()[4].replace("\\040", " ")
                if str(TEST_CACHE) in point or "deb-mock" in point or "debian-forge" in point:
                    found.append(point)
    return found


@pytest.fixture(autouse=True)
def no_mount_left_behind():
    """After every test, nothing of ours is still mounted."""
    yield
    leftover = project_mounts()
    assert not leftover, f"mounts left behind: {leftover}"


@pytest.fixture(scope="session")
def stage_base(deb_mock):
    """A bookworm environment with systemd, locales, tzdata, sshd and sudo (tests/data)."""
    config = str(REPO / "tests/data/stage-tree.yaml")
    deb_mock("-r", config, "init", check=True, timeout=1200)
    return "stage-tree"


@pytest.fixture
def stage_runner(stage_base, cache_env, tmp_path):
    """Run stages on a fresh overlay of a real bookworm tree (deb-mock's cached base layer with
    systemd, locales, tzdata, openssh-server and sudo).

    `run(stage_name, options, inputs=None)` validates the options against the stage's schema,
    runs the stage and returns the Tree; `tree` is the same tree. The overlay is unmounted after
    the test.
    """
    import json

    import jsonschema

    from deb_mock.namespace import enter_private_mount_namespace
    from deb_mock.overlay import mount_overlay, unmount
    from deb_mock.store import Store
    from debian_forge import stages
    from debian_forge.context import StageContext, Tree

    enter_private_mount_namespace()
    record = json.loads((Path(cache_env["DEB_MOCK_STATE_DIR"]) / stage_base / "env.json").read_text())
    store = Store(Path(cache_env["DEBIAN_FORGE_CACHE_DIR"]) / "store")
    work = Path(tempfile.mkdtemp(prefix="stage-", dir=TEST_CACHE))
    for sub in ("upper", "work", "root", "scratch"):
        (work / sub).mkdir()
    with store.using([record["base"]]):
        mount_overlay([layer.tree for layer in store.chain(record["base"])], work / "upper",
                      work / "work", work / "root")
        tree = Tree(work / "root")
        log_path = tmp_path / "stage.log"

        class Runner:
            def __init__(self):
                self.tree = tree
                self.log_path = log_path

            def run(self, name, options, inputs=None, source_epoch=None):
                stage = stages.get(name)
                assert stage is not None, f"no stage {name}"
                jsonschema.validate(options, stage.options_schema())
                with open(log_path, "a") as log:
                    ctx = StageContext(tree=tree, inputs=inputs or {}, buildroot=Path("/"),
                                       log=log, scratch=work / "scratch",
                                       source_epoch=source_epoch)
                    stage.run(ctx, options)
                return tree

        try:
            yield Runner()
        finally:
            unmount(work / "root")
            shutil.rmtree(work, ignore_errors=True)



@pytest.fixture(scope="session")
def forge(cache_env):
    """Run the debian-forge CLI as a user would; returns CompletedProcess (text, captured)."""
    return cli_runner(FORGE, "debian-forge", cache_env, 1200)


def build_example(forge, tmp_path_factory, example: str, export: str) -> Path:
    """Build examples/<example> exporting `export`; returns the output directory."""
    out = tmp_path_factory.mktemp(example.removesuffix(".json"))
    forge("build", REPO / "examples" / example, "--export", export, "--output-directory", out,
          check=True)
    return out


@pytest.fixture(scope="session")
def minimal_build(forge, tmp_path_factory):
    """examples/debian-minimal.json built once for the session: its output directory."""
    return build_example(forge, tmp_path_factory, "debian-minimal.json", "rootfs")


@pytest.fixture(scope="session")
def trixie_server_build(forge, tmp_path_factory):
    """examples/debian-trixie-server.json built once for the session: its output directory."""
    return build_example(forge, tmp_path_factory, "debian-trixie-server.json", "rootfs")


@pytest.fixture(scope="session")
def apt_repos():
    """Real signed APT repositories served on 127.0.0.1 for the session (tests/aptrepo.py).

    `apt_repos.repo(name, packages, signer=..., tamper=...)` builds www/<name> (kept between
    runs, at the same URL) and returns its Repo.
    """
    import aptrepo

    with aptrepo.serve() as repos:
        yield repos
