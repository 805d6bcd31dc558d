"""One sandbox, driven from inside the fake internet's host namespace.

``python -m net.sandbox_driver`` (run by :class:`net.sessions.GuestSession` through
:meth:`FakeInternet.popen_in_host`) reads one JSON command per line on stdin and answers each
with one JSON line on stdout. Because this process, the sandbox's supervisor and QEMU all run
in the host namespace, everything the guest reaches is the fake internet, and the host-side
helpers here (servers on the "host", clients of published ports) see the same network the
supervisor does.

Commands (``op``): ``create`` (``name``, ``image``: a pulled OCI reference or null,
``network``: the SDK's stored network JSON or null,
``ports``: ``{"8080": 80}`` or null, ``secrets``: a list of ``Secret.env`` keyword
arguments or null), ``sh`` (``script``, ``timeout_s``, ``env``: the
exec's own variables or null), ``serve`` (a TCP
server on the host: ``address``, ``mode`` ``hello`` or ``count``), ``tcp`` (a client:
``address``, ``port``, ``send``, ``half_close``), ``udp`` (``address``, ``port``, ``send``),
``push`` (``address``, ``port``, ``size``: that many bytes, then a half-close),
``metrics``, ``set_policy`` (``policy``: a preset's name or the stored policy JSON; answers
the seconds the call took), ``restart`` (stop, then start again, with ``secrets`` as for
``create`` when given; answers the stored policy), ``set_secret`` (``secret``: as one of
``create``'s), ``info`` (status, exit reason, pids), ``network_log`` (the flow log's records
as JSON), ``stop``. A failure answers
``{"error": CLASS, "message": ...}``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import time
from typing import Any

from microsandbox_tui import Image, Network, NetworkPolicy, PullPolicy, Sandbox, Secret, SecretEntry

CLIENT_TIMEOUT_S = 20.0


class Driver:
    def __init__(self) -> None:
        self.sandbox: Sandbox | None = None
        self.servers: list[socket.socket] = []

    async def create(
        self,
        name: str,
        image: str | None,
        network: dict[str, Any] | None,
        ports: dict[str, int] | None,
        secrets: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        options: dict[str, Any] = {"replace": True}
        if secrets is not None:
            options["secrets"] = _secret_entries(secrets)
        if image is not None:
            # Pulled beforehand by the test, outside this namespace: never pulled here.
            options["image"] = Image.oci(image, insecure=True, pull_policy=PullPolicy.NEVER)
        if network is not None:
            options["network"] = Network.model_validate(network)
        if ports is not None:
            options["ports"] = {int(host): guest for host, guest in ports.items()}
        self.sandbox = await Sandbox.create(name, **options)
        info = await self.sandbox.info()
        return {
            "network": None if info.network is None else info.network.guest_address,
            "supervisor_pid": info.supervisor_pid,
        }

    async def sh(
        self, script: str, timeout_s: float, env: dict[str, str] | None = None
    ) -> dict[str, Any]:
        assert self.sandbox is not None, "create first"
        output = await self.sandbox.exec(
            "sh", {"args": ["-c", script], "timeout": int(timeout_s * 1000), "env": env or {}}
        )
        return {
            "exit_code": output.exit_code,
            "stdout": output.stdout_text,
            "stderr": output.stderr_text,
        }

    def serve(self, address: str, mode: str) -> dict[str, Any]:
        """A host service: ``hello`` greets and closes; ``count`` reads to EOF, then answers
        with the number of bytes (which only arrives if the client's half-close did)."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        listener = socket.create_server((address, 0), family=family)
        self.servers.append(listener)
        threading.Thread(target=_serve, args=(listener, mode), daemon=True).start()
        return {"port": listener.getsockname()[1]}

    def tcp(self, address: str, port: int, send: str, half_close: bool) -> dict[str, Any]:
        with socket.create_connection((address, port), timeout=CLIENT_TIMEOUT_S) as client:
            client.sendall(send.encode())
            if half_close:
                client.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := client.recv(65536):
                reply += chunk
        return {"reply": reply.decode(errors="replace")}

    def push(self, address: str, port: int, size: int) -> dict[str, Any]:
        """Sends ``size`` bytes, half-closes, and waits for the peer to close: the bytes have
        all been taken when this returns."""
        chunk = bytes(64 * 1024)
        sent = 0
        with socket.create_connection((address, port), timeout=CLIENT_TIMEOUT_S) as client:
            while sent < size:
                sent += client.send(chunk[: min(len(chunk), size - sent)])
            client.shutdown(socket.SHUT_WR)
            while client.recv(65536):
                pass
        return {"sent": sent}

    def udp(self, address: str, port: int, send: str) -> dict[str, Any]:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(CLIENT_TIMEOUT_S)
            client.sendto(send.encode(), (address, port))
            reply, _ = client.recvfrom(65535)
        return {"reply": reply.decode(errors="replace")}

    async def metrics(self) -> dict[str, Any]:
        assert self.sandbox is not None, "create first"
        sample = await self.sandbox.metrics()
        return {"net_rx_bytes": sample.net_rx_bytes, "net_tx_bytes": sample.net_tx_bytes}

    async def set_policy(self, policy: str | dict[str, Any]) -> dict[str, Any]:
        assert self.sandbox is not None, "create first"
        started = time.monotonic()
        chosen = policy if isinstance(policy, str) else NetworkPolicy.model_validate(policy)
        await self.sandbox.set_network_policy(chosen)
        return {"seconds": time.monotonic() - started}

    async def restart(self, secrets: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        assert self.sandbox is not None, "create first"
        name = self.sandbox.name
        # A start that failed left it stopped, with the old handle's connection gone.
        if (await Sandbox.get_info(name)).status.is_live:
            await self.sandbox.stop_and_wait()
        handle = await Sandbox.get(name)
        entries = None if secrets is None else _secret_entries(secrets)
        self.sandbox = await handle.start(secrets=entries)
        return {"policy": self.sandbox.config.network.model_dump(mode="json")["policy"]}

    async def set_secret(self, secret: dict[str, Any]) -> dict[str, Any]:
        assert self.sandbox is not None, "create first"
        (entry,) = _secret_entries([secret])
        await self.sandbox.set_secret(entry)
        return {"env": self.sandbox.config.env}

    async def info(self) -> dict[str, Any]:
        assert self.sandbox is not None, "create first"
        info = await Sandbox.get_info(self.sandbox.name)
        return {
            "status": str(info.status),
            "exit_reason": info.exit_reason,
            "supervisor_pid": info.supervisor_pid,
            "vmm_pid": info.vmm_pid,
        }

    async def network_log(self) -> dict[str, Any]:
        assert self.sandbox is not None, "create first"
        entries = [entry async for entry in self.sandbox.network_log()]
        return {"entries": [entry.model_dump(mode="json") for entry in entries]}

    async def stop(self) -> dict[str, Any]:
        if self.sandbox is not None:
            sandbox, self.sandbox = self.sandbox, None
            # One stopped by its gateway (block_and_terminate) has nothing left to stop.
            if (await Sandbox.get_info(sandbox.name)).status.is_live:
                await sandbox.stop_and_wait()
            await Sandbox.remove(sandbox.name)
        return {}


def _secret_entries(secrets: list[dict[str, Any]]) -> list[SecretEntry]:
    return [Secret.env(**secret) for secret in secrets]


def _serve(listener: socket.socket, mode: str) -> None:
    while True:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        with connection:
            connection.settimeout(CLIENT_TIMEOUT_S)
            if mode == "hello":
                connection.sendall(b"hello from the host\n")
                continue
            received = 0
            while chunk := connection.recv(65536):
                received += len(chunk)
            connection.sendall(f"{received}\n".encode())


async def handle(driver: Driver, command: dict[str, Any]) -> dict[str, Any]:
    op = command.pop("op")
    if op == "create":
        return await driver.create(**command)
    if op == "sh":
        return await driver.sh(**command)
    if op == "metrics":
        return await driver.metrics()
    if op == "stop":
        return await driver.stop()
    if op == "set_policy":
        return await driver.set_policy(**command)
    if op == "restart":
        return await driver.restart(**command)
    if op == "set_secret":
        return await driver.set_secret(**command)
    if op == "info":
        return await driver.info()
    if op == "network_log":
        return await driver.network_log()
    if op == "serve":
        return driver.serve(**command)
    if op == "tcp":
        return await asyncio.to_thread(driver.tcp, **command)
    if op == "udp":
        return await asyncio.to_thread(driver.udp, **command)
    if op == "push":
        return await asyncio.to_thread(driver.push, **command)
    raise ValueError(f"unknown op {op!r}")


async def main() -> None:
    driver = Driver()
    try:
        for line in sys.stdin:
            try:
                reply = await handle(driver, json.loads(line))
            except Exception as error:  # every failure goes back to the test, typed
                reply = {"error": type(error).__name__, "message": str(error)}
            print(json.dumps(reply), flush=True)
    finally:
        await driver.stop()


if __name__ == "__main__":
    asyncio.run(main())
