"""lintian — check every successful build's packages with lintian inside the environment.

Off by default. Installs `lintian` with the build dependencies and, after a successful build, runs
`lintian --tag-display-limit 0 /results/<package>.changes` in the environment as the build user,
with the build's result directory bound read-only at `/results`. The full output goes to
`lintian.log` in the result directory and a summary to build.json under `lintian`:
`{"errors": N, "warnings": N, "info": N, "tags": [the first 50 tag lines], "returncode": N}`
(plus `"error"` when lintian itself could not run). Lintian's findings never fail the build.

Caveat: lintian and its dependencies are installed together with the build dependencies, so
they are present during the build; a package that lacks a build dependency which lintian happens
to pull in (a Perl module, say) builds here but not on a plain buildd. Leave the plugin off for
the build that decides whether the build dependencies are complete.
"""

from __future__ import annotations

import re
from pathlib import Path

from deb_mock.plugins import hookimpl
from deb_mock.sandbox import Bind

NAME = "lintian"
DEFAULT_ENABLED = False
DEFAULT_OPTIONS: dict = {}
OPTIONS_SCHEMA = {"type": "object", "additionalProperties": False, "properties": {}}
RESULTS = "/results"
LOG = "lintian.log"
MAX_TAGS = 50

# `E: hello source: no-debian-copyright-in-source`, `W: hello: no-manual-page [usr/bin/hello]`:
# a severity letter, the package (with "source", "changes", an architecture…), the tag, details.
_TAG = re.compile(r"^(?P<code>[EWIPXOC]): (?P<package>[^:\s][^:]*): "
                  r"(?P<tag>[A-Za-z0-9][\w.+\-]*)\b")
_COUNTED = {"E": "errors", "W": "warnings", "I": "info"}


def parse(output: str) -> dict:
    """The summary of lintian's output: counts of errors, warnings and info, the tag lines."""
    summary = {"errors": 0, "warnings": 0, "info": 0, "tags": []}
    for line in output.splitlines():
        match = _TAG.match(line)
        if not match:
            continue  # N: explanations, blank lines, messages
        if match["code"] in _COUNTED:
            summary[_COUNTED[match["code"]]] += 1
        if len(summary["tags"]) < MAX_TAGS:
            summary["tags"].append(line.rstrip())
    return summary


@hookimpl
def build_packages(env, build) -> list:
    return ["lintian"]


@hookimpl
def postbuild(env, build, result) -> None:
    if not result.ok or result.changes is None:
        return
    result_dir = Path(build.result_dir)
    changes = Path(result.changes)
    inside = f"{RESULTS}/{changes.relative_to(result_dir).as_posix()}"
    run = env.execute(["lintian", "--tag-display-limit", "0", inside], as_user=True,
                      binds=[Bind(result_dir, RESULTS, readonly=True)], capture=True)
    (result_dir / LOG).write_text(run.stdout + run.stderr)
    summary = parse(run.stdout)
    summary["returncode"] = run.returncode
    # 0: fine, 2: tags at the --fail-on level; no tag at all with a failure status means lintian
    # itself failed (1 is its run-time error, 127 a missing lintian).
    if run.returncode != 0 and not summary["tags"]:
        last = (run.stderr.strip().splitlines() or [f"exit status {run.returncode}"])[-1]
        summary["error"] = last
    result.extra[NAME] = summary
