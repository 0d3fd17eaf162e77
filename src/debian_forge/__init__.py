"""debian-forge: an osbuild-style image builder for Debian."""

__version__ = "0.1.0"
