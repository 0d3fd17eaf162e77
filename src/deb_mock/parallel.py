"""Several builds at once (`deb-mock build -j N A.dsc B.dsc …`): one deb-mock process per
source, each in its own environment (--uniqueext), sharing the store and the package cache —
which lock only short critical sections, so builds do not wait on each other's caches."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def _global_options(argv: list[str]) -> list[str]:
    """The global options this deb-mock was started with, without --uniqueext."""
    head = argv[:argv.index("build")] if "build" in argv else []
    out, skip = [], False
    for arg in head:
        if skip:
            skip = False
        elif arg == "--uniqueext":
            skip = True
        elif not arg.startswith("--uniqueext="):
            out.append(arg)
    return out


def label(source: str) -> str:
    """A directory name for the results of SOURCE."""
    name = Path(source.rstrip("/")).name
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name.removesuffix(".dsc")) or "source"


def build_many(ctx, sources: list[str], resultdir: Path | None, *, jobs: int, selection: str,
               deb_build_options: str, network: bool) -> list[str]:
    """Build `sources`, `jobs` at a time; print a summary; return the ones that failed."""
    base = resultdir or ctx.env.result_dir
    globals_ = _global_options(sys.argv[1:])
    flags = {"any": ["--arch-any"], "all": ["--arch-all"], "source": ["--source"],
             "full": ["--full"]}.get(selection, [])
    if network:
        flags.append("--enable-network")
    if deb_build_options:
        flags += ["--deb-build-options", deb_build_options]

    def one(index: int, source: str) -> tuple[str, int, Path]:
        target = base / label(source)
        argv = [sys.executable, "-m", "deb_mock", *globals_, "--uniqueext", f"job{index}",
                "build", source, "--resultdir", str(target), *flags]
        target.mkdir(parents=True, exist_ok=True)
        with open(target / "deb-mock.log", "w") as log:
            code = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT,
                                  env=os.environ.copy()).returncode
        ctx.ui.info(f"{'built ' if code == 0 else 'FAILED'} {source} → {target}")
        return source, code, target

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        outcomes = list(pool.map(lambda item: one(*item), enumerate(sources)))
    failed = [source for source, code, _ in outcomes if code != 0]
    ctx.ui.info(f"{len(sources) - len(failed)} of {len(sources)} built"
                + (f"; failed: {', '.join(failed)}" if failed else ""))
    return failed
