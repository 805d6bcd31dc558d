"""microsandbox-tui: real microVM sandboxes from Python, and a terminal dashboard for them.

The SDK follows the ``microsandbox`` Python SDK: ``from microsandbox_tui import Sandbox``.
"""

from .config import DEFAULT_IMAGE, BindImage, Image, LocalImage, SandboxConfig
from .errors import (
    AcceleratorError,
    AgentProtocolError,
    CommandNotExecutableError,
    CommandNotFoundError,
    ExecError,
    ExecTimeoutError,
    ImageNotFoundError,
    InstallError,
    InvalidConfigError,
    InvalidWorkingDirectoryError,
    MicrosandboxError,
    RuntimeNotInstalledError,
    SandboxAlreadyExistsError,
    SandboxNotFoundError,
    SandboxNotRunningError,
    SandboxStartError,
    SandboxStillRunningError,
    StateError,
    UnknownUserError,
)
from .images import ImageInfo, list_images
from .runtime import DoctorCheck, doctor, install, is_installed, version
from .sandbox import ExecOptions, Sandbox, SandboxInfo
from .types import ExecOutput, ExitStatus, GiB, KiB, MiB, SandboxStatus

__all__ = [
    "DEFAULT_IMAGE",
    "AcceleratorError",
    "AgentProtocolError",
    "BindImage",
    "CommandNotExecutableError",
    "CommandNotFoundError",
    "DoctorCheck",
    "ExecError",
    "ExecOptions",
    "ExecOutput",
    "ExecTimeoutError",
    "ExitStatus",
    "GiB",
    "Image",
    "ImageInfo",
    "ImageNotFoundError",
    "InstallError",
    "InvalidConfigError",
    "InvalidWorkingDirectoryError",
    "KiB",
    "LocalImage",
    "MiB",
    "MicrosandboxError",
    "RuntimeNotInstalledError",
    "Sandbox",
    "SandboxAlreadyExistsError",
    "SandboxConfig",
    "SandboxInfo",
    "SandboxNotFoundError",
    "SandboxNotRunningError",
    "SandboxStartError",
    "SandboxStatus",
    "SandboxStillRunningError",
    "StateError",
    "UnknownUserError",
    "doctor",
    "install",
    "is_installed",
    "list_images",
    "version",
]
