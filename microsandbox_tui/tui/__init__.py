"""``msb-tui``: the terminal dashboard for microVM sandboxes, built on the public SDK only."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from microsandbox_tui import InvalidConfigError, LogLevel, home_dir, set_log_level

#: The runtime's log while the dashboard runs, in the runtime home: the terminal is the
#: dashboard's, and a log line written there would tear its picture.
LOG_FILE = "msb-tui.log"
LOG_ENV = "MSB_LOG"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="msb-tui",
        description="A terminal dashboard for microVM sandboxes.",
        epilog=(
            f"{LOG_ENV}=LEVEL (or --log-level) appends the runtime's log to "
            f"$MSB_HOME/{LOG_FILE} (default ~/.microsandbox-tui/{LOG_FILE}); the dashboard "
            "never logs to the terminal it draws on."
        ),
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
    parser.add_argument(
        "--log-level",
        choices=[level.value for level in LogLevel],
        default=None,
        help=f"log the runtime's work at LEVEL and above to $MSB_HOME/{LOG_FILE}",
    )
    return parser


def log_to_file(level: str | None) -> Path | None:
    """Points the runtime's log, if there is to be one (``level``, else ``MSB_LOG``), at the
    log file; returns the file. Raises :class:`InvalidConfigError` for an unknown level."""
    level = level or os.environ.get(LOG_ENV) or None
    if level is None:
        return None
    path = Path(home_dir()) / LOG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    set_log_level(level, path)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``msb-tui`` console script."""
    args = build_parser().parse_args(argv)
    try:
        log_to_file(args.log_level)
    except InvalidConfigError as error:
        print(f"msb-tui: {LOG_ENV}: {error}", file=sys.stderr)
        raise SystemExit(2) from None
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
