"""Mirror detection from the host's APT sources (fake /etc trees; one test reads the real host)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deb_mock import host_sources
from deb_mock.errors import ConfigError
from deb_mock.host_sources import (AptSource, debian_mirror, read_host_sources, resolve_mirror,
                                   security_mirror)

DEB822 = """\
Types: deb
# a comment inside a stanza, as the Debian cloud images write them
URIs: http://mirror.example.org/debian/
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.example.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def write(root: Path, rel: str, text: str) -> Path:
    path = root / "etc/apt" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def no_mirror_env(monkeypatch):
    monkeypatch.delenv(host_sources.MIRROR_ENV, raising=False)


def test_deb822_entries_are_parsed_with_comments_inside_stanzas(tmp_path):
    write(tmp_path, "sources.list.d/debian.sources", DEB822)
    entries = read_host_sources(tmp_path)
    assert entries[0] == AptSource(
        types=("deb",), uris=("http://mirror.example.org/debian/",),
        suites=("bookworm", "bookworm-updates"), components=("main", "contrib"),
        signed_by="/usr/share/keyrings/debian-archive-keyring.gpg",
        origin_file=str(tmp_path / "etc/apt/sources.list.d/debian.sources"))
    assert entries[1].suites == ("bookworm-security",)


def test_mirror_and_security_mirror_come_from_deb822_without_trailing_slash(tmp_path):
    write(tmp_path, "sources.list.d/debian.sources", DEB822)
    assert debian_mirror(tmp_path) == "http://mirror.example.org/debian"
    assert security_mirror(tmp_path) == "http://security.example.org/debian-security"


def test_one_line_entries_with_options_parse(tmp_path):
    write(tmp_path, "sources.list", (
        "# comment\n"
        "deb-src http://src.example.org/debian bookworm main\n"
        "deb [arch=amd64,i386 signed-by=/etc/apt/keyrings/x.gpg] http://mirror.example.org/debian"
        " bookworm main non-free-firmware # trailing comment\n"
        "deb [ trusted=yes ] http://security.example.org/debian-security bookworm-security main\n"
    ))
    entries = read_host_sources(tmp_path)
    assert [e.types for e in entries] == [("deb",), ("deb",)]  # deb-src-only is dropped
    assert entries[0].signed_by == "/etc/apt/keyrings/x.gpg"
    assert entries[0].components == ("main", "non-free-firmware")
    assert entries[1].signed_by is None
    assert debian_mirror(tmp_path) == "http://mirror.example.org/debian"
    assert security_mirror(tmp_path) == "http://security.example.org/debian-security"


def test_disabled_files_and_entries_are_ignored(tmp_path):
    write(tmp_path, "sources.list.d/a.list.disabled-by-farm", "deb http://off1.example.org/debian sid main\n")
    write(tmp_path, "sources.list.d/b.sources.disabled", "Types: deb\nURIs: http://off2.example.org/debian\nSuites: sid\n")
    write(tmp_path, "sources.list.d/c.sources", (
        "Types: deb\nURIs: http://off3.example.org/debian\nSuites: sid\nComponents: main\nEnabled: no\n\n"
        "Types: deb-src\nURIs: http://off4.example.org/debian\nSuites: sid\nComponents: main\n\n"
        "Types: deb deb-src\nURIs: http://on.example.org/debian\nSuites: trixie\nComponents: main\n"
    ))
    assert [e.uris for e in read_host_sources(tmp_path)] == [("http://on.example.org/debian",)]
    assert debian_mirror(tmp_path) == "http://on.example.org/debian"


def test_non_debian_sources_are_not_taken_for_the_mirror(tmp_path):
    write(tmp_path, "sources.list.d/a-vendor.list", "deb https://vendor.example.org/apt nodistro main\n")
    write(tmp_path, "sources.list.d/b-debian.list", "deb http://mirror.example.org/debian trixie-backports main\n")
    assert debian_mirror(tmp_path) == "http://mirror.example.org/debian"


def test_sources_list_is_read_before_sources_list_d_in_name_order(tmp_path):
    write(tmp_path, "sources.list.d/b.list", "deb http://b.example.org/debian sid main\n")
    write(tmp_path, "sources.list.d/a.sources", "Types: deb\nURIs: http://a.example.org/debian\nSuites: sid\n")
    assert debian_mirror(tmp_path) == "http://a.example.org/debian"
    write(tmp_path, "sources.list", "deb http://main.example.org/debian sid main\n")
    assert debian_mirror(tmp_path) == "http://main.example.org/debian"


def test_security_archive_is_never_the_main_mirror(tmp_path):
    write(tmp_path, "sources.list", "deb http://mirror.example.org/debian-security bookworm-security main\n")
    assert debian_mirror(tmp_path) is None
    assert security_mirror(tmp_path) == "http://mirror.example.org/debian-security"


def test_inline_signed_by_key_is_kept_whole(tmp_path):
    write(tmp_path, "sources.list.d/k.sources", (
        "Types: deb\nURIs: http://mirror.example.org/debian\nSuites: sid\nComponents: main\n"
        "Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n AAAA\n -----END PGP PUBLIC KEY BLOCK-----\n"
    ))
    key = read_host_sources(tmp_path)[0].signed_by
    assert key == "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----"


def test_no_apt_directory_means_no_sources(tmp_path):
    assert read_host_sources(tmp_path) == []
    assert debian_mirror(tmp_path) is None


def test_resolve_prefers_env_then_config_then_host(tmp_path, monkeypatch):
    write(tmp_path, "sources.list", "deb http://host.example.org/debian sid main\n")
    assert resolve_mirror(None, tmp_path) == "http://host.example.org/debian"
    assert resolve_mirror("http://cfg.example.org/debian/", tmp_path) == "http://cfg.example.org/debian"
    monkeypatch.setenv("DEBIAN_FORGE_MIRROR", "http://env.example.org/debian/")
    assert resolve_mirror("http://cfg.example.org/debian", tmp_path) == "http://env.example.org/debian"
    monkeypatch.setenv("DEBIAN_FORGE_MIRROR", "")  # empty counts as unset
    assert resolve_mirror(None, tmp_path) == "http://host.example.org/debian"


def test_resolve_without_any_mirror_says_how_to_set_one(tmp_path):
    with pytest.raises(ConfigError) as err:
        resolve_mirror(None, tmp_path)
    msg = str(err.value)
    assert "sources.list" in msg and "mirror" in msg
    assert "--config-opts mirror=URL" in msg and "DEBIAN_FORGE_MIRROR" in msg


def test_a_malformed_env_mirror_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("DEBIAN_FORGE_MIRROR", "mirror.example.org")
    with pytest.raises(ConfigError, match="DEBIAN_FORGE_MIRROR"):
        resolve_mirror(None, tmp_path)


@pytest.mark.skipif(not Path("/etc/apt/sources.list.d/debian.sources").exists(),
                    reason="host has no /etc/apt/sources.list.d/debian.sources")
def test_the_real_host_sources_name_a_mirror():
    url = debian_mirror()
    assert url and "://" in url and not url.endswith("/")
