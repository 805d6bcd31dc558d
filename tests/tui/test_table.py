"""The sandboxes table applies listings cell by cell. Fed with SDK value objects (no VM)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

import microsandbox_tui.tui
from microsandbox_tui import SandboxConfig, SandboxInfo, SandboxStatus
from microsandbox_tui.formatting import format_duration
from microsandbox_tui.tui.widgets import Column, KeyedTable, SandboxTable

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


class KeyedTableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield KeyedTable([Column("name", "NAME", 6), Column("cpu", "CPU", 6)])


async def test_written_cells_are_drawn_anew_and_the_other_cells_drawings_kept() -> None:
    """Guards ``KeyedTable.write_cells`` against Textual's DataTable internals changing:
    it must draw the new value (no cache it does not know of keeps the old one) and
    keep the drawings of the cells it did not write (the point of writing them so)."""
    app = KeyedTableApp()
    async with app.run_test() as pilot:
        table = app.query_one(KeyedTable)
        table.apply_rows({"a": {"name": "a", "cpu": "10%"}, "b": {"name": "b", "cpu": "20%"}})
        await pilot.pause()
        assert [table.render_line(y).text.split() for y in (1, 2)] == [["a", "10%"], ["b", "20%"]]
        update_count = table._update_count

        table.update_rows({"a": lambda: {"name": "a", "cpu": "99%"}})

        # LRUCache has keys() but no __iter__.
        cached = {key[:2] for key in table._cell_render_cache.keys()}  # noqa: SIM118
        assert (RowKey("a"), ColumnKey("cpu")) not in cached, "the written cell's drawing dropped"
        kept = {(RowKey(row), ColumnKey(column)) for row in "ab" for column in ("name", "cpu")}
        assert kept - {(RowKey("a"), ColumnKey("cpu"))} <= cached, "the others' drawings kept"
        assert table._update_count == update_count, "no table-wide invalidation"
        assert [table.render_line(y).text.split() for y in (1, 2)] == [["a", "99%"], ["b", "20%"]]
        assert str(table.get_cell("a", "cpu")) == table.text_of("a", "cpu") == "99%"


def test_durations_are_compact() -> None:
    assert format_duration(0) == "0s"
    assert format_duration(42) == "42s"
    assert format_duration(185) == "3m05s"
    assert format_duration(3720) == "1h02m"
    assert format_duration(2 * 86_400 + 3 * 3600) == "2d03h"
    assert format_duration(-5) == "0s"


async def test_plain_cells_are_drawn_as_textual_draws_them() -> None:
    """Guards ``KeyedTable._render_cell`` (Textual 8.2 internals): a plain cell's line, made
    without Rich, has the very segments and styles Textual's own drawing gives, on and off
    the cursor; values it cannot make (markup, too wide) go through Textual."""
    app = KeyedTableApp()
    async with app.run_test() as pilot:
        table = app.query_one(KeyedTable)
        values = ["a", "", "abcdef", "▁▂▃", "x…", "[b]x[/b]", "much too wide"]
        table.apply_rows({f"r{index}": {"name": v, "cpu": v} for index, v in enumerate(values)})
        await pilot.pause()
        base = table.rich_style
        width = table.ordered_columns[0].get_render_width(table)
        plain = [table._plain_cell(row, 0, width) for row in range(len(values))]
        drawn_here = [cell and cell[2] for cell in plain]
        assert drawn_here == ["a", None, "abcdef", "▁▂▃", "x…", None, None]
        for row in range(len(values)):
            for column, spec in enumerate(table.ordered_columns):
                width = spec.get_render_width(table)
                for cursor in (False, True):
                    table._cell_render_cache.clear()
                    ours = table._render_cell(row, column, base, width, cursor=cursor)
                    table._cell_render_cache.clear()
                    textual = DataTable._render_cell(table, row, column, base, width, cursor)
                    assert ours == textual, (values[row], column, cursor)
