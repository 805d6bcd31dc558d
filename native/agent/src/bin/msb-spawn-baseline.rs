//! The in-guest floor of `exec`, for `bench/exec_roundtrip.py`: starts a program RUNS times,
//! waiting for each to end, and prints how long each took from start to reap, in
//! microseconds, one line each.
//!
//!     msb-spawn-baseline RUNS PROGRAM
//!
//! It starts processes as the agent does (`clone(CLONE_VM | CLONE_VFORK)`, which is how
//! glibc's `posix_spawn`, and so `std::process::Command`, starts them), so the benchmark's
//! baseline is the same work without the agent: this plus the agent-channel ping.

use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(runs), Some(program)) =
        (args.get(1).and_then(|r| r.parse::<u32>().ok()), args.get(2))
    else {
        eprintln!("usage: msb-spawn-baseline RUNS PROGRAM");
        return ExitCode::from(2);
    };
    for _ in 0..runs {
        let started = Instant::now();
        match Command::new(program).stdin(Stdio::null()).status() {
            Ok(status) if status.success() => println!("{}", started.elapsed().as_micros()),
            Ok(status) => {
                eprintln!("{program} failed: {status}");
                return ExitCode::FAILURE;
            }
            Err(error) => {
                eprintln!("cannot start {program}: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
