"""Progress of a build, for people (a terminal) or programs (`--json`, one event per line).

Events carry the context osbuild's monitor gives — pipeline and stage with their IDs — plus
progress, duration and result, so a CI log or a dashboard can follow a build.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from deb_mock.ui import UI


class Monitor:
    """Human output on stderr (spinners and bars on a terminal), or JSON events on stdout."""

    def __init__(self, json_events: bool = False, quiet: bool = False):
        self.json_events = json_events
        self.ui = UI(quiet=quiet or json_events)

    def event(self, kind: str, **fields) -> None:
        if self.json_events:
            record = {"event": kind, "timestamp": round(time.time(), 3), **fields}
            sys.stdout.write(json.dumps(record, sort_keys=True) + "\n")
            sys.stdout.flush()

    def info(self, message: str) -> None:
        self.ui.info(message)
        self.event("message", message=message)

    def pipeline(self, name: str, pipeline_id: str | None) -> None:
        self.ui.info(f"pipeline {name}")
        self.event("pipeline", pipeline={"name": name, "id": pipeline_id})

    def stage_cached(self, pipeline: str, stage: str, stage_id: str) -> None:
        self.ui.info(f"  {stage} {stage_id[:12]}  cached")
        self.event("stage", pipeline={"name": pipeline}, stage={"name": stage, "id": stage_id},
                   result="cached", cached=True, duration=0.0)

    @contextmanager
    def stage(self, pipeline: str, stage: str, stage_id: str,
              steps: int | None = None) -> Iterator[Callable[[str], None]]:
        """Yields the callback for the stage's output lines; reports the end and its duration.

        `steps`: how many package steps (unpack, set up) the stage has, for a progress bar."""
        context = {"pipeline": {"name": pipeline}, "stage": {"name": stage, "id": stage_id}}
        self.event("stage-start", **context)
        start = time.monotonic()
        result = "failure"
        lines = _ProgressLines(self, context, steps)
        try:
            with self.ui.activity(f"  {stage} {stage_id[:12]}", total=steps) as on_line:
                lines.show = on_line
                yield lines
            result = "success"
        finally:
            duration = round(time.monotonic() - start, 3)
            if result == "success":
                self.ui.info(f"  {stage} {stage_id[:12]}  built in {duration:.1f} s")
            self.event("stage", **context, result=result, cached=False, duration=duration)

    @contextmanager
    def download(self, what: str) -> Iterator[Callable]:
        """A PackageCache.fetch progress callback: a bar, or `progress` events."""
        last = [0.0]
        with self.ui.download(what) as bar:
            def update(progress) -> None:
                bar(progress)
                now = time.monotonic()
                done = progress.done_files == progress.total_files
                if self.json_events and (done or now - last[0] > 0.5):
                    last[0] = now
                    self.event("progress", progress={
                        "name": what, "total": progress.total_files, "done": progress.done_files,
                        "bytes": {"total": progress.total_bytes, "done": progress.done_bytes}})
            yield update


class _ProgressLines:
    """A stage's output lines: the latest is shown; dpkg's unpack/setup steps count progress."""

    def __init__(self, monitor: Monitor, context: dict, total: int | None):
        self.monitor = monitor
        self.context = context
        self.total = total
        self.show: Callable[..., None] = lambda line, done=None: None
        self.steps = 0
        self._last = 0.0

    def __call__(self, text: str) -> None:
        for line in text.splitlines():
            if line.startswith(("Unpacking ", "Setting up ")):
                self.steps += 1
                now = time.monotonic()
                if now - self._last > 0.5:
                    self._last = now
                    self.monitor.event("progress", **self.context, progress={
                        "name": "packages", "done": self.steps, "total": self.total})
            if line.strip():
                self.show(line, self.steps)
