"""``msb-tui``: the terminal dashboard."""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="msb-tui", description="A dashboard for microVM sandboxes."
    )
    parser.add_argument(
        "--readonly", action="store_true", help="hide every action that changes something"
    )
    parser.add_argument("--no-mouse", action="store_true", help="leave the mouse to the terminal")
    args = parser.parse_args()
    from .app import SandboxApp

    SandboxApp(readonly=args.readonly).run(mouse=not args.no_mouse)
