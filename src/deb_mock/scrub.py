"""`deb-mock scrub`: remove an environment or caches, as mock's --scrub does."""

from __future__ import annotations

import shutil
from typing import Iterator

from deb_mock.environment import Environment


def scrub(env: Environment, what: str) -> Iterator[str]:
    """Remove what `what` names (all, chroot, root-cache, package-cache, apt-cache)."""
    env.plugins.hook.scrub(env=env, what=what)
    if what in ("all", "chroot"):
        env.clean()
        shutil.rmtree(env.dir, ignore_errors=True)
        yield f"removed environment {env.name}"
    if what in ("all", "root-cache"):
        bases = [info.id for info in env.store.ls()
                 if info.meta.get("kind") == "deb-mock-base"
                 and info.meta.get("config") == env.config.name]
        for layer_id in bases:
            env.store.remove(layer_id)
        yield f"removed {len(bases)} cached base(s) of {env.config.name}"
    if what in ("all", "package-cache"):
        size = env.packages.size()
        env.packages.scrub()
        yield f"removed the package cache ({size / 2**20:.1f} MiB)"
    if what in ("all", "apt-cache"):
        shutil.rmtree(env.host_apt.root, ignore_errors=True)
        yield "removed the archive indexes"
