"""Modal dialogs of the dashboard."""

from .confirm import ConfirmDialog
from .create_sandbox import CreateSandboxDialog, build_request, parse_env
from .create_volume import CreateVolumeDialog
from .form import FormError
from .host_path import HostPathDialog
from .pull_image import PullImageDialog
from .rule_form import RuleFormDialog
from .secret_form import SecretFormDialog

__all__ = [
    "ConfirmDialog",
    "CreateSandboxDialog",
    "CreateVolumeDialog",
    "FormError",
    "HostPathDialog",
    "PullImageDialog",
    "RuleFormDialog",
    "SecretFormDialog",
    "build_request",
    "parse_env",
]
