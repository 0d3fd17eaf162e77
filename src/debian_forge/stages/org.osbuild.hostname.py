"""Set the system hostname of a tree.

Writes `/etc/hostname` and makes the name resolve locally through the `127.0.1.1` line of
`/etc/hosts`, as the Debian installer does.
"""

from __future__ import annotations

from debian_forge.context import StageContext

SCHEMA = {
    "required": ["hostname"],
    "properties": {
        "hostname": {
            "type": "string",
            "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$",
            "x-expected": "a hostname (lower-case letters, digits and '-', dot-separated labels)",
            "description": "The name written to /etc/hostname; its first label also goes into "
                           "/etc/hosts as 127.0.1.1.",
        },
    },
}


def run(ctx: StageContext, options: dict) -> None:
    hostname = options["hostname"]
    ctx.tree.write_text("/etc/hostname", hostname + "\n")
    short = hostname.split(".")[0]
    names = f"{hostname} {short}" if short != hostname else hostname
    hosts = ctx.tree.read_text("/etc/hosts") if ctx.tree.exists("/etc/hosts") else (
        "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n")
    lines = [line for line in hosts.splitlines() if not line.startswith("127.0.1.1")]
    lines.insert(1 if lines else 0, f"127.0.1.1\t{names}")
    ctx.tree.write_text("/etc/hosts", "\n".join(lines) + "\n")
