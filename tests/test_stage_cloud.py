"""org.osbuild.cloud: provider profiles on a real bookworm tree, and how it resolves packages.

The stage tree has neither cloud-init nor chrony, and stage_runner cannot install packages, so
the run tests use `packages: false` and lay out what the stage checks for first (see
test_stage_cloud_init: an executable /usr/bin/cloud-init with bookworm's datasource modules,
and an executable /usr/sbin/chronyd). Installing the profile's packages is org.osbuild.apt's
code, exercised by real builds in test_stage_apt; here `resolve` is checked to hand it the
profile's packages, with a resolver stub that records what apt's solver asks of it.
"""

import subprocess
from types import SimpleNamespace

import pytest
import yaml

from deb_mock.apt_host import Plan, ResolvedPackage
from deb_mock.package_cache import PackageRef
from debian_forge import stages
from debian_forge.context import StageError
from debian_forge.manifest import Manifest, Pipeline, Stage
from debian_forge.resolve import AptState, is_locked, lock
from test_stage_cloud_init import CLOUD_CFG_D, effective_config, fake_cloud_init

pytestmark = pytest.mark.integration

CLOUD = stages.get("org.osbuild.cloud")
PROFILES = CLOUD.module.PROFILES


def fake_chrony(tree):
    tree.write_text("/usr/sbin/chronyd", "#!/bin/sh\nexit 0\n", mode=0o755)


@pytest.mark.parametrize("provider", sorted(PROFILES))
def test_profile_writes_datasources_kernel_options_and_time_source(stage_runner, provider):
    """Each provider: its datasources then NoCloud then None; its kernel options appended to
    GRUB_CMDLINE_LINUX; its chrony time source when it has one."""
    profile = PROFILES[provider]
    fake_cloud_init(stage_runner.tree)
    fake_chrony(stage_runner.tree)
    tree = stage_runner.run("org.osbuild.cloud", {"provider": provider, "packages": False})
    cfg = tree.read_text(f"{CLOUD_CFG_D}/91_debian-forge-{provider}.cfg")
    assert cfg.startswith("# Written by debian-forge (org.osbuild.cloud")
    assert yaml.safe_load(cfg) == {
        "datasource_list": [*profile["datasources"], "NoCloud", "None"]}
    grub = tree.read_text(f"/etc/default/grub.d/50_debian-forge-{provider}.cfg").splitlines()
    assert grub[0].startswith("# ") and grub[1:] == [
        f'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX {profile["kernel_opts"]}"']
    written = []
    for path in (f"/etc/chrony/sources.d/debian-forge-{provider}.sources",
                 f"/etc/chrony/conf.d/debian-forge-{provider}.conf"):
        if tree.exists(path):
            lines = tree.read_text(path).splitlines()
            assert lines[0].startswith("# ")
            written += lines[1:]
    assert sorted(written) == sorted(profile["ntp"])


def test_ntp_servers_go_to_sourcedir_and_reference_clocks_to_confdir(stage_runner):
    """chrony takes only server/pool/peer lines from /etc/chrony/sources.d (it ignores a
    refclock there): AWS's server goes there, Azure's Hyper-V refclock to /etc/chrony/conf.d."""
    fake_cloud_init(stage_runner.tree)
    fake_chrony(stage_runner.tree)
    for provider in ("aws", "azure"):
        stage_runner.run("org.osbuild.cloud", {"provider": provider, "packages": False})
    tree = stage_runner.tree
    assert tree.read_text("/etc/chrony/sources.d/debian-forge-aws.sources").splitlines()[1:] \
        == ["server 169.254.169.123 prefer iburst minpoll 4 maxpoll 4"]
    assert not tree.exists("/etc/chrony/conf.d/debian-forge-aws.conf")
    assert tree.read_text("/etc/chrony/conf.d/debian-forge-azure.conf").splitlines()[1:] \
        == ["refclock PHC /dev/ptp_hyperv poll 3 dpoll -2 offset 0 stratum 2"]
    assert not tree.exists("/etc/chrony/sources.d/debian-forge-azure.sources")


def test_kernel_options_survive_sourcing_as_update_grub_does(stage_runner):
    """Sourcing /etc/default/grub then grub.d/*.cfg (what update-grub does) appends the
    provider's options to the distribution's."""
    fake_cloud_init(stage_runner.tree)
    fake_chrony(stage_runner.tree)
    tree = stage_runner.run("org.osbuild.cloud", {"provider": "aws", "packages": False})
    tree.write_text("/etc/default/grub", 'GRUB_CMDLINE_LINUX="net.ifnames=0"\n')
    cmdline = subprocess.run(
        ["sh", "-c", 'cd "$1" && . etc/default/grub && for f in etc/default/grub.d/*.cfg; do '
                     '. "./$f"; done && printf %s "$GRUB_CMDLINE_LINUX"', "sh",
         str(tree.root)], capture_output=True, text=True, check=True).stdout
    assert cmdline == "net.ifnames=0 " + PROFILES["aws"]["kernel_opts"]


def test_production_image_leaves_out_the_local_seed(stage_runner):
    """local_seed false: only the provider's datasources and None."""
    fake_cloud_init(stage_runner.tree)
    fake_chrony(stage_runner.tree)
    tree = stage_runner.run("org.osbuild.cloud", {"provider": "openstack", "packages": False,
                                                  "local_seed": False})
    assert yaml.safe_load(tree.read_text(f"{CLOUD_CFG_D}/91_debian-forge-openstack.cfg")) == {
        "datasource_list": ["ConfigDrive", "OpenStack", "None"]}


def test_explicit_cloud_init_stage_wins_over_the_profile(stage_runner):
    """91_debian-forge-<provider>.cfg sorts between Debian's 90_dpkg.cfg and the cloud-init
    stage's 99_debian-forge.cfg: the profile beats the package, the explicit stage beats both."""
    fake_cloud_init(stage_runner.tree)
    fake_chrony(stage_runner.tree)
    tree = stage_runner.run("org.osbuild.cloud", {"provider": "gcp", "packages": False})
    assert effective_config(tree)["datasource_list"] == ["GCE", "NoCloud", "None"]
    stage_runner.run("org.osbuild.cloud-init", {"datasources": ["NoCloud"]})
    assert effective_config(tree)["datasource_list"] == ["NoCloud", "None"]


def test_time_source_needs_chrony_in_the_tree(stage_runner):
    """Without chrony (and with packages off) the stage refuses to write chrony sources,
    naming the package; with ntp false, or a provider without a time source, it needs none."""
    fake_cloud_init(stage_runner.tree)
    with pytest.raises(StageError, match="no 'chronyd': install the package 'chrony'.*\"ntp\": "
                                         "false"):
        stage_runner.run("org.osbuild.cloud", {"provider": "azure", "packages": False})
    tree = stage_runner.run("org.osbuild.cloud", {"provider": "azure", "packages": False,
                                                  "ntp": False})
    assert not tree.exists("/etc/chrony/conf.d/debian-forge-azure.conf")
    stage_runner.run("org.osbuild.cloud", {"provider": "digitalocean", "packages": False})
    assert tree.exists(f"{CLOUD_CFG_D}/91_debian-forge-digitalocean.cfg")


def test_tree_without_cloud_init_asks_to_install_it(stage_runner):
    with pytest.raises(StageError, match="install the package 'cloud-init'"):
        stage_runner.run("org.osbuild.cloud", {"provider": "aws", "packages": False})


def test_datasource_missing_from_the_trees_cloud_init_is_refused(stage_runner):
    """A cloud-init without the profile's datasource (here GCE) fails, naming it."""
    fake_cloud_init(stage_runner.tree, ["Ec2", "NoCloud", "None"])
    fake_chrony(stage_runner.tree)
    with pytest.raises(StageError, match="no datasource GCE .*it has: Ec2, NoCloud, None"):
        stage_runner.run("org.osbuild.cloud", {"provider": "gcp", "packages": False})


def test_docstring_table_matches_the_profiles():
    """The reference page's profile table says what PROFILES does."""
    rows = {line.split("|")[1].strip(" `"): line for line in CLOUD.description.splitlines()
            if line.startswith("| `")}
    assert set(rows) == set(PROFILES)
    for provider, profile in PROFILES.items():
        cells = [cell.strip() for cell in rows[provider].split("|")[2:-1]]
        assert cells[0] == ", ".join(profile["datasources"])
        assert cells[1] == (", ".join(profile["packages"]) or "—")
        assert all(line in cells[2] for line in profile["ntp"])
        assert profile["upload"]["format"].split(".")[0] in cells[3].lower()


# resolve: the profile's packages go to org.osbuild.apt's solver.

def _package(name):
    return ResolvedPackage(name, "1.0", "amd64", PackageRef(
        url=f"http://deb.example/{name}_1.0_amd64.deb", sha256="0" * 64, size=1,
        filename=f"{name}_1.0_amd64.deb"))


class RecordingResolver:
    """Stands in for resolve.Resolver: records what apt's solver asks, answers with `installs`."""

    strategy = "resolve"

    def __init__(self, installs):
        self.installs = installs
        self.calls = []

    def keep(self, stage):
        self.calls.append(("keep", stage.type, stage.path, stage.options))
        return {}

    def apt_request(self, state, request):
        return request.name

    def plan(self, state, args, **settings):
        self.calls.append(("plan", args))
        return Plan(installs=list(self.installs), removals=[])


def _stage(options, inputs=None):
    return Stage(type="org.osbuild.cloud", options=options, inputs=inputs or {},
                 path=".pipelines[0].stages[3]", index=3)


def _state():
    return AptState(architecture="amd64", sources={"debian.sources": ["stub"]})


def test_resolve_hands_the_profiles_packages_to_apt():
    """gcp: apt's solver is asked to install chrony and google-guest-agent for this stage
    (its path, for conservative relocks); the lock and the state are what it answered."""
    installs = [_package("chrony"), _package("google-guest-agent"), _package("libnss3")]
    resolver, state = RecordingResolver(installs), _state()
    stage = _stage({"provider": "gcp"})
    options, locked = CLOUD.resolve(stage, state, resolver, None)
    assert resolver.calls == [
        ("keep", "org.osbuild.cloud", ".pipelines[0].stages[3]",
         {"packages": ["chrony", "google-guest-agent"]}),
        ("plan", ["install", "--", "chrony", "google-guest-agent"])]
    assert options == {"provider": "gcp"} and locked == installs
    assert set(state.installed) == {"chrony", "google-guest-agent", "libnss3"}
    assert state.auto == {"libnss3"}


def test_resolve_of_a_locked_stage_keeps_its_lock():
    """An already locked stage is not solved again: the lock is applied to the state."""
    installs = [_package("chrony"), _package("hyperv-daemons")]
    resolver, state = RecordingResolver([]), _state()
    options, locked = CLOUD.resolve(_stage({"provider": "azure"}), state, resolver, installs)
    assert resolver.calls == [] and locked == installs
    assert set(state.installed) == {"chrony", "hyperv-daemons"} and state.auto == set()


def test_stage_without_packages_locks_nothing_and_counts_as_locked():
    """packages false (or a profile without packages): apt is not asked, the lock is empty,
    and the locked manifest is complete (a build does not resolve it again)."""
    for options in ({"provider": "aws", "packages": False}, {"provider": "openstack"}):
        resolver = RecordingResolver([])
        assert CLOUD.resolve(_stage(options), _state(), resolver, None) == (options, [])
        assert resolver.calls == []
    manifest = Manifest(pipelines=[Pipeline(name="os", build=None, path=".pipelines[0]",
                                            stages=[_stage({"provider": "openstack"})])])
    assert not is_locked(manifest)
    locked = lock(manifest, SimpleNamespace(manifest=None))
    assert is_locked(locked)
    assert locked.pipelines[0].stages[0].inputs["packages"]["references"] == {}
