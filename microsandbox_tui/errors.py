"""Typed errors of the SDK.

The native runtime raises these by class name, so this module is the one place where error
types are defined. Every error derives from :class:`MicrosandboxError`.
"""

from __future__ import annotations


class MicrosandboxError(Exception):
    """Base class of every error raised by microsandbox-tui."""


class InvalidConfigError(MicrosandboxError, ValueError):
    """A sandbox, exec or image configuration value is invalid."""


class SandboxNotFoundError(MicrosandboxError, LookupError):
    """No sandbox with that name exists."""


class SandboxAlreadyExistsError(MicrosandboxError):
    """A sandbox with that name already exists (pass ``replace=True`` to replace it)."""


class SandboxNotRunningError(MicrosandboxError):
    """The operation needs a running sandbox, and this one is not running."""


class SandboxStillRunningError(MicrosandboxError):
    """The operation needs a stopped sandbox, and this one is running."""


class SandboxStartError(MicrosandboxError):
    """The microVM could not be started or its guest agent did not come up."""


class SecretValueMissingError(MicrosandboxError):
    """A secret of the sandbox has no value: it was not given again (``secrets=[...]``) and
    it has no source to read it from, or its source has nothing. The message names its
    environment variable; nothing was started."""


class SecretNotFoundError(MicrosandboxError, LookupError):
    """The sandbox has no secret behind that environment variable."""


class PortInUseError(MicrosandboxError):
    """A host port of the sandbox is already bound by another process; the sandbox was not
    created. The message names the port."""


class NetworkChangeError(MicrosandboxError):
    """The running sandbox's network cannot take a new policy: it is not the gateway's
    (``MSB_NET_BASELINE`` runs slirp or passt instead), or the gateway did not swap the
    policy in. The stored policy is left as it was."""


class ImageNotFoundError(MicrosandboxError, LookupError):
    """The image is neither a local image nor an existing host directory."""


class RuntimeNotInstalledError(MicrosandboxError):
    """The guest kernel, guest agent or QEMU is missing; run ``msb install`` or ``install()``."""


class InstallError(MicrosandboxError):
    """Installing the runtime's kernel, agent or default image failed."""


class AcceleratorError(MicrosandboxError):
    """The requested accelerator (``MSB_ACCEL``) cannot be used on this machine."""


class ExecError(MicrosandboxError):
    """A command could not be run in the guest."""


class CommandNotFoundError(ExecError):
    """The program does not exist in the guest."""


class CommandNotExecutableError(ExecError):
    """The program exists in the guest but cannot be executed."""


class InvalidWorkingDirectoryError(ExecError):
    """The working directory does not exist in the guest or is not a directory."""


class UnknownUserError(ExecError):
    """The user to run as does not exist in the guest."""


class ExecTimeoutError(ExecError):
    """The command ran past its timeout and was killed."""


class AgentProtocolError(MicrosandboxError):
    """The guest agent or the supervisor broke the wire protocol or closed the channel."""


class StateError(MicrosandboxError):
    """The runtime's state database could not be read or written."""


class ImagePullFailedError(MicrosandboxError):
    """Pulling an image failed: the registry refused or lacked it, a download broke, or a
    blob's content did not match its digest (the message names the digest). Nothing partial
    is left in the image cache."""


class RegistryAuthError(ImagePullFailedError):
    """The registry refused the credentials (or wanted some and none were given)."""


class PullCancelledError(ImagePullFailedError):
    """The pull was cancelled; nothing it had started is left in the image cache."""


class ImageInUseError(MicrosandboxError):
    """The image cannot be removed while a sandbox uses it (the message names them)."""


class VolumeNotFoundError(MicrosandboxError, LookupError):
    """No named volume with that name exists."""


class VolumeAlreadyExistsError(MicrosandboxError):
    """A named volume with that name already exists."""


class VolumeInUseError(MicrosandboxError):
    """The volume cannot be removed while a sandbox (in any state) mounts it; the message
    names them."""


class VolumeBusyError(MicrosandboxError):
    """Starting the sandbox would break a named volume's sharing rule: read-write by one
    running sandbox at a time, or read-only by any number while none has it read-write. The
    message names the running sandbox that holds it."""


class FilesystemError(MicrosandboxError, OSError):
    """A file operation failed in the guest (`errno` is the guest's errno when it had one),
    or a copy refused what the guest handed it (a name leading outside the destination)."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class PathNotFoundError(FilesystemError, FileNotFoundError):
    """The guest path does not exist."""


class PatchFailedError(MicrosandboxError):
    """A rootfs patch could not be applied while creating a sandbox; the sandbox was removed.
    The message names the patch (index, kind, path); the cause is chained."""
