"""Modal dialogs of the dashboard."""

from .confirm import ConfirmDialog
from .create_sandbox import CreateSandboxDialog, FormError, build_request, parse_env
from .create_volume import CreateVolumeDialog
from .host_path import HostPathDialog
from .pull_image import PullImageDialog

__all__ = [
    "ConfirmDialog",
    "CreateSandboxDialog",
    "CreateVolumeDialog",
    "FormError",
    "HostPathDialog",
    "PullImageDialog",
    "build_request",
    "parse_env",
]
