"""Set the kernel command line of a tree.

Writes `/etc/kernel/cmdline` (`root=UUID=… <kernel_opts>`, what kernel-install and systemd-boot
read, as osbuild's stage of this name does) and `/etc/default/grub.d/05_debian-forge-cmdline.cfg`,
which appends `kernel_opts` to `GRUB_CMDLINE_LINUX`. org.osbuild.grub2 reads the GRUB settings the
way update-grub does, so the options are in the image's boot menu and survive every later kernel
update on the running system. Cloud profiles (org.osbuild.cloud) add theirs the same way.
"""

from __future__ import annotations

from debian_forge.context import StageContext
from debian_forge.stagelib import uuid_property

GRUB_SNIPPET = "/etc/default/grub.d/05_debian-forge-cmdline.cfg"
# Options are written inside double quotes of a shell file that GRUB's scripts source.
SHELL_SAFE = {"type": "string", "pattern": '^[^"$`\\\\\\n]*$',
              "x-expected": "kernel options without quotes, $, ` or backslashes"}

SCHEMA = {
    "properties": {
        "root_fs_uuid": uuid_property("The root filesystem's UUID (root=UUID=… in "
                                      "/etc/kernel/cmdline; GRUB finds the root itself)."),
        "kernel_opts": {**SHELL_SAFE, "default": "",
                        "description": "Options for every boot, e.g. \"console=ttyS0,115200\"."},
    },
}


def run(ctx: StageContext, options: dict) -> None:
    opts = " ".join(options.get("kernel_opts", "").split())
    root = f"root=UUID={options['root_fs_uuid']}" if "root_fs_uuid" in options else ""
    ctx.tree.write_text("/etc/kernel/cmdline", " ".join(filter(None, [root, opts])) + "\n")
    ctx.tree.write_text(GRUB_SNIPPET, "# Written by debian-forge (org.osbuild.kernel-cmdline).\n"
                                      f'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX {opts}"\n')
