"""Fixtures of the network tests: a fresh fake internet per test, torn down even on failure."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .internet import FakeInternet, unavailable_reason


@pytest.fixture
def fake_internet() -> Iterator[FakeInternet]:
    """The two namespaces and their test hosts; skipped where they cannot be built."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with FakeInternet() as internet:
        yield internet
