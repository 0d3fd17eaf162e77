"""`python -m deb_mock` runs the deb-mock command line."""

from deb_mock.cli import main

main()
