"""The ``msb-tui`` application: views, global keys, the shared refresh, settings and errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.signal import Signal
from textual.theme import Theme
from textual.worker import Worker, WorkerState

from microsandbox_tui import Rule, SandboxInfo

from .commands import MsbCommands
from .data import DataSource, LiveSource, MetricsHistory, SandboxesSnapshot
from .dialogs import CreateSandboxDialog, RuleFormDialog
from .operations import CreateRequest, create_sandbox
from .screens import (
    HelpScreen,
    ImagesScreen,
    LogsScreen,
    SandboxDetailScreen,
    SandboxesScreen,
    VolumesScreen,
)
from .screens.base import MsbScreen
from .screens.help import HelpEntry, HelpSection
from .screens.shell import ShellsScreen
from .settings import (
    KEYS_FILE,
    SETTINGS_FILE,
    Settings,
    config_dir,
    load_keymap,
    load_settings,
    load_themes,
    save_settings,
    theme_directories,
)
from .widgets import FlowLogView, KeyedTable, RulesEditor, SecretsPanel

#: Terminal modes that make the terminal report the mouse (X10/any-event/urxvt/SGR).
_MOUSE_MODES = ("1000", "1003", "1015", "1006")


@dataclass(frozen=True, slots=True)
class AppOptions:
    """How the dashboard runs. Tests turn the background calls off for a fixed picture."""

    readonly: bool = False
    #: List sandboxes at start and then every ``refresh_interval`` seconds.
    auto_refresh: bool = True
    refresh_interval: float = 1.0
    #: Ask the runtime for the accelerator and home directory at start.
    host_info: bool = True
    #: Whether the terminal reports the mouse to the dashboard (``m`` toggles).
    mouse: bool = True


class MsbApp(App[None]):
    """A k9s-style dashboard for microVM sandboxes."""

    TITLE = "msb-tui"
    CSS_PATH = "app.tcss"
    COMMANDS: ClassVar[set[Any]] = {*App.COMMANDS, MsbCommands}
    MODES: ClassVar[dict[str, str | Callable[[], Screen[Any]]]] = {
        "sandboxes": SandboxesScreen,
        "images": ImagesScreen,
        "volumes": VolumesScreen,
        "shells": ShellsScreen,
    }
    DEFAULT_MODE: ClassVar[str] = "sandboxes"
    #: The palette key the footer shows (ctrl+p opens it as well).
    COMMAND_PALETTE_BINDING: ClassVar[str] = "colon"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit", id="quit"),
        Binding("question_mark", "help", "Help", id="help"),
        Binding("colon,ctrl+p", "command_palette", "Palette", show=False, id="palette"),
        Binding("1", "view('sandboxes')", "Sandboxes", show=False, id="view_sandboxes"),
        Binding("2", "view('images')", "Images", show=False, id="view_images"),
        Binding("3", "view('volumes')", "Volumes", show=False, id="view_volumes"),
        Binding("4", "view('shells')", "Shells", show=False, id="view_shells"),
        Binding("m", "toggle_mouse", "Mouse on/off", show=False, id="mouse"),
    ]

    def __init__(
        self,
        *,
        readonly: bool = False,
        auto_refresh: bool = True,
        refresh_interval: float = 1.0,
        host_info: bool = True,
        mouse: bool = True,
        source: DataSource | None = None,
        history: MetricsHistory | None = None,
        config_directory: Path | None = None,
    ) -> None:
        """Raises :class:`~.settings.ConfigError` when ``keys.toml`` cannot be used."""
        self.options = AppOptions(
            readonly=readonly,
            auto_refresh=auto_refresh,
            refresh_interval=refresh_interval,
            host_info=host_info,
            mouse=mouse,
        )
        self.source: DataSource = source or LiveSource()
        self.history = history or MetricsHistory()
        #: The latest listing, or ``None`` before the first one.
        self.snapshot: SandboxesSnapshot | None = None
        #: Sandboxes with an operation under way: name → what is being done.
        self.busy: dict[str, str] = {}
        #: Every error reported to the user, as ``"TypeName: message"``, oldest first.
        self.errors: list[str] = []
        #: Theme and settings files that could not be used (each also shown as a notice).
        self.config_problems: list[str] = []
        self.mouse_enabled = mouse
        self.config_directory = config_directory or config_dir()
        self.user_keymap = load_keymap(self.config_directory / KEYS_FILE, known_actions())
        self._settings = Settings()
        self._refreshing = False
        self._refresh_errors: dict[str, str | None] = {"list": None, "metrics": None}
        #: The source's listing version of ``snapshot.infos``.
        self._listed_version: int | None = None
        #: Whether the latest listing has a sandbox whose metrics are worth reading.
        self._live = False
        super().__init__()
        self.snapshot_signal: Signal[SandboxesSnapshot] = Signal(self, "sandboxes")
        self.mouse_signal: Signal[bool] = Signal(self, "mouse")
        self.set_keymap(self.user_keymap)

    @property
    def readonly(self) -> bool:
        return self.options.readonly

    def on_mount(self) -> None:
        self._load_themes_and_settings()
        if not self.mouse_enabled:
            self._write_mouse_modes(enabled=False)
        if self.options.auto_refresh:
            self.refresh_sandboxes()
            self.set_interval(self.options.refresh_interval, self.refresh_sandboxes)

    # -- themes and settings ---------------------------------------------------------------

    @property
    def settings_path(self) -> Path:
        return self.config_directory / SETTINGS_FILE

    def _load_themes_and_settings(self) -> None:
        loaded = load_themes(theme_directories(self.config_directory))
        for theme in loaded.themes:
            self.register_theme(theme)
        for theme_problem in loaded.problems:
            self.config_problems.append(theme_problem)
            self.notify(theme_problem, title="Theme not loaded", severity="warning", markup=False)
        self._settings, problem = load_settings(self.settings_path)
        if problem:
            self.config_problems.append(problem)
            self.notify(problem, title="Settings not loaded", severity="warning", markup=False)
        saved = self._settings.theme
        if saved is not None:
            if saved in self.available_themes:
                self.theme = saved
            else:
                self.notify(f"unknown theme {saved!r}", title="Settings", severity="warning")
        self.theme_changed_signal.subscribe(self, self._remember_theme)

    def _remember_theme(self, theme: Theme) -> None:
        if theme.name == self._settings.theme:
            return
        self._settings = self._settings.model_copy(update={"theme": theme.name})
        try:
            save_settings(self.settings_path, self._settings)
        except OSError as error:
            self.report_error(error, context=f"saving {self.settings_path}")

    @property
    def settings(self) -> Settings:
        return self._settings

    def switch_theme(self, name: str) -> None:
        self.theme = name
        self.notify(f"theme {name}", timeout=2)

    # -- the shared refresh ----------------------------------------------------------------

    def refresh_sandboxes(self) -> None:
        """Starts a listing unless one is still under way (a slow listing is not piled up)."""
        if self._refreshing:
            return
        self._refreshing = True
        self.run_worker(self._refresh(), group="refresh", exit_on_error=False)

    def _report_once(self, kind: str, error: Exception | None, context: str) -> None:
        """Reports each distinct refresh problem once, rather than once a second."""
        if error is None:
            self._refresh_errors[kind] = None
        elif str(error) != self._refresh_errors[kind]:
            self._refresh_errors[kind] = str(error)
            self.report_error(error, context=context)

    async def _listing(self) -> tuple[tuple[SandboxInfo, ...], bool]:
        """Every sandbox, and whether that changed: listed again only when the source's
        listing version moved, so a tick reads one number, not every stopped sandbox."""
        version = await self.source.list_version()
        if self.snapshot is not None and version == self._listed_version:
            return self.snapshot.infos, False
        # Read before the listing: a change in between moves it again, listed next tick.
        infos = tuple(await self.source.list_sandboxes())
        self._listed_version = version
        return infos, True

    async def _refresh(self) -> None:
        try:
            try:
                infos, changed = await self._listing()
            except Exception as error:
                self._report_once("list", error, "listing sandboxes")
                return
            self._report_once("list", None, "")
            if changed:
                self._live = any(info.status.is_live for info in infos)
            metrics = {}
            if self._live:
                try:
                    metrics = await self.source.all_metrics()
                except Exception as error:
                    self._report_once("metrics", error, "reading metrics")
                else:
                    self._report_once("metrics", None, "")
        finally:
            self._refreshing = False
        self.history.record(metrics)
        if changed:
            self.history.forget_all_but({info.name for info in infos})
        self.snapshot = SandboxesSnapshot(infos, metrics, self.source.now())
        self.snapshot_signal.publish(self.snapshot)

    def _republish(self) -> None:
        if self.snapshot is not None:
            self.snapshot_signal.publish(self.snapshot)

    # -- operations ------------------------------------------------------------------------

    def run_operation(
        self,
        name: str,
        doing: str,
        operation: Callable[[], Awaitable[object]],
        done: str,
    ) -> None:
        """Runs one SDK operation on a sandbox in the background: its row shows what is being
        done, errors become notifications, and the listing refreshes after."""
        self.run_worker(
            self._operation(name, doing, operation, done), group="operations", exit_on_error=False
        )

    async def _operation(
        self, name: str, doing: str, operation: Callable[[], Awaitable[object]], done: str
    ) -> None:
        self.busy[name] = doing
        self._republish()
        self.notify(f"{doing} {name}…", markup=False)
        try:
            await operation()
        except Exception as error:
            self.report_error(error, context=f"{doing} {name}")
        else:
            self.notify(done, markup=False)
        finally:
            self.busy.pop(name, None)
            self._republish()
            self.refresh_sandboxes()

    def open_create_dialog(self, image: str | None = None) -> None:
        if self.readonly:
            return
        self.push_screen(CreateSandboxDialog(image=image), callback=self._create_requested)

    def _create_requested(self, request: CreateRequest | None) -> None:
        if request is not None:
            self.refresh_sandboxes()  # the new row shows up as "starting" while the VM boots
            self.run_operation(
                request.name, "creating", lambda: create_sandbox(request), f"{request.name} runs"
            )

    def open_rule_form(
        self, rule: Rule | None, title: str, saved: Callable[[Rule | None], None]
    ) -> None:
        """The rule form on ``rule`` (a new one when ``None``); ``saved`` gets the result."""
        if not self.readonly:
            self.push_screen(RuleFormDialog(rule, title=title), callback=saved)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.report_worker_failure(event)

    def report_worker_failure(self, event: Worker.StateChanged) -> None:
        """A bug in a background task is shown, not lost (SDK errors are reported where
        they happen, with context). Screens pass their workers' changes here too."""
        if event.state is WorkerState.ERROR and event.worker.error is not None:
            self.report_error(event.worker.error, context=f"internal error in {event.worker.name}")

    def report_error(self, error: BaseException, *, context: str | None = None) -> None:
        """Shows an SDK error as a notification; the app carries on."""
        message = f"{context}: {error}" if context else str(error)
        self.errors.append(f"{type(error).__name__}: {message}")
        self.notify(message, severity="error", title=type(error).__name__, markup=False)

    # -- navigation ------------------------------------------------------------------------

    async def action_view(self, mode: str) -> None:
        """Shows a view's main screen (closing a detail or logs screen opened over it)."""
        await self.switch_mode(mode)
        while len(self.screen_stack) > 1 and isinstance(
            self.screen, SandboxDetailScreen | LogsScreen
        ):
            await self.pop_screen()

    async def open_shell(self, name: str) -> None:
        """Shows the Shells view with a new tab on ``name`` (see :class:`ShellsScreen`)."""
        await self.action_view("shells")
        screen = self.screen
        if isinstance(screen, ShellsScreen):
            await screen.open_shell(name, self._settings.shell)

    def open_details(self, name: str) -> None:
        self.push_screen(SandboxDetailScreen(name))

    async def jump_to_sandbox(self, name: str) -> None:
        """The palette's jump: the sandboxes view, the row selected, its detail open."""
        await self.action_view("sandboxes")
        table = self.screen.query_one("#sandboxes", KeyedTable)
        if name in table.row_keys:
            table.select(name)
        self.open_details(name)

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.help_sections(), readonly=self.readonly))

    def help_sections(self) -> list[HelpSection]:
        """The keys active on the current screen, grouped per action, from the bindings."""
        screen = self.screen
        title = screen.HELP_TITLE if isinstance(screen, MsbScreen) else "This view"
        groups: dict[tuple[bool, str], tuple[list[str], str]] = {}
        for active in screen.active_bindings.values():
            binding = active.binding
            if binding.id is None or not binding.description:
                continue
            is_global = active.node is self
            keys, _ = groups.setdefault((is_global, binding.id), ([], binding.description))
            display = self.get_key_display(binding)
            if display not in keys:
                keys.append(display)

        def section(heading: str, is_global: bool) -> HelpSection:
            return HelpSection(
                heading,
                tuple(
                    HelpEntry(" / ".join(keys), description)
                    for (scope, _), (keys, description) in groups.items()
                    if scope is is_global
                ),
            )

        return [section(title, False), section("Everywhere", True)]

    def key_display_for(self, binding_id: str) -> str:
        """How the (possibly rebound) first key of a binding is shown."""
        keys = self.user_keymap.get(binding_id)
        if keys:
            return self.get_key_display(Binding(keys.split(",")[0], ""))
        for binding in Binding.make_bindings(self.BINDINGS):
            if binding.id == binding_id:
                return self.get_key_display(binding)
        return "?"

    # -- mouse -----------------------------------------------------------------------------

    def action_toggle_mouse(self) -> None:
        """Mouse off lets the terminal select text; mouse on gives clicks and scrolling."""
        self.set_mouse(not self.mouse_enabled)
        state = "on" if self.mouse_enabled else "off: the terminal selects text"
        self.notify(f"mouse {state}", timeout=2)

    def set_mouse(self, enabled: bool) -> None:
        self.mouse_enabled = enabled
        self._write_mouse_modes(enabled=enabled)
        self.mouse_signal.publish(enabled)

    def _write_mouse_modes(self, *, enabled: bool) -> None:
        # Textual's driver switches mouse reporting on at start; these are the same
        # terminal modes, switched at run time.
        driver = self._driver
        if driver is None:
            return
        suffix = "h" if enabled else "l"
        driver.write("".join(f"\x1b[?{mode}{suffix}" for mode in _MOUSE_MODES))
        driver.flush()


def known_actions() -> frozenset[str]:
    """Every action name ``keys.toml`` may rebind: the ids of the dashboard's bindings."""
    classes: list[Any] = [
        MsbApp,
        SandboxesScreen,
        ImagesScreen,
        VolumesScreen,
        SandboxDetailScreen,
        LogsScreen,
        HelpScreen,
        ShellsScreen,
        KeyedTable,
        RulesEditor,
        FlowLogView,
        SecretsPanel,
    ]
    return frozenset(
        binding.id
        for cls in classes
        for binding in Binding.make_bindings(cls.__dict__.get("BINDINGS", []))
        if binding.id is not None
    )
