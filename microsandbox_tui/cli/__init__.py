"""``msb``: a small command-line interface over the SDK, for scripts and shell users."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from microsandbox_tui import MicrosandboxError, set_log_level

from .parser import build_parser, parse_args

__all__ = ["build_parser", "main", "parse_args", "run"]


def run(argv: Sequence[str] | None = None) -> int:
    """Runs one ``msb`` command and returns its exit status.

    Usage errors exit through argparse with status 2; SDK errors become one line,
    ``error: TypeName: message``, on stderr and status 1.
    """
    args = parse_args(argv)
    try:
        if args.log_level is not None:
            set_log_level(args.log_level)
        code: int = asyncio.run(args.handler(args))
        return code
    except MicrosandboxError as error:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``msb`` console script."""
    sys.exit(run(argv))
