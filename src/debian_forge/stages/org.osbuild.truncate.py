"""Create (or resize) a sparse file in the tree: the disk image the next stages fill.

Sizes are bytes, or a number with K, M, G or T (powers of 1024), as `truncate -s` takes them.
"""

from __future__ import annotations

import os

from deb_mock.config import parse_size
from debian_forge.context import StageContext

SCHEMA = {
    "required": ["filename", "size"],
    "properties": {
        "filename": {"type": "string", "pattern": "^(?!/)(?!.*(^|/)\\.\\.(/|$)).+$",
                     "x-expected": "a path relative to the tree, without '..'",
                     "description": "The image file, relative to the pipeline's tree."},
        "size": {"type": ["string", "integer"], "pattern": "^[0-9]+(\\.[0-9]+)?[KMGT]?$",
                 "x-expected": "bytes, or a number with K, M, G or T",
                 "description": "The file's size."},
    },
}


def run(ctx: StageContext, options: dict) -> None:
    path = ctx.tree.path(options["filename"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as handle:
        os.truncate(handle.fileno(), parse_size(options["size"], "size"))
