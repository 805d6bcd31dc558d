"""Runs blocking native calls off the event loop.

The runtime's calls block (a command can run for minutes), so they get a pool of their own:
asyncio's default executor has only a few threads, and long commands would starve every
other SDK call, such as a dashboard's refresh.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

_P = ParamSpec("_P")
_R = TypeVar("_R")

#: Upper bound of native calls in flight at once per process.
MAX_CONCURRENT_CALLS = 256

_EXECUTOR = ThreadPoolExecutor(max_workers=MAX_CONCURRENT_CALLS, thread_name_prefix="msb-native")


async def run_blocking(function: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_EXECUTOR, functools.partial(function, *args, **kwargs))
