"""Find the Debian mirror the host already uses, from its APT sources.

The design forbids hard-coding a mirror host: a new user gets whatever mirror their own apt
uses. We read the same files apt reads — `/etc/apt/sources.list`, then `*.list` and deb822
`*.sources` in `/etc/apt/sources.list.d/` in name order — and skip what apt skips (other file
names such as `*.disabled`, comments, `Enabled: no`), plus `deb-src`-only entries, which say
nothing about where binary packages come from.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from deb_mock.errors import ConfigError

log = logging.getLogger(__name__)

MIRROR_ENV = "DEBIAN_FORGE_MIRROR"

# Suite names that identify the Debian archive (codenames and aliases). Derived suites such as
# `bookworm-updates` are matched through DERIVED_SUFFIXES; `-security` is handled separately.
DEBIAN_SUITES = frozenset({
    "buster", "bullseye", "bookworm", "trixie", "forky", "duke",
    "sid", "unstable", "experimental", "testing", "stable", "oldstable", "oldoldstable",
})
DERIVED_SUFFIXES = ("-updates", "-proposed-updates", "-backports", "-backports-sloppy")

# apt only reads files whose whole name matches this (apt-config Dir::Etc::SourceParts rules);
# everything else — `foo.list.disabled`, `foo.sources.dpkg-old`, `foo.save` — is ignored by apt.
_PART_NAME = re.compile(r"^[A-Za-z0-9_.\-]+\.(list|sources)$")


@dataclass(frozen=True)
class AptSource:
    """One enabled APT source entry (a one-line `deb` line or a deb822 stanza)."""

    types: tuple[str, ...]
    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str | None
    origin_file: str


def read_host_sources(root: Path = Path("/")) -> list[AptSource]:
    """Every enabled binary (`deb`) source under `root`/etc/apt, in the order apt reads them.

    Unreadable files and malformed entries are skipped (apt would complain about them itself;
    they are the host's business, not an error in the user's config).
    """
    etc = Path(root) / "etc" / "apt"
    files: list[Path] = []
    main = etc / "sources.list"
    if main.is_file():
        files.append(main)
    parts = etc / "sources.list.d"
    if parts.is_dir():
        files.extend(sorted(p for p in parts.iterdir() if _PART_NAME.match(p.name) and p.is_file()))

    entries: list[AptSource] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            log.debug("skipping unreadable APT source file %s: %s", path, exc)
            continue
        parse = _parse_deb822 if path.suffix == ".sources" else _parse_one_line
        parsed = parse(text, str(path))
        entries.extend(e for e in parsed if "deb" in e.types)
    return entries


def _parse_one_line(text: str, origin: str) -> list[AptSource]:
    """Parse the classic `deb [opts] uri suite [component...]` format."""
    out = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        tokens = line.split()
        kind = tokens.pop(0)
        if kind not in ("deb", "deb-src"):
            log.debug("%s:%d: unknown source type %r, skipped", origin, lineno, kind)
            continue
        options: dict[str, str] = {}
        if tokens and tokens[0].startswith("["):
            # Options may be written `[a=b c=d]`, `[ a=b ]` or even `[a=b` `c=d]`: gather the
            # tokens up to the one that closes the bracket.
            opt_tokens = []
            while tokens:
                tok = tokens.pop(0)
                opt_tokens.append(tok)
                if tok.endswith("]"):
                    break
            else:
                log.debug("%s:%d: unterminated option list, skipped", origin, lineno)
                continue
            for opt in " ".join(opt_tokens)[1:-1].split():
                key, sep, value = opt.partition("=")
                if sep:
                    options[key.rstrip("+-").lower()] = value
        if len(tokens) < 2:
            log.debug("%s:%d: missing URI or suite, skipped", origin, lineno)
            continue
        uri, suite, *components = tokens
        out.append(AptSource(
            types=(kind,), uris=(uri,), suites=(suite,), components=tuple(components),
            signed_by=options.get("signed-by"), origin_file=origin,
        ))
    return out


def _parse_deb822(text: str, origin: str) -> list[AptSource]:
    """Parse deb822 `.sources` stanzas (comment lines allowed anywhere, as apt allows)."""
    out = []
    for fields in _deb822_stanzas(text):
        if fields.get("enabled", "yes").strip().lower() in ("no", "false", "0"):
            continue
        types = tuple(fields.get("types", "").split())
        uris = tuple(fields.get("uris", "").split())
        suites = tuple(fields.get("suites", "").split())
        if not types or not uris or not suites:
            log.debug("%s: stanza without Types, URIs or Suites, skipped", origin)
            continue
        signed_by = fields.get("signed-by")
        out.append(AptSource(
            types=types, uris=uris, suites=suites,
            components=tuple(fields.get("components", "").split()),
            signed_by=signed_by.strip() if signed_by else None, origin_file=origin,
        ))
    return out


def _deb822_stanzas(text: str) -> list[dict[str, str]]:
    """Split deb822 text into stanzas of lower-cased field name -> value.

    Continuation lines (leading whitespace) are joined with newlines, and a lone `.` stands for
    an empty line, so an inline armoured `Signed-By:` key comes back intact.
    """
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last: str | None = None
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if current:
                stanzas.append(current)
            current, last = {}, None
            continue
        if line[0] in " \t":
            if last is not None:
                cont = line.strip()
                current[last] += "\n" + ("" if cont == "." else cont)
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        last = key.strip().lower()
        current[last] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def _base_suite(suite: str) -> str:
    for suffix in ("-security", *DERIVED_SUFFIXES):
        if suite.endswith(suffix):
            return suite[: -len(suffix)]
    return suite


def _is_debian(entry: AptSource) -> bool:
    return any(_base_suite(s) in DEBIAN_SUITES for s in entry.suites)


def _is_security(entry: AptSource) -> bool:
    return (any(s.endswith("-security") for s in entry.suites)
            or any("debian-security" in u for u in entry.uris))


def _first_uri(entry: AptSource) -> str | None:
    # A cdrom: source is not a mirror anything else can fetch from.
    for uri in entry.uris:
        if not uri.startswith("cdrom:"):
            return uri.rstrip("/")
    return None


def debian_mirror(root: Path = Path("/")) -> str | None:
    """The URI of the host's first Debian (non-security) `deb` source, without trailing slash."""
    for entry in read_host_sources(root):
        if _is_debian(entry) and not _is_security(entry):
            uri = _first_uri(entry)
            if uri:
                return uri
    return None


def security_mirror(root: Path = Path("/")) -> str | None:
    """The URI of the host's first Debian security `deb` source, without trailing slash."""
    for entry in read_host_sources(root):
        if _is_debian(entry) and _is_security(entry):
            uri = _first_uri(entry)
            if uri:
                return uri
    return None


def check_mirror_url(url: str, where: str) -> str:
    """Return `url` without trailing slash, or raise ConfigError naming `where` if it is not a URL."""
    if not re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:/\S*$", url):
        raise ConfigError(
            f"{where}: expected a mirror URL such as http://mirror.example.org/debian or "
            f"file:/srv/mirror/debian, got {url!r}."
        )
    return url.rstrip("/")


def resolve_mirror(configured: str | None, root: Path = Path("/")) -> str:
    """The Debian mirror to use: $DEBIAN_FORGE_MIRROR, else `configured`, else the host's sources."""
    env = os.environ.get(MIRROR_ENV, "").strip()
    if env:
        return check_mirror_url(env, f"environment variable {MIRROR_ENV}")
    if configured:
        return check_mirror_url(configured, "config key 'mirror'")
    found = debian_mirror(root)
    if found:
        return found
    etc = Path(root) / "etc" / "apt"
    raise ConfigError(
        f"no Debian mirror found: none of the enabled 'deb' entries in {etc}/sources.list or "
        f"{etc}/sources.list.d/*.list|*.sources names a Debian suite (bookworm, trixie, sid, ...). "
        "Set one with the config key 'mirror: URL', with '--config-opts mirror=URL', or with the "
        f"environment variable {MIRROR_ENV}=URL (for example http://mirror.example.org/debian)."
    )


def resolve_security_mirror(configured: str | None, main: str, root: Path = Path("/")) -> str | None:
    """The security archive: `configured`, else the host's security source, else `main` with
    its trailing `/debian` replaced by `/debian-security` (the archive's usual layout); None
    when none of these gives one."""
    if configured:
        return configured.rstrip("/")
    found = security_mirror(root)
    if found:
        return found
    if main.endswith("/debian"):
        return main + "-security"
    return None
