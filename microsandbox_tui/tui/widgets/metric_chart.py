"""A small bar chart of one metric over time, with its latest value in the title."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.text import Text
from textual.widget import Widget

from microsandbox_tui.formatting import SPARK_BLOCKS

_EIGHTHS = " " + SPARK_BLOCKS  # index = eighths of a cell filled


def bar_rows(values: Sequence[float], width: int, height: int, maximum: float) -> list[str]:
    """``height`` lines of ``width`` columns drawing the last ``width`` values as bars (newest
    on the right) scaled to ``0..maximum``, with eighth-of-a-cell resolution."""
    recent = list(values)[-width:] if width > 0 else []
    levels = [
        min(max(round(value / maximum * height * 8), 0), height * 8) if maximum > 0 else 0
        for value in recent
    ]
    pad = " " * (width - len(levels))
    rows = []
    for row in range(height):
        floor = (height - 1 - row) * 8
        rows.append(pad + "".join(_EIGHTHS[min(max(level - floor, 0), 8)] for level in levels))
    return rows


class MetricChart(Widget):
    """Title line (name, latest value, scale) over a bar chart filling the widget."""

    DEFAULT_CSS = """
    MetricChart {
        height: 7;
        border: round $panel-lighten-2;
        border-title-color: $text-primary;
        color: $primary;
    }
    """

    def __init__(
        self,
        title: str,
        describe: Callable[[float], str],
        *,
        floor_maximum: float = 1.0,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.title = title
        self._describe = describe
        self._floor_maximum = floor_maximum
        self.values: list[float] = []
        self.maximum = floor_maximum
        self.border_title = title

    @property
    def latest(self) -> float | None:
        """The newest value drawn, if any."""
        return self.values[-1] if self.values else None

    def plot(self, values: Sequence[float], maximum: float | None = None) -> None:
        """Draws ``values``; the scale is ``maximum``, or the largest value seen (at least the
        chart's floor) when ``None``."""
        self.values = list(values)
        peak = max(self.values, default=0.0)
        self.maximum = maximum if maximum is not None else max(peak, self._floor_maximum)
        latest = "-" if self.latest is None else self._describe(self.latest)
        self.border_title = f"{self.title} {latest}"
        self.border_subtitle = f"max {self._describe(self.maximum)}"
        self.refresh()

    def render(self) -> Text:
        width, height = self.content_size
        rows = bar_rows(self.values, width, max(height, 1), self.maximum)
        return Text("\n".join(rows), no_wrap=True, overflow="crop")
