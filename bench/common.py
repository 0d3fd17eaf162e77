"""What the benchmarks share: timing a command, a process's peak RSS, the result table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(os.environ.get("DEBIAN_FORGE_BENCH_DIR", "/var/cache/debian-forge-bench"))
RESULTS = Path(__file__).parent / "results"

# Runs a CLI's main() and writes the process's own peak RSS (KiB) to the file in argv[1].
_RSS_WRAPPER = """
import atexit, importlib, resource, sys
out = sys.argv.pop(1)
module = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)))
importlib.import_module(module).main(sys.argv[1:])
"""


def timed(argv: list[str], env: dict | None = None) -> float:
    start = time.monotonic()
    subprocess.run([str(a) for a in argv], check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.monotonic() - start


def run_cli(module: str, args: list, env: dict, rss_file: Path | None = None) -> float:
    """Wall time of `python -m <package>` (module is its cli, e.g. deb_mock.cli)."""
    if rss_file is None:
        return timed([sys.executable, "-m", module.removesuffix(".cli"), *args], env)
    return timed([sys.executable, "-c", _RSS_WRAPPER, rss_file, module, *args], env)


def report(name: str, rows: list[tuple[str, float, float, str]], data: dict) -> int:
    """Print the table (value against target), save the figures; returns the misses."""
    print(f"{'measure':<34} {'value':>8} {'target':>8}  result  detail")
    failed = 0
    for measure, value, target, detail in rows:
        ok = value <= target
        failed += not ok
        print(f"{measure:<34} {value:>8.3f} {target:>8.2f}  {'ok' if ok else 'MISSED':<6}  {detail}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(
        json.dumps(data, indent=1))
    return failed
