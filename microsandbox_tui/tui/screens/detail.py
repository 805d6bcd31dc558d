"""One sandbox in detail: its configuration, live metrics charts, logs, processes, files, its
network (the policy, edited and applied, beside the live flow log), and its secrets (edited
and applied at once, above the violations the flow log records)."""

from __future__ import annotations

import os
import posixpath
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Footer, Static, TabbedContent, TabPane

from microsandbox_tui import InvalidConfigError, LogSource, MiB, Rule, SandboxInfo, SandboxStatus
from microsandbox_tui.formatting import (
    format_memory_usage,
    format_percent,
    format_rate,
    format_size,
    format_timestamp,
    format_uptime,
    network_rows,
)

from ..data import SandboxesSnapshot
from ..dialogs import ConfirmDialog, HostPathDialog
from ..operations import PolicyChoice, download, upload
from ..widgets import (
    Column,
    FileBrowser,
    FlowLogView,
    KeyedTable,
    LogView,
    MetricChart,
    RulesEditor,
    SecretsPanel,
    SecretViolationsView,
    ViewBar,
)
from ..widgets.flow_log import allow_rule_for
from .sandbox_actions import LIFECYCLE_BINDINGS, SandboxActionsScreen

TABS: tuple[str, ...] = (
    "overview",
    "metrics",
    "logs",
    "processes",
    "files",
    "network",
    "secrets",
)
#: Actions of the Files tab, offered only while it is shown.
FILES_ACTIONS = frozenset({"download", "upload"})
#: Actions of the Network tab, offered only while it is shown.
NETWORK_ACTIONS = frozenset({"apply_policy"})
#: How often the Processes tab runs ``ps`` while it is visible.
PROCESSES_INTERVAL_S = 2.0
PROCESS_COLUMNS = (
    Column("pid", "PID", 6),
    Column("ppid", "PPID", 6),
    Column("user", "USER", 8),
    Column("stat", "STAT", 5),
    Column("vsz", "VSZ", 7),
    Column("rss", "RSS", 7),
    Column("args", "COMMAND"),
)
#: (chart id, title, attribute of MetricsPoint)
CHARTS: tuple[tuple[str, str, str], ...] = (
    ("chart-cpu", "CPU", "cpu_percent"),
    ("chart-memory", "Memory", "memory_bytes"),
    ("chart-disk-read", "Disk read", "disk_read_rate"),
    ("chart-disk-write", "Disk write", "disk_write_rate"),
    ("chart-net-rx", "Net rx", "net_rx_rate"),
    ("chart-net-tx", "Net tx", "net_tx_rate"),
)


def overview_rows(
    info: SandboxInfo | None, name: str, snapshot: SandboxesSnapshot
) -> list[tuple[str, str]]:
    """The configuration and state of a sandbox, as (label, value) pairs."""
    if info is None:
        return [("status", f"{name} no longer exists")]
    config = info.config
    now = snapshot.now
    metrics = snapshot.metrics.get(name) if info.status is SandboxStatus.RUNNING else None
    memory = f"{config.memory_mib} MiB"
    if metrics is not None:
        used = format_memory_usage(metrics.memory_bytes, metrics.memory_limit_bytes)
        memory += f" (in use {used} MiB)"
    env = "\n".join(f"{key}={value}" for key, value in sorted(config.env.items())) or "-"
    rows = [
        ("status", str(info.status)),
        ("uptime", format_uptime(info, now)),
        ("image", info.image),
        ("vCPUs", str(config.cpus)),
        ("memory", memory),
        ("env", env),
        ("workdir", config.workdir or "-"),
        *network_rows(config.network, info.network),
        ("detached", "yes" if info.detached else "no (stops with the process that made it)"),
        ("accelerator", info.accelerator or "-"),
        ("boot", "-" if info.boot_ms is None else f"{info.boot_ms} ms"),
        ("created", format_timestamp(info.created_at, now)),
        ("started", format_timestamp(info.started_at, now)),
        ("stopped", format_timestamp(info.stopped_at, now)),
        ("exit reason", info.exit_reason or "-"),
    ]
    return rows


def overview_table(rows: list[tuple[str, str]]) -> Table:
    """Pairs as a two-column grid."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for label, value in rows:
        grid.add_row(label, Text(value))
    return grid


class SandboxDetailScreen(SandboxActionsScreen):
    HELP_TITLE = "Sandbox detail"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="back"),
        Binding("left_square_bracket", "previous_tab", "Prev tab", id="previous_tab"),
        Binding("right_square_bracket", "next_tab", "Next tab", id="next_tab"),
        Binding("l", "logs", "Logs", id="logs"),
        Binding("e", "switch_source", "Console/Exec", id="log_source"),
        Binding("f", "files", "Files", id="files"),
        Binding("n", "network", "Network", id="network"),
        Binding("dollar_sign", "secrets", "Secrets", id="secrets"),
        Binding("d", "download", "Download", id="download"),
        Binding("u", "upload", "Upload", id="upload"),
        Binding("ctrl+s", "apply_policy", "Apply policy", id="apply_policy"),
        *LIFECYCLE_BINDINGS,
    ]

    def __init__(self, name: str) -> None:
        super().__init__()
        self.sandbox = name
        #: The Overview tab's (label, value) pairs, as shown.
        self.overview: list[tuple[str, str]] = []
        self._last_process_error: str | None = None
        #: The stored policy last seen in a listing (the editor follows its changes).
        self._stored_policy: PolicyChoice | None = None

    @property
    def tabs(self) -> TabbedContent:
        return self.query_one("#tabs", TabbedContent)

    @property
    def active_tab(self) -> str:
        return self.tabs.active

    @property
    def log_view(self) -> LogView:
        return self.query_one("#detail-log", LogView)

    @property
    def process_table(self) -> KeyedTable:
        return self.query_one("#processes-table", KeyedTable)

    @property
    def file_browser(self) -> FileBrowser:
        return self.query_one("#file-browser", FileBrowser)

    @property
    def rules_editor(self) -> RulesEditor:
        return self.query_one("#network-rules", RulesEditor)

    @property
    def flow_log(self) -> FlowLogView:
        return self.query_one("#flow-log", FlowLogView)

    @property
    def secrets_panel(self) -> SecretsPanel:
        return self.query_one("#secrets-panel", SecretsPanel)

    @property
    def secret_violations(self) -> SecretViolationsView:
        return self.query_one("#secret-violations", SecretViolationsView)

    def chart(self, chart_id: str) -> MetricChart:
        return self.query_one(f"#{chart_id}", MetricChart)

    def compose(self) -> ComposeResult:
        yield ViewBar("sandboxes", self.sandbox, id="view-bar")
        with TabbedContent(initial="overview", id="tabs"):
            with TabPane("Overview", id="overview"), VerticalScroll():
                yield Static(id="overview-body")
            with TabPane("Metrics", id="metrics"), Grid(id="charts"):
                yield MetricChart("CPU", format_percent, floor_maximum=100, id="chart-cpu")
                yield MetricChart("Memory", format_size, floor_maximum=MiB, id="chart-memory")
                for chart_id, title, _ in CHARTS[2:]:
                    yield MetricChart(title, format_rate, floor_maximum=1024, id=chart_id)
            with TabPane("Logs", id="logs"):
                yield LogView(self.sandbox, id="detail-log")
            with TabPane("Processes", id="processes"):
                yield KeyedTable(PROCESS_COLUMNS, id="processes-table")
            with TabPane("Files", id="files"):
                yield FileBrowser(self.sandbox, id="file-browser")
            with TabPane("Network", id="network"):
                yield from self._compose_network()
            with TabPane("Secrets", id="secrets"), Vertical(id="secrets-tab"):
                yield SecretsPanel(
                    self.sandbox, editable=not self.msb_app.readonly, id="secrets-panel"
                )
                yield SecretViolationsView(self.sandbox, id="secret-violations")
        yield Footer()

    def _compose_network(self) -> ComposeResult:
        editable = not self.msb_app.readonly
        info = self.target_info(self.sandbox)
        policy = info.config.network.policy if info else "public_only"
        self._stored_policy = policy
        with Horizontal(id="network-tab"):
            with Vertical(id="network-policy"):
                yield RulesEditor(policy, editable=editable, id="network-rules")
                yield Static("", id="network-ports", markup=False)
                with Horizontal(id="network-apply-row") as row:
                    row.display = editable
                    yield Static("", id="network-status", markup=False)
                    yield Button("Apply…", id="apply-policy", variant="primary", compact=True)
            yield FlowLogView(self.sandbox, editable=editable, id="flow-log")

    def on_mount(self) -> None:
        app = self.msb_app
        app.snapshot_signal.subscribe(self, self._show)
        if app.snapshot is not None:
            self._show(app.snapshot)
        self.process_table.border_title = "Processes"
        self._describe_policy_state()
        self.set_interval(PROCESSES_INTERVAL_S, self._poll_processes)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "switch_source" and self.is_mounted and self.active_tab != "logs":
            return False
        if action in FILES_ACTIONS and self.is_mounted and self.active_tab != "files":
            return False
        if action in NETWORK_ACTIONS and self.is_mounted and self.active_tab != "network":
            return False
        return super().check_action(action, parameters)

    # -- data ------------------------------------------------------------------------------

    def _show(self, snapshot: SandboxesSnapshot) -> None:
        info = snapshot.info(self.sandbox)
        rows = overview_rows(info, self.sandbox, snapshot)
        if rows != self.overview:
            self.overview = rows
            self.query_one("#overview-body", Static).update(overview_table(rows))
        status = "deleted" if info is None else str(info.status)
        self.query_one(ViewBar).set_crumb(f"{self.sandbox} ({status})")
        if info is not None:
            self._show_network(info)
            self.secrets_panel.show(info)
        if self.is_current and self.active_tab == "metrics":
            self.draw_charts()

    def draw_charts(self) -> None:
        """Redraws the metrics charts from the shared history (only called when visible)."""
        history = self.msb_app.history
        points = history.points(self.sandbox)
        info = self.target_info(self.sandbox)
        cpus = info.config.cpus if info else 1
        self.chart("chart-cpu").plot([p.cpu_percent for p in points], maximum=100.0 * cpus)
        limit = points[-1].memory_limit_bytes if points else None
        self.chart("chart-memory").plot([float(p.memory_bytes) for p in points], maximum=limit)
        for chart_id, _, attribute in CHARTS[2:]:
            self.chart(chart_id).plot([getattr(p, attribute) for p in points])

    def _empty_unless_running(self, table: KeyedTable) -> bool:
        """Empties ``table`` and says why when the sandbox is not running (the guest has
        nothing to show); returns whether it did."""
        info = self.target_info(self.sandbox)
        if info is None or info.status is SandboxStatus.RUNNING:
            return False
        table.apply_rows({})
        table.border_subtitle = f"{self.sandbox} is {info.status}"
        return True

    def _poll_processes(self) -> None:
        if self.is_current and self.active_tab == "processes":
            self._load_processes()

    @work(exclusive=True, group="processes", exit_on_error=False)
    async def _load_processes(self) -> None:
        app = self.msb_app
        table = self.process_table
        if self._empty_unless_running(table):
            table.loading = False
            return
        try:
            processes = await app.source.processes(self.sandbox)
        except Exception as error:
            table.loading = False
            if str(error) != self._last_process_error:
                self._last_process_error = str(error)
                app.report_error(error, context=f"listing the processes of {self.sandbox}")
            return
        self._last_process_error = None
        keys = [column.key for column in PROCESS_COLUMNS]
        rows = {}
        kernel_threads = 0
        for cells in processes.rows:
            values = dict(zip(keys, cells, strict=False))
            command = values.get("args", "")
            if command.startswith("[") and command.endswith("]"):
                kernel_threads += 1
                continue
            rows[values.get("pid", command)] = {key: values.get(key, "") for key in keys}
        table.apply_rows(rows)
        table.loading = False
        table.border_title = f"Processes [{len(rows)}]"
        table.border_subtitle = f"{kernel_threads} kernel threads not shown"

    # -- tabs ------------------------------------------------------------------------------

    def show_tab(self, tab: str) -> None:
        """Makes ``tab`` the active one (what it shows starts when it is activated)."""
        self.tabs.active = tab

    @on(TabbedContent.TabActivated, "#tabs")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        tab = self.active_tab
        if tab == "metrics":
            self.draw_charts()
        elif tab == "logs" and self.log_view.source is None:
            self.log_view.follow(LogSource.CONSOLE)
        elif tab == "processes":
            if not self.process_table.row_count:
                self.process_table.loading = True
            self._load_processes()
        elif tab == "files":
            self._show_files()
        elif tab == "network":
            if not self.flow_log.following:
                self.flow_log.follow()
            self.rules_editor.table.focus()
        elif tab == "secrets":
            if not self.secret_violations.following:
                self.secret_violations.follow()
            self.secrets_panel.table.focus()
        self.refresh_bindings()

    def _step_tab(self, step: int) -> None:
        index = TABS.index(self.active_tab)
        self.show_tab(TABS[(index + step) % len(TABS)])

    def action_next_tab(self) -> None:
        self._step_tab(1)

    def action_previous_tab(self) -> None:
        self._step_tab(-1)

    def action_logs(self) -> None:
        self.show_tab("logs")

    def action_files(self) -> None:
        self.show_tab("files")

    def action_network(self) -> None:
        self.show_tab("network")

    def action_secrets(self) -> None:
        self.show_tab("secrets")

    def _show_files(self) -> None:
        """Lists the current guest directory, or says why there is nothing to list."""
        browser = self.file_browser
        if self._empty_unless_running(browser.table):
            return
        browser.table.border_subtitle = "enter open · backspace up · d download · u upload"
        browser.load()
        browser.table.focus()

    def action_download(self) -> None:
        entry = self.file_browser.selected
        if entry is None:
            self.notify("select a file or directory to download", severity="warning")
            return
        default = os.path.join(os.getcwd(), posixpath.basename(entry.path))

        def chosen(host_path: str | None) -> None:
            if host_path:
                self._download(entry.path, host_path)

        self.app.push_screen(
            HostPathDialog(
                f"Download {entry.path}", default, confirm_label="Download", must_exist=False
            ),
            callback=chosen,
        )

    @work(group="files-transfer", exit_on_error=False)
    async def _download(self, guest_path: str, host_path: str) -> None:
        try:
            await download(self.sandbox, guest_path, host_path)
        except Exception as error:
            self.msb_app.report_error(error, context=f"downloading {guest_path}")
        else:
            self.notify(f"downloaded {guest_path} to {host_path}", markup=False)

    def action_upload(self) -> None:
        directory = self.file_browser.path

        def chosen(host_path: str | None) -> None:
            if host_path:
                self._upload(host_path, directory)

        self.app.push_screen(
            HostPathDialog(
                f"Upload into {directory}",
                os.getcwd() + os.sep,
                confirm_label="Upload",
                must_exist=True,
            ),
            callback=chosen,
        )

    @work(group="files-transfer", exit_on_error=False)
    async def _upload(self, host_path: str, directory: str) -> None:
        try:
            guest_path = await upload(self.sandbox, host_path, directory)
        except Exception as error:
            self.msb_app.report_error(error, context=f"uploading {host_path}")
            return
        self.notify(f"uploaded {host_path} to {guest_path}", markup=False)
        if self.file_browser.path == directory:
            self.file_browser.load()

    # -- network ---------------------------------------------------------------------------

    def _show_network(self, info: SandboxInfo) -> None:
        """The published ports, and the stored policy in the editor when it changed (unless
        the editor holds changes not applied yet)."""
        network = info.config.network
        ports = ", ".join(str(port) for port in network.ports) or "none"
        self.query_one("#network-ports", Static).update(f"Published ports: {ports}")
        if network.policy != self._stored_policy:
            self._stored_policy = network.policy
            if not self.rules_editor.dirty:
                self.rules_editor.load(network.policy)
                self._describe_policy_state()

    @on(RulesEditor.Changed, "#network-rules")
    def _policy_edited(self, event: RulesEditor.Changed) -> None:
        self._describe_policy_state()

    def _describe_policy_state(self) -> None:
        status = "changes not applied yet" if self.rules_editor.dirty else "the sandbox's policy"
        self.query_one("#network-status", Static).update(status)

    @on(Button.Pressed, "#apply-policy")
    def _apply_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_apply_policy()

    def action_apply_policy(self) -> None:
        """Asks, then sets the editor's policy as the sandbox's."""
        policy = self.rules_editor.policy
        info = self.target_info(self.sandbox)
        running = info is not None and info.status is SandboxStatus.RUNNING
        consequence = (
            "New flows follow it at once; open flows it denies are closed. "
            if running
            else "The sandbox is not running: it is used from its next start. "
        ) + "It is kept in the sandbox's configuration."

        def confirmed(ok: bool | None) -> None:
            if ok:
                self._apply(policy)

        self.app.push_screen(
            ConfirmDialog(
                f"Apply this network policy to {self.sandbox}?", consequence, confirm_label="Apply"
            ),
            callback=confirmed,
        )

    @work(exclusive=True, group="network-policy", exit_on_error=False)
    async def _apply(self, policy: PolicyChoice) -> None:
        app = self.msb_app
        try:
            await app.source.set_network_policy(self.sandbox, policy)
        except Exception as error:
            app.report_error(error, context=f"applying the network policy of {self.sandbox}")
            return
        if self.rules_editor.policy == policy:
            self.rules_editor.mark_applied()
        self.notify(f"network policy of {self.sandbox} applied", markup=False)
        app.refresh_sandboxes()

    @on(FlowLogView.AllowRequested, "#flow-log")
    def _allow_requested(self, event: FlowLogView.AllowRequested) -> None:
        """The rule form on a rule allowing the entry's destination; saved, it goes first."""
        try:
            rule = allow_rule_for(event.entry)
        except InvalidConfigError as error:
            self.msb_app.report_error(error, context="allowing this destination")
            return

        def saved(edited: Rule | None) -> None:
            if edited is not None:
                self.rules_editor.insert_rule(edited, 0)
                self.rules_editor.table.focus()
                self.notify("rule 0 added: apply the policy to use it", markup=False)

        self.msb_app.open_rule_form(rule, "Allow this destination", saved)

    def action_switch_source(self) -> None:
        self.log_view.switch_source()

    def action_back(self) -> None:
        self.dismiss(None)

    # -- lifecycle -------------------------------------------------------------------------

    def target_sandbox(self) -> str | None:
        return self.sandbox

    def deleted(self, name: str) -> None:
        self.dismiss(None)
