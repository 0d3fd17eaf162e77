"""Build packages from source in a deb-mock environment and put the results into the tree.

The stage provisions a deb-mock environment (a config such as `debian-bookworm-amd64`, with
optional architecture, mirror and components) through deb-mock's Python API, installs
`packages`, runs `commands` (without network), builds each of `sources` — source packages from
the archive, resolved like everything else: the .dsc and its tarballs are locked by sha256 —
and copies the artifacts matching `artifacts` into `directory` of the pipeline's tree, with
each build's record as `<package>.build.json`. An org.osbuild.apt stage of another pipeline
installs them by taking this pipeline as an input (its `local` option). The environment's own
state is dropped afterwards; its cached base and build-dependency layers stay in the store.
"""

from __future__ import annotations

import fnmatch
import hashlib
import shutil

from deb_mock.apt_host import HostApt, ResolvedPackage
from deb_mock.errors import DebMockError
from debian_forge.context import PACKAGE_INPUTS, StageCommandFailed, StageContext, StageError

LOCKS_PACKAGES = True  # the source packages it builds

SCHEMA = {
    "properties": {
        "environment": {"type": "string", "minLength": 1, "default": "debian-bookworm-amd64",
                        "description": "The deb-mock config (`deb-mock list-configs`)."},
        "arch": {"type": "string", "pattern": "^[a-z0-9]+$",
                 "x-expected": "a Debian architecture",
                 "description": "Build for this architecture (the config's by default)."},
        "config": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "mirror": {"type": "string", "pattern": "^(https?|file)://",
                           "x-expected": "an http(s):// or file:// URL",
                           "description": "The Debian mirror of the environment."},
                "components": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                               "description": "Archive components."},
            },
            "description": "Overrides of the config's keys.",
        },
        "packages": {"type": "array", "items": {"type": "string", "minLength": 1},
                     "default": [], "description": "Packages to install into the environment."},
        "commands": {"type": "array", "items": {"type": "string", "minLength": 1},
                     "default": [], "description": "Shell commands run in the environment (as "
                                                   "root, without network) before the builds."},
        "sources": {"type": "array", "default": [],
                    "items": {"type": "string",
                              "pattern": "^[a-z0-9][a-z0-9.+-]+(=[A-Za-z0-9.+:~-]+)?$",
                              "x-expected": "a source package name, optionally =version"},
                    "description": "Source packages from the archive to build "
                                   "(`hello`, `hello=2.10-3`); locked by sha256."},
        "deb_build_options": {"type": "string", "default": "",
                              "description": "DEB_BUILD_OPTIONS of the builds (e.g. nocheck)."},
        "artifacts": {"type": "array", "items": {"type": "string", "minLength": 1},
                      "default": ["*.deb"],
                      "description": "Glob patterns of result files to copy into the tree."},
        "directory": {"type": "string", "pattern": "^/", "default": "/",
                      "x-expected": "an absolute path",
                      "description": "Where in the tree the artifacts go."},
    },
    "anyOf": [{"required": ["sources"]}, {"required": ["commands"]},
              {"required": ["packages"]}],
}

INPUTS = PACKAGE_INPUTS  # the locked source files, added by resolving


def _config(options: dict):
    from deb_mock.config import load_config

    overrides = []
    if "arch" in options:
        overrides.append(f"architecture={options['arch']}")
    for key, value in options.get("config", {}).items():
        overrides.append(f"{key}=[{','.join(value)}]" if isinstance(value, list)
                         else f"{key}={value}")
    return load_config(options.get("environment", "debian-bookworm-amd64"), overrides)


def resolve(stage, state, resolver, locked):
    """Lock every source package to its files in the signed Sources indexes."""
    if locked is not None:
        return dict(stage.options), locked
    from deb_mock.environment import archive_sources

    config = _config(stage.options)
    host_apt = HostApt.for_sources(resolver.cache_dir, config.architecture,
                                   archive_sources(config), with_sources=True)
    host_apt.update(resolver.max_age)
    files = []
    for request in stage.options.get("sources", []):
        refs = host_apt.source_files(request)
        dsc = next(ref for ref in refs if ref.filename.endswith(".dsc"))
        name, version = dsc.filename[: -len(".dsc")].split("_", 1)
        files += [ResolvedPackage(name, version, "source", ref) for ref in refs]
    return dict(stage.options), files


def run(ctx: StageContext, options: dict) -> None:
    from deb_mock.build import build_package
    from deb_mock.environment import Environment
    from deb_mock.ui import UI

    locked = ctx.inputs.get("packages")
    by_source: dict[str, list[tuple[str, object]]] = {}
    for checksum, meta in (locked.metadata.items() if locked else []):
        by_source.setdefault(meta["name"], []).append(
            (locked.filenames.get(checksum, checksum), locked.files[checksum]))
    token = hashlib.sha256(str(ctx.tree.root).encode()).hexdigest()[:12]
    env = Environment(_config(options), uniqueext=f"forge-{token}", ui=UI(quiet=True))
    results = ctx.scratch / "results"
    try:
        with env:
            env.init()
            if options.get("packages"):
                env.install(options["packages"])
            for command in options.get("commands", []):
                result = env.execute(["/bin/sh", "-c", command], network=False)
                ctx.log.write(result.stdout + result.stderr)
                if not result.ok:
                    raise StageCommandFailed(["sh", "-c", command], result.returncode,
                                             result.stderr)
            for name, paths in sorted(by_source.items()):
                work = ctx.scratch / "sources" / name
                work.mkdir(parents=True)
                for filename, path in paths:  # the cache's files under their archive names
                    shutil.copy2(path, work / filename)
                dsc = next(work.glob("*.dsc"))
                ctx.log.write(f"deb-mock: building {dsc.name}\n")
                build_package(env, str(dsc), results / name,
                              deb_build_options=options.get("deb_build_options", ""))
                ctx.log.write((results / name / "build.log").read_text(errors="replace")[-4000:])
    except DebMockError as exc:
        raise StageError(f"deb-mock: {exc}") from None
    finally:
        env.clean()
    _place(ctx, options, results)


def _place(ctx: StageContext, options: dict, results) -> None:
    target = ctx.tree.path(options.get("directory", "/"))
    target.mkdir(parents=True, exist_ok=True)
    patterns = options.get("artifacts", ["*.deb"])
    for result_dir in sorted(results.iterdir()) if results.exists() else []:
        for path in sorted(result_dir.iterdir()):
            if any(fnmatch.fnmatch(path.name, p) for p in patterns):
                shutil.copy2(path, target / path.name)
        record = result_dir / "build.json"
        if record.exists():
            shutil.copy2(record, target / f"{result_dir.name}.build.json")
