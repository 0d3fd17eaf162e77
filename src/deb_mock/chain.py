"""Chain builds (mock --chain): each result goes into a local repository that the later builds
of the chain can take build dependencies from."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from deb_mock.build import build_package
from deb_mock.errors import DebMockError
from deb_mock.parallel import label
from deb_mock.repository import index_flat_repository


@dataclass
class ChainResult:
    built: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # source → first line of the reason


def build_chain(env, sources: list[str], result_dir: Path, *, keep_going: bool,
                recurse: bool, **build_options) -> ChainResult:
    """Build `sources` in order; with `keep_going` go on after a failure, with `recurse` retry
    the failed ones after the others while that makes progress."""
    repo = result_dir / "repo"
    repo.mkdir(parents=True, exist_ok=True)
    index_flat_repository(repo)
    outcome = ChainResult()
    pending = list(sources)
    while pending:
        failed_now: dict[str, str] = {}
        for source in pending:
            if failed_now and not (keep_going or recurse):
                break
            target = result_dir / label(source)
            env.ui.info(f"chain: building {source}")
            try:
                result = build_package(env, source, target, extra_repo=repo, **build_options)
            except DebMockError as exc:
                failed_now[source] = str(exc).splitlines()[0]
                env.ui.info(f"chain: {source} failed: {failed_now[source]}")
                continue
            for deb in result.artifacts:
                if deb.suffix in (".deb", ".udeb"):
                    shutil.copy2(deb, repo / deb.name)
            index_flat_repository(repo)
            outcome.built.append(source)
        retry = [s for s in pending if s in failed_now]
        progressed = len(retry) < len(pending)
        if not (recurse and retry and progressed):
            outcome.failed.update(failed_now)
            outcome.failed.update({s: "not built: the chain stopped before it"
                                   for s in pending if s not in failed_now
                                   and s not in outcome.built})
            break
        pending = retry
    return outcome
