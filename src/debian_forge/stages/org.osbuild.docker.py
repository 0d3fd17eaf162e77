"""Pack a pipeline's tree as a container image: OCI layout, OCI archive, docker-archive.

The `tree` input becomes an image written into this pipeline's tree, in every format asked for:
`oci-dir` (an OCI image layout directory `<filename>/`, its index naming the image by `tag`, as
umoci and skopeo's `oci:` take it), `oci-archive` (`<filename>.oci.tar`, the layout as a tar,
named `<name>:<tag>` as `podman load` and skopeo's `oci-archive:` take it) and
`docker-archive` (`<filename>.docker.tar`, `docker save`'s format, tagged `<name>:<tag>`).

`layers: single` (the default) packs the whole tree as one layer. `layers: per-stage` makes one
image layer of each stage layer of the input pipeline in the store — the bootstrap's full tree,
then each later stage's changes, deleted files as `.wh.` whiteouts and replaced directories as
`.wh..wh..opq` — so two images built on the same pipeline stages share those layers' blobs
byte for byte, as registries and container stores deduplicate them.

Reproducible: sorted tar entries, numeric owners, modification times clamped to the source
epoch, gzip without a timestamp, `created` from the epoch, canonical JSON: the same lock and
epoch give the same image digest. The image's digest and layers go into the build record.
"""

from __future__ import annotations

from debian_forge.context import StageContext, StageError, Tree
from debian_forge.oci import FORMATS, ImageConfig, LayerSource, build_image
from debian_forge.stagelib import file_name_property

_STRINGS = {"type": "array", "items": {"type": "string"}}
_ARCHITECTURES = {"amd64": "amd64", "arm64": "arm64", "armhf": "arm", "armel": "arm",
                  "i386": "386", "ppc64el": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}

SCHEMA = {
    "properties": {
        "filename": {**file_name_property("Base name of the outputs in this pipeline's tree."),
                     "default": "image"},
        "name": {"type": "string", "pattern": "^[a-z0-9]+([._/-][a-z0-9]+)*$",
                 "default": "localhost/debian-forge",
                 "x-expected": "an image name such as example.org/team/app",
                 "description": "The image's repository name."},
        "tag": {"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$",
                "default": "latest", "x-expected": "a tag such as 12 or latest",
                "description": "The image's tag."},
        "format": {"type": "array", "items": {"enum": list(FORMATS)}, "minItems": 1,
                   "uniqueItems": True, "default": ["oci-archive"],
                   "description": "Output formats, several at once."},
        "layers": {"enum": ["single", "per-stage"], "default": "single",
                   "description": "One layer, or one per stage layer of the input pipeline."},
        "entrypoint": {**_STRINGS, "description": "ENTRYPOINT (exec form)."},
        "cmd": {**_STRINGS, "description": "CMD (exec form): the entrypoint's arguments, or "
                                           "the command."},
        "env": {"type": "object", "additionalProperties": {"type": "string"},
                "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
                                  "x-expected": "an environment variable name"},
                "description": "Environment variables, name → value."},
        "working_dir": {"type": "string", "pattern": "^/", "x-expected": "an absolute path",
                        "description": "WORKDIR."},
        "user": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]+$",
                 "x-expected": "user, uid, user:group or uid:gid",
                 "description": "USER the process runs as."},
        "exposed_ports": {"type": "array", "uniqueItems": True,
                          "items": {"type": "string", "pattern": "^[0-9]{1,5}(/(tcp|udp|sctp))?$",
                                    "x-expected": "a port such as 80 or 53/udp"},
                          "description": "EXPOSE: ports, /tcp unless given."},
        "volumes": {"type": "array", "uniqueItems": True,
                    "items": {"type": "string", "pattern": "^/",
                              "x-expected": "an absolute path"},
                    "description": "VOLUME mount points."},
        "labels": {"type": "object", "additionalProperties": {"type": "string"},
                   "description": "LABELs of the image config."},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"},
                        "description": "Annotations of the OCI manifest."},
        "stop_signal": {"type": "string", "pattern": "^(SIG[A-Z0-9]+|[0-9]+)$",
                        "x-expected": "a signal such as SIGQUIT",
                        "description": "STOPSIGNAL."},
        "architecture": {"enum": list(_ARCHITECTURES),
                         "description": "Debian architecture of the image (default: that of "
                                        "the tree's dpkg)."},
    },
}

INPUTS = {"type": "object", "additionalProperties": False, "required": ["tree"],
          "properties": {"tree": {"type": "object",
                                  "description": "The pipeline whose tree is the image."}}}


def run(ctx: StageContext, options: dict) -> None:
    tree = ctx.inputs["tree"]
    architecture = options.get("architecture") or _dpkg_architecture(Tree(tree.path))
    if architecture not in _ARCHITECTURES:
        raise StageError(f"architecture {architecture!r} has no OCI name; set `architecture`")
    config = ImageConfig(
        entrypoint=options.get("entrypoint"), cmd=options.get("cmd"),
        env=[f"{key}={value}" for key, value in sorted(options.get("env", {}).items())],
        working_dir=options.get("working_dir"), user=options.get("user"),
        exposed_ports=[port if "/" in port else f"{port}/tcp"
                       for port in options.get("exposed_ports", [])],
        volumes=options.get("volumes", []), labels=options.get("labels", {}),
        stop_signal=options.get("stop_signal"))
    if options.get("layers", "single") == "per-stage":
        layers = [LayerSource(layer.tree, overlay=index > 0,
                              created_by=f"debian-forge {layer.meta.get('type', 'stage')} "
                                         f"{layer.id[:12]}")
                  for index, layer in enumerate(tree.layers)]
    else:
        layers = [LayerSource(tree.path, overlay=False, created_by="debian-forge tree")]
    if not layers:
        raise StageError("the tree input's pipeline has no stages: nothing to pack")
    image = build_image(layers, config, ctx.tree.root, basename=options.get("filename", "image"),
                        name=options.get("name", "localhost/debian-forge"),
                        tag=options.get("tag", "latest"),
                        formats=options.get("format", ["oci-archive"]),
                        architecture=_ARCHITECTURES[architecture],
                        annotations=options.get("annotations", {}), epoch=ctx.source_epoch)
    ctx.report.update({"manifest": image.manifest.digest, "config": image.config.digest,
                       "layers": [{"digest": blob.digest, "size": blob.size, "diff_id": diff_id}
                                  for blob, diff_id in zip(image.layers, image.diff_ids)]})
    ctx.log.write(f"image {image.manifest.digest}: {len(image.layers)} layer(s), "
                  f"{', '.join(sorted(image.outputs))}\n")


def _dpkg_architecture(tree: Tree) -> str:
    """The tree's native dpkg architecture (the one dpkg itself is built for)."""
    if tree.exists("/var/lib/dpkg/status"):
        for stanza in tree.read_text("/var/lib/dpkg/status").split("\n\n"):
            if stanza.startswith("Package: dpkg\n"):
                for line in stanza.splitlines():
                    if line.startswith("Architecture: "):
                        return line.split(": ", 1)[1].strip()
    return "amd64"
