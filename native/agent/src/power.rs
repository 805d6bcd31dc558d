//! Ending the VM.

use crate::sys;
use std::path::Path;

/// Powers the VM off; never returns.
///
/// With ACPI (QEMU microvm with `acpi=on`) the kernel powers off through the ACPI sleep
/// registers and QEMU exits with a guest shutdown, distinguishable from a crash. Without
/// ACPI, a power-off request would merely halt the CPUs and leave QEMU running; a reset is
/// used instead, which makes QEMU exit because it runs with `-no-reboot` (and the kernel with
/// `reboot=t`).
pub fn off() -> ! {
    sys::sync();
    if Path::new("/sys/firmware/acpi/tables").exists() {
        let error = sys::reboot(libc::RB_POWER_OFF);
        log!("power-off failed: {error}; resetting instead");
    }
    let error = sys::reboot(libc::RB_AUTOBOOT);
    log!("reset failed: {error}");
    // PID 1 must never exit: the kernel would panic.
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
