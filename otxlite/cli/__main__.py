"""``python -m otxlite.cli``: the same as the ``otxlite`` command."""

from otxlite.cli import main

main()
