"""Why is a package in the image? The dependency chain from what a stage asked for to it.

The chain is read from the archive's own package relations (Depends, Pre-Depends, and
Recommends where the stage installs them) over exactly the packages the lock holds, so it shows
the path apt took, not every path that exists.
"""

from __future__ import annotations

import re
from collections import deque

from deb_mock.apt_host import HostApt, ResolvedPackage

_RELATION_FIELDS = ("Pre-Depends", "Depends")
# What each mmdebstrap variant asks for by priority (the rest of its request is by name).
_VARIANT_PRIORITIES = {"required": {"required"}, "minbase": {"required"},
                       "buildd": {"required"}, "important": {"required", "important"},
                       "standard": {"required", "important", "standard"}}


def _alternatives(clause: str) -> list[str]:
    """`a (>= 1) | b:any` → ['a', 'b']."""
    return [re.split(r"[\s(:\[<]", alt.strip(), maxsplit=1)[0] for alt in clause.split("|")]


def dependency_chain(host_apt: HostApt, roots: list[str], target: str,
                     packages: list[ResolvedPackage], recommends: bool = False) -> list[str]:
    """Steps from one of `roots` to `target` through the relations of `packages`:
    `['forge-tool 1.0', 'Depends: forge-lib (>= 1.0) → forge-lib 1.0']`; [] if none leads."""
    stanzas = {fields["Package"]: fields for fields in host_apt.show(packages)}
    providers: dict[str, list[str]] = {}
    for name, fields in stanzas.items():
        for provided in fields.get("Provides", "").split(","):
            if provided.strip():
                providers.setdefault(_alternatives(provided)[0], []).append(name)
    fields_used = _RELATION_FIELDS + (("Recommends",) if recommends else ())
    parent: dict[str, tuple[str, str, str] | None] = {r: None for r in roots if r in stanzas}
    queue = deque(parent)
    while queue:
        name = queue.popleft()
        if name == target:
            break
        for field in fields_used:
            for clause in filter(None, (c.strip() for c in stanzas[name].get(field, "").split(","))):
                for alt in _alternatives(clause):
                    for real in ([alt] if alt in stanzas else providers.get(alt, [])):
                        if real not in parent:
                            parent[real] = (name, field, clause)
                            queue.append(real)
    if target not in parent:
        return []
    steps = []
    node = target
    while parent[node] is not None:
        above, field, clause = parent[node]
        steps.append(f"{field}: {clause} → {node} {stanzas[node]['Version']}")
        node = above
    steps.append(f"{node} {stanzas[node]['Version']}")
    return list(reversed(steps))


def bootstrap_roots(host_apt: HostApt, variant: str, extra: list[str],
                    packages: list[ResolvedPackage]) -> list[str]:
    """What a bootstrap of `variant` asked for, by name: essential and prioritised packages,
    apt, build-essential for buildd, and the extra packages."""
    priorities = _VARIANT_PRIORITIES.get(variant, set())
    roots = [fields["Package"] for fields in host_apt.show(packages)
             if fields.get("Essential") == "yes" or fields.get("Priority") in priorities]
    if variant not in ("extract", "custom", "essential"):
        roots.append("apt")
    if variant == "buildd":
        roots.append("build-essential")
    return roots + list(extra)
