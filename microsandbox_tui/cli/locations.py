"""Where ``cp`` and ``ls`` find files: ``SANDBOX:/path`` in a sandbox, or a host path."""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GuestPath:
    """``SANDBOX:/path``: a path in a sandbox, as ``cp`` and ``ls`` take it."""

    sandbox: str
    path: str


def location(text: str) -> GuestPath | str:
    """``NAME:/path`` (a name without ``/``, an absolute path) is a path in the sandbox
    NAME; anything else is a host path (write ``./a:/b`` for a host path of that shape)."""
    name, colon, path = text.partition(":")
    if colon and name and "/" not in name and path.startswith("/"):
        return GuestPath(name, path)
    return text


def guest_location(text: str) -> GuestPath:
    found = location(text)
    if not isinstance(found, GuestPath):
        raise argparse.ArgumentTypeError(f"expected SANDBOX:/path, got {text!r}")
    return found
