"""The sandboxes table: keyed by sandbox name, updated cell by cell, filtered and sorted.

A refresh whose listing is the one already shown (the same tuple: the app lists again only
when the runtime's listing version moved) touches the running sandboxes' rows only, and
draws those on screen; stopped sandboxes cost nothing per tick however many there are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import ClassVar

from rich.text import Text

from microsandbox_tui import SandboxInfo, SandboxMetrics, SandboxStatus
from microsandbox_tui.formatting import uptime_seconds

from ..data import MetricsHistory
from ..formatting import row_values
from .keyed_table import Column, KeyedTable

COLUMNS: tuple[Column, ...] = (
    Column("name", "NAME"),
    Column("status", "STATUS", 11),
    Column("image", "IMAGE"),
    Column("cpus", "vCPU", 6),
    Column("cpu", "CPU", 25),
    Column("memory", "MEM MiB", 11),
    Column("uptime", "UPTIME", 8),
)
#: The order ``o`` steps through.
SORT_COLUMNS: tuple[str, ...] = tuple(column.key for column in COLUMNS)
#: Sort columns whose order can change between two refreshes of the same listing.
_METRIC_SORT_COLUMNS = frozenset({"cpu", "memory", "uptime"})
_STATUS_ORDER = {status: index for index, status in enumerate(SandboxStatus)}


def _sort_value(
    column: str, info: SandboxInfo, metrics: SandboxMetrics | None, now: datetime
) -> float | str:
    """A comparable value of a row for ``column``; unknown numbers sort first."""
    if column == "status":
        return _STATUS_ORDER[info.status]
    if column == "image":
        return info.image
    if column == "cpus":
        return info.config.cpus
    if column == "cpu":
        return metrics.cpu_percent if metrics else -1.0
    if column == "memory":
        return metrics.memory_bytes if metrics else -1
    if column == "uptime":
        seconds = uptime_seconds(info, now)
        return -1.0 if seconds is None else seconds
    return info.name


class SandboxTable(KeyedTable):
    """One row per sandbox that matches the filter, in the chosen order."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        *(f"sandbox-table--{status}" for status in SandboxStatus),
        "sandbox-table--busy",
    }

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(COLUMNS, id=id, classes=classes)
        self._all: Sequence[SandboxInfo] = ()
        self._infos: dict[str, SandboxInfo] = {}
        #: The shown sandboxes that run: the rows a refresh of the same listing changes.
        self._running_rows: list[SandboxInfo] = []
        self._metrics: dict[str, SandboxMetrics] = {}
        self._history: MetricsHistory | None = None
        self._busy: dict[str, str] = {}
        self._now: datetime | None = None
        self.filter_text = ""
        self.sort_column = "name"
        self.sort_reverse = False

    @property
    def infos(self) -> dict[str, SandboxInfo]:
        """The sandboxes shown (those matching the filter), by name."""
        return dict(self._infos)

    @property
    def selected_name(self) -> str | None:
        return self.selected_key

    def sync(
        self,
        infos: Sequence[SandboxInfo],
        now: datetime,
        metrics: Mapping[str, SandboxMetrics] | None = None,
        history: MetricsHistory | None = None,
        busy: Mapping[str, str] | None = None,
    ) -> None:
        """Shows ``infos`` that match the filter: adds and removes rows, updates changed cells
        only, and keeps the sort order (and the cursor on its sandbox). Given the very
        ``infos`` of the previous call (and the same ``busy``), only running rows change."""
        same_listing = infos is self._all and dict(busy or {}) == self._busy
        self._all = infos
        self._now = now
        self._metrics = dict(metrics or {})
        self._history = history
        self._busy = dict(busy or {})
        if same_listing:
            self._render_running_rows()
        else:
            self._render_rows()

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self._render_rows()

    def cycle_sort(self) -> str:
        """Sorts by the next column; returns its key."""
        index = SORT_COLUMNS.index(self.sort_column)
        self.sort_column = SORT_COLUMNS[(index + 1) % len(SORT_COLUMNS)]
        self._render_rows()
        return self.sort_column

    def reverse_sort(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self._render_rows()

    def _matches(self, info: SandboxInfo) -> bool:
        needle = self.filter_text.strip().lower()
        if not needle:
            return True
        return any(needle in text.lower() for text in (info.name, info.image, str(info.status)))

    def _row_texts(self, info: SandboxInfo, now: datetime) -> dict[str, str]:
        running = info.status is SandboxStatus.RUNNING
        metrics = self._metrics.get(info.name) if running else None
        cpu = self._history.series(info.name, "cpu_percent") if self._history and running else []
        values = row_values(info, now, metrics, cpu)
        if verb := self._busy.get(info.name):
            values["status"] = f"{verb}…"
        return values

    def _latest_texts(self, info: SandboxInfo) -> dict[str, str]:
        """A row's texts as of the latest refresh (a row off screen is drawn later)."""
        assert self._now is not None, "set by the sync that scheduled the row"
        return self._row_texts(info, self._now)

    def _render_running_rows(self) -> None:
        """The same sandboxes as shown: new metrics and uptimes for the running ones."""
        now = self._now
        if now is None:
            return
        self.update_rows(
            {info.name: partial(self._latest_texts, info) for info in self._running_rows}
        )
        if self.sort_column in _METRIC_SORT_COLUMNS:
            selected = self.selected_key
            if self._order(list(self._infos.values()), now) and selected is not None:
                self.select(selected)

    def _render_rows(self) -> None:
        if self._now is None:
            return
        now = self._now
        shown = [info for info in self._all if self._matches(info)]
        rows = {info.name: self._row_texts(info, now) for info in shown}
        self._infos = {info.name: info for info in shown}
        self._running_rows = [info for info in shown if info.status is SandboxStatus.RUNNING]
        selected = self.selected_key
        relabelled = self._show_sort_and_filter()
        self.apply_rows(rows)
        ordered = self._order(shown, now)
        if relabelled and not ordered:
            self.rerender()
        if selected in self._infos and self.selected_key != selected:
            self.select(selected)

    def _order(self, shown: Sequence[SandboxInfo], now: datetime) -> bool:
        """Puts the rows in the chosen order; returns whether anything moved."""

        def value(info: SandboxInfo) -> tuple[object, str]:
            metrics = self._metrics.get(info.name)
            return (_sort_value(self.sort_column, info, metrics, now), info.name)

        wanted = [info.name for info in sorted(shown, key=value, reverse=self.sort_reverse)]
        if self.row_keys == wanted:
            return False
        self.reorder(wanted)
        return True

    def _show_sort_and_filter(self) -> bool:
        """Marks the sort column's title; returns whether a title changed."""
        arrow = "▼" if self.sort_reverse else "▲"
        changed = False
        for column in COLUMNS:
            label = f"{column.label} {arrow}" if column.key == self.sort_column else column.label
            changed = self.set_label(column.key, label) or changed
        self.border_subtitle = f"filter: {self.filter_text}" if self.filter_text else ""
        return changed

    def cell(self, column: str, text: str) -> str | Text:
        if column != "status":
            return text
        state = "busy" if text.endswith("…") else text
        style = self.get_component_rich_style(f"sandbox-table--{state}", partial=True)
        return Text(text, style=style)
