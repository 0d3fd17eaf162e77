"""`make bench`: every benchmark, each figure a ratio against the peer tool in the same run.

    python bench/run.py [deb-mock|forge|build|disk|container]...   (default: all)
"""

from __future__ import annotations

import sys

import bench_build
import bench_container
import bench_deb_mock
import bench_disk
import bench_forge

SUITES = {"deb-mock": bench_deb_mock.main, "forge": bench_forge.main,
          "build": bench_build.main, "disk": bench_disk.main,
          "container": bench_container.main}


def main(names: list[str]) -> int:
    missed = 0
    for name in names or list(SUITES):
        if name not in SUITES:
            print(f"unknown benchmark {name!r}; known: {', '.join(SUITES)}", file=sys.stderr)
            return 2
        missed += SUITES[name]()
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
