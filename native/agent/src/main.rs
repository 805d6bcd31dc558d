//! The guest agent: `/init` (PID 1) of every sandbox VM.
//!
//! It prepares the guest (modules, root file system, clock) and then serves the host over
//! the `agent` virtio-serial port: command execution, ping, shutdown.

mod boot;
mod channel;
mod cmdline;
mod exec;
mod reaper;
mod sys;
mod users;

use std::sync::Arc;

fn main() {
    if let Err(error) = boot::prepare_guest() {
        // Nothing can work without a root file system: say why on the console and stop.
        eprintln!("msb-agent: boot failed: {error}");
        sys::power_off();
    }
    let reaper = Arc::new(reaper::Reaper::start());
    channel::serve(reaper);
}
