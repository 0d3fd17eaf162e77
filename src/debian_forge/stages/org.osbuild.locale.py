"""Set the system locale (and optionally the keyboard layout) of a tree.

Writes `LANG` to `/etc/default/locale`. A locale other than the built-in `C`, `C.UTF-8` and
`POSIX` must be one the tree's glibc supports (`/usr/share/i18n/SUPPORTED`); it is enabled in
`/etc/locale.gen` and compiled with `locale-gen` inside the tree, which needs the package
`locales`. With `keyboard`, `/etc/default/keyboard` (read by console-setup and X) gets the
layout and `/etc/vconsole.conf` the console keymap.
"""

from __future__ import annotations

import re

from debian_forge.context import StageContext, StageError
from debian_forge.stagelib import did_you_mean, require_command

BUILTIN = {"C", "C.UTF-8", "C.utf8", "POSIX"}

SCHEMA = {
    "required": ["language"],
    "properties": {
        "language": {
            "type": "string",
            "pattern": "^[A-Za-z0-9_.@+-]+$",
            "x-expected": "a locale name such as 'en_US.UTF-8' or 'C.UTF-8'",
            "description": "The locale written as LANG to /etc/default/locale, as listed in "
                           "/usr/share/i18n/SUPPORTED (e.g. 'en_US.UTF-8', 'de_DE.UTF-8'); "
                           "it is generated with locale-gen unless it is C, C.UTF-8 or POSIX.",
        },
        "keyboard": {
            "type": "object",
            "additionalProperties": False,
            "required": ["keymap"],
            "description": "The keyboard layout; /etc/default/keyboard is left alone without it.",
            "properties": {
                "keymap": {
                    "type": "string",
                    "pattern": "^[A-Za-z0-9_.-]+$",
                    "x-expected": "a keymap name such as 'us' or 'de-latin1'",
                    "description": "Console keymap (KEYMAP in /etc/vconsole.conf). Without "
                                   "`layout`, its part before the first '-' is also the X "
                                   "layout ('de-latin1' gives XKBLAYOUT=\"de\").",
                },
                "layout": {
                    "type": "string",
                    "pattern": "^[A-Za-z0-9_,-]+$",
                    "x-expected": "an XKB layout such as 'de' or 'us,de'",
                    "description": "XKB layout written as XKBLAYOUT to /etc/default/keyboard.",
                },
            },
        },
    },
}

KEYBOARD_DEFAULTS = {"XKBMODEL": "pc105", "XKBLAYOUT": "us", "XKBVARIANT": "",
                     "XKBOPTIONS": "", "BACKSPACE": "guess"}


def run(ctx: StageContext, options: dict) -> None:
    language = options["language"]
    if language not in BUILTIN:
        _generate(ctx, language)
    _set_variables(ctx, "/etc/default/locale", {"LANG": language}, quote=False)
    keyboard = options.get("keyboard")
    if keyboard:
        keymap = keyboard["keymap"]
        layout = keyboard.get("layout") or keymap.split("-")[0]
        _set_variables(ctx, "/etc/default/keyboard", {"XKBLAYOUT": layout},
                       defaults=KEYBOARD_DEFAULTS)
        _set_variables(ctx, "/etc/vconsole.conf", {"KEYMAP": keymap}, quote=False)


def _generate(ctx: StageContext, language: str) -> None:
    """Enable `language` in /etc/locale.gen and compile it with locale-gen."""
    require_command(ctx.tree, "locale-gen", "locales")
    supported = {}
    if ctx.tree.exists("/usr/share/i18n/SUPPORTED"):
        for line in ctx.tree.read_text("/usr/share/i18n/SUPPORTED").splitlines():
            fields = line.split()
            if len(fields) == 2 and not line.startswith("#"):
                supported[fields[0]] = fields[1]
    if language not in supported:
        raise StageError(f"locale '{language}' is not in this tree's /usr/share/i18n/SUPPORTED"
                         + did_you_mean(language, supported))
    entry = f"{language} {supported[language]}"
    text = ctx.tree.read_text("/etc/locale.gen") if ctx.tree.exists("/etc/locale.gen") else ""
    pattern = re.compile(r"^#?\s*" + re.escape(entry) + r"\s*$", re.M)
    if pattern.search(text):
        text = pattern.sub(entry, text, count=1)
    else:
        text += ("" if text.endswith("\n") or not text else "\n") + entry + "\n"
    ctx.tree.write_text("/etc/locale.gen", text)
    ctx.run(["locale-gen"])


def _set_variables(ctx: StageContext, path: str, values: dict[str, str], quote: bool = True,
                   defaults: dict[str, str] | None = None) -> None:
    """Set shell-style `KEY=value` lines in a file of the tree, keeping its other lines;
    `defaults` are added only for keys the file does not set yet."""
    lines = ctx.tree.read_text(path).splitlines() if ctx.tree.exists(path) else []
    keys = [line.split("=", 1)[0].strip() for line in lines if "=" in line]
    pending = {key: value for key, value in (defaults or {}).items() if key not in keys}
    pending.update(values)
    out = []
    for line in lines:
        key = line.split("=", 1)[0].strip() if "=" in line else None
        if key in values:
            if key not in pending:
                continue  # a later duplicate: the line set above wins
            line = _assignment(key, pending.pop(key), quote)
        out.append(line)
    out += [_assignment(key, value, quote) for key, value in pending.items()]
    ctx.tree.write_text(path, "\n".join(out) + "\n")


def _assignment(key: str, value: str, quote: bool) -> str:
    return f'{key}="{value}"' if quote else f"{key}={value}"
