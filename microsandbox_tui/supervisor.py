"""Entry point of a sandbox's supervisor process: ``python -m microsandbox_tui.supervisor``.

The body is native code; this module only parses the arguments the runtime passes.
"""

from __future__ import annotations

import argparse

from . import _native


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="microsandbox_tui.supervisor")
    parser.add_argument("name")
    parser.add_argument("--parent-pid", type=int, default=None)
    parser.add_argument("--ready-fd", type=int, default=None)
    args = parser.parse_args(argv)
    _native.run_supervisor(args.name, args.parent_pid, args.ready_fd)


if __name__ == "__main__":
    main()
