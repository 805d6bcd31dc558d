"""The create form's parsing and validation, the metrics history, charts and sparklines, and
the settings files: plain functions, no app (except where the form itself is checked)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from recorded import NOW, recorded_app, recorded_sample, wait_for_listing
from textual.widgets import Input, Select, Switch, TextArea

from microsandbox_tui import InvalidConfigError, MiB, Network, PublishedPort
from microsandbox_tui.formatting import format_memory_usage, format_rate, sparkline
from microsandbox_tui.tui.data import MetricsHistory
from microsandbox_tui.tui.dialogs import CreateSandboxDialog, FormError, build_request, parse_env
from microsandbox_tui.tui.operations import CreateRequest, parse_ps
from microsandbox_tui.tui.settings import (
    BUNDLED_THEMES,
    Settings,
    load_settings,
    load_themes,
    save_settings,
)
from microsandbox_tui.tui.widgets.metric_chart import bar_rows

# -- the create form ------------------------------------------------------------------------


def test_env_takes_lines_or_commas_and_values_may_hold_commas() -> None:
    assert parse_env("A=1\nB=two words\n\n") == {"A": "1", "B": "two words"}
    assert parse_env("A=1, B=2,C=3") == {"A": "1", "B": "2", "C": "3"}
    assert parse_env("LIST=a,b,c, NEXT=x") == {"LIST": "a,b,c", "NEXT": "x"}
    assert parse_env("EMPTY=") == {"EMPTY": ""}
    assert parse_env("") == {}
    with pytest.raises(InvalidConfigError, match="expected KEY=VALUE"):
        parse_env("oops, A=1")
    with pytest.raises(InvalidConfigError, match="expected KEY=VALUE"):
        parse_env("=value")


def test_build_request_reports_every_bad_field() -> None:
    with pytest.raises(FormError) as problem:
        build_request("a/b", "msb-base", "two", "1", "oops", ports="8080")
    fields = problem.value.fields
    assert set(fields) == {"name", "cpus", "memory", "ports", "env"}
    assert fields["name"].startswith("name:")
    assert fields["cpus"] == "cpus: must be a whole number"
    assert fields["memory"].startswith("memory_mib:")
    assert fields["ports"].startswith("port '8080': expected HOST:GUEST")
    assert fields["env"].startswith("env:")


def test_build_request_takes_the_preset_and_the_ports_of_the_shared_parser() -> None:
    request = build_request("ok", "", "", "", preset="none", ports="8080:80, 5353:53/udp")
    assert request.network == Network(
        "none", [PublishedPort(8080, 80), PublishedPort(5353, 53, "udp")]
    )
    assert build_request("ok", "", "", "").network == Network.public_only()
    with pytest.raises(FormError) as problem:
        build_request("ok", "", "", "", ports="8080:80 0.0.0.0:8080:81")
    assert problem.value.fields == {
        "ports": "network.ports[8080]: 0.0.0.0:8080 -> 81/tcp collides with "
        "127.0.0.1:8080 -> 80/tcp"
    }


def test_build_request_carries_env_and_detached() -> None:
    request = build_request("ok", "", "2", "", "A=1, B=2", detached=False)
    assert request == CreateRequest(
        name="ok",
        image="msb-base",
        cpus=2,
        memory_mib=None,
        env={"A": "1", "B": "2"},
        detached=False,
    )


async def test_form_shows_errors_next_to_their_fields_and_submits_env_and_detached(
    tmp_path: Path,
) -> None:
    app = recorded_app()
    results: list[CreateRequest | None] = []
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_for_listing(pilot)
        dialog = CreateSandboxDialog()
        await app.push_screen(dialog, callback=results.append)
        await pilot.pause()
        dialog.query_one("#name", Input).value = "fine"
        dialog.query_one("#image", Input).value = str(tmp_path / "missing")
        dialog.query_one("#env", TextArea).text = "GOOD=1\nbad"
        await pilot.click("#create")
        assert dialog.is_current
        assert dialog.field_error("name") == ""
        assert "not a directory" in dialog.field_error("image")
        assert dialog.field_error("env").startswith("env: expected KEY=VALUE")
        assert dialog.query_one("#env-error").has_class("visible")
        assert not dialog.query_one("#name-error").has_class("visible")

        dialog.query_one("#image", Input).value = "python-3.12"
        dialog.query_one("#env", TextArea).text = "GOOD=1\nALSO=2"
        dialog.query_one("#detached", Switch).value = False
        dialog.query_one("#ports", Input).value = "8080:80/sctp"
        await pilot.click("#create")
        assert dialog.is_current
        assert dialog.field_error("ports").startswith("port '8080:80/sctp': expected")
        assert dialog.query_one("#ports-error").has_class("visible")

        dialog.query_one("#ports", Input).value = "8080:80, 5353:53/udp"
        assert dialog.query_one("#network", Select).value == "public_only"
        dialog.query_one("#network", Select).focus()
        await pilot.press("enter", "down", "enter")  # opens the list, picks the next: none
        await pilot.click("#create")
        await pilot.pause()
        assert not dialog.is_current
    assert results == [
        CreateRequest(
            name="fine",
            image="python-3.12",
            cpus=None,
            memory_mib=None,
            env={"GOOD": "1", "ALSO": "2"},
            detached=False,
            network=Network("none", [PublishedPort(8080, 80), PublishedPort(5353, 53, "udp")]),
        )
    ]


async def test_image_field_suggests_local_images() -> None:
    app = recorded_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_for_listing(pilot)
        await pilot.press("c")
        dialog = app.screen
        assert isinstance(dialog, CreateSandboxDialog)
        await pilot.pause(0.1)
        image = dialog.query_one("#image", Input)
        image.value = ""
        image.focus()
        await pilot.press("p", "y")
        await pilot.pause(0.1)
        assert image._suggestion == "python-3.12"
        await pilot.press("right")  # accepts the suggestion
        assert image.value == "python-3.12"
        await pilot.press("escape")


# -- metrics history, charts, cells ---------------------------------------------------------


def test_history_turns_counters_into_rates_and_skips_repeated_samples() -> None:
    history = MetricsHistory(length=3)
    first = recorded_sample(0, 10.0, 100, 400)
    second = replace(
        first,
        disk_read_bytes=first.disk_read_bytes + 4096,
        net_rx_bytes=2048,
        sampled_at=first.sampled_at + timedelta(seconds=2),
    )
    history.record({"a": first})
    history.record({"a": first})  # read twice before the supervisor wrote again
    history.record({"a": second})
    points = history.points("a")
    assert len(points) == 2
    assert points[0].disk_read_rate == 0.0, "no rate without a previous sample"
    assert points[1].disk_read_rate == 2048.0
    assert points[1].net_rx_rate == 1024.0

    rebooted = replace(second, disk_read_bytes=0, sampled_at=NOW + timedelta(seconds=5))
    history.record({"a": rebooted})
    assert history.latest("a").disk_read_rate == 0.0  # type: ignore[union-attr]
    for second_ in range(10, 20):
        history.record({"a": replace(first, sampled_at=NOW + timedelta(seconds=second_))})
    assert len(history.points("a")) == 3, "bounded"
    history.forget_all_but({"b"})
    assert history.points("a") == []


def test_full_history_rates_its_oldest_point_against_the_sample_before() -> None:
    history = MetricsHistory(length=2)
    first = recorded_sample(0, 10.0, 100, 400)
    for step in range(3):
        history.record(
            {
                "a": replace(
                    first,
                    cpu_percent=float(step),
                    disk_read_bytes=first.disk_read_bytes + 1000 * step,
                    sampled_at=first.sampled_at + timedelta(seconds=step),
                )
            }
        )
    points = history.points("a")
    assert [point.cpu_percent for point in points] == [1.0, 2.0]
    assert [point.disk_read_rate for point in points] == [1000.0, 1000.0]
    assert history.series("a", "cpu_percent") == [1.0, 2.0]
    assert history.series("a", "disk_read_rate") == [1000.0, 1000.0]
    assert history.latest("a") == points[-1]


def test_sparkline_is_fixed_width_scaled_and_newest_right() -> None:
    assert sparkline([], 5, 100) == "     "
    assert sparkline([0, 50, 100], 5, 100) == "  ▁▅█"
    assert sparkline(range(30), 4, 29) == "▇███"
    assert sparkline([250], 1, 100) == "█", "clipped at the top"
    assert len(sparkline([1.0] * 50, 20, 100)) == 20


def test_bar_rows_use_eighths_of_a_cell() -> None:
    assert bar_rows([0, 100, 50, 6.25], 5, 2, 100) == ["  █  ", "  ██▁"]
    assert bar_rows([], 3, 1, 0) == ["   "]


def test_cells_format_memory_and_rates() -> None:
    assert format_memory_usage(45 * MiB, 470 * MiB) == "45/470"
    assert format_memory_usage(None, 512 * MiB) == "-/512"
    assert format_rate(1536) == "1.5 KiB/s"
    assert format_rate(-3) == "0 B/s"


def test_ps_output_keeps_spaces_in_the_command() -> None:
    table = parse_ps("PID USER COMMAND\n  1 root /init\n 42 root sh -c 'sleep 1'\n")
    assert table.columns == ("PID", "USER", "COMMAND")
    assert table.rows == (("1", "root", "/init"), ("42", "root", "sh -c 'sleep 1'"))
    assert parse_ps("").rows == ()


# -- settings and theme files ---------------------------------------------------------------


def test_settings_round_trip_and_a_broken_file_falls_back(tmp_path: Path) -> None:
    path = tmp_path / "deeper" / "settings.toml"
    assert load_settings(path) == (Settings(), None)
    save_settings(path, Settings(theme='odd "name"'))
    assert load_settings(path) == (Settings(theme='odd "name"'), None)
    path.write_text("theme = [")
    settings, problem = load_settings(path)
    assert settings == Settings()
    assert problem is not None and "not valid TOML" in problem


def test_theme_files_are_validated(tmp_path: Path) -> None:
    (tmp_path / "ok.toml").write_text(
        'name = "ok"\nprimary = "#abcdef"\nbackground = "rgb(1, 2, 3)"\ndark = false\n'
        '[variables]\nfooter-key-foreground = "#ffffff"\n'
    )
    (tmp_path / "extra.toml").write_text('name = "extra"\nprimary = "#abcdef"\nshiny = true\n')
    (tmp_path / "nameless.toml").write_text('primary = "#abcdef"\n')
    (tmp_path / "Bad Name.toml").write_text('name = "Bad Name"\nprimary = "#abcdef"\n')
    loaded = load_themes([tmp_path, tmp_path / "absent"])
    assert [theme.name for theme in loaded.themes] == ["ok"]
    (theme,) = loaded.themes
    assert theme.dark is False
    assert theme.variables == {"footer-key-foreground": "#ffffff"}
    problems = "\n".join(loaded.problems)
    assert "extra.toml: shiny: Extra inputs are not permitted" in problems
    assert "nameless.toml: name: Field required" in problems
    assert "Bad Name.toml: name:" in problems


def test_the_bundled_themes_are_package_data_that_loads_cleanly() -> None:
    loaded = load_themes([BUNDLED_THEMES])
    assert sorted(theme.name for theme in loaded.themes) == [
        "msb-ember",
        "msb-midnight",
        "msb-paper",
    ]
    assert loaded.problems == ()
