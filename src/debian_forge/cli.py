"""The debian-forge command line (the manifest engine arrives with its own issue)."""

import click

from debian_forge import __version__


@click.group(invoke_without_command=True)
@click.version_option(__version__, prog_name="debian-forge")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Build Debian images from osbuild-style manifests."""
    if ctx.invoked_subcommand is None:
        click.echo(f"debian-forge {__version__}")
