"""The result directory's logs, named as in Fedora mock: state.log, root.log, chroot.log."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


class ResultLogs:
    """Appends to the logs of one environment's result directory."""

    def __init__(self, result_dir: Path):
        self.dir = result_dir
        result_dir.mkdir(parents=True, exist_ok=True)

    def _append(self, name: str, text: str) -> None:
        with open(self.dir / name, "a", encoding="utf-8") as log:
            log.write(text)

    @contextmanager
    def state(self, label: str) -> Iterator[None]:
        """`Start: label` ... `Finish: label (N.NN s)` in state.log, like mock."""
        start = time.monotonic()
        self._append("state.log", f"{_stamp()} Start: {label}\n")
        outcome = "Finish"
        try:
            yield
        except BaseException:
            outcome = "Failed"
            raise
        finally:
            self._append("state.log",
                         f"{_stamp()} {outcome}: {label} ({time.monotonic() - start:.2f} s)\n")

    @contextmanager
    def open(self, name: str, header: str | None = None) -> Iterator[IO[str]]:
        """A log file of the result directory, opened for appending (line buffered)."""
        with open(self.dir / name, "a", encoding="utf-8", buffering=1) as log:
            if header:
                log.write(f"{_stamp()} {header}\n")
            yield log


def _stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")
