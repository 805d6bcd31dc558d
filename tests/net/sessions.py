"""The test side of :mod:`net.sandbox_driver`: a sandbox booted inside the fake internet's host
namespace, and the calls a test makes on it, each bounded in time."""

from __future__ import annotations

import json
import selectors
import subprocess
import sys
import time
from typing import Any

from .internet import FakeInternet, FakeInternetError

CREATE_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0
HOST_CALL_TIMEOUT_S = 30.0
"""Bound of the driver's host-side calls (its own clients time out at 20 s)."""


class GuestSession:
    """One sandbox and its driver process; ``close()`` stops and removes it."""

    def __init__(
        self,
        internet: FakeInternet,
        name: str,
        *,
        image: str | None = None,
        network: dict[str, Any] | None = None,
        ports: dict[int, int] | None = None,
        env: dict[str, str] | None = None,
        secrets: list[dict[str, Any]] | None = None,
    ) -> None:
        self._process = internet.popen_in_host(
            [sys.executable, "-m", "net.sandbox_driver"],
            reaches=internet.test_hosts,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._selector = selectors.DefaultSelector()
        assert self._process.stdout is not None
        self._selector.register(self._process.stdout, selectors.EVENT_READ)
        self._buffer = b""
        try:
            self.created = self.ok(
                "create",
                CREATE_TIMEOUT_S,
                name=name,
                image=image,
                network=network,
                ports=None if ports is None else {str(h): g for h, g in ports.items()},
                secrets=secrets,
            )
        except BaseException:
            self.kill()
            raise

    def call(self, op: str, wait_s: float, **arguments: Any) -> dict[str, Any]:
        """Sends one command; returns its answer (which may be ``{"error": ...}``)."""
        assert self._process.stdin is not None
        self._process.stdin.write((json.dumps({"op": op, **arguments}) + "\n").encode())
        self._process.stdin.flush()
        reply: dict[str, Any] = json.loads(self._read_line(wait_s))
        return reply

    def ok(self, op: str, wait_s: float = HOST_CALL_TIMEOUT_S, **arguments: Any) -> dict[str, Any]:
        reply = self.call(op, wait_s, **arguments)
        if "error" in reply:
            raise FakeInternetError(f"{op} failed: {reply['error']}: {reply['message']}")
        return reply

    def sh(
        self, script: str, timeout_s: float = 60.0, env: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Runs ``script`` in the guest's shell, with ``env`` set in the exec's own
        environment: ``exit_code``, ``stdout``, ``stderr``."""
        return self.ok("sh", timeout_s + 10, script=script, timeout_s=timeout_s, env=env)

    def _read_line(self, timeout_s: float) -> bytes:
        deadline = time.monotonic() + timeout_s
        assert self._process.stdout is not None
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._selector.select(remaining):
                raise FakeInternetError(f"the sandbox driver gave no answer within {timeout_s} s")
            chunk = self._process.stdout.read1(65536)
            if not chunk:
                stderr = self._process.stderr.read() if self._process.stderr else b""
                raise FakeInternetError(f"the sandbox driver exited:\n{stderr.decode()[-3000:]}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def close(self) -> None:
        """Stops and removes the sandbox, then ends the driver; kills it if it hangs."""
        try:
            if self._process.poll() is None:
                self.call("stop", STOP_TIMEOUT_S)
        except (FakeInternetError, OSError):
            pass
        finally:
            self.kill()

    def kill(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._selector.close()
