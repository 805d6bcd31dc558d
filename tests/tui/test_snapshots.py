"""How the views look, on recorded data (fixed size, no runtime calls, no clock)."""

from __future__ import annotations

from typing import Any

from recorded import recorded_app, wait_for_listing
from textual.pilot import Pilot

SIZE = (110, 32)
TALL = (100, 40)


async def _select_web(pilot: Pilot[None]) -> None:
    await wait_for_listing(pilot)
    pilot.app.screen.query_one("#sandboxes").select("web")  # type: ignore[attr-defined]
    await pilot.pause()


def test_sandboxes_view(snap_compare: Any) -> None:
    assert snap_compare(recorded_app(), terminal_size=SIZE, run_before=wait_for_listing)


def test_sandboxes_view_filtered_and_sorted(snap_compare: Any) -> None:
    keys = ["o", "o", "o", "o", "O", "slash", "r", "enter"]
    assert snap_compare(recorded_app(), terminal_size=SIZE, run_before=wait_for_listing, press=keys)


def test_images_view(snap_compare: Any) -> None:
    assert snap_compare(
        recorded_app(), terminal_size=SIZE, run_before=wait_for_listing, press=["2"]
    )


def test_volumes_view(snap_compare: Any) -> None:
    assert snap_compare(
        recorded_app(), terminal_size=SIZE, run_before=wait_for_listing, press=["3"]
    )


def test_detail_overview(snap_compare: Any) -> None:
    assert snap_compare(recorded_app(), terminal_size=SIZE, run_before=_select_web, press=["enter"])


def test_detail_metrics(snap_compare: Any) -> None:
    keys = ["enter", "right_square_bracket"]
    assert snap_compare(recorded_app(), terminal_size=SIZE, run_before=_select_web, press=keys)


def test_create_dialog(snap_compare: Any) -> None:
    assert snap_compare(
        recorded_app(), terminal_size=TALL, run_before=wait_for_listing, press=["c"]
    )


def test_help_screen(snap_compare: Any) -> None:
    keys = ["question_mark"]
    assert snap_compare(recorded_app(), terminal_size=TALL, run_before=wait_for_listing, press=keys)


def test_delete_confirm_dialog(snap_compare: Any) -> None:
    assert snap_compare(
        recorded_app(), terminal_size=SIZE, run_before=_select_web, press=["ctrl+d"]
    )
