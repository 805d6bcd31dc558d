"""The dashboard's 1 Hz refresh at scale: the listing is read only when its version moves,
and a refresh of the same listing touches the running sandboxes' rows only, and of those
only the rows on screen (stopped sandboxes cost nothing per tick however many there are)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from recorded import NOW, recorded_info, recorded_sample
from rich.text import Text

from microsandbox_tui import SandboxMetrics, SandboxStatus
from microsandbox_tui.tui.app import MsbApp
from microsandbox_tui.tui.data import RecordedSource
from microsandbox_tui.tui.widgets import SandboxTable

RUNNING = [f"run-{index:02d}" for index in range(60)]
STOPPED = [f"stopped-{index:03d}" for index in range(300)]


@dataclass
class CountingSource(RecordedSource):
    """Recorded sandboxes, counting the listings read; every metrics read is a new sample."""

    calls: Counter[str] = field(default_factory=Counter)

    async def list_sandboxes(self) -> list:  # type: ignore[type-arg]
        self.calls["list"] += 1
        return await super().list_sandboxes()

    async def all_metrics(self) -> dict[str, SandboxMetrics]:
        self.calls["metrics"] += 1
        second = self.calls["metrics"]
        self.clock = NOW + timedelta(seconds=second)
        return {name: recorded_sample(second, second % 100, 100 + second, 512) for name in RUNNING}


def counting_app() -> tuple[MsbApp, CountingSource]:
    infos = [recorded_info(name) for name in RUNNING] + [
        recorded_info(name, SandboxStatus.STOPPED, started_ago=None) for name in STOPPED
    ]
    source = CountingSource(sandboxes=infos, clock=NOW)
    return MsbApp(source=source, host_info=False, auto_refresh=False), source


def count_cell_updates(table: SandboxTable) -> Counter[str]:
    """Row key → cells rewritten, from now on."""
    updates: Counter[str] = Counter()
    write_cells = table.write_cells

    def counted(changes: Mapping[str, Mapping[str, str | Text]]) -> None:
        updates.update({key: len(cells) for key, cells in changes.items()})
        write_cells(changes)

    table.write_cells = counted  # type: ignore[method-assign]
    return updates


async def refresh(app: MsbApp) -> None:
    app.refresh_sandboxes()
    await app.workers.wait_for_complete()


async def test_a_refresh_of_an_unchanged_listing_rewrites_only_running_rows_on_screen() -> None:
    app, source = counting_app()
    async with app.run_test(size=(160, 30)) as pilot:
        await refresh(app)
        await pilot.pause()
        table = app.screen.query_one(SandboxTable)
        on_screen = table.visible_keys()
        assert on_screen and on_screen < set(RUNNING), "the first rows run; more run below"
        updates = count_cell_updates(table)
        for _ in range(3):
            await refresh(app)
            await pilot.pause()
        assert source.calls == {"list": 1, "metrics": 4}
        assert set(updates) == on_screen, "no stopped row, no row off screen"


async def test_a_row_scrolled_to_shows_the_latest_values() -> None:
    app, _ = counting_app()
    async with app.run_test(size=(160, 30)) as pilot:
        await refresh(app)
        await refresh(app)
        await pilot.pause()
        table = app.screen.query_one(SandboxTable)
        last = RUNNING[-1]
        assert last not in table.visible_keys()
        table.select(last)
        await pilot.pause()
        cells = dict(zip(table.columns, table.get_row(last), strict=True))
        memory = str(cells[next(key for key in table.columns if key.value == "memory")])
        assert memory == table.text_of(last, "memory") == "102/512"


async def test_a_changed_listing_version_is_listed_again() -> None:
    app, source = counting_app()
    async with app.run_test(size=(160, 30)) as pilot:
        await refresh(app)
        await refresh(app)
        assert source.calls["list"] == 1
        source.sandboxes = source.sandboxes[:10]
        source.version += 1
        await refresh(app)
        await pilot.pause()
        assert source.calls["list"] == 2
        assert app.screen.query_one(SandboxTable).row_count == 10
