"""Modal dialogs of the dashboard."""

from .confirm import ConfirmDialog
from .create_sandbox import CreateSandboxDialog, FormError, build_request, parse_env

__all__ = ["ConfirmDialog", "CreateSandboxDialog", "FormError", "build_request", "parse_env"]
