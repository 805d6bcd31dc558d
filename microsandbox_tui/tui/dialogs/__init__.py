"""Modal dialogs of the dashboard."""

from .confirm import ConfirmDialog
from .create_sandbox import CreateSandboxDialog, build_request

__all__ = ["ConfirmDialog", "CreateSandboxDialog", "build_request"]
