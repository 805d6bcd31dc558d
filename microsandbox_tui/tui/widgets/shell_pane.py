"""One terminal session in a sandbox, drawn by a :class:`TerminalView`: it opens (or re-attaches
to) the session, pumps its output into the emulator and the keys back, and follows resizes."""

from __future__ import annotations

import asyncio
import contextlib
import threading

from textual import on, work
from textual.app import ComposeResult
from textual.message import Message
from textual.widget import Widget

from microsandbox_tui import ExecHandle, ExitedEvent, Sandbox, StdoutEvent
from microsandbox_tui.exec import ExecSink

from .terminal_view import TerminalView


async def open_session(
    sandbox: Sandbox, rows: int, cols: int, shell: str | None = None
) -> tuple[ExecHandle, bool]:
    """Re-attaches to the newest terminal session nobody is attached to, else starts ``shell``
    (default: the guest's login shell). Returns the handle and whether it is a re-attach."""
    detached = [info for info in await sandbox.sessions() if info.tty and not info.attached]
    if detached:
        newest = max(detached, key=lambda info: (info.started_at, info.session))
        handle = await sandbox.attach_session(newest.session)
        await handle.resize(rows, cols)
        return handle, True
    program = shell or await sandbox.login_shell()
    return await sandbox.exec_stream(program, {"tty": (rows, cols)}), False


class ShellPane(Widget):
    """A live shell; :meth:`detach` leaves it running in the guest for a later re-attach."""

    DEFAULT_CSS = """
    ShellPane { width: 1fr; height: 1fr; }
    """

    class Opened(Message):
        """The session is up (``reattached`` if it was already running)."""

        def __init__(self, pane: ShellPane) -> None:
            super().__init__()
            self.pane = pane

    class Ended(Message):
        """The shell exited, or the session could not be opened or was lost."""

        def __init__(self, pane: ShellPane, reason: str) -> None:
            super().__init__()
            self.pane = pane
            self.reason = reason

    def __init__(self, sandbox_name: str, *, shell: str | None = None, id: str | None = None):
        super().__init__(id=id)
        self.sandbox_name = sandbox_name
        self.shell = shell
        self.handle: ExecHandle | None = None
        self.session: int | None = None
        self.reattached = False
        self._sandbox: Sandbox | None = None
        self._stdin: ExecSink | None = None
        self._input: asyncio.Queue[bytes] = asyncio.Queue()
        # Set once the pane stops caring about its session (detached, ended or removed).
        self._finished = False

    @property
    def view(self) -> TerminalView:
        return self.query_one(TerminalView)

    def compose(self) -> ComposeResult:
        yield TerminalView()

    def on_mount(self) -> None:
        self._run()

    def text(self) -> str:
        return self.view.text()

    @work(group="shell", exit_on_error=False)
    async def _run(self) -> None:
        view = self.view
        rows, cols = view.terminal.size
        try:
            self._sandbox = await Sandbox.connect(self.sandbox_name)
            self.handle, self.reattached = await open_session(self._sandbox, rows, cols, self.shell)
        except Exception as error:
            self._end(f"{type(error).__name__}: {error}")
            return
        self.session = self.handle.session
        self._stdin = self.handle.take_stdin()
        self._writer()
        if tuple(view.terminal.size) != (rows, cols):
            await self.handle.resize(*view.terminal.size)
        self.post_message(self.Opened(self))
        reason = "the connection was lost"
        try:
            while not self._finished:
                # A bounded wait, so that a detach is noticed without an event from the guest.
                event = await self.handle.next_event(0.5)
                if isinstance(event, StdoutEvent):
                    view.feed(event.data)
                elif isinstance(event, ExitedEvent):
                    reason = f"exited ({event.exit_code})"
                    break
                elif event is None and self.handle.finished:
                    break
        except Exception as error:
            reason = f"{type(error).__name__}: {error}"
        self._end(reason)

    @work(group="shell-input", exit_on_error=False)
    async def _writer(self) -> None:
        while not self._finished:
            data = await self._input.get()
            while not self._input.empty():
                data += self._input.get_nowait()
            if self._stdin is None:
                continue
            try:
                await self._stdin.write(data)
            except Exception as error:
                self._end(f"writing to the shell: {error}")
                return

    def _end(self, reason: str) -> None:
        if not self._finished:
            self._finished = True
            self.post_message(self.Ended(self, reason))

    @on(TerminalView.Input)
    def _typed(self, event: TerminalView.Input) -> None:
        event.stop()
        self._input.put_nowait(event.data)

    @on(TerminalView.Resized)
    def _resized(self, event: TerminalView.Resized) -> None:
        event.stop()
        if self.handle is not None:
            self._resize(event.rows, event.cols)

    @work(group="shell-resize", exclusive=True, exit_on_error=False)
    async def _resize(self, rows: int, cols: int) -> None:
        if self.handle is not None and not self._finished:
            # A lost session is reported by the output loop; a failed resize adds nothing.
            with contextlib.suppress(Exception):
                await self.handle.resize(rows, cols)

    def detach(self) -> None:
        """Stops showing the session; it keeps running in the guest."""
        self._finished = True
        self.workers.cancel_group(self, "shell-input")

    def on_unmount(self) -> None:
        self.detach()
        sandbox, self._sandbox = self._sandbox, None
        self.handle = None
        if sandbox is not None:
            # Off the event loop and not awaited: closing the connection only detaches, and
            # the dashboard should not wait on a slow or gone supervisor for it.
            threading.Thread(target=_close_quietly, args=(sandbox,), daemon=True).start()


def _close_quietly(sandbox: Sandbox) -> None:
    with contextlib.suppress(Exception):
        asyncio.run(sandbox.close())
