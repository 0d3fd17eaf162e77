"""APT in depth with real repositories: signed third-party repositories served on 127.0.0.1
(tests/aptrepo.py), the real archive's backports, pins, holds, exclusions, strategies, updates
of a lock, dry-runs and explanations."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from aptrepo import FORGE_PACKAGES, Package, signing_key
from conftest import REPO
from deb_mock.host_sources import resolve_mirror
from deb_mock.sandbox import run as sandbox_run
from test_forge_features import BOOT, EPOCH, tar_of

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def forge_repo(apt_repos):
    return apt_repos.repo("forge", FORGE_PACKAGES)


def source(repo, **extra) -> dict:
    stanza = {"uris": [repo.url], "suites": [repo.suite], "components": [repo.component]}
    if repo.key:
        stanza["key"] = repo.key
    return {"type": "org.osbuild.apt.config", "options": {"sources": {"forge": [{**stanza,
                                                                                 **extra}]}}}


def apt(**options) -> dict:
    return {"type": "org.osbuild.apt", "options": options}


def manifest(path: Path, *stages, export: bool = False) -> Path:
    pipelines = [{"name": "os", "stages": [BOOT, *stages]}]
    if export:
        pipelines.append(tar_of("os"))
    path.write_text(json.dumps({"version": "2", "source-epoch": EPOCH, "pipelines": pipelines}))
    return path


def locked_versions(lock: dict, stage: int) -> dict[str, str]:
    refs = lock["pipelines"][0]["stages"][stage]["inputs"]["packages"]["references"]
    return {r["metadata"]["name"]: r["metadata"]["version"] for r in refs.values()}


def resolve(forge, path: Path, *args) -> dict:
    return json.loads(forge("resolve", path, *args, check=True).stdout)


# ---- repository trust ------------------------------------------------------------------

def test_package_from_a_repository_with_its_own_key_installs(forge, forge_repo, minimal_build,
                                                             tmp_path):
    """The key given inline verifies the repository; the package and its dependency land in
    the image with the key and a Signed-By source."""
    out = tmp_path / "out"
    path = manifest(tmp_path / "m.json", source(forge_repo), apt(packages=["forge-tool"]),
                    export=True)
    forge("build", path, "--export", "image", "--output-directory", out, check=True)
    listing = subprocess.run(["tar", "-tf", out / "image/tree.tar"], capture_output=True,
                             text=True, check=True).stdout.splitlines()
    assert "./usr/share/doc/forge-tool/VERSION" in listing
    assert "./usr/share/doc/forge-lib/VERSION" in listing
    assert "./etc/apt/keyrings/forge-0.asc" in listing
    sources = subprocess.run(["tar", "-xOf", out / "image/tree.tar",
                              "./etc/apt/sources.list.d/forge.sources"],
                             capture_output=True, text=True, check=True).stdout
    assert "Signed-By: /etc/apt/keyrings/forge-0.asc" in sources


@pytest.mark.parametrize("variant,words", [
    ("unsigned", "not signed"),
    ("other-key", "NO_PUBKEY"),
    ("tampered-index", "Hash Sum mismatch"),
])
def test_untrustworthy_repositories_are_refused_naming_them(forge, apt_repos, tmp_path, variant,
                                                            words):
    """Unsigned, signed by another key, or an index that does not match its signed Release:
    exit 2, the repository and apt's reason named."""
    repo = {"unsigned": lambda: apt_repos.repo("forge-unsigned", FORGE_PACKAGES, signer=None),
            "other-key": lambda: apt_repos.repo("forge-other", FORGE_PACKAGES, signer="other"),
            "tampered-index": lambda: apt_repos.repo("forge-bad-index", FORGE_PACKAGES,
                                                     tamper="index")}[variant]()
    stanza = source(repo)
    if repo.key is None or variant == "other-key":
        # The manifest gives our usual key: the repository is not signed by it.
        stanza["options"]["sources"]["forge"][0]["key"] = signing_key("forge-signer")[1]
    proc = forge("resolve", manifest(tmp_path / "m.json", stanza, apt(packages=["forge-lib"])))
    assert proc.returncode == 2, proc.stderr
    assert repo.url in proc.stderr and words in proc.stderr
    assert ".pipelines[0].stages[2]" in proc.stderr and "Traceback" not in proc.stderr


def test_unsigned_repository_is_accepted_only_when_marked_trusted(forge, apt_repos, tmp_path):
    repo = apt_repos.repo("forge-unsigned", FORGE_PACKAGES, signer=None)
    lock = resolve(forge, manifest(tmp_path / "m.json", source(repo, trusted=True),
                                   apt(packages=["forge-lib"])))
    assert locked_versions(lock, 2) == {"forge-lib": "1.0"}
    assert lock["pipelines"][0]["stages"][1]["options"]["sources"]["forge"][0]["trusted"]


def test_a_package_whose_sha256_differs_from_the_index_is_fatal(forge, apt_repos, tmp_path):
    """The index is signed, the .deb was changed: the download fails its sha256 check."""
    # A package no other repository has: the package cache cannot hold the good copy.
    repo = apt_repos.repo("forge-bad-package", [Package("forge-tampered", "1.0")],
                          tamper="package")
    path = manifest(tmp_path / "m.json", source(repo), apt(packages=["forge-tampered"]))
    proc = forge("build", path, "--refresh", "--store", tmp_path / "store")
    assert proc.returncode == 30, proc.stderr
    assert "sha256" in proc.stderr.lower() and "Traceback" not in proc.stderr


# ---- versions, releases, pins, holds -------------------------------------------------------

def test_exact_version_is_installed_held_and_kept_by_upgrade_in_the_image(forge, forge_repo,
                                                                          minimal_build, tmp_path):
    """forge-hello=1.0 (2.0 is newer) is installed and held; `apt-get upgrade` inside the
    built image, with the repository reachable, keeps 1.0."""
    out = tmp_path / "out"
    path = manifest(tmp_path / "m.json", source(forge_repo),
                    apt(packages=["forge-hello=1.0"], holds=["forge-hello"]))
    forge("build", path, "--export", "os", "--output-directory", out, check=True)
    tree = out / "os"
    assert (tree / "usr/bin/forge-hello").read_text().endswith("echo forge-hello 1.0\n")
    upgrade = sandbox_run(tree, ["sh", "-c", "apt-get update -q && apt-get upgrade -y -q && "
                                             "dpkg-query -W forge-hello && apt-mark showhold"],
                          network=True, capture=True, echo=False)
    assert upgrade.ok, upgrade.stderr
    assert "forge-hello\t1.0" in upgrade.stdout and "forge-hello\n" in upgrade.stdout.split("\t1.0")[1]
    assert "kept back" in upgrade.stdout or "held" in upgrade.stdout.lower()


def test_version_range_locks_the_newest_matching_version(forge, forge_repo, tmp_path):
    lock = resolve(forge, manifest(tmp_path / "m.json", source(forge_repo),
                                   apt(packages=["forge-hello (<< 2.0)"])))
    assert locked_versions(lock, 2) == {"forge-hello": "1.0"}


def backports_manifest(path: Path, *, pin: bool = False, target: bool = False) -> Path:
    config = {"sources": {"backports": [{
        "uris": ["@mirror"], "suites": ["bookworm-backports"], "components": ["main"],
        "signed-by": "/usr/share/keyrings/debian-archive-keyring.gpg"}]}}
    if pin:
        config["preferences"] = {"elpa": [{"package": "dh-elpa-helper",
                                           "pin": "release n=bookworm-backports",
                                           "pin-priority": 500}]}
    options = {"packages": ["dh-elpa-helper"]}
    if target:
        options["target_release"] = "bookworm-backports"
    return manifest(path, {"type": "org.osbuild.apt.config", "options": config}, apt(**options))


def test_backports_win_by_priority_or_target_release_and_lose_without(forge, tmp_path):
    """The real archive: bookworm-backports (NotAutomatic) loses by default; a Pin-Priority
    of 500 or target_release makes its version the locked one."""
    plain = locked_versions(resolve(forge, backports_manifest(tmp_path / "a.json")), 2)
    pinned = locked_versions(resolve(forge, backports_manifest(tmp_path / "b.json", pin=True)), 2)
    target = locked_versions(resolve(forge, backports_manifest(tmp_path / "c.json", target=True)),
                             2)
    assert "bpo" not in plain["dh-elpa-helper"]
    assert "bpo" in pinned["dh-elpa-helper"] and pinned == target
    lock = resolve(forge, backports_manifest(tmp_path / "d.json"))
    assert lock["pipelines"][0]["stages"][1]["options"]["sources"]["backports"][0]["uris"] == \
        [resolve_mirror(None)]  # @mirror became the bootstrap's mirror


# ---- exclusions and conflicts ---------------------------------------------------------------

def test_excluding_a_needed_package_names_the_chain(forge, forge_repo, tmp_path):
    proc = forge("resolve", manifest(tmp_path / "m.json", source(forge_repo),
                                     apt(packages=["forge-tool"], exclude=["forge-lib"])))
    assert proc.returncode == 2, proc.stderr
    assert "forge-lib is excluded" in proc.stderr
    assert "forge-tool 1.0" in proc.stderr and "Depends: forge-lib (>= 1.0)" in proc.stderr


def test_unsatisfiable_requests_are_explained_with_exit_2(forge, forge_repo, tmp_path):
    """A dependency no version satisfies, and two packages that conflict: apt's reason as a
    short paragraph naming packages and versions."""
    proc = forge("resolve", manifest(tmp_path / "a.json", source(forge_repo),
                                     apt(packages=["forge-needs-new-lib"])))
    assert proc.returncode == 2
    assert "forge-needs-new-lib" in proc.stderr and "forge-lib (>= 2.0)" in proc.stderr
    proc = forge("resolve", manifest(tmp_path / "b.json", source(forge_repo),
                                     apt(packages=["forge-tool", "forge-conflict"])))
    assert proc.returncode == 2
    assert "forge-conflict" in proc.stderr and "Conflicts" in proc.stderr
    assert "Traceback" not in proc.stderr


# ---- updating a lock, dry-run, explain, strategies ------------------------------------------

@pytest.fixture
def old_lock(forge, forge_repo, tmp_path) -> Path:
    """A lock made when forge-hello was 1.0: resolved with =1.0, then the request loosened."""
    lock = resolve(forge, manifest(tmp_path / "m.json", source(forge_repo),
                                   apt(packages=["forge-hello=1.0", "forge-tool"])))
    lock["pipelines"][0]["stages"][2]["options"]["packages"] = ["forge-hello", "forge-tool"]
    path = tmp_path / "old.lock.json"
    path.write_text(json.dumps(lock))
    return path


def test_update_of_one_package_changes_only_its_entry(forge, old_lock):
    """`resolve --update LOCK forge-hello` moves forge-hello to 2.0; every other entry of the
    lock (the bootstrap's included) stays byte for byte."""
    before = json.loads(old_lock.read_text())
    after = resolve(forge, old_lock, "forge-hello", "--update")
    assert locked_versions(before, 2)["forge-hello"] == "1.0"
    assert locked_versions(after, 2)["forge-hello"] == "2.0"
    for stage in (0, 2):
        old = before["pipelines"][0]["stages"][stage]["inputs"]["packages"]["references"]
        new = after["pipelines"][0]["stages"][stage]["inputs"]["packages"]["references"]
        changed = {r["metadata"]["name"] for k, r in new.items() if k not in old}
        assert changed == ({"forge-hello"} if stage == 2 else set())
    kept = resolve(forge, old_lock, "forge-tool", "--update")
    assert locked_versions(kept, 2)["forge-hello"] == "1.0"


def test_dry_run_prints_the_plan_and_the_change_against_the_lock(forge, old_lock):
    out = forge("resolve", old_lock, "forge-hello", "--update", "--dry-run", check=True).stdout
    assert "org.osbuild.apt: 3 packages" in out and "to download" in out and "installed" in out
    assert "~ forge-hello 1.0 → 2.0" in out
    assert "  forge-tool 1.0" in out


def test_explain_shows_the_chain_that_pulls_a_package_in(forge, old_lock):
    out = forge("explain", old_lock, "forge-lib", check=True).stdout
    assert "installs forge-lib 1.0" in out
    assert "forge-tool 1.0" in out and "Depends: forge-lib (>= 1.0) → forge-lib 1.0" in out
    proc = forge("explain", old_lock, "no-such-thing")
    assert proc.returncode == 2 and "no stage" in proc.stderr


def test_conservative_keeps_and_aggressive_takes_the_newest(forge, old_lock, tmp_path):
    """Re-resolving against the old lock: conservative keeps forge-hello 1.0, the default
    takes 2.0."""
    loose = json.loads(old_lock.read_text())
    for stage in loose["pipelines"][0]["stages"]:
        stage.get("inputs", {}).pop("packages", None)
    loose.pop("sources", None)
    path = tmp_path / "loose.json"
    path.write_text(json.dumps(loose))
    kept = resolve(forge, path, "--strategy", "conservative", "--lock", old_lock)
    fresh = resolve(forge, path)
    assert locked_versions(kept, 2)["forge-hello"] == "1.0"
    assert locked_versions(fresh, 2)["forge-hello"] == "2.0"


# ---- depsolve and the example ----------------------------------------------------------------

def test_depsolve_stage_puts_a_repository_into_the_tree_without_installing(forge, forge_repo,
                                                                           minimal_build, tmp_path):
    out = tmp_path / "out"
    path = manifest(tmp_path / "m.json", source(forge_repo), {
        "type": "org.osbuild.apt.depsolve",
        "options": {"packages": ["forge-tool"], "directory": "/srv/pool"}})
    forge("build", path, "--export", "os", "--output-directory", out, check=True)
    index = (out / "os/srv/pool/dists/local/main/binary-amd64/Packages").read_text()
    assert "Package: forge-tool" in index and "Package: forge-lib" in index
    assert not (out / "os/usr/share/doc/forge-tool").exists()


def test_advanced_apt_example_builds_as_documented(forge, tmp_path):
    """examples/debian-advanced-apt.json: backports by priority, an exact version held, the
    extra repository's own key in the image."""
    out = tmp_path / "out"
    forge("build", REPO / "examples/debian-advanced-apt.json", "--export", "rootfs",
          "--output-directory", out, check=True)
    record = json.loads((out / "build.json").read_text())
    versions = {p["name"]: p["version"] for p in record["exports"]["rootfs"]["packages"]}
    assert "bpo12" in versions["dh-elpa-helper"] and versions["hello"] == "2.10-3"
    tarball = out / "rootfs/debian-advanced-apt.tar"
    status = subprocess.run(["tar", "-xOf", tarball, "./var/lib/dpkg/status"],
                            capture_output=True, text=True, check=True).stdout
    assert "Package: hello\nStatus: hold ok installed" in status
    listing = subprocess.run(["tar", "-tf", tarball], capture_output=True, text=True).stdout
    assert "./etc/apt/keyrings/backports-0.asc" in listing


def test_downgrade_autoremove_and_a_key_from_a_file_input_build_as_resolved(
        forge, forge_repo, minimal_build, tmp_path):
    """Install forge-tool and forge-hello 2.0; downgrade forge-hello to 1.0 (allowed); remove
    forge-tool with autoremove, which takes forge-lib along. The repository's key comes from
    an inline source given to apt.config as its `keys` input."""
    import base64
    import hashlib

    key = forge_repo.key.encode()
    checksum = "sha256:" + hashlib.sha256(key).hexdigest()
    config = {"type": "org.osbuild.apt.config",
              "inputs": {"keys": {"type": "org.osbuild.files", "origin": "org.osbuild.source",
                                  "references": [checksum]}},
              "options": {"sources": {"forge": [{"uris": [forge_repo.url], "suites": ["forge"],
                                                 "components": ["main"],
                                                 "key-file": checksum}]}}}
    stages = [BOOT, config, apt(packages=["forge-tool", "forge-hello"]),
              apt(packages=["forge-hello=1.0"], allow_downgrades=True),
              apt(remove=["forge-tool"], autoremove=True)]
    path = tmp_path / "m.json"
    path.write_text(json.dumps({
        "version": "2", "source-epoch": EPOCH,
        "sources": {"org.osbuild.inline": {"items": {checksum: {
            "encoding": "base64", "data": base64.b64encode(key).decode()}}}},
        "pipelines": [{"name": "os", "stages": stages}]}))
    out = tmp_path / "out"
    forge("build", path, "--export", "os", "--output-directory", out, check=True)
    installed = {p["name"]: p["version"]
                 for p in json.loads((out / "build.json").read_text())["exports"]["os"]["packages"]}
    assert installed["forge-hello"] == "1.0"
    assert "forge-tool" not in installed and "forge-lib" not in installed
    assert (out / "os/etc/apt/keyrings/forge-0.asc").read_bytes() == key
    without = json.loads(path.read_text())
    del without["pipelines"][0]["stages"][3]["options"]["allow_downgrades"]
    path.write_text(json.dumps(without))
    proc = forge("resolve", path)
    assert proc.returncode == 2 and "forge-hello" in proc.stderr, proc.stderr


def test_release_per_package_and_aggressive_strategy(forge, forge_repo, tmp_path):
    """`name/release` picks that release's version; `aggressive` adds recommends."""
    lock = resolve(forge, backports_manifest_with(tmp_path / "a.json", ["dh-elpa-helper/bookworm-backports"]))
    assert "bpo" in locked_versions(lock, 2)["dh-elpa-helper"]
    plain = resolve(forge, manifest(tmp_path / "b.json", apt(packages=["openssh-client"])))
    aggressive = resolve(forge, manifest(tmp_path / "c.json",
                                         apt(packages=["openssh-client"], strategy="aggressive")))
    assert "xauth" not in locked_versions(plain, 1)
    assert "xauth" in locked_versions(aggressive, 1)


def backports_manifest_with(path: Path, packages: list[str]) -> Path:
    data = json.loads(backports_manifest(path).read_text())
    data["pipelines"][0]["stages"][2]["options"]["packages"] = packages
    path.write_text(json.dumps(data))
    return path
