"""Embedded terminal: throughput against pyte, and key-press to echo latency.

    python bench/terminal.py [--mib 20] [--keys 200] [--no-vm]

(a) 20 MiB of generated terminal output (coloured listings, progress lines rewritten with
``\\r``, cursor addressing and scrolling, as a build log or ``top`` make) fed in 4 KiB chunks
through the TerminalView path: ``TerminalEmulator.feed``, then each frame (every 64 KiB) the
dirty rows' segments turned into Rich segments. pyte parses the same bytes in the same run,
decoding included, without rendering.
(b) The same 20 MiB ``cat`` by a real sandbox on a PTY, into a TerminalView in a headless
dashboard (the widget's own frames drawing as it goes), timed from the command's start until
its exit and the last frame; pyte parses the bytes that arrived, in the same run.
(c) On a real sandbox's login shell: one key written to the PTY, timed until its echo is in
the emulator.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time

os.environ.setdefault("MSB_HOME", tempfile.mkdtemp(prefix="msb-bench-home-"))

from rich.segment import Segment
from stats import percentile
from textual.app import App, ComposeResult

from microsandbox_tui import ExitedEvent, Sandbox, StdoutEvent
from microsandbox_tui.terminal import TerminalEmulator
from microsandbox_tui.tui.widgets.terminal_view import TerminalView, _style

ROWS, COLS = 40, 160
CHUNK = 4096
FRAME_BYTES = 64 * 1024
WORDS = ("build", "src", "lib", "target", "release", "debug", "index", "main", "test", "cargo")


def generate(size: int, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    parts: list[bytes] = []
    total = 0
    while total < size:
        kind = rng.random()
        if kind < 0.5:
            color = rng.randrange(30, 38)
            line = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 14)))
            piece = (
                f"\x1b[1;{color}m{line[:20]}\x1b[0m {line}  \x1b[2m{rng.random():.6f}\x1b[0m\r\n"
            )
        elif kind < 0.7:
            piece = "".join(
                f"\r[{'#' * (p // 5):<20}] {p:3d}% "
                f"\x1b[38;5;{rng.randrange(256)}m{rng.choice(WORDS)}\x1b[0m\x1b[K"
                for p in range(0, 101, 10)
            )
            piece += "\r\n"
        elif kind < 0.85:
            row, col = rng.randrange(1, ROWS), rng.randrange(1, COLS - 30)
            piece = (
                f"\x1b7\x1b[{row};{col}H\x1b[48;2;{rng.randrange(256)};40;80m"
                f"{rng.choice(WORDS):>12} {rng.randrange(10**6):>8}\x1b[0m\x1b8"
            )
        else:
            piece = "".join(chr(rng.randrange(0x20, 0x7F)) for _ in range(rng.randrange(20, 150)))
            piece += " héllo wörld ✓\r\n"
        data = piece.encode()
        parts.append(data)
        total += len(data)
    return b"".join(parts)[:size]


def run_terminal_view_path(data: bytes) -> float:
    terminal = TerminalEmulator(ROWS, COLS, 10_000)
    started = time.perf_counter()
    since_frame = 0
    rendered = 0
    for offset in range(0, len(data), CHUNK):
        terminal.feed(data[offset : offset + CHUNK])
        since_frame += CHUNK
        if since_frame >= FRAME_BYTES:
            since_frame = 0
            for row in terminal.dirty_rows():
                segments = [
                    Segment(text, _style(*style)) for text, *style in terminal.row_segments(row)
                ]
                rendered += len(segments)
    return time.perf_counter() - started


def run_pyte(data: bytes) -> float:
    import pyte

    screen = pyte.Screen(COLS, ROWS)
    stream = pyte.ByteStream(screen)
    started = time.perf_counter()
    for offset in range(0, len(data), CHUNK):
        stream.feed(data[offset : offset + CHUNK])
    return time.perf_counter() - started


class ViewApp(App[None]):
    def compose(self) -> ComposeResult:
        yield TerminalView(ROWS, COLS)


async def guest_cat(sandbox: Sandbox, data: bytes) -> tuple[float, bytes]:
    """Seconds for the guest's ``cat`` of ``data`` to be drawn by a TerminalView, and the
    bytes that arrived."""
    upload = await sandbox.exec_stream("/bin/sh", ["-c", "cat > /tmp/stream"])
    sink = upload.take_stdin()
    for offset in range(0, len(data), 256 * 1024):
        await sink.write(data[offset : offset + 256 * 1024])
    await sink.close()
    await upload.wait()
    received: list[bytes] = []
    app = ViewApp()
    async with app.run_test(size=(COLS, ROWS)) as pilot:
        view = app.query_one(TerminalView)
        await pilot.pause()
        started = time.perf_counter()
        handle = await sandbox.exec_stream(
            "/bin/cat", {"args": ["/tmp/stream"], "tty": (ROWS, COLS)}
        )
        while True:
            event = await handle.next_event(5.0)
            if isinstance(event, StdoutEvent):
                received.append(event.data)
                view.feed(event.data)
                await asyncio.sleep(0)  # the app's frames run between chunks
            elif isinstance(event, ExitedEvent) or event is None:
                break
        view.flush()
        await pilot.pause()
        elapsed = time.perf_counter() - started
    return elapsed, b"".join(received)


async def echo_latency(sandbox: Sandbox, keys: int) -> list[float]:
    shell = await sandbox.login_shell()
    handle = await sandbox.exec_stream(shell, {"tty": (ROWS, COLS)})
    stdin = handle.take_stdin()
    terminal = TerminalEmulator(ROWS, COLS)

    async def drain_until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
        deadline = time.perf_counter() + timeout
        while not predicate():
            if time.perf_counter() > deadline:
                raise TimeoutError("no echo")
            event = await handle.next_event(1.0)
            if isinstance(event, StdoutEvent):
                terminal.feed(event.data)

    await drain_until(lambda: "#" in terminal.contents() or "$" in terminal.contents())
    samples: list[float] = []
    for index in range(keys):
        if index and index % 50 == 0:
            await stdin.write(b"\x15")  # ctrl+u: a fresh line
            col = terminal.cursor[1]
            await drain_until(lambda col=col: terminal.cursor[1] < col)
        before = terminal.cursor[1]
        started = time.perf_counter()
        await stdin.write(b"x")
        await drain_until(lambda before=before: terminal.cursor[1] > before)
        samples.append(time.perf_counter() - started)
    await stdin.write(b"\x15exit\r")
    await handle.next_event(2.0)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=20)
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--no-vm", action="store_true")
    args = parser.parse_args()
    data = generate(args.mib * 1024 * 1024)
    mib = len(data) / (1024 * 1024)
    ours = run_terminal_view_path(data)
    print(f"(a) {mib:.0f} MiB, {ROWS}x{COLS}, {CHUNK} B chunks")
    print(f"    TerminalView feed+render (native): {mib / ours:8.1f} MiB/s ({ours:.2f} s)")
    theirs = run_pyte(data)
    print(f"    pyte parse only                  : {mib / theirs:8.1f} MiB/s ({theirs:.2f} s)")
    print(f"    ratio                            : {theirs / ours:8.1f}x")
    if not args.no_vm:
        asyncio.run(with_sandbox(data, args.keys))


async def with_sandbox(data: bytes, keys: int) -> None:
    sandbox = await Sandbox.create("bench-terminal", replace=True)
    try:
        elapsed, received = await guest_cat(sandbox, data)
        mib = len(received) / (1024 * 1024)
        pyte_s = run_pyte(received)
        print(
            f"(b) guest cat of {len(data) / (1024 * 1024):.0f} MiB on a PTY, {mib:.1f} MiB arrived"
        )
        print(
            f"    through TerminalView (end to end) : {mib / elapsed:8.1f} MiB/s ({elapsed:.2f} s)"
        )
        print(f"    pyte parsing the same bytes       : {mib / pyte_s:8.1f} MiB/s ({pyte_s:.2f} s)")
        print(f"    ratio                             : {pyte_s / elapsed:8.1f}x")
        samples = await echo_latency(sandbox, keys)
        p50, p99 = percentile(samples, 0.5) * 1000, percentile(samples, 0.99) * 1000
        print(f"(c) key -> echo, {len(samples)} keys: p50 {p50:.2f} ms  p99 {p99:.2f} ms")
        print(f"    mean {statistics.fmean(samples) * 1000:.2f} ms")
    finally:
        await sandbox.kill()
        await Sandbox.remove("bench-terminal")


if __name__ == "__main__":
    main()
