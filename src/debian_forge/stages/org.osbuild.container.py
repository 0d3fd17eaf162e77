"""Make a tree container-shaped: no kernel, no services started, nothing host-specific, slim.

What Debian's official container images do, each part switched by an option:
- a tree with a kernel or a bootloader is refused: a container shares its host's;
- `policy_rc_d`: `/usr/sbin/policy-rc.d` exits 101, so packages installed later (in this build
  or in a container) never start services;
- `/etc/hostname` and `/etc/resolv.conf` are removed: the container runtime provides them;
- `apt_config`: apt settings of Docker's Debian images in /etc/apt/apt.conf.d/
  (docker-clean: no package cache kept after installs; docker-no-languages;
  docker-gzip-indexes; docker-autoremove-suggests);
- `slim`: dpkg's `path-exclude` for documentation (copyright files kept), manual pages, info,
  lintian overrides and translations, written to /etc/dpkg/dpkg.cfg.d/debian-forge-slim so later
  installs leave them out, and the files already there removed;
- then org.osbuild.cleanup's defaults: machine id, logs, apt lists and caches, temporary files.
Place it after the bootstrap, before the apt stages, so `slim` also applies to what they
install (org.osbuild.debootstrap's own `slim` keeps the files out of the bootstrap layer
itself, which matters for per-stage image layers). The bytes it saved (in total and by `slim`)
go into the build record.
"""

from __future__ import annotations

import os
from pathlib import Path

from debian_forge import stages
from debian_forge.context import StageContext, StageError
from debian_forge.stagelib import (SLIM_DPKG_CONFIG, SLIM_EXCLUDES, slim_dpkg_config,
                                   slim_excluded, switch_property)

APT_CONFIG = {
    "docker-clean": (
        'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
        '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
        'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
        '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
        'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n'),
    "docker-no-languages": 'Acquire::Languages "none";\n',
    "docker-gzip-indexes": ('Acquire::GzipIndexes "true";\n'
                            'Acquire::CompressionTypes::Order:: "gz";\n'),
    "docker-autoremove-suggests": 'Apt::AutoRemove::SuggestsImportant "false";\n',
}


SCHEMA = {
    "properties": {
        "policy_rc_d": switch_property(True, "Install a policy-rc.d that keeps services from "
                                             "starting"),
        "apt_config": switch_property(True, "Write the apt settings of Docker's Debian images"),
        "slim": switch_property(False, "Exclude documentation, manual pages and translations "
                                       "(dpkg path-exclude) and remove those already installed"),
    },
}


def run(ctx: StageContext, options: dict) -> None:
    kernels = sorted(str(p.name) for p in ctx.tree.path("/boot").glob("vmlinuz*"))
    if kernels or ctx.tree.exists("/boot/grub"):
        raise StageError(f"a container has no kernel or bootloader of its own, and this tree "
                         f"has {', '.join(kernels) or '/boot/grub'}: remove the linux-image and "
                         "grub packages, or build the container from a pipeline without them")
    before = _tree_bytes(ctx.tree.root)
    for path in ("/etc/hostname", "/etc/resolv.conf"):
        target = ctx.tree.path(path)
        if target.exists() or target.is_symlink():
            target.unlink()
    if options.get("policy_rc_d", True):
        ctx.tree.write_text("/usr/sbin/policy-rc.d",
                            "#!/bin/sh\n# debian-forge (org.osbuild.container): no service "
                            "starts in a container build.\nexit 101\n", mode=0o755)
    if options.get("apt_config", True):
        for name, text in APT_CONFIG.items():
            ctx.tree.write_text(f"/etc/apt/apt.conf.d/{name}", text)
    if options.get("slim"):
        ctx.tree.write_text(SLIM_DPKG_CONFIG, slim_dpkg_config())
        files, size = _remove_excluded(ctx.tree.root)
        ctx.report["slim"] = {"files_removed": files, "bytes_saved": size}
    stages.get("org.osbuild.cleanup").module.run(ctx, {})
    after = _tree_bytes(ctx.tree.root)
    ctx.report.update({"bytes_before": before, "bytes_after": after,
                       "bytes_saved": before - after})
    ctx.log.write(f"container tree: {before} → {after} bytes\n")


def _remove_excluded(root: Path) -> tuple[int, int]:
    """Remove the files the slim path-excludes name (what dpkg would not have unpacked);
    directories stay, as dpkg keeps them. Returns (files, bytes)."""
    files = size = 0
    for top in {p.split("/*")[0] for p in SLIM_EXCLUDES}:
        base = root / top.lstrip("/")
        if not base.is_dir() or base.is_symlink():
            continue
        for directory, _, names in os.walk(base):
            for name in names:
                host = Path(directory, name)
                if slim_excluded("/" + str(host.relative_to(root))):
                    size += host.lstat().st_size
                    files += 1
                    host.unlink()
    return files, size


def _tree_bytes(root: Path) -> int:
    """Apparent size of the tree's files, each inode once."""
    seen, total = set(), 0
    for directory, _, names in os.walk(root):
        for name in names:
            st = os.lstat(os.path.join(directory, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total
