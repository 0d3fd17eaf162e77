"""deb-mock: cached, isolated Debian build environments.

The stable Python API::

    from deb_mock import Environment, load_config

    env = Environment(load_config("debian-bookworm-amd64"))
    env.init()
    env.install(["hello"])
    result = env.execute(["hello"])
    print(result.returncode, result.stdout)
"""

from deb_mock.errors import DebMockError

__version__ = "0.1.0"

__all__ = ["DebMockError", "Environment", "ExecResult", "load_config", "__version__"]


def __getattr__(name: str):
    # Imported lazily so that `import deb_mock` stays cheap for the CLI's fast paths.
    if name in ("Environment", "ExecResult"):
        from deb_mock import environment

        return getattr(environment, name)
    if name == "load_config":
        from deb_mock.config import load_config

        return load_config
    raise AttributeError(name)
