"""What the benchmarks need beyond the SDK; only in development builds (the ``bench`` feature
of the native module)."""

__all__ = ["boot_command"]

def boot_command(work_dir: str) -> list[str]:
    """QEMU argv booting the default image with its per-VM files in ``work_dir``: the kernel,
    initramfs and devices a sandbox gets, without the supervisor."""
