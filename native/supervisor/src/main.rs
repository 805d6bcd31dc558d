//! `msb-supervisor NAME --agent PATH [--parent-pid PID] [--ready-fd FD] [--secrets-fd FD]`:
//! the supervisor of one sandbox, started by the runtime. It logs to stderr (the sandbox's
//! `supervisor.log`) at the level of `MSB_LOG`, `info` when unset.
//!
//! `msb-supervisor --build-template`: builds the template of the shape on standard input
//! (started by a supervisor, see `msb_supervisor::templates`).

use msb_supervisor::logging::{self, Destination, LogLevel};
use msb_supervisor::supervise::{self, Options};
use msb_supervisor::templates;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str =
    "usage: msb-supervisor NAME --agent PATH [--parent-pid PID] [--ready-fd FD] [--secrets-fd FD]";

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some(templates::BUILD_FLAG) {
        return build_template();
    }
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("msb-supervisor: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let level = LogLevel::from_env();
    logging::configure(
        Some(
            level
                .as_ref()
                .ok()
                .copied()
                .flatten()
                .unwrap_or(LogLevel::Info),
        ),
        Destination::Stderr,
    );
    if let Err(error) = level {
        log::warn!("{}: {error}; logging at info", logging::LOG_ENV);
    }
    log::info!("supervising {} (pid {})", options.name, std::process::id());
    match supervise::run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::error!("{error}");
            ExitCode::FAILURE
        }
    }
}

fn build_template() -> ExitCode {
    logging::configure(Some(LogLevel::Info), Destination::Stderr);
    match templates::run_builder() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::warn!("building the template failed: {error}");
            ExitCode::FAILURE
        }
    }
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut name = None;
    let mut agent = None;
    let mut parent_pid = None;
    let mut ready_fd = None;
    let mut secrets_fd = None;
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--agent" => agent = Some(PathBuf::from(value("--agent")?)),
            "--parent-pid" => parent_pid = Some(number(&value("--parent-pid")?)?),
            "--ready-fd" => ready_fd = Some(number(&value("--ready-fd")?)?),
            "--secrets-fd" => secrets_fd = Some(number(&value("--secrets-fd")?)?),
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            _ if name.is_none() => name = Some(arg),
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    Ok(Options {
        name: name.ok_or("the sandbox NAME is missing")?,
        agent: agent.ok_or("--agent is missing")?,
        parent_pid,
        ready_fd,
        secrets_fd,
    })
}

fn number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> impl Iterator<Item = String> + '_ {
        line.split_whitespace().map(String::from)
    }

    #[test]
    fn parses_the_command_line_the_runtime_passes() {
        let options = parse(args(
            "web --agent /a/msb-agent --ready-fd 3 --secrets-fd 4 --parent-pid 42",
        ))
        .unwrap();
        assert_eq!(
            options,
            Options {
                name: "web".into(),
                agent: "/a/msb-agent".into(),
                parent_pid: Some(42),
                ready_fd: Some(3),
                secrets_fd: Some(4),
            }
        );
        let detached = parse(args("web --agent /a")).unwrap();
        assert_eq!(
            (detached.parent_pid, detached.ready_fd, detached.secrets_fd),
            (None, None, None)
        );
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        for line in [
            "",
            "web",
            "--agent /a",
            "web --agent",
            "web --agent /a --ready-fd x",
            "web --agent /a --secrets-fd",
            "web --agent /a --verbose",
            "web other --agent /a",
        ] {
            assert!(parse(args(line)).is_err(), "{line:?} must be refused");
        }
    }
}
