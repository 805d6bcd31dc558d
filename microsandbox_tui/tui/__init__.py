"""``msb-tui``: the terminal dashboard for microVM sandboxes, built on the public SDK only."""

from __future__ import annotations

import argparse
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
    parser.add_argument("--no-mouse", action="store_true", help="leave the mouse to the terminal")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``msb-tui`` console script."""
    args = build_parser().parse_args(argv)
    # Imported here so that `msb-tui --help` does not pay for loading Textual.
    from .app import MsbApp

    MsbApp(readonly=args.readonly).run(mouse=not args.no_mouse)
