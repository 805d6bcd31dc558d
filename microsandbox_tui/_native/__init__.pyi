"""Type stubs of the native runtime module (Rust, pyo3). Blocking calls release the GIL; the
SDK runs them in worker threads.

Records cross as JSON text (decode them with ``microsandbox_tui._wire``); field names are the
Python fields', timestamps are integer milliseconds since the Unix epoch (``null`` when
absent):

- SandboxInfo: ``{name, status, config, detached, created_at, started_at, stopped_at,
  accelerator, boot_ms, supervisor_pid, vmm_pid, exit_reason}``; ``config`` is the stored
  sandbox config as a JSON object; ``status`` one of starting, running, stopped, crashed,
  draining, paused.
- Metrics: ``{cpu_percent, memory_bytes, memory_limit_bytes, host_rss_bytes,
  disk_read_bytes, disk_write_bytes, net_rx_bytes, net_tx_bytes, uptime_ms, sampled_at}``.
- Image: ``{name, kind, digest, size_bytes, created_at, last_used_at, layers: [{digest,
  diff_id, size_bytes}], config: null | {env: ["K=V", ...], entrypoint: [...], cmd: [...],
  working_dir: str | null, user: str | null}}``; layers bottom first.
- Volume: ``{name, quota_mib, used_bytes, created_at, in_use_by: [names], path}``.
- FsEntry: ``{path, kind, size, mode, modified, uid, gid, link_target}``; kind one of file,
  directory, symlink, other.
- Session: ``{session, program, args, tty, started_at, attached}``.
- DoctorCheck: ``{name, ok, detail}``.
- Pull progress, tagged by ``event``: ``resolving {reference}``, ``resolved {reference,
  manifest_digest, layers: [{digest, size_bytes}]}``, ``layer_download_progress {digest,
  downloaded, total}``, ``layer_download_complete {digest}``, ``layer_extract_started
  {digest}``, ``layer_extract_progress {digest, bytes}``, ``layer_extract_complete
  {digest}``, ``layer_index_started {digest}``, ``layer_index_complete {digest}``,
  ``pull_complete {reference, manifest_digest}``.

``bench`` (``microsandbox_tui._native.bench``) exists only in development builds.
"""

from collections.abc import Callable
from typing import final

from . import bench as bench

__all__ = [
    "Connection",
    "ExecResult",
    "ExecStream",
    "Fs",
    "FsReader",
    "FsWriter",
    "PullCancel",
    "Terminal",
    "all_metrics",
    "bench",
    "cache_dir",
    "canonical_reference",
    "configure_logging",
    "create_sandbox",
    "create_volume",
    "doctor",
    "get_sandbox",
    "get_volume",
    "home_dir",
    "inspect_image",
    "install",
    "is_installed",
    "list_images",
    "list_sandboxes",
    "list_volumes",
    "log_path",
    "preset_policy",
    "prune_images",
    "pull_image",
    "remove_image",
    "remove_sandbox",
    "remove_volume",
    "sandbox_metrics",
    "sandboxes_version",
    "set_network_policy",
    "set_secrets",
    "start_sandbox",
    "version",
]

def version() -> str:
    """Version of the native runtime."""

def home_dir() -> str:
    """The runtime home (``MSB_HOME``, default ``~/.microsandbox-tui``)."""

def cache_dir() -> str:
    """Cache of kernels, initramfs images and image layers (``MSB_CACHE_DIR``)."""

def is_installed() -> bool:
    """Whether QEMU, the guest kernel, the guest agent and the default image are present."""

def install(progress: Callable[[str], None] | None = None) -> None:
    """Fetches and prepares the guest kernel, initramfs and default image (idempotent)."""

def doctor() -> str:
    """Checks of the host: a JSON list of DoctorCheck."""

def configure_logging(level: str | None, path: str | None = None) -> None:
    """Sends the runtime's log records of ``level`` and above (trace, debug, info, warn,
    error; ``None``: off) to stderr, or appended to the file at ``path``. At import the module
    logs as ``MSB_LOG`` says, to stderr. A supervisor logs at its sandbox config's
    ``log_level``, else at the runtime's level (at info while the runtime's is off)."""

@final
class PullCancel:
    """Stops a pull between chunks (it then raises ``PullCancelledError``)."""

    def __init__(self) -> None: ...
    def cancel(self) -> None: ...

def create_sandbox(
    config_json: str,
    replace: bool,
    detached: bool,
    timeout_s: float,
    secret_values: dict[str, str],
) -> str:
    """Records the sandbox, starts its supervisor and waits until the guest agent answers;
    returns its SandboxInfo JSON. ``secret_values`` (env var -> value, one per secret of the
    config) go to the supervisor over a pipe and are stored nowhere;
    ``SecretValueMissingError`` when one is missing."""

def start_sandbox(
    name: str, detached: bool, timeout_s: float, secret_values: dict[str, str]
) -> str:
    """Boots a stopped or crashed sandbox again with its recorded configuration and disk, and
    its secrets' values; returns its SandboxInfo JSON."""

def set_secrets(name: str, update_json: str) -> None:
    """Replaces the sandbox's secrets with ``update_json``
    (``[{"config": SecretConfig, "value": str | None}]``, ``None`` keeping the running value):
    first in the running gateway, then in the stored config (without values, the placeholders
    in its env). ``SecretValueMissingError`` when a running secret to keep has no value,
    ``InvalidConfigError`` for a bad set."""

def list_sandboxes() -> str:
    """A JSON list of SandboxInfo."""

def sandboxes_version() -> int:
    """Changes with every write to any sandbox record."""

def get_sandbox(name: str) -> str:
    """A SandboxInfo JSON."""

def remove_sandbox(name: str, force: bool = False) -> None:
    """Deletes a sandbox's record and files; a running one only with ``force`` (killed first)."""

def sandbox_metrics(name: str) -> str | None:
    """The latest Metrics JSON of a running sandbox; ``None`` before the first sample."""

def all_metrics() -> str:
    """A JSON object: sandbox name -> Metrics, for every running sandbox with a sample."""

def list_images() -> str:
    """A JSON list of Image."""

def inspect_image(name: str) -> str:
    """An Image JSON."""

def remove_image(name: str) -> None:
    """Raises ``ImageInUseError`` while a sandbox uses the image."""

def prune_images() -> int:
    """Removes cached blobs and layers no image uses; returns the bytes freed."""

def canonical_reference(reference: str) -> str:
    """``alpine`` -> ``docker.io/library/alpine:latest``; ``InvalidConfigError`` if malformed."""

def pull_image(
    reference: str,
    insecure: bool,
    username: str | None,
    password: str | None,
    token: str | None,
    progress: Callable[[str], object],
    cancel: PullCancel,
) -> str:
    """Pulls into the local store, calling ``progress`` with each pull progress event as
    JSON; returns the image's canonical name."""

def create_volume(name: str, quota_mib: int) -> str:
    """Creates a named volume; returns its Volume JSON."""

def list_volumes() -> str:
    """A JSON list of Volume."""

def get_volume(name: str) -> str:
    """A Volume JSON; ``used_bytes`` is as of the guest's last sync or unmount."""

def remove_volume(name: str) -> None:
    """Deletes the volume's record and image; ``VolumeInUseError`` while a sandbox mounts it."""

def preset_policy(name: str) -> str:
    """The rules a preset (``none``, ``public_only``, ``allow_all``) stands for, as the JSON of
    a custom policy. ``InvalidConfigError`` for a name that is not a preset."""

def set_network_policy(name: str, policy_json: str) -> None:
    """Replaces the network policy (a preset's name or a policy object, as JSON): first in the
    running gateway, then in the stored config. ``InvalidConfigError`` for a bad policy,
    ``NetworkChangeError`` when the running network cannot change its policy."""

def log_path(name: str, source: str) -> str:
    """The ``console``, ``exec``, ``network`` or ``runtime`` log of a sandbox; its previous
    generation has ``.1`` appended."""

@final
class ExecResult:
    stdout: bytes
    stderr: bytes
    exit_code: int | None
    signal: int | None
    timed_out: bool

@final
class ExecStream:
    """A running command's events and input."""

    session: int
    finished: bool

    def next_event(self, timeout_s: float | None = None) -> tuple[object, ...] | None:
        """``("started", pid)``, ``("stdout", bytes)``, ``("stderr", bytes)`` or
        ``("exited", code, signal, timed_out)``; ``None`` when finished or timed out."""
    def write_stdin(self, data: bytes) -> None: ...
    def close_stdin(self) -> None: ...
    def signal(self, signal: int) -> None: ...
    def resize(self, rows: int, cols: int) -> None: ...

@final
class Connection:
    """A client connection to a running sandbox's supervisor."""

    @staticmethod
    def open(name: str) -> Connection: ...
    def exec(
        self,
        program: str,
        args: list[str],
        env: list[tuple[str, str]],
        cwd: str | None = None,
        timeout_ms: int | None = None,
        user: str | None = None,
        rlimits: list[tuple[str, int, int]] = ...,
    ) -> ExecResult: ...
    def exec_stream(
        self,
        program: str,
        args: list[str],
        env: list[tuple[str, str]],
        cwd: str | None = None,
        timeout_ms: int | None = None,
        tty: tuple[int, int] | None = None,
        user: str | None = None,
        rlimits: list[tuple[str, int, int]] = ...,
    ) -> ExecStream: ...
    def attach(self, session: int) -> ExecStream: ...
    def sessions(self) -> str:
        """A JSON list of Session."""
    def ping(self) -> float:
        """Round trip to the guest agent, in seconds."""
    def stop(self, timeout_ms: int, wait: bool = True) -> None:
        """Graceful shutdown through the agent; QEMU is killed after ``timeout_ms``."""
    def kill(self) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def detach(self) -> None: ...
    def fs(self) -> Fs:
        """The guest file system, over this connection."""
    def close(self) -> None: ...

@final
class FsReader:
    """A file streamed from the guest, in windows (never more than one queued on the host)."""

    finished: bool

    def next_chunk(self, timeout_s: float | None = None) -> bytes | None:
        """The next chunk; ``None`` at the end of the file or when ``timeout_s`` passed."""

@final
class FsWriter:
    """A file streamed to the guest. A failure the agent reports mid-stream is raised by the
    next ``write`` or by ``finish``."""

    def write(self, data: bytes) -> None: ...
    def finish(self) -> int:
        """Ends the data; returns the bytes written."""
    def abort(self) -> None:
        """Cancels the write and waits until the agent let go of the file."""

@final
class Fs:
    """File system requests to the guest. Paths are absolute guest paths; failures raise
    ``PathNotFoundError`` or ``FilesystemError`` with the guest's ``errno``."""

    def stat(self, path: str, follow: bool) -> str:
        """An FsEntry JSON (``mode``: permission bits with the set-id and sticky bits)."""
    def list(self, path: str) -> str:
        """A JSON list of FsEntry: a directory's entries sorted by name, without ``.``
        and ``..``."""
    def read(self, path: str) -> bytes: ...
    def open_read(self, path: str, chunk_size: int | None = None) -> FsReader:
        """Waits for the first answer, so a missing file fails here."""
    def write(
        self, path: str, data: bytes, mode: int | None, append: bool, create_parents: bool
    ) -> int:
        """Writes (or appends) a whole file; returns the bytes written."""
    def open_write(
        self, path: str, mode: int | None, append: bool, create_parents: bool
    ) -> FsWriter:
        """Returns once the guest is ready for data."""
    def mkdir(self, path: str, mode: int | None, parents: bool) -> None: ...
    def remove(self, path: str, recursive: bool) -> None: ...
    def rename(self, src: str, dst: str) -> None: ...
    def copy(self, src: str, dst: str) -> None: ...
    def symlink(self, target: str, link: str) -> None: ...
    def chmod(self, path: str, mode: int) -> None: ...
    def usage(self, path: str) -> tuple[int, int, int]:
        """``(total_bytes, free_bytes, available_bytes)`` of the file system holding ``path``."""

@final
class Terminal:
    """A terminal emulator for a guest PTY's output."""

    size: tuple[int, int]
    cursor: tuple[int, int, bool]
    title: str
    alternate_screen: bool
    bracketed_paste: bool
    application_cursor: bool
    mouse_mode: str
    scrollback: int

    def __new__(cls, rows: int, cols: int, scrollback: int = 10_000) -> Terminal: ...
    def feed(self, data: bytes) -> None: ...
    def take_replies(self) -> bytes:
        """Answers to the program's queries since the previous call (e.g. the cursor position
        report for ``ESC [ 6 n``), to write to its input."""
    def resize(self, rows: int, cols: int) -> None:
        """Soft-wrapped lines, the scrollback's too, rewrap to the new width; every row is
        dirty afterwards."""
    def dirty_rows(self) -> list[int]:
        """Rows that changed since the previous call."""
    def row_segments(self, row: int) -> list[tuple[str, str, str, bool, bool, bool, bool, bool]]:
        """``(text, fg, bg, bold, dim, italic, underline, inverse)`` runs of a visible row."""
    def contents(self) -> str: ...
