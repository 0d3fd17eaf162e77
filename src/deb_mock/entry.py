"""Running a click command group as a program: errors become messages and exit codes.

Shared by deb-mock and debian-forge so both tools end the same way on the same mistakes.
"""

from __future__ import annotations

import signal
import sys

import click

from deb_mock.errors import CommandFailed, DebMockError, ExitCode, Interrupted


def _on_sigterm(signum, frame):
    raise Interrupted("terminated")


def run_group(group: click.Group, prog_name: str, argv: list[str] | None = None) -> None:
    """Run `group`; every DebMockError becomes `<prog>: error: …` and its exit code, never a
    traceback. SIGTERM and Ctrl-C unwind (so mounts and temporary files are cleaned) and
    exit 130."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        group.main(args=argv, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(ExitCode.INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitCode.USAGE)
    except CommandFailed as exc:
        sys.exit(exc.exit_code)
    except DebMockError as exc:
        click.echo(f"{prog_name}: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo(f"{prog_name}: interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    sys.exit(0)
