"""``python -m microsandbox_tui.tui``: the same as the ``msb-tui`` console script."""

from . import main

main()
