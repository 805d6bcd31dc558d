"""``python -m microsandbox_tui.cli``: the same as the ``msb`` console script."""

from . import main

main()
