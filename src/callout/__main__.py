"""``python -m callout``: the same as the ``callout`` command."""

from callout.cli import main

main()
