"""The views, keys, palette, themes and settings, on recorded data (no virtual machine)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from recorded import RECORDED_SANDBOXES, recorded_app, wait_for_listing
from textual.command import CommandPalette
from textual.widgets import Input, Label
from textual.widgets._footer import FooterKey

from microsandbox_tui.tui import main
from microsandbox_tui.tui.app import MsbApp, known_actions
from microsandbox_tui.tui.dialogs import CreateSandboxDialog, CreateVolumeDialog, HostPathDialog
from microsandbox_tui.tui.screens import (
    HelpScreen,
    ImagesScreen,
    SandboxDetailScreen,
    SandboxesScreen,
    VolumesScreen,
)
from microsandbox_tui.tui.screens.base import MUTATING_ACTIONS
from microsandbox_tui.tui.settings import ConfigError
from microsandbox_tui.tui.widgets import KeyedTable, MetricChart, SandboxTable, StatusBar

Waiter = Callable[..., Awaitable[None]]
SIZE = (110, 32)
TALL_SIZE = (100, 40)
ALL = sorted(info.name for info in RECORDED_SANDBOXES)


def table_of(app: MsbApp) -> SandboxTable:
    return app.screen.query_one(SandboxTable)


def help_keys(app: MsbApp) -> dict[str, str]:
    """Description → keys, as the open help screen lists them."""
    keys = [str(label.content) for label in app.screen.query(".help-key").results(Label)]
    texts = [str(label.content) for label in app.screen.query(".help-description").results(Label)]
    return dict(zip(texts, keys, strict=True))


# -- sandboxes table ------------------------------------------------------------------------


async def test_filter_matches_name_image_and_status_and_esc_clears_it() -> None:
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_listing(pilot)
        table = table_of(app)
        assert sorted(table.row_keys) == ALL

        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        await pilot.press(*"WOR")
        assert table.row_keys == ["worker"]
        assert table.border_title == "Sandboxes [1/4]"
        assert table.border_subtitle == "filter: WOR"

        await pilot.press("enter")  # back to the table, the filter stays
        assert app.focused is table
        assert table.row_keys == ["worker"]

        await pilot.press("escape")
        assert sorted(table.row_keys) == ALL
        assert table.border_subtitle == ""
        assert not app.screen.query_one("#filter").display

        await pilot.press("slash", *"crash")
        assert table.row_keys == ["flaky"], "status matches"
        await pilot.press("escape")  # esc in the input clears as well
        assert sorted(table.row_keys) == ALL
        await pilot.press("slash", *"msb-b")
        assert sorted(table.row_keys) == ALL, "image matches"
        await pilot.press("escape")


async def test_o_cycles_the_sort_column_and_shift_o_reverses() -> None:
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_listing(pilot)
        table = table_of(app)
        assert table.row_keys == ["batch", "flaky", "web", "worker"]
        assert str(table.columns["name"].label) == "NAME ▲"  # type: ignore[index]
        table.select("worker")

        await pilot.press("o")  # status: running, running, stopped, crashed
        assert table.sort_column == "status"
        assert table.row_keys == ["web", "worker", "batch", "flaky"]
        assert table.selected_name == "worker", "the cursor stays on its sandbox"
        assert str(table.columns["status"].label) == "STATUS ▲"  # type: ignore[index]
        assert str(table.columns["name"].label) == "NAME"  # type: ignore[index]

        await pilot.press("o", "o", "o")  # image, vCPUs, then CPU %
        assert table.sort_column == "cpu"
        assert table.row_keys[-2:] == ["web", "worker"], "busiest last"
        await pilot.press("O")
        assert table.row_keys[:2] == ["worker", "web"], "busiest first"
        assert str(table.columns["cpu"].label) == "CPU ▼"  # type: ignore[index]

        for _ in range(3):  # memory, uptime, back to name
            await pilot.press("o")
        assert table.sort_column == "name"
        assert table.row_keys == ["worker", "web", "flaky", "batch"]


async def test_rows_show_a_cpu_sparkline_and_memory_in_use() -> None:
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_listing(pilot)
        table = table_of(app)
        cpu = table.text_of("worker", "cpu")
        assert cpu is not None
        line, percent = cpu[:20], cpu[20:].strip()
        assert percent == "96%"
        assert line[-1] == "█" and line[0] < line[-1], "a ramp, newest on the right"
        assert table.text_of("worker", "memory") == "60/470"
        assert table.text_of("batch", "memory") == "-/512"
        assert (table.text_of("batch", "cpu") or "").strip() == "-"


# -- views ----------------------------------------------------------------------------------


async def test_number_keys_switch_views(wait_until: Waiter) -> None:
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_listing(pilot)
        await pilot.press("2")
        assert isinstance(app.screen, ImagesScreen)
        images = app.screen.query_one("#images", KeyedTable)
        await wait_until(pilot, lambda: images.row_count == 2, timeout=5, what="the images")
        assert images.row_keys == ["msb-base", "python-3.12"]
        assert images.text_of("msb-base", "size") == "11.8 MiB"
        assert images.text_of("python-3.12", "created") == "5h00m ago"

        await pilot.press("3")
        assert isinstance(app.screen, VolumesScreen)
        volumes = app.screen.query_one("#volumes", KeyedTable)
        await wait_until(pilot, lambda: volumes.row_count == 2, timeout=5, what="the volumes")
        assert volumes.row_keys == ["pg-data", "scratch"]
        assert volumes.text_of("pg-data", "quota") == "2.0 GiB"
        assert volumes.text_of("pg-data", "used") == "700.0 MiB  34%"
        assert volumes.text_of("pg-data", "in_use_by") == "web, worker"
        assert volumes.text_of("scratch", "in_use_by") == "-"

        await pilot.press("1")
        assert isinstance(app.screen, SandboxesScreen)
        table_of(app).select("web")
        await pilot.press("enter")
        assert isinstance(app.screen, SandboxDetailScreen)
        await pilot.press("2", "1")
        assert isinstance(app.screen, SandboxesScreen), "1 goes back to the table"


async def _palette(pilot, text: str, wait_until: Waiter) -> None:  # type: ignore[no-untyped-def]
    app = pilot.app
    await pilot.press("colon")
    await wait_until(pilot, lambda: CommandPalette.is_open(app), timeout=5, what="the palette")
    await pilot.press(*text)
    await pilot.pause(0.4)
    await pilot.press("enter")
    await wait_until(
        pilot, lambda: not CommandPalette.is_open(app), timeout=5, what="the palette to close"
    )
    await pilot.pause(0.1)


async def test_palette_jumps_to_views_and_sandboxes(wait_until: Waiter) -> None:
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_listing(pilot)
        await _palette(pilot, "images", wait_until)
        await wait_until(
            pilot, lambda: isinstance(app.screen, ImagesScreen), timeout=5, what="images"
        )

        await _palette(pilot, "worker", wait_until)
        await wait_until(
            pilot, lambda: isinstance(app.screen, SandboxDetailScreen), timeout=5, what="detail"
        )
        assert app.current_mode == "sandboxes"
        assert isinstance(app.screen, SandboxDetailScreen)
        assert app.screen.sandbox == "worker"
        await pilot.press("escape")
        assert table_of(app).selected_name == "worker"


async def test_detail_tabs_metrics_and_processes(wait_until: Waiter) -> None:
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_listing(pilot)
        table_of(app).select("web")
        await pilot.press("enter")
        detail = app.screen
        assert isinstance(detail, SandboxDetailScreen)
        assert detail.active_tab == "overview"
        overview = dict(detail.overview)
        assert overview["status"] == "running"
        assert overview["env"] == "MODE=prod\nPORT=8080"
        assert overview["memory"] == "1024 MiB (in use 330/980 MiB)"
        assert overview["network"] == "public_only"
        assert overview["address"] == "172.16.0.6/30"
        assert overview["gateway"] == "172.16.0.5 (host.msb.internal)"
        assert overview["ports"] == "127.0.0.1:8080 -> 8080/tcp, 127.0.0.1:5353 -> 53/udp"

        await pilot.press("right_square_bracket")
        assert detail.active_tab == "metrics"
        cpu = detail.query_one("#chart-cpu", MetricChart)
        assert cpu.latest == pytest.approx(app.history.latest("web").cpu_percent)  # type: ignore[union-attr]
        assert cpu.maximum == 200, "two vCPUs"
        assert detail.query_one("#chart-disk-read", MetricChart).latest == pytest.approx(40_000)

        await pilot.press("right_square_bracket", "right_square_bracket")
        assert detail.active_tab == "processes"
        processes = detail.process_table
        await wait_until(pilot, lambda: processes.row_count > 0, timeout=5, what="processes")
        assert processes.row_keys == ["1", "57", "58"], "kernel threads are left out"
        assert processes.text_of("58", "args") == "python -m http.server 8080"

        await pilot.press("left_square_bracket", "left_square_bracket", "left_square_bracket")
        assert detail.active_tab == "overview"
        await pilot.press("escape")
        assert isinstance(app.screen, SandboxesScreen)


async def test_files_tab_browses_directories(wait_until: Waiter) -> None:
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_listing(pilot)
        table_of(app).select("web")
        await pilot.press("enter", "f")
        detail = app.screen
        assert isinstance(detail, SandboxDetailScreen)
        assert detail.active_tab == "files"
        files = detail.file_browser.table
        await wait_until(pilot, lambda: files.row_count == 4, timeout=5, what="the root listing")
        assert files.row_keys == ["etc", "srv", "bin", "init"], "directories first, then by name"
        assert files.text_of("bin", "target") == "usr/bin"
        assert files.text_of("bin", "mode") == "lrwxrwxrwx"
        assert files.text_of("init", "mode") == "-rwxr-xr-x"
        assert files.text_of("srv", "mode") == "drwxr-xr-x"

        files.select("srv")
        await pilot.press("enter")
        await wait_until(pilot, lambda: "app.py" in files.row_keys, timeout=5, what="/srv")
        assert detail.file_browser.path == "/srv"
        assert files.row_keys == ["..", "static", "app.py", "run.sh"]
        assert files.text_of("app.py", "size") == "2.3 KiB"

        await pilot.press("backspace")
        await wait_until(pilot, lambda: "init" in files.row_keys, timeout=5, what="/ again")
        assert detail.file_browser.path == "/"

        await pilot.press("d")
        assert isinstance(app.screen, HostPathDialog), "d asks where the download goes"
        path = app.screen.query_one("#host-path", Input).value
        assert path.endswith("/etc"), "the selected entry's name is the default"
        await pilot.press("escape")
        assert app.screen is detail


async def test_files_actions_only_in_the_files_tab() -> None:
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_listing(pilot)
        table_of(app).select("web")
        await pilot.press("enter")
        detail = app.screen
        ids = {active.binding.id for active in detail.active_bindings.values()}
        assert not {"download", "upload"} & ids
        await pilot.press("u")
        assert app.screen is detail, "u does nothing outside the Files tab"


async def test_create_volume_dialog_checks_its_fields(wait_until: Waiter) -> None:
    app = recorded_app()
    async with app.run_test(size=TALL_SIZE) as pilot:
        await wait_for_listing(pilot)
        await pilot.press("3", "c")
        dialog = app.screen
        assert isinstance(dialog, CreateVolumeDialog)
        await pilot.press("enter")
        assert dialog.status == "enter a name"
        await pilot.press(*"data", "tab", "ctrl+u", *"lots", "enter")
        assert dialog.status == "the quota is a whole number of MiB"
        await pilot.press("escape")
        assert isinstance(app.screen, VolumesScreen)


# -- read-only ------------------------------------------------------------------------------


async def test_readonly_hides_mutating_actions_in_every_view() -> None:
    app = recorded_app(readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_listing(pilot)

        def offered() -> set[str]:
            ids = {active.binding.id for active in app.screen.active_bindings.values()}
            footer = {key.action for key in app.screen.query(FooterKey)}
            return ids | footer

        table_of(app).select("web")
        await pilot.press("enter")
        assert isinstance(app.screen, SandboxDetailScreen)
        assert not MUTATING_ACTIONS & offered()
        await pilot.press("x", "ctrl+d", "K")
        assert isinstance(app.screen, SandboxDetailScreen), "no dialog, nothing done"
        assert app.busy == {}
        await pilot.press("escape")

        for key, screen in (("1", SandboxesScreen), ("2", ImagesScreen), ("3", VolumesScreen)):
            await pilot.press(key)
            assert isinstance(app.screen, screen)
            assert not MUTATING_ACTIONS & offered(), screen
            await pilot.press("c")
            assert isinstance(app.screen, screen), "c creates nothing"
            await pilot.press("question_mark")
            assert "Create" not in help_keys(app)
            assert "Create sandbox" not in help_keys(app)
            await pilot.press("escape")


async def test_images_view_creates_from_the_selected_image(wait_until: Waiter) -> None:
    app = recorded_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_for_listing(pilot)
        await pilot.press("2")
        images = app.screen.query_one("#images", KeyedTable)
        await wait_until(pilot, lambda: images.row_count == 2, timeout=5, what="the images")
        images.select("python-3.12")
        await pilot.press("c")
        assert isinstance(app.screen, CreateSandboxDialog)
        assert app.screen.query_one("#image", Input).value == "python-3.12"
        await pilot.press("escape")


# -- help, keys.toml, mouse -----------------------------------------------------------------


async def test_help_is_generated_from_the_bindings() -> None:
    app = recorded_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_for_listing(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        keys = help_keys(app)
        assert keys["Create"] == "c"
        assert keys["Delete"] == "^d"
        assert keys["Palette"] == ": / ^p"
        assert keys["Filter"] == "/"
        sections = [str(label.content) for label in app.screen.query(".help-section")]
        assert sections == ["Sandboxes", "Everywhere"]
        await pilot.press("escape")

        await pilot.press("2", "question_mark")
        assert help_keys(app)["Create sandbox"] == "c"
        assert "Filter" not in help_keys(app)


async def test_keys_toml_rebinds_actions(config_home: Path) -> None:
    (config_home / "keys.toml").write_text(
        'filter = "f"\nview_images = ["i", "ctrl+i"]\ndelete = "ctrl+x"\n'
    )
    app = recorded_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_for_listing(pilot)
        await pilot.press("slash")
        assert not app.screen.query_one("#filter").display, "/ no longer filters"
        await pilot.press("f")
        assert app.screen.query_one("#filter").display
        await pilot.press("escape")

        await pilot.press("question_mark")
        keys = help_keys(app)
        assert keys["Filter"] == "f"
        assert keys["Delete"] == "^x"
        assert keys["Images"] == "i / ^i"
        await pilot.press("escape")
        assert "i Images" in str(app.screen.query_one("#view-bar").render())

        await pilot.press("2")
        assert isinstance(app.screen, SandboxesScreen)
        await pilot.press("i")
        assert isinstance(app.screen, ImagesScreen)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('frobnicate = "f"\n', "unknown action 'frobnicate'"),
        ('filter = "two keys"\n', "filter"),
        ('filter = [""]\n', "filter"),
        ("filter = \n", "not valid TOML"),
    ],
)
def test_a_bad_keys_toml_stops_start_up_with_a_clear_error(
    config_home: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    (config_home / "keys.toml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        MsbApp()
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("msb-tui: ")
    assert str(config_home / "keys.toml") in error
    assert message in error


def test_every_action_can_be_rebound() -> None:
    actions = known_actions()
    assert actions >= {"filter", "sort", "sort_reverse", "delete", "help", "palette", "mouse"}
    assert actions >= MUTATING_ACTIONS


async def test_m_toggles_the_mouse() -> None:
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_listing(pilot)
        badge = app.screen.query_one(StatusBar).query_one("#status-mouse")
        assert app.mouse_enabled and not badge.display
        await pilot.press("m")
        await pilot.pause()
        assert not app.mouse_enabled and badge.display
        await pilot.press("m")
        await pilot.pause()
        assert app.mouse_enabled and not badge.display


# -- themes ---------------------------------------------------------------------------------


async def test_theme_switch_from_the_palette_is_remembered(
    config_home: Path, wait_until: Waiter
) -> None:
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_listing(pilot)
        assert {"msb-midnight", "msb-ember", "msb-paper"} <= set(app.available_themes)
        assert "textual-dark" in app.available_themes, "Textual's own themes stay"
        await _palette(pilot, "theme: msb-paper", wait_until)
        assert app.theme == "msb-paper"
        await pilot.pause(0.2)
    settings = (config_home / "settings.toml").read_text()
    assert 'theme = "msb-paper"' in settings

    again = recorded_app()
    async with again.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert again.theme == "msb-paper"


async def test_user_themes_load_and_a_broken_one_is_only_a_notice(config_home: Path) -> None:
    themes = config_home / "themes"
    themes.mkdir()
    (themes / "mine.toml").write_text('name = "mine"\nprimary = "#123456"\ndark = false\n')
    (themes / "broken.toml").write_text('name = "broken"\nprimary = "not-a-colour"\n')
    (themes / "garbled.toml").write_text("name = \n")
    (config_home / "settings.toml").write_text('theme = "mine"\n')
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_listing(pilot)
        assert app.theme == "mine"
        assert "broken" not in app.available_themes
        assert any("broken.toml" in problem for problem in app.config_problems)
        assert any("garbled.toml" in problem for problem in app.config_problems)
        assert app.is_running
