"""Pack a tree into a reproducible tarball.

The tarball of the `tree` input is written into this pipeline's tree as `filename`. Members are
sorted by name, owners are numeric, modification times are clamped to the source epoch (when the
manifest sets one) and atime/ctime are left out, so the same tree and epoch give the same bytes.
Extended attributes (file capabilities such as ping's) are kept. Compression follows the
`compression` option or the file name (.gz, .xz, .zst), with settings that do not record
timestamps or names. `sparse` stores the holes of sparse files (disk images) as holes, and
`format: oldgnu` with `root-node: omit` makes the `disk.raw` tarball Google Compute Engine
imports. It runs the build root's GNU tar.
"""

from __future__ import annotations

from debian_forge.context import INPUTS_MOUNT, TREE_MOUNT, StageContext
from debian_forge.stagelib import file_name_property

_COMPRESSORS = {"gzip": "gzip -n", "xz": "xz -T1", "zstd": "zstd -T1 -q", "none": None}
_SUFFIXES = {".gz": "gzip", ".tgz": "gzip", ".xz": "xz", ".zst": "zstd"}

SCHEMA = {
    "required": ["filename"],
    "properties": {
        "filename": file_name_property("Name of the tarball in the pipeline's tree."),
        "compression": {"enum": list(_COMPRESSORS),
                        "description": "Compressor; default: from the file name's suffix, "
                                       "else none."},
        "format": {"enum": ["gnu", "oldgnu", "pax"], "default": "pax",
                   "description": "Archive format (pax keeps extended attributes)."},
        "sparse": {"type": "boolean", "default": False,
                   "description": "Store the holes of sparse files efficiently (--sparse)."},
        "root-node": {"enum": ["include", "omit"], "default": "include",
                      "description": "Whether the tree's root directory itself is a member "
                                     "('./')."},
    },
}

INPUTS = {
    "type": "object",
    "additionalProperties": False,
    "required": ["tree"],
    "properties": {"tree": {"type": "object", "properties": {
        "type": {"const": "org.osbuild.tree"}, "origin": {"const": "org.osbuild.pipeline"},
        "references": {"minItems": 1, "maxItems": 1}}}},
}


def compression_of(options: dict) -> str | None:
    name = options.get("compression")
    if name is None:
        name = next((c for suffix, c in _SUFFIXES.items()
                     if options["filename"].endswith(suffix)), "none")
    return _COMPRESSORS[name]


def run(ctx: StageContext, options: dict) -> None:
    source = f"{INPUTS_MOUNT}/tree"
    argv = ["tar", "--create", f"--format={options.get('format', 'pax')}",
            f"--file={TREE_MOUNT}/{options['filename']}", f"--directory={source}",
            "--sort=name", "--numeric-owner", "--one-file-system"]
    if options.get("format", "pax") == "pax":  # only pax records extended attributes
        argv += ["--xattrs", "--xattrs-include=*", "--acls",
                 "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime"]
    if ctx.source_epoch is not None:
        argv += [f"--mtime=@{ctx.source_epoch}", "--clamp-mtime"]
    if options.get("sparse"):
        argv.append("--sparse")
    compressor = compression_of(options)
    if compressor:
        argv.append(f"--use-compress-program={compressor}")
    if options.get("root-node", "include") == "omit":
        argv += ["--no-recursion", "-T", "-"]
        files = ctx.run_in_buildroot(["find", source, "-mindepth", "1", "-printf", "%P\\n"])
        ctx.run_in_buildroot(argv, stdin=files.stdout)
    else:
        argv.append(".")
        ctx.run_in_buildroot(argv)
