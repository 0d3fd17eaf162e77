"""Boot a disk image in QEMU and watch its serial console: does it come up and can one log in?

`debian-forge boot IMAGE` is a smoke test of a built image. QEMU boots it (never writing to it:
`-snapshot`) with a NoCloud seed whose user-data creates the user `forge` with an SSH key and,
once cloud-init has finished, prints a marker line with a random token and the user's uid on
the serial console. The boot succeeded when the console has shown both a login prompt and that
marker; QEMU is then killed.

KVM is used only when it really runs guest code at native speed: /dev/kvm must create a VM and a
probe VM (a boot sector that climbs to long mode and then loops 64M times) must finish within
seconds. Under nested virtualisation /dev/kvm can exist and work yet emulate every instruction,
so a Linux kernel takes many minutes to decompress; then the boot runs under TCG.
"""

from __future__ import annotations

import codecs
import fcntl
import json
import os
import re
import secrets
import select
import shutil
import subprocess
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import IO, Callable

import yaml

from deb_mock.errors import DebMockError, ExitCode, HostError, UsageError
from deb_mock.namespace import die_with_parent
from deb_mock.sandbox import require_tool

FORMATS = {"raw": "raw", "qcow2": "qcow2", "vmdk": "vmdk", "vpc": "vhd", "vhdx": "vhdx"}
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
DEFAULT_TIMEOUT = {"kvm": 120, "tcg": 300}
DEFAULT_MEMORY = 1024
USER = "forge"
TAIL_LINES = 40
PROBE_SECONDS = 10

_KVM_GET_API_VERSION = 0xAE00
_KVM_CREATE_VM = 0xAE01

# The KVM probe: a boot sector assembled from this source (`as --64`, then `ld -Ttext=0x7c00
# --oformat=binary`); tests/test_boot.py checks that the bytes below are what it assembles to.
KVM_PROBE_SOURCE = r"""
        .code16
        .globl _start
_start: cli
        xor     %ax, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        mov     $0x7c00, %sp
        cld
        mov     $0x3f8, %dx             # COM1
        mov     $msg16, %si
1:      lodsb
        test    %al, %al
        jz      2f
        out     %al, %dx
        jmp     1b
2:      mov     $0x1000, %di            # page tables at 0x1000..0x3fff, zeroed
        mov     $0xc00, %cx
        xor     %eax, %eax
        rep stosl
        movw    $0x2003, 0x1000         # PML4[0] -> PDPT
        movw    $0x3003, 0x2000         # PDPT[0] -> PD
        movw    $0x0083, 0x3000         # PD[0]: a 2 MiB page at 0
        lgdt    gdtr
        mov     %cr0, %eax
        or      $1, %eax                # protected mode
        mov     %eax, %cr0
        ljmp    $0x08, $pm32

        .code32
pm32:   mov     $0x10, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        mov     $msg32, %esi
1:      lodsb
        test    %al, %al
        jz      2f
        out     %al, %dx
        jmp     1b
2:      mov     $0x1000, %eax
        mov     %eax, %cr3
        mov     %cr4, %eax
        or      $0x20, %eax             # PAE
        mov     %eax, %cr4
        mov     $0xc0000080, %ecx       # EFER.LME
        rdmsr
        or      $0x100, %eax
        wrmsr
        mov     %cr0, %eax
        or      $0x80000000, %eax       # paging on: long mode
        mov     %eax, %cr0
        ljmp    $0x18, $lm64

        .code64
lm64:   mov     $0x3f8, %dx             # rdmsr clobbered it
        mov     $msg64, %esi
        call    puts
        mov     $0x4000000, %ecx        # 64M turns of a loop: milliseconds on a CPU that
3:      add     %rcx, %rax              # runs guest code, about a minute where every
        dec     %ecx                    # instruction is emulated
        jnz     3b
        mov     $64, %ebx               # and 64 MiB of memory writes
4:      mov     $0x100000, %edi
        mov     $0x20000, %ecx
        rep stosq
        dec     %ebx
        jnz     4b
        mov     $msgok, %esi
        call    puts
2:      cli
        hlt
        jmp     2b
puts:   lodsb
        test    %al, %al
        jz      1f
        out     %al, %dx
        jmp     puts
1:      ret

        .p2align 3
gdt:    .quad   0
        .quad   0x00cf9a000000ffff      # 0x08: 32-bit code
        .quad   0x00cf92000000ffff      # 0x10: data
        .quad   0x00af9a000000ffff      # 0x18: 64-bit code
gdtr:   .word   gdtr - gdt - 1
        .long   gdt
msg16:  .asciz  "probe: real mode\r\n"
msg32:  .asciz  "probe: protected mode\r\n"
msg64:  .asciz  "probe: long mode\r\n"
msgok:  .asciz  "probe: FORGE-KVM-OK\r\n"
        .org    510
        .word   0xaa55
"""
_KVM_PROBE_CODE = bytes.fromhex(
    "fa31c08ed88ec08ed0bc007cfcbaf803be067dac84c07403eeebf8bf0010b900"
    "0c6631c066f3abc70600100320c70600200330c706003083000f0116007d0f20"
    "c06683c8010f22c0ea4d7c080066b810008ed88ec08ed0be197d0000ac84c074"
    "03eeebf8b8001000000f22d80f20e083c8200f22e0b9800000c00f320d000100"
    "000f300f20c00d000000800f22c0ea957c0000180066baf803be317d0000e830"
    "000000b9000000044801c8ffc975f9bb40000000bf00001000b900000200f348"
    "abffcb75efbe447d0000e804000000faf4ebfcac84c07403eeebf8c30f1f4000"
    "0000000000000000ffff0000009acf00ffff00000092cf00ffff0000009aaf00"
    "1f00e07c000070726f62653a207265616c206d6f64650d0a0070726f62653a20"
    "70726f746563746564206d6f64650d0a0070726f62653a206c6f6e67206d6f64"
    "650d0a0070726f62653a20464f5247452d4b564d2d4f4b0d0a")
KVM_PROBE = _KVM_PROBE_CODE.ljust(510, b"\0") + b"\x55\xaa"
PROBE_OK = b"FORGE-KVM-OK"

_ESCAPES = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][0-9A-Za-z]|.)")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_LOGIN = re.compile(r"^\S+ login:")


class BootFailed(DebMockError):
    """The image did not reach a login prompt and the cloud-init marker, or QEMU died; the
    message ends with the console's last lines."""

    exit_code = ExitCode.GENERIC

    def __init__(self, message: str, console_tail: list[str]):
        shown = "\n".join(f"  | {line}" for line in console_tail) or "  (no output)"
        super().__init__(f"{message}\nlast {len(console_tail)} console lines:\n{shown}")
        self.console_tail = console_tail


@dataclass(frozen=True)
class BootResult:
    """A boot that reached its login prompt and finished cloud-init; seconds from QEMU's start."""

    accelerator: str  # "kvm" or "tcg"
    login_seconds: float
    cloud_init_seconds: float
    console_tail: list[str]


@dataclass(frozen=True)
class Accelerator:
    name: str  # "kvm" or "tcg"
    reason: str  # why: what the KVM checks found


@cache
def accelerator() -> Accelerator:
    """KVM if it creates a VM and runs the probe at native speed, else TCG (checked once)."""
    try:
        kvm = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return Accelerator("tcg", f"/dev/kvm: {exc.strerror}")
    try:
        if fcntl.ioctl(kvm, _KVM_GET_API_VERSION) != 12:
            return Accelerator("tcg", "/dev/kvm speaks an unknown KVM API version")
        os.close(fcntl.ioctl(kvm, _KVM_CREATE_VM, 0))
    except OSError as exc:
        return Accelerator("tcg", f"/dev/kvm cannot create a VM: {exc.strerror}")
    finally:
        os.close(kvm)
    return _probe_kvm()


def _probe_kvm() -> Accelerator:
    started = time.monotonic()
    finished, said = run_probe("kvm")
    if finished:
        return Accelerator("kvm", f"the KVM probe ran in {time.monotonic() - started:.1f} s")
    last = f" (its last console line: {said[-1]!r})" if said else ""
    return Accelerator("tcg", f"a probe VM under KVM did not finish within {PROBE_SECONDS} s"
                              f"{last}: KVM is emulated or broken here")


def run_probe(accel: str) -> tuple[bool, list[str]]:
    """Boot the probe with `accel` for at most PROBE_SECONDS: did it finish, and its console
    lines."""
    qemu = require_tool("qemu-system-x86_64", "qemu-system-x86")
    with tempfile.TemporaryDirectory(prefix="debian-forge-kvm-probe-") as tmp:
        disk = Path(tmp) / "probe.img"
        disk.write_bytes(KVM_PROBE)
        os.truncate(disk, 1024 * 1024)  # SeaBIOS does not boot a one-sector virtio disk
        argv = [*_machine(qemu, accel, 32), "-drive", f"file={_escape(disk)},format=raw,if=virtio"]
        output = bytearray()
        deadline = time.monotonic() + PROBE_SECONDS
        proc = _start(argv, Path(tmp))
        try:
            while PROBE_OK not in output:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
                    break
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                output += chunk
        finally:
            _stop(proc)
    lines = [_clean(line) for line in output.decode(errors="replace").splitlines()]
    return PROBE_OK in output, [line for line in lines if line]


def image_format(image: Path) -> str:
    """QEMU's name of the image's format (raw, qcow2, vmdk, vpc, vhdx), from qemu-img; a
    fixed VHD, which qemu-img takes for raw (its only header is a footer), is vpc."""
    qemu_img = require_tool("qemu-img", "qemu-utils")
    proc = subprocess.run([qemu_img, "info", "--output=json", "--force-share", str(image)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise UsageError(f"{image}: qemu-img cannot read it: {proc.stderr.strip()}")
    fmt = json.loads(proc.stdout)["format"]
    if fmt == "raw" and image.stat().st_size % 512 == 0 and image.stat().st_size >= 512:
        with open(image, "rb") as handle:
            handle.seek(-512, 2)
            if handle.read(8) == b"conectix":
                fmt = "vpc"
    if fmt not in FORMATS:
        raise UsageError(f"{image}: a {fmt} image; boot takes {', '.join(FORMATS.values())}")
    return fmt


def boot(image: Path, *, uefi: bool = False, timeout: float | None = None,
         ssh_key: Path | None = None, memory: int = DEFAULT_MEMORY, cpus: int | None = None,
         log: IO[str] | None = None, progress: Callable[[str], None] | None = None) -> BootResult:
    """Boot `image` until its console shows a login prompt and the cloud-init marker.

    `timeout` defaults to 120 s with KVM and 300 s with TCG; `cpus` to two (one on a one-core
    host): two boots side by side run best with one each; `log` receives the console as it
    comes, `progress` a line saying what is booted how. Raises UsageError (a missing image or
    key, an unknown format), HostError (a missing tool) or BootFailed (timeout, QEMU died, no
    user).
    """
    image = Path(image)
    if not image.is_file():
        raise UsageError(f"{image}: no such image file")
    qemu = require_tool("qemu-system-x86_64", "qemu-system-x86")
    fmt = image_format(image)
    if uefi:
        for path in (OVMF_CODE, OVMF_VARS):
            if not path.is_file():
                raise HostError(f"{path} is missing (UEFI firmware): apt-get install ovmf")
    public_key = _read_public_key(Path(ssh_key)) if ssh_key is not None else None
    accel = accelerator()
    timeout = timeout or DEFAULT_TIMEOUT[accel.name]
    if progress is not None:
        progress(f"booting {image} ({FORMATS[fmt]}, {'UEFI' if uefi else 'BIOS'}) with "
                 f"{accel.name.upper()}: {accel.reason}")
    token = secrets.token_hex(8)
    with tempfile.TemporaryDirectory(prefix="debian-forge-boot-") as tmp_name:
        tmp = Path(tmp_name)
        seed = _seed(tmp, public_key or _throwaway_key(tmp), token)
        cpus = cpus or min(2, os.cpu_count() or 1)
        argv = [*_machine(qemu, accel.name, memory), "-smp", str(cpus),
                "-snapshot", "-drive", f"file={_escape(image.resolve())},format={fmt},if=virtio",
                "-drive", f"file={_escape(seed)},format=raw,if=virtio",
                "-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0,romfile=",
                "-device", "virtio-rng-pci"]
        if uefi:
            shutil.copyfile(OVMF_VARS, tmp / "OVMF_VARS.fd")
            for unit, path, extra in ((0, OVMF_CODE, ",readonly=on"),
                                      (1, tmp / "OVMF_VARS.fd", "")):
                argv += ["-drive", f"if=pflash,format=raw,unit={unit}{extra},file={_escape(path)}"]
        proc = _start(argv, tmp)
        try:
            return _watch(proc, token, accel.name, timeout, log)
        finally:
            _stop(proc)


def _watch(proc: subprocess.Popen, token: str, accel: str, timeout: float,
           log: IO[str] | None) -> BootResult:
    """Read the console until both the login prompt and the marker were seen."""
    started = time.monotonic()
    marker = re.compile(rf"FORGE-BOOT-OK {token} user={USER} uid=(\S*)")
    console = _Console(log)
    login_at = done_at = None
    while login_at is None or done_at is None:
        left = started + timeout - time.monotonic()
        if left <= 0:
            missing = " and ".join(f"no {what}" for what, at in (("login prompt", login_at),
                                                                  ("cloud-init marker", done_at))
                                   if at is None)
            raise BootFailed(f"{missing} on the console after {timeout:.0f} s "
                             f"({accel.upper()})", console.tail())
        if not select.select([proc.stdout], [], [], min(left, 1.0))[0]:
            continue
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            status = proc.wait()
            raise BootFailed(f"QEMU exited with status {status} after "
                             f"{time.monotonic() - started:.0f} s", console.tail())
        now = time.monotonic() - started
        lines, prompt = console.feed(chunk)
        for line in lines:
            found = marker.search(line)
            if found and done_at is None:
                if not found.group(1).isdigit():
                    raise BootFailed(f"cloud-init finished but the user {USER} does not exist",
                                     console.tail())
                done_at = now
        if login_at is None and any(_LOGIN.match(line) for line in [*lines, prompt]):
            login_at = now
    return BootResult(accel, round(login_at, 1), round(done_at, 1), console.tail())


class _Console:
    """The serial console as lines without escape sequences; the open line counts too."""

    def __init__(self, log: IO[str] | None):
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._log = log
        self._open = ""
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)

    def feed(self, chunk: bytes) -> tuple[list[str], str]:
        """The lines this chunk completed, and the open line (a prompt ends without newline)."""
        text = self._decoder.decode(chunk)
        if self._log is not None:
            self._log.write(text)
            self._log.flush()
        *done, self._open = (self._open + text).split("\n")
        lines = [_clean(line) for line in done]
        self._tail.extend(lines)
        return lines, _clean(self._open)

    def tail(self) -> list[str]:
        lines = list(self._tail) + [_clean(self._open)]
        while lines and not lines[-1].strip():
            lines.pop()
        return lines[-TAIL_LINES:]


def _clean(line: str) -> str:
    return _CONTROLS.sub("", _ESCAPES.sub("", line)).rstrip()


def _throwaway_key(tmp: Path) -> str:
    keygen = require_tool("ssh-keygen", "openssh-client")
    _run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", "debian-forge-boot",
          "-f", str(tmp / "id_ed25519")])
    return (tmp / "id_ed25519.pub").read_text().strip()


def _read_public_key(ssh_key: Path) -> str:
    """The OpenSSH public key in `ssh_key`, or in KEY.pub beside a private KEY."""
    if not ssh_key.is_file():
        raise UsageError(f"SSH key {ssh_key}: no such file")
    for path in (ssh_key, Path(f"{ssh_key}.pub")):
        if path.is_file():
            text = path.read_text(errors="replace").strip()
            if re.match(r"^(ssh-|ecdsa-|sk-)\S+ [A-Za-z0-9+/]+=*( |$)", text):
                return text.splitlines()[0]
    raise UsageError(f"SSH key {ssh_key}: not an OpenSSH public key (ssh-ed25519 AAAA…), "
                     f"and there is no {ssh_key}.pub beside it")


def _seed(tmp: Path, public_key: str, token: str) -> Path:
    """A vfat NoCloud seed labelled CIDATA: create `forge`, and once cloud-init is done (a
    background job waits for `cloud-init status --wait`) print the marker on ttyS0."""
    mkfs = require_tool("mkfs.fat", "dosfstools")
    mcopy = require_tool("mcopy", "mtools")
    report = (f'echo "FORGE-BOOT-OK {token} user={USER} uid=$(id -u {USER})" >/dev/ttyS0')
    user_data = {
        "users": [{"name": USER, "shell": "/bin/bash", "lock_passwd": True,
                   "ssh_authorized_keys": [public_key]}],
        # One host key type: an emulated CPU takes ~13 s for the default RSA-3072 key.
        "ssh_genkeytypes": ["ed25519"],
        "runcmd": [["sh", "-c", f"(cloud-init status --wait; {report}) "
                                f"</dev/null >/dev/null 2>&1 &"]],
    }
    (tmp / "user-data").write_text("#cloud-config\n" + yaml.safe_dump(user_data, sort_keys=False))
    (tmp / "meta-data").write_text(f"instance-id: debian-forge-boot-{token}\n"
                                   f"local-hostname: forge-boot\n")
    seed = tmp / "seed.img"
    _run([mkfs, "-n", "CIDATA", "-C", str(seed), "2048"])
    _run([mcopy, "-i", str(seed), str(tmp / "user-data"), str(tmp / "meta-data"), "::"],
         env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})
    return seed


def _run(argv: list[str], **kwargs) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise DebMockError(f"{' '.join(argv)} exited {proc.returncode}: "
                           f"{(proc.stderr or proc.stdout).strip()}")


def _escape(path: Path) -> str:
    """A path inside a QEMU option value, where a comma separates options."""
    return str(path).replace(",", ",,")


def _machine(qemu: str, accel: str, memory: int) -> list[str]:
    """A q35 PC with nothing but what is asked for, its serial console on standard output."""
    return [qemu, "-machine", "q35", "-accel", accel, "-cpu", "host" if accel == "kvm" else "max",
            "-m", str(memory), "-nodefaults", "-nographic", "-monitor", "none", "-serial", "stdio"]


def _start(argv: list[str], tmp: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, cwd=tmp, preexec_fn=die_with_parent,
                            env={**os.environ, "TMPDIR": str(tmp)})


def _stop(proc: subprocess.Popen) -> None:
    """Power the VM off: nothing in it is worth keeping (-snapshot)."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    proc.stdout.close()
