"""Set up GRUB in a tree: its boot menu, the BIOS core image and the UEFI loader.

Everything comes from the tree's own GRUB packages (grub-common, grub-pc-bin for `bios`,
grub-efi-amd64-bin for `uefi`), run inside the tree, so the modules on disk always match the
images that load them. Nothing probes a device: the root filesystem is found at boot by its UUID.

- `/boot/grub/grub.cfg`: a menu entry for every kernel in /boot, newest first, with
  `root=UUID=<root_fs_uuid> ro` and the kernel command line the tree's GRUB settings give —
  /etc/default/grub and /etc/default/grub.d/*.cfg sourced exactly as update-grub does (that is
  where org.osbuild.kernel-cmdline and the cloud profiles put their options) — plus `kernel_opts`.
- `/etc/default/grub.d/10_debian-forge.cfg`: the same timeout, terminals and options for
  update-grub, so a later kernel update on the running system (with grub2-common installed)
  regenerates an equivalent menu.
- `bios`: the modules in /boot/grub/i386-pc, `boot.img` and `core.img` (biosdisk, GPT and MBR
  partitions, ext2, search by UUID), which org.osbuild.grub2.inst writes into the disk image.
- `uefi`: the modules in /boot/grub/x86_64-efi and the loader at the removable-media path
  `/boot/efi/EFI/BOOT/BOOTX64.EFI` (firmware boots it without NVRAM entries), for an ESP filled
  from /boot/efi (org.osbuild.mkfs.fat `path`). The ESP is not needed to find grub.cfg.
grub-mkimage output does not depend on the time: the same tree gives the same bytes.
"""

from __future__ import annotations

import shutil

from debian.debian_support import Version

from deb_mock.sandbox import Bind
from debian_forge.context import StageContext, StageError
from debian_forge.stagelib import require_command, uuid_property

_TERMINALS = {"type": "array", "items": {"enum": ["console", "serial", "gfxterm"]},
              "minItems": 1, "uniqueItems": True}
_SCRATCH = "/run/osbuild/grub"
SETTINGS = "/etc/default/grub.d/10_debian-forge.cfg"
PLATFORMS = {  # option → GRUB platform, the modules its core image needs, its package
    "bios": ("i386-pc", ["biosdisk", "part_gpt", "part_msdos", "ext2", "search_fs_uuid"],
             "grub-pc-bin"),
    "uefi": ("x86_64-efi", ["part_gpt", "part_msdos", "ext2", "fat", "search_fs_uuid"],
             "grub-efi-amd64-bin"),
}
EFI_LOADER = "/boot/efi/EFI/BOOT/BOOTX64.EFI"

SCHEMA = {
    "required": ["root_fs_uuid"],
    "anyOf": [{"properties": {"bios": {"const": True}}, "required": ["bios"]},
              {"properties": {"uefi": {"const": True}}, "required": ["uefi"]}],
    "x-expected": "bios or uefi (or both) set to true",
    "properties": {
        "root_fs_uuid": uuid_property("UUID of the root filesystem (holding /boot)."),
        "bios": {"type": "boolean", "default": False,
                 "description": "Prepare the BIOS core image (i386-pc)."},
        "uefi": {"type": "boolean", "default": False,
                 "description": "Prepare the UEFI loader (x86_64-efi, removable-media path)."},
        "kernel_opts": {"type": "string", "pattern": '^[^"$`\\\\\\n]*$', "default": "",
                        "x-expected": "kernel options without quotes, $, ` or backslashes",
                        "description": "Options added after those of the GRUB settings."},
        "timeout": {"type": "integer", "minimum": 0, "default": 1,
                    "description": "Seconds the menu waits."},
        "terminal_input": {**_TERMINALS, "default": ["console"],
                           "description": "GRUB's input terminals."},
        "terminal_output": {**_TERMINALS, "default": ["console"],
                            "description": "GRUB's output terminals."},
        "serial": {"type": "string", "pattern": "^serial( [A-Za-z0-9=,-]+)*$",
                   "default": "serial --unit=0 --speed=115200",
                   "x-expected": "a GRUB serial command such as \"serial --speed=115200\"",
                   "description": "The serial port setup, when a terminal is `serial`."},
        "distributor": {"type": "string", "pattern": "^[A-Za-z0-9 ._-]+$", "default": "Debian",
                        "description": "The name in the menu entries."},
    },
}

# Print the kernel options GRUB's settings give, as update-grub (grub-mkconfig) computes them.
_CMDLINE_SCRIPT = """
[ -f /etc/default/grub ] && . /etc/default/grub
for f in /etc/default/grub.d/*.cfg; do [ -e "$f" ] && . "$f"; done
echo "$GRUB_CMDLINE_LINUX $GRUB_CMDLINE_LINUX_DEFAULT"
"""


def run(ctx: StageContext, options: dict) -> None:
    require_command(ctx.tree, "grub-mkimage", "grub-common")
    kernels = sorted((p.name[len("vmlinuz-"):] for p in ctx.tree.path("/boot").glob("vmlinuz-*")),
                     key=Version, reverse=True)
    if not kernels:
        raise StageError("this tree has no kernel in /boot: install one (linux-image-amd64) "
                         "with an org.osbuild.apt stage before this one")
    ctx.tree.write_text(SETTINGS, _settings(options))
    cmdline = " ".join(ctx.run(["sh", "-c", _CMDLINE_SCRIPT]).stdout.split())
    ctx.tree.write_text("/boot/grub/grub.cfg", _menu(ctx, options, kernels, cmdline))
    early = ctx.scratch / "early.cfg"
    early.write_text(f"search.fs_uuid {options['root_fs_uuid']} root\n"
                     "set prefix=($root)/boot/grub\n")
    for option, (platform, modules, package) in PLATFORMS.items():
        if options.get(option):
            _platform(ctx, platform, modules, package)


def _settings(options: dict) -> str:
    lines = ["# Written by debian-forge (org.osbuild.grub2); update-grub reads it.",
             f"GRUB_TIMEOUT={options.get('timeout', 1)}",
             f"GRUB_DISTRIBUTOR=\"{options.get('distributor', 'Debian')}\"",
             f"GRUB_TERMINAL_INPUT=\"{' '.join(options.get('terminal_input', ['console']))}\"",
             f"GRUB_TERMINAL_OUTPUT=\"{' '.join(options.get('terminal_output', ['console']))}\"",
             "GRUB_DISABLE_OS_PROBER=true"]
    if options.get("kernel_opts"):
        lines.append(f"GRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX {options['kernel_opts']}\"")
    if _uses_serial(options):
        lines.append(f"GRUB_SERIAL_COMMAND=\"{_serial(options)}\"")
    return "\n".join(lines) + "\n"


def _serial(options: dict) -> str:
    return options.get("serial", SCHEMA["properties"]["serial"]["default"])


def _uses_serial(options: dict) -> bool:
    return "serial" in options.get("terminal_input", []) + options.get("terminal_output", [])


def _menu(ctx: StageContext, options: dict, kernels: list[str], cmdline: str) -> str:
    uuid = options["root_fs_uuid"]
    name = options.get("distributor", "Debian")
    lines = ["# Written by debian-forge (org.osbuild.grub2); update-grub replaces it.",
             f"set timeout={options.get('timeout', 1)}", "set default=0"]
    if _uses_serial(options):
        lines.append(_serial(options))
    lines += [f"terminal_input {' '.join(options.get('terminal_input', ['console']))}",
              f"terminal_output {' '.join(options.get('terminal_output', ['console']))}",
              "insmod part_gpt", "insmod part_msdos", "insmod ext2",
              f"search --no-floppy --fs-uuid --set=root {uuid}"]
    for version in kernels:
        initrd = f"/boot/initrd.img-{version}"
        lines += [f"menuentry '{name} GNU/Linux, with Linux {version}' --id 'linux-{version}' {{",
                  f"\tlinux /boot/vmlinuz-{version} root=UUID={uuid} ro {cmdline}".rstrip()]
        if ctx.tree.exists(initrd):
            lines.append(f"\tinitrd {initrd}")
        lines.append("}")
    return "\n".join(lines) + "\n"


def _platform(ctx: StageContext, platform: str, modules: list[str], package: str) -> None:
    """Copy the platform's modules to /boot/grub/<platform> and make its core image."""
    source = ctx.tree.path(f"/usr/lib/grub/{platform}")
    if not source.is_dir():
        raise StageError(f"this tree has no /usr/lib/grub/{platform}: install the package "
                         f"'{package}' with an org.osbuild.apt stage before this one")
    target = ctx.tree.path(f"/boot/grub/{platform}")
    target.mkdir(parents=True, exist_ok=True)
    for item in sorted(source.iterdir()):
        if item.suffix in (".mod", ".lst") or item.name == "boot.img":
            shutil.copy2(item, target / item.name)
    output = f"/boot/grub/{platform}/core.img" if platform == "i386-pc" else EFI_LOADER
    ctx.tree.path(output).parent.mkdir(parents=True, exist_ok=True)
    ctx.run(["grub-mkimage", "-O", platform, "-d", f"/usr/lib/grub/{platform}",
             "-p", "/boot/grub", "-c", f"{_SCRATCH}/early.cfg", "-o", output, *modules],
            binds=[Bind(ctx.scratch, _SCRATCH)])
