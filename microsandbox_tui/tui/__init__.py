"""``msb-tui``: the terminal dashboard for microVM sandboxes, built on the public SDK only."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="msb-tui", description="A terminal dashboard for microVM sandboxes."
    )
    parser.add_argument(
        "--readonly",
        action="store_true",
        help="hide and disable every action that changes something (create, stop, delete)",
    )
    parser.add_argument(
        "--no-mouse",
        action="store_true",
        help="start with the mouse left to the terminal, to select text (m toggles)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``msb-tui`` console script."""
    args = build_parser().parse_args(argv)
    # Imported here so that `msb-tui --help` does not pay for loading Textual.
    from .app import MsbApp
    from .settings import ConfigError

    try:
        app = MsbApp(readonly=args.readonly, mouse=not args.no_mouse)
    except ConfigError as error:
        print(f"msb-tui: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    # Textual always gets mouse events; the app switches the terminal's reporting on and off.
    app.run(mouse=True)
