"""Snapshots are layer operations: taking, rolling back and removing one costs no copy."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.integration
ENV = ("-r", "debian-bookworm-amd64", "--uniqueext", "snapshots")


def test_rollback_takes_back_what_was_installed_since_the_snapshot(deb_mock, bookworm):
    """snapshot, install hello, rollback-to: hello is gone; the snapshot stays listed."""
    deb_mock(*ENV, "init", check=True)
    start = time.monotonic()
    deb_mock(*ENV, "snapshot", "clean-slate", check=True)
    assert time.monotonic() - start < 10
    deb_mock(*ENV, "install", "hello", check=True)
    assert deb_mock(*ENV, "chroot", "--", "hello").returncode == 0
    deb_mock(*ENV, "rollback-to", "clean-slate", check=True)
    assert deb_mock(*ENV, "chroot", "--", "sh", "-c", "command -v hello").returncode != 0
    listing = deb_mock(*ENV, "list-snapshots", check=True).stdout
    assert "* clean-slate" in listing
    deb_mock(*ENV, "remove-snapshot", "clean-slate", check=True)
    assert "clean-slate" not in deb_mock(*ENV, "list-snapshots", check=True).stdout
    deb_mock(*ENV, "scrub", "chroot", check=True)


def test_unknown_snapshot_and_duplicate_names_are_usage_errors(deb_mock, bookworm):
    deb_mock(*ENV, "init", check=True)
    proc = deb_mock(*ENV, "rollback-to", "nothere")
    assert proc.returncode == 2 and "no snapshot 'nothere'" in proc.stderr
    deb_mock(*ENV, "snapshot", "one", check=True)
    proc = deb_mock(*ENV, "snapshot", "one")
    assert proc.returncode == 2 and "already" in proc.stderr
    deb_mock(*ENV, "scrub", "chroot", check=True)
