"""``MetricsStream``, what ``Sandbox.metrics_stream`` returns: its shape and its refusals. A
real sandbox's stream is in ``test_metrics.py``."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import pytest

from microsandbox_tui import InvalidConfigError, MetricsStream, SandboxNotFoundError


def test_a_metrics_stream_is_its_own_async_iterator() -> None:
    stream = MetricsStream("web", interval=0.5)
    assert isinstance(stream, AsyncIterator)
    assert aiter(stream) is stream
    assert (stream.name, stream.interval) == ("web", 0.5)
    assert MetricsStream("web").interval == 1.0, "the supervisors' own sampling interval"


@pytest.mark.parametrize("interval", [0, -1.0, math.nan])
def test_an_interval_must_be_positive(interval: float) -> None:
    with pytest.raises(InvalidConfigError, match=r"^interval: "):
        MetricsStream("web", interval)


async def test_an_unknown_sandbox_is_an_error_not_an_empty_stream() -> None:
    with pytest.raises(SandboxNotFoundError):
        await anext(MetricsStream("no-such-sandbox"))
