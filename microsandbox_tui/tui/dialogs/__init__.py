"""Modal dialogs of the dashboard."""

from .confirm import ConfirmDialog
from .create_sandbox import CreateSandboxDialog, FormError, build_request, parse_env
from .pull_image import PullImageDialog

__all__ = [
    "ConfirmDialog",
    "CreateSandboxDialog",
    "FormError",
    "PullImageDialog",
    "build_request",
    "parse_env",
]
