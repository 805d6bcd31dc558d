"""Run Debian's ``docker-registry`` (CNCF Distribution 2.8) on 127.0.0.1 for the tests.

A real registry, rather than a hand-written fake, keeps the puller honest about the parts of
the Distribution API that are easy to get subtly wrong: content negotiation of manifests,
``WWW-Authenticate`` challenges, redirects of blob downloads and digest headers.
"""

from __future__ import annotations

import base64
import ctypes
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

REGISTRY_BINARY = Path("/usr/bin/docker-registry")
"""Installed by the Debian package ``docker-registry``."""

HTPASSWD_BINARY = Path("/usr/bin/htpasswd")
"""Installed by the Debian package ``apache2-utils``; the registry only accepts bcrypt."""

START_TIMEOUT = 20.0


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: a crashed or killed pytest must not leave registries."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    The registry is told the port in its config file and cannot report one it picked itself,
    so there is a short window in which another process could take it; on a test machine that
    is acceptable.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bcrypt_htpasswd_line(username: str, password: str) -> str:
    """One ``user:$2y$...`` line, hashed by ``htpasswd -nbB`` (the stdlib has no bcrypt)."""
    if not HTPASSWD_BINARY.exists():
        raise RuntimeError(
            f"{HTPASSWD_BINARY} is missing: install the Debian package apache2-utils"
        )
    result = subprocess.run(
        [str(HTPASSWD_BINARY), "-nbB", username, password],
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout.strip() + "\n"


def basic_auth_header(credentials: tuple[str, str]) -> str:
    """The ``Authorization`` header value for HTTP basic authentication."""
    token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
    return f"Basic {token}"


class RegistryServer:
    """A ``docker-registry`` process serving plain HTTP on 127.0.0.1 from a temporary directory.

    With ``credentials`` the registry requires HTTP basic authentication (htpasswd), so the
    puller's handling of 401 challenges can be tested against the real thing.
    """

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.credentials = credentials
        self.port = 0
        self.workdir: Path | None = None
        self.refs: dict[str, str] = {}
        """Image references published here (filled by whoever pushes, e.g. the fixtures)."""
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, the registry part of an image reference."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The base URL, without the ``/v2/`` API prefix."""
        return f"http://{self.host}"

    @property
    def storage_dir(self) -> Path:
        """Root of the filesystem storage driver (holds ``docker/registry/v2/...``)."""
        assert self.workdir is not None, "the registry is not started"
        return self.workdir / "storage"

    @property
    def log_path(self) -> Path:
        """The registry's combined stdout/stderr, for diagnosing a failed start or request."""
        assert self.workdir is not None, "the registry is not started"
        return self.workdir / "registry.log"

    def blob_data_path(self, digest: str) -> Path:
        """Where the filesystem driver keeps the bytes of the blob ``digest``."""
        algorithm, _, hexdigest = digest.partition(":")
        return (
            self.storage_dir
            / "docker/registry/v2/blobs"
            / algorithm
            / hexdigest[:2]
            / hexdigest
            / "data"
        )

    def _config(self) -> str:
        # No indentation tricks: the YAML is written out literally so it is easy to read in
        # the temp dir when a start fails.
        lines = [
            "version: 0.1",
            "log:",
            "  level: info",
            "  accesslog:",
            "    disabled: false",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.storage_dir}",
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: {self.host}",
            f"  secret: {secrets.token_hex(16)}",
            "  headers:",
            "    X-Content-Type-Options: [nosniff]",
            "health:",
            "  storagedriver:",
            "    enabled: false",
        ]
        if self.credentials is not None:
            lines += [
                "auth:",
                "  htpasswd:",
                "    realm: msb-test-registry",
                f"    path: {self.workdir}/htpasswd",
            ]
        return "\n".join(lines) + "\n"

    def start(self) -> RegistryServer:
        """Start the registry and wait until ``GET /v2/`` answers."""
        if self._process is not None:
            raise RuntimeError("the registry is already started")
        if not REGISTRY_BINARY.exists():
            raise RuntimeError(
                f"{REGISTRY_BINARY} is missing: install the Debian package docker-registry"
            )
        self.workdir = Path(tempfile.mkdtemp(prefix="msb-test-registry-"))
        self.storage_dir.mkdir()
        self.port = free_port()
        if self.credentials is not None:
            (self.workdir / "htpasswd").write_text(bcrypt_htpasswd_line(*self.credentials))
        config = self.workdir / "config.yml"
        config.write_text(self._config())
        log = self.log_path.open("wb")
        try:
            self._process = subprocess.Popen(
                [str(REGISTRY_BINARY), "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        expected = 401 if self.credentials is not None else 200
        deadline = time.monotonic() + START_TIMEOUT
        last_error = "no answer"
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"docker-registry exited with {self._process.returncode}:\n"
                    + self.log_path.read_text(errors="replace")[-4000:]
                )
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=2) as response:
                    status = response.status
            except urllib.error.HTTPError as error:
                status = error.code
            except OSError as error:
                last_error = str(error)
                time.sleep(0.05)
                continue
            if status == expected:
                return
            last_error = f"GET /v2/ answered {status}, expected {expected}"
            time.sleep(0.05)
        raise RuntimeError(
            f"docker-registry did not come up within {START_TIMEOUT}s ({last_error}):\n"
            + self.log_path.read_text(errors="replace")[-4000:]
        )

    def stop(self) -> None:
        """Kill the registry and remove its storage; safe to call twice."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait(timeout=10)
        workdir, self.workdir = self.workdir, None
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
