"""What the user sees: one-line messages, step timings and progress bars on a terminal."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator



class UI:
    """Messages on stderr; progress bars only on a terminal and never when quiet.

    rich is imported only when a bar is drawn: it costs 25 ms at start-up.
    """

    def __init__(self, quiet: bool = False, verbose: bool = False):
        self.quiet = quiet
        self.verbose = verbose
        self.interactive = sys.stderr.isatty() and not quiet
        self._console = None

    @property
    def console(self):
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False)
        return self._console

    def info(self, message: str) -> None:
        if not self.quiet:
            _write(message)

    def debug(self, message: str) -> None:
        if self.verbose:
            _write(message)

    def warn(self, message: str) -> None:
        _write(f"warning: {message}")

    @contextmanager
    def download(self, description: str) -> Iterator[Callable]:
        """A callback for PackageCache.fetch progress, drawn as a transfer bar."""
        if not self.interactive:
            yield lambda progress: None
            return
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TransferSpeedColumn)

        columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                   TransferSpeedColumn(), TimeElapsedColumn())
        with Progress(*columns, console=self.console, transient=True) as bar:
            task = bar.add_task(description, total=None)

            def update(progress) -> None:
                bar.update(task, total=progress.total_bytes or None, completed=progress.done_bytes,
                           description=f"{description} ({progress.done_files}/{progress.total_files})")

            yield update

    @contextmanager
    def activity(self, description: str,
                 total: int | None = None) -> Iterator[Callable[..., None]]:
        """A spinner with the latest line of a long step (bootstrap, apt); with `total`, a bar
        too. The callback takes the line and, optionally, how many of `total` steps are done."""
        if not self.interactive:
            yield lambda line, done=None: None
            return
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn)

        columns = [TextColumn("{task.description}")]
        if total:
            columns += [BarColumn(bar_width=20), MofNCompleteColumn()]
        columns += [TextColumn("[dim]{task.fields[line]}"), TimeElapsedColumn()]
        with Progress(*columns, console=self.console, transient=True) as bar:
            task = bar.add_task(description, total=total, line="")
            last = [0.0]

            def update(line: str, done: int | None = None) -> None:
                now = time.monotonic()
                if now - last[0] > 0.1:
                    last[0] = now
                    fields = {"line": line.strip()[:60]}
                    if done is not None and total:
                        fields["completed"] = min(done, total)
                    bar.update(task, **fields)

            yield update

def _write(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
