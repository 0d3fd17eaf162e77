"""Typed errors. Library code raises them; only the CLI turns them into a message and an exit code.

Exit codes follow Fedora mock where a meaning matches (see docs/exit-codes.md); every mistake in
the user's input (config, command line, manifest) is 2, the same in both tools.
"""

from __future__ import annotations


class ExitCode:
    OK = 0
    GENERIC = 1
    USAGE = 2  # bad config, option, manifest: the user's input is wrong
    CHAIN_PARTIAL = 4
    BUILD_FAILED = 10
    TIMEOUT = 11
    CHROOT = 20  # the environment could not be set up or entered
    PACKAGE_MANAGER = 30
    BAD_SOURCE = 40
    LOCKED = 60
    RESULTDIR = 70
    INTERRUPTED = 130


class DebMockError(Exception):
    """Base of every error meant for a person; `exit_code` is what the CLI exits with."""

    exit_code = ExitCode.GENERIC

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(DebMockError):
    """A config file or override is wrong; the message names the file and the key."""

    exit_code = ExitCode.USAGE


class UsageError(DebMockError):
    exit_code = ExitCode.USAGE


class HostError(DebMockError):
    """The host cannot run us: not root, a missing tool (the message names its package)."""

    exit_code = ExitCode.USAGE


class EnvironmentLocked(DebMockError):
    exit_code = ExitCode.LOCKED

    def __init__(self, name: str, holder: str = ""):
        who = f" by {holder}" if holder else ""
        super().__init__(
            f"environment '{name}' is locked{who}: another deb-mock process is using it. "
            "Wait for it, pass --wait to queue behind it, or use --uniqueext NAME for a separate copy."
        )
        self.name = name


class ChrootError(DebMockError):
    exit_code = ExitCode.CHROOT


class PackageManagerError(DebMockError):
    exit_code = ExitCode.PACKAGE_MANAGER


class FetchError(PackageManagerError):
    """A download failed or did not match its sha256."""


class CommandFailed(DebMockError):
    """A command run inside an environment failed; its status becomes ours."""

    def __init__(self, message: str, returncode: int):
        super().__init__(message)
        self.exit_code = returncode


class Interrupted(DebMockError):
    exit_code = ExitCode.INTERRUPTED
