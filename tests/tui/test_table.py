"""The sandboxes table applies listings cell by cell. Fed with SDK value objects (no VM)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.text import Text
from textual.app import App, ComposeResult

import microsandbox_tui.tui
from microsandbox_tui import SandboxConfig, SandboxInfo, SandboxStatus
from microsandbox_tui.formatting import format_duration
from microsandbox_tui.tui.widgets import SandboxTable

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


def info(
    name: str,
    status: SandboxStatus = SandboxStatus.RUNNING,
    *,
    started: timedelta | None = timedelta(seconds=65),
    cpus: int = 1,
) -> SandboxInfo:
    return SandboxInfo(
        name=name,
        status=status,
        config=SandboxConfig(name=name, cpus=cpus),
        detached=True,
        created_at=NOW - timedelta(minutes=5),
        started_at=NOW - started if started is not None else None,
        stopped_at=None,
        accelerator="tcg",
        boot_ms=4000,
        exit_reason=None,
    )


class TableApp(App[None]):
    CSS_PATH = Path(microsandbox_tui.tui.__file__).parent / "app.tcss"

    def compose(self) -> ComposeResult:
        yield SandboxTable()


async def test_rows_are_added_updated_and_removed_by_name() -> None:
    app = TableApp()
    async with app.run_test() as pilot:
        table = app.query_one(SandboxTable)
        table.sync([info("a"), info("b", SandboxStatus.STOPPED, started=None)], NOW)
        await pilot.pause()
        assert [row.key.value for row in table.ordered_rows] == ["a", "b"]
        assert table.text_of("a", "uptime") == "1m05s"
        assert table.text_of("b", "uptime") == "-"
        assert table.text_of("a", "memory") == "-/512", "no metrics yet: used unknown"

        table.select("b")
        table.sync([info("a", cpus=2), info("b"), info("c")], NOW + timedelta(seconds=1))
        await pilot.pause()
        assert [row.key.value for row in table.ordered_rows] == ["a", "b", "c"]
        assert table.selected_name == "b", "the cursor stays on its sandbox"
        assert table.text_of("a", "cpus") == "2"
        assert table.text_of("a", "uptime") == "1m06s"
        assert table.text_of("b", "status") == "running"
        assert str(table.get_cell("b", "status")) == "running"

        table.sync([info("c")], NOW)
        await pilot.pause()
        assert [row.key.value for row in table.ordered_rows] == ["c"]
        assert table.text_of("a", "name") is None
        assert set(table.infos) == {"c"}


async def test_status_cells_are_coloured_by_status() -> None:
    app = TableApp()
    async with app.run_test() as pilot:
        table = app.query_one(SandboxTable)
        table.sync(
            [
                info("run"),
                info("stop", SandboxStatus.STOPPED, started=None),
                info("crash", SandboxStatus.CRASHED, started=None),
            ],
            NOW,
        )
        await pilot.pause()
        cells = [table.get_cell(name, "status") for name in ("run", "stop", "crash")]
        assert all(isinstance(cell, Text) for cell in cells)
        assert len({str(cell.style) for cell in cells if isinstance(cell, Text)}) == 3


def test_durations_are_compact() -> None:
    assert format_duration(0) == "0s"
    assert format_duration(42) == "42s"
    assert format_duration(185) == "3m05s"
    assert format_duration(3720) == "1h02m"
    assert format_duration(2 * 86_400 + 3 * 3600) == "2d03h"
    assert format_duration(-5) == "0s"
