"""Run a shell script inside the tree, without network.

The script runs with the tree as `/` in the stage sandbox: no network at all (only a loopback
interface exists), fresh empty `/tmp` and `/run` that vanish afterwards, no host files. Its
text is part of the options and so of the stage ID: changing the script, even by a space,
changes the ID and reruns the stage and every stage after it. Nothing else the script reads is
part of the ID, so it should depend on the tree alone (which the lack of network helps).

The script is started as `<interpreter> -e /run/osbuild/script` for a shell (sh, bash, dash),
so the first failing command stops it; any other interpreter (perl, python3) gets just the
file. A non-zero exit fails the stage. The interpreter must be in the tree.
"""

from __future__ import annotations

import posixpath
import tempfile
from pathlib import Path

from deb_mock.sandbox import Bind
from debian_forge.context import StageContext, StageError

SCRIPT_MOUNT = "/run/osbuild/script"
_SHELLS = {"sh", "bash", "dash", "ksh", "mksh", "zsh"}

SCHEMA = {
    "required": ["script"],
    "properties": {
        "script": {"type": "string", "minLength": 1,
                   "description": "The script's text. It is part of the stage ID: changing it "
                                  "reruns the stage."},
        "interpreter": {"type": "string", "pattern": "^/", "default": "/bin/sh",
                        "x-expected": "an absolute path in the tree such as /bin/bash",
                        "description": "The program (in the tree) that runs the script; "
                                       "shells get -e. /bin/sh when not given."},
        "environment": {"type": "object",
                        "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
                                          "x-expected": "an environment variable name"},
                        "additionalProperties": {"type": "string"},
                        "description": "Extra environment variables for the script, name → "
                                       "value (PATH, LANG=C.UTF-8 and "
                                       "DEBIAN_FRONTEND=noninteractive are set already)."},
    },
}


def run(ctx: StageContext, options: dict) -> None:
    interpreter = options.get("interpreter", "/bin/sh")
    if not ctx.tree.exists(interpreter):
        raise StageError(f"the interpreter {interpreter} is not in this tree")
    with tempfile.NamedTemporaryFile("w", dir=ctx.scratch, prefix="script-",
                                     delete=False) as script:
        script.write(options["script"])
    argv = [interpreter, SCRIPT_MOUNT]
    if posixpath.basename(interpreter) in _SHELLS:
        argv.insert(1, "-e")
    ctx.run(argv, env=options.get("environment", {}),
            binds=[Bind(Path(script.name), SCRIPT_MOUNT)])
