"""What `resolve --dry-run` and `explain` print: plans per stage, changes against a lock, and
the dependency chain that pulls a package in."""

from __future__ import annotations

from debian_forge.explain import bootstrap_roots, dependency_chain
from debian_forge.resolve import Resolved, parse_request


def _size(nbytes: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if nbytes < 1000 or unit == "GB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    return f"{nbytes} B"


def plan_lines(resolved: Resolved, previous: dict[str, str] | None) -> list[str]:
    """One stage's plan: its packages with versions and sizes, and the change against
    `previous` (name → version of the earlier lock), if there is one."""
    packages = sorted(resolved.packages, key=lambda p: p.name)
    installed = {f["Package"]: int(f.get("Installed-Size", "0") or 0) * 1024
                 for f in resolved.host_apt.show(packages)}
    download = sum(p.ref.size for p in packages)
    lines = [f"{resolved.pipeline} {resolved.stage.path} {resolved.stage.type}: "
             f"{len(packages)} packages, {_size(download)} to download, "
             f"{_size(sum(installed.values()))} installed"]
    now = {p.name: p.version for p in packages}
    for package in packages:
        old = (previous or {}).get(package.name)
        if previous is None or old == package.version:
            mark, text = " ", package.version
        elif old is None:
            mark, text = "+", package.version
        else:
            mark, text = "~", f"{old} → {package.version}"
        lines.append(f"  {mark} {package.name} {text} ({_size(package.ref.size)})")
    for name, version in sorted((previous or {}).items()):
        if name not in now:
            lines.append(f"  - {name} {version}")
    return lines


def explain_lines(resolved: list[Resolved], package: str) -> list[str]:
    """For each stage that installs `package`: the chain from what the stage asked for."""
    lines = []
    for item in resolved:
        found = [p for p in item.packages if p.name == package]
        if not found:
            continue
        stage = item.stage
        if stage.type == "org.osbuild.debootstrap":
            roots = bootstrap_roots(item.host_apt, stage.options.get("variant", "minbase"),
                                    stage.options.get("packages", []), item.packages)
            recommends = False
        else:
            roots = [parse_request(text).name for text in stage.options.get("packages", [])]
            recommends = bool(stage.options.get("install_recommends")
                              or stage.options.get("strategy") == "aggressive")
        everything = item.packages + list(item.installed_before.values())
        chain = dependency_chain(item.host_apt, roots, package, everything, recommends)
        head = (f"{item.pipeline} {stage.path} {stage.type} installs {package} "
                f"{found[0].version}")
        if not chain:
            lines.append(f"{head}: no dependency path from the request (apt chose it to "
                         "satisfy an alternative or a virtual package)")
        elif len(chain) == 1:
            lines.append(f"{head}: it is asked for by name")
        else:
            lines.append(f"{head}:\n    " + "\n    ".join(chain))
    return lines

