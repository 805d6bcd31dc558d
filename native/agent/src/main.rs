//! The guest agent: `/init` (PID 1) of every sandbox VM.
//!
//! It turns the initramfs into the sandbox's system (kernel modules, root file system, the
//! usual mounts; see [`boot`], finished from the host's first hello) and serves the host over the `agent` virtio-serial port
//! (see [`server`]): hello, clock and network (see [`network`]), ping, command execution,
//! file system requests and volume mounts (see [`fs`]), shutdown.

/// A line on the console (`/dev/console`, the VM's serial log). Never panics, unlike
/// `eprintln!`, whose failure would take PID 1, and with it the kernel, down.
macro_rules! log {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "msb-agent: {}", format_args!($($arg)*));
    }};
}

mod boot;
mod channel;
mod exec;
mod fs;
mod modules;
mod network;
mod port;
mod power;
mod reaper;
mod rootfs;
mod server;
mod sessions;
mod shutdown;
mod sys;
mod users;
mod wire;
mod workers;

fn main() {
    if std::process::id() != 1 {
        // It mounts, switches roots and powers off: never let it loose on a host by accident.
        log!("this is the init of a sandbox VM and only runs as PID 1");
        std::process::exit(2);
    }
    if let Err(error) = boot::early() {
        // Nothing can work without /proc, /sys and /dev: say why on the console and stop.
        log!("boot failed: {error}");
        power::off()
    }
    server::serve()
}
