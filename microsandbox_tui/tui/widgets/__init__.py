"""Widgets of the dashboard."""

from .file_browser import FileBrowser
from .flow_log import FlowLogView
from .keyed_table import Column, KeyedTable
from .log_view import LogView
from .metric_chart import MetricChart
from .rules_editor import RulesEditor
from .sandbox_table import SandboxTable
from .secret_violations import SecretViolationsView
from .secrets_panel import SecretsPanel
from .status_bar import StatusBar
from .view_bar import ViewBar

__all__ = [
    "Column",
    "FileBrowser",
    "FlowLogView",
    "KeyedTable",
    "LogView",
    "MetricChart",
    "RulesEditor",
    "SandboxTable",
    "SecretViolationsView",
    "SecretsPanel",
    "StatusBar",
    "ViewBar",
]
