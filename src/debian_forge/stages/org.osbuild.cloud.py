"""Prepare a tree for a cloud provider: cloud-init datasources, console, time source, agents.

What each provider profile writes and installs (`PROFILES` in the stage's module), and the
upload format the provider takes, with the stage that makes it from the raw disk image:

| provider | datasources | installs | time source (chrony) | upload format |
| --- | --- | --- | --- | --- |
| `aws` | Ec2 | chrony | `server 169.254.169.123 prefer iburst minpoll 4 maxpoll 4` (Amazon Time Sync) | VMDK stream-optimized (raw also accepted): org.osbuild.qemu `{"type": "vmdk", "subformat": "streamOptimized"}` |
| `gcp` | GCE | chrony, google-guest-agent | `server metadata.google.internal prefer iburst` | `.tar.gz` holding `disk.raw`: org.osbuild.tar (`"format": "oldgnu"`, `"sparse": true`, `"root-node": "omit"`, gzip) of a tree with just `disk.raw` |
| `azure` | Azure | chrony, hyperv-daemons | `refclock PHC /dev/ptp_hyperv poll 3 dpoll -2 offset 0 stratum 2` (the Hyper-V host clock) | fixed VHD of a whole number of MiB: org.osbuild.qemu `{"type": "vpc", "subformat": "fixed", "force_size": true}` of a raw image sized in whole MiB |
| `openstack` | ConfigDrive, OpenStack | — | — (the distribution's pool) | qcow2: org.osbuild.qemu `{"type": "qcow2"}` |
| `digitalocean` | ConfigDrive, DigitalOcean | — | — (the distribution's pool) | qcow2: org.osbuild.qemu `{"type": "qcow2"}` |

The stage writes:
- `/etc/cloud/cloud.cfg.d/91_debian-forge-<provider>.cfg`: the `datasource_list`, the
  provider's datasources then `NoCloud` (unless `local_seed` is false) then the fallback
  `None`. It sorts after Debian's `90_dpkg.cfg` and before org.osbuild.cloud-init's default
  `99_debian-forge.cfg`, so an explicit org.osbuild.cloud-init stage wins. `NoCloud` lets the
  image also boot with a local seed (a `cidata` disk such as `debian-forge boot` attaches);
  ds-identify only enables datasources whose platform it detects, so in the cloud the entry is
  inert, but production images may leave it out.
- `/etc/default/grub.d/50_debian-forge-<provider>.cfg`: the provider's kernel options
  (serial console and the like) appended to `GRUB_CMDLINE_LINUX` (as Debian's cloud images do:
  recovery entries keep the serial console too). update-grub (and org.osbuild.grub2) source
  it, so kernel updates inside the image keep them.
- with `ntp`, when the profile has a time source, for chrony (the tree must have it by then):
  NTP servers in `/etc/chrony/sources.d/debian-forge-<provider>.sources` (bookworm's
  chrony.conf reads `sourcedir /etc/chrony/sources.d`, which takes only `server`, `pool` and
  `peer` lines), anything else — Azure's `refclock` — in
  `/etc/chrony/conf.d/debian-forge-<provider>.conf` (read through `confdir /etc/chrony/conf.d`).
  chronyd does not start where that clock is missing: outside Hyper-V, an Azure image needs
  `"ntp": false`.

With `packages` (the default) the profile's packages are resolved, locked and installed exactly
as org.osbuild.apt does it, before anything is written. The tree must already have cloud-init
(the Debian package `cloud-init`, e.g. from an org.osbuild.apt stage) with the profile's
datasources.
"""

from __future__ import annotations

from types import SimpleNamespace

from debian_forge import stages
from debian_forge.context import PACKAGE_INPUTS, StageContext, StageError
from debian_forge.stagelib import (require_cloud_datasources, require_command,
                                   write_cloud_config)

LOCKS_PACKAGES = True
# What chrony takes from a sourcedir file; other lines of a profile's `ntp` go to its confdir.
_NTP_SOURCE_DIRECTIVES = ("server", "pool", "peer")
INPUTS = PACKAGE_INPUTS  # the locked profile packages, added by resolving

# Per provider: Debian packages to install, cloud-init datasources (before NoCloud and None),
# kernel options for GRUB, chrony time source lines (server/pool/peer or refclock), and the
# disk format the provider imports.
PROFILES: dict[str, dict] = {
    "aws": {
        "packages": ["chrony"],
        "datasources": ["Ec2"],
        "kernel_opts": "console=tty0 console=ttyS0,115200 earlyprintk=ttyS0,115200 consoleblank=0",
        "ntp": ["server 169.254.169.123 prefer iburst minpoll 4 maxpoll 4"],
        "upload": {"format": "vmdk", "subformat": "streamOptimized", "also": "raw"},
    },
    "gcp": {
        "packages": ["chrony", "google-guest-agent"],
        "datasources": ["GCE"],
        "kernel_opts": "console=ttyS0,115200 earlyprintk=ttyS0,115200 consoleblank=0",
        "ntp": ["server metadata.google.internal prefer iburst"],
        "upload": {"format": "tar.gz", "member": "disk.raw"},
    },
    "azure": {
        "packages": ["chrony", "hyperv-daemons"],
        "datasources": ["Azure"],
        "kernel_opts": "console=tty0 console=ttyS0,115200 earlyprintk=ttyS0,115200",
        "ntp": ["refclock PHC /dev/ptp_hyperv poll 3 dpoll -2 offset 0 stratum 2"],
        "upload": {"format": "vpc", "subformat": "fixed", "whole_mib": True},
    },
    "openstack": {
        "packages": [],
        "datasources": ["ConfigDrive", "OpenStack"],
        "kernel_opts": "console=tty0 console=ttyS0,115200",
        "ntp": [],
        "upload": {"format": "qcow2"},
    },
    "digitalocean": {
        "packages": [],
        "datasources": ["ConfigDrive", "DigitalOcean"],
        "kernel_opts": "console=tty0 console=ttyS0,115200",
        "ntp": [],
        "upload": {"format": "qcow2"},
    },
}

SCHEMA = {
    "required": ["provider"],
    "properties": {
        "provider": {"enum": list(PROFILES),
                     "description": "The cloud provider whose profile is applied."},
        "packages": {"type": "boolean", "default": True,
                     "description": "Install the profile's packages (locked like "
                                    "org.osbuild.apt's); false when an earlier stage does."},
        "local_seed": {"type": "boolean", "default": True,
                       "description": "Put NoCloud before None in the datasource list, so the "
                                      "image also boots from a local NoCloud seed (as "
                                      "`debian-forge boot` attaches); inert in the cloud, may "
                                      "be turned off for production images."},
        "ntp": {"type": "boolean", "default": True,
                "description": "Write the provider's time source for chrony (the providers "
                               "that have one)."},
    },
}


def _apt():
    """The org.osbuild.apt stage's module: how this stage resolves and installs packages."""
    return stages.get("org.osbuild.apt").module


def _packages(options: dict) -> list[str]:
    """The packages this stage installs with these options."""
    return list(PROFILES[options["provider"]]["packages"]) if options.get("packages", True) \
        else []


def datasource_list(provider: str, local_seed: bool = True) -> list[str]:
    """The datasource_list the stage writes for `provider`."""
    return [*PROFILES[provider]["datasources"], *(["NoCloud"] if local_seed else []), "None"]


def resolve(stage, state, resolver, locked):
    """The profile's packages, solved and applied to the state by org.osbuild.apt."""
    packages = _packages(stage.options)
    if not packages:
        # An empty lock rather than none: the stage counts as locked (resolve.is_locked).
        return dict(stage.options), []
    request = SimpleNamespace(type=stage.type, path=stage.path, options={"packages": packages},
                              inputs=stage.inputs)
    _, locked = _apt().resolve(request, state, resolver, locked)
    return dict(stage.options), locked


def run(ctx: StageContext, options: dict) -> None:
    provider = options["provider"]
    profile = PROFILES[provider]
    require_command(ctx.tree, "cloud-init", "cloud-init")
    datasources = datasource_list(provider, options.get("local_seed", True))
    require_cloud_datasources(ctx.tree, datasources)
    ntp = profile["ntp"] if options.get("ntp", True) else []
    packages = _packages(options)
    if ntp and "chrony" not in packages:
        try:
            require_command(ctx.tree, "chronyd", "chrony")
        except StageError as exc:
            raise StageError(f"{exc} (or set \"ntp\": false, or leave \"packages\" on)") from None
    if packages:
        _apt().run(ctx, {"packages": packages})
    stage = f"debian-forge (org.osbuild.cloud, provider {provider})"
    write_cloud_config(ctx.tree, f"91_debian-forge-{provider}.cfg",
                       {"datasource_list": datasources}, f"Written by {stage}.")
    ctx.tree.write_text(f"/etc/default/grub.d/50_debian-forge-{provider}.cfg",
                        f"# Written by {stage}: the provider's kernel options.\n"
                        f"GRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX "
                        f"{profile['kernel_opts']}\"\n")
    servers = [line for line in ntp if line.split()[0] in _NTP_SOURCE_DIRECTIVES]
    others = [line for line in ntp if line not in servers]
    for path, lines in ((f"/etc/chrony/sources.d/debian-forge-{provider}.sources", servers),
                        (f"/etc/chrony/conf.d/debian-forge-{provider}.conf", others)):
        if lines:
            ctx.tree.write_text(path, f"# Written by {stage}: the provider's time source.\n"
                                + "".join(line + "\n" for line in lines))
