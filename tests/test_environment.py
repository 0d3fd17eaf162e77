"""deb-mock environments for real: the host's Debian mirror, mmdebstrap, bubblewrap, overlayfs."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from conftest import DEB_MOCK, project_mounts

pytestmark = pytest.mark.integration
CONFIG = "debian-bookworm-amd64"


def test_hello_installs_and_runs(deb_mock, bookworm):
    """`install hello` then `chroot -- hello` prints the greeting from inside the environment."""
    deb_mock("-r", bookworm, "install", "hello", check=True)
    proc = deb_mock("-r", bookworm, "chroot", "--", "hello")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Hello, world!"


def test_chroot_exit_status_becomes_deb_mocks(deb_mock, bookworm):
    assert deb_mock("-r", bookworm, "chroot", "--", "sh", "-c", "exit 7").returncode == 7


def test_copyin_copyout_round_trip_keeps_binary_content(deb_mock, bookworm, tmp_path):
    """A binary file copied in and back out is byte for byte the same."""
    original = tmp_path / "blob.bin"
    original.write_bytes(os.urandom(1 << 20) + bytes(range(256)))
    deb_mock("-r", bookworm, "copyin", str(original), "/root/", check=True)
    inside = deb_mock("-r", bookworm, "chroot", "--", "sha256sum", "/root/blob.bin", check=True)
    expected = hashlib.sha256(original.read_bytes()).hexdigest()
    assert inside.stdout.split()[0] == expected
    out = tmp_path / "out"
    out.mkdir()
    deb_mock("-r", bookworm, "copyout", "/root/blob.bin", str(out), check=True)
    assert hashlib.sha256((out / "blob.bin").read_bytes()).hexdigest() == expected


def _mirror_host_port() -> tuple[str, int]:
    from deb_mock.config import load_config

    url = urlparse(load_config(CONFIG).mirror_url())
    return url.hostname, url.port or (443 if url.scheme == "https" else 80)


def test_network_is_off_by_default_and_on_when_asked(deb_mock, bookworm):
    """A TCP connection to the mirror fails in the default sandbox and works with --enable-network."""
    host, port = _mirror_host_port()
    probe = f"exec 3<>/dev/tcp/{host}/{port} && echo connected"
    closed = deb_mock("-r", bookworm, "chroot", "--", "bash", "-c", probe)
    assert closed.returncode != 0
    assert "connected" not in closed.stdout
    opened = deb_mock("-r", bookworm, "chroot", "--enable-network", "--", "bash", "-c", probe)
    assert opened.returncode == 0, opened.stderr
    assert "connected" in opened.stdout


def test_commands_run_as_the_build_user_when_asked(deb_mock, bookworm):
    proc = deb_mock("-r", bookworm, "chroot", "--user", "--", "id", "-un", check=True)
    assert proc.stdout.strip() == "builder"


def test_tmp_is_writable_by_every_user_like_a_real_tmp(deb_mock, bookworm):
    """/tmp is a sticky, world-writable tmpfs: the build user (and apt's _apt) can use it."""
    proc = deb_mock("chroot", "--user", "--", "sh", "-c", "touch /tmp/x && stat -c %a /tmp",
                    check=True)
    assert proc.stdout.strip() == "1777"


def test_two_uniqueext_environments_initialise_in_parallel(deb_mock, cache_env, bookworm):
    """Two environments of one config, created at once, are separate and both work."""
    procs = [subprocess.Popen([*DEB_MOCK, "-r", CONFIG, "--uniqueext", name, "init"],
                              env={**os.environ, **cache_env}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for name in ("par-a", "par-b")]
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    deb_mock("-r", CONFIG, "--uniqueext", "par-a", "chroot", "--", "touch", "/root/only-in-a",
             check=True)
    assert deb_mock("-r", CONFIG, "--uniqueext", "par-a", "chroot", "--", "test", "-e",
                    "/root/only-in-a").returncode == 0
    assert deb_mock("-r", CONFIG, "--uniqueext", "par-b", "chroot", "--", "test", "-e",
                    "/root/only-in-a").returncode == 1
    for name in ("par-a", "par-b"):
        deb_mock("-r", CONFIG, "--uniqueext", name, "scrub", "chroot", check=True)


def test_second_process_is_refused_while_environment_is_locked(deb_mock, cache_env, bookworm):
    """While one command runs, a second says the environment is locked (exit 60); --wait queues."""
    holder = subprocess.Popen([*DEB_MOCK, "-r", CONFIG, "--uniqueext", "locked", "--wait",
                               "chroot", "--", "sleep", "5"], env={**os.environ, **cache_env})
    chroot_log = (Path(cache_env["DEB_MOCK_STATE_DIR"]) / f"{CONFIG}-locked" / "result" /
                  "chroot.log")
    try:
        deadline = time.monotonic() + 120
        while not (chroot_log.exists() and "$ sleep 5" in chroot_log.read_text()):
            assert time.monotonic() < deadline and holder.poll() is None
            time.sleep(0.1)
        refused = deb_mock("-r", CONFIG, "--uniqueext", "locked", "chroot", "--", "true")
        assert refused.returncode == 60, refused.stderr
        assert "locked" in refused.stderr and "--wait" in refused.stderr
        waited = deb_mock("-r", CONFIG, "--uniqueext", "locked", "--wait", "chroot", "--", "true")
        assert waited.returncode == 0
    finally:
        holder.wait(timeout=120)
        deb_mock("-r", CONFIG, "--uniqueext", "locked", "scrub", "chroot")


def test_sigkill_during_bootstrap_leaves_no_partial_layer_and_next_init_works(deb_mock, cache_env):
    """A deb-mock killed mid-bootstrap leaves no layer and no mount; the next init succeeds."""
    # A build user uid no earlier run used makes the base new, so a real bootstrap starts.
    uid = 2000 + int(time.time()) % 50000
    args = ["-r", CONFIG, "--uniqueext", "killed", "--config-opts", f"build_user.uid={uid}"]
    store = Path(cache_env["DEBIAN_FORGE_CACHE_DIR"]) / "store"
    layers_before = set(os.listdir(store / "layers")) if (store / "layers").exists() else set()
    proc = subprocess.Popen([*DEB_MOCK, *args, "init"], env={**os.environ, **cache_env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_log = Path(cache_env["DEB_MOCK_STATE_DIR"]) / f"{CONFIG}-killed" / "result" / "state.log"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if state_log.exists() and "Start: bootstrap" in state_log.read_text():
            break
        time.sleep(0.2)
    time.sleep(3)  # well inside mmdebstrap's work
    assert proc.poll() is None, "init finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(1)  # let the kernel reap the sandbox's processes
    assert set(os.listdir(store / "layers")) == layers_before
    assert not project_mounts()
    done = deb_mock(*args, "init")
    assert done.returncode == 0, done.stderr
    assert "bootstrapped a new base" in done.stderr
    assert deb_mock(*args, "chroot", "--", "true").returncode == 0
    # The interrupted attempt's temporary directory was cleaned up by the next run.
    assert not [p for p in (store / "tmp").iterdir() if p.name.startswith("base")]
    record = json.loads((Path(cache_env["DEB_MOCK_STATE_DIR"]) / f"{CONFIG}-killed" /
                         "env.json").read_text())
    deb_mock(*args, "scrub", "chroot", check=True)
    from deb_mock.store import Store
    Store(store).remove(record["base"])  # this one-off base only costs space


def test_unknown_package_gives_apts_reason_and_exit_30(deb_mock, bookworm):
    proc = deb_mock("-r", bookworm, "install", "no-such-package-xyz")
    assert proc.returncode == 30
    assert "Unable to locate package no-such-package-xyz" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_copy_fallback_without_overlayfs_gives_a_working_environment(deb_mock, cache_env, bookworm):
    """With overlayfs unavailable (forced off), the environment is a full copy of the base."""
    args = ["-r", CONFIG, "--uniqueext", "copy"]
    env = {**os.environ, **cache_env, "DEB_MOCK_OVERLAY": "0"}
    run = lambda *a: subprocess.run([*DEB_MOCK, *args, *a], env=env, capture_output=True,
                                    text=True, timeout=600)
    assert run("init").returncode == 0
    record = json.loads((Path(cache_env["DEB_MOCK_STATE_DIR"]) / f"{CONFIG}-copy" /
                         "env.json").read_text())
    assert record["mode"] == "copy"
    assert run("chroot", "--", "sh", "-c", "echo kept > /root/f").returncode == 0
    assert run("chroot", "--", "cat", "/root/f").stdout == "kept\n"
    assert run("scrub", "chroot").returncode == 0


def test_a_package_is_downloaded_once_across_environments(deb_mock, cache_env, bookworm):
    """The second environment installing the same package takes it from the shared cache."""
    for name in ("cache-a", "cache-b"):
        deb_mock("-r", CONFIG, "--uniqueext", name, "install", "cowsay", check=True)
    logs = [(Path(cache_env["DEB_MOCK_STATE_DIR"]) / f"{CONFIG}-{name}" / "result" /
             "root.log").read_text() for name in ("cache-a", "cache-b")]
    assert "0 downloaded" in logs[1].splitlines()[-1] or "0 downloaded" in logs[1]
    assert deb_mock("-r", CONFIG, "--uniqueext", "cache-b", "chroot", "--",
                    "/usr/games/cowsay", "moo").returncode == 0
    for name in ("cache-a", "cache-b"):
        deb_mock("-r", CONFIG, "--uniqueext", name, "scrub", "chroot", check=True)


def test_remove_takes_a_package_out(deb_mock, bookworm):
    deb_mock("-r", bookworm, "install", "hello", check=True)
    deb_mock("-r", bookworm, "remove", "hello", check=True)
    assert deb_mock("-r", bookworm, "chroot", "--", "sh", "-c",
                    "command -v hello").returncode != 0


def test_shell_is_interactive_on_a_terminal(cache_env, bookworm):
    """`shell` gets a real terminal: a tty inside, typed commands run, the exit status returns."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # the child: deb-mock shell on the pty
        os.execvpe(DEB_MOCK[0], [*DEB_MOCK, "-r", CONFIG, "shell"], {**os.environ, **cache_env})
    os.write(fd, b"test -t 0 && test -t 1 && echo TTY-$((1+1)); echo MARK-$((40+2)); exit 3\n")
    output = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    _, status = os.waitpid(pid, 0)
    assert b"MARK-42" in output
    assert b"TTY-2" in output  # stdin and stdout are a terminal inside
    assert os.waitstatus_to_exitcode(status) == 3


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_command_is_stopped_and_leaves_no_mount(cache_env, bookworm, sig):
    """SIGINT or SIGTERM ends deb-mock, the command inside and every mount, with status 130."""
    proc = subprocess.Popen([*DEB_MOCK, "-r", CONFIG, "chroot", "--", "sleep", "300"],
                            env={**os.environ, **cache_env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    chroot_log = Path(cache_env["DEB_MOCK_STATE_DIR"]) / CONFIG / "result" / "chroot.log"
    deadline = time.monotonic() + 60
    while not (chroot_log.exists() and chroot_log.read_text().rstrip().endswith("$ sleep 300")):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    leftover = subprocess.run(["pgrep", "-f", "sleep 300"], capture_output=True, text=True)
    assert leftover.stdout == ""


def test_without_the_package_cache_plugin_downloads_are_not_kept(deb_mock, cache_env, bookworm):
    """--disable-plugin package_cache: the install works, and the shared cache never gets the
    file (nor is a private download directory left behind)."""
    env = ("-r", CONFIG, "--uniqueext", "nocache", "--disable-plugin", "package_cache")
    show = deb_mock(*env, "chroot", "--", "apt-cache", "show", "--no-all-versions", "cowsay",
                    check=True).stdout
    sha = next(line.split()[1] for line in show.splitlines() if line.startswith("SHA256:"))
    cache = Path(cache_env["DEBIAN_FORGE_CACHE_DIR"])
    for earlier in (cache / "packages").rglob(f"{sha}.deb"):  # from another test, long ago
        earlier.unlink()
    deb_mock(*env, "install", "cowsay", check=True)
    assert deb_mock(*env, "chroot", "--", "test", "-x", "/usr/games/cowsay").returncode == 0
    assert not list((cache / "packages").rglob(f"{sha}.deb"))
    assert not list(cache.glob("packages-*"))
    deb_mock(*env, "scrub", "chroot", check=True)
