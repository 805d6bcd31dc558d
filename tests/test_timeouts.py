"""The suite's time limits work: a test past its ``timeout`` mark fails (pytest-timeout)
instead of blocking the run, so a hung VM costs one failure and not the whole suite."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

#: Runs the deliberately hanging test; only the check below sets it, in its child pytest.
SELF_TEST_ENV = "MSB_TIMEOUT_SELF_TEST"
#: The hanging test's limit, and how long its child pytest may take in all (start-up, the
#: limit, the report) before the check gives up.
HANG_LIMIT_S = 2
CHILD_BOUND_S = 30


@pytest.mark.skipif(
    not os.environ.get(SELF_TEST_ENV),
    reason=f"a deliberate hang, run by test_a_hanging_test_fails_by_timeout ({SELF_TEST_ENV}=1)",
)
@pytest.mark.timeout(HANG_LIMIT_S)
def test_hangs() -> None:
    # Longer than the child's bound: only a working timeout ends it in time.
    time.sleep(4 * CHILD_BOUND_S)


def test_a_hanging_test_fails_by_timeout() -> None:
    started = time.monotonic()
    child = subprocess.run(
        [sys.executable, "-m", "pytest", f"{__file__}::test_hangs", "-q", "-p", "no:cacheprovider"],
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, SELF_TEST_ENV: "1"},
        capture_output=True,
        text=True,
        timeout=CHILD_BOUND_S,
    )
    elapsed = time.monotonic() - started
    report = child.stdout + child.stderr
    assert child.returncode == 1, report
    assert f"Timeout (>{HANG_LIMIT_S:.1f}s)" in report, report
    assert elapsed < CHILD_BOUND_S
