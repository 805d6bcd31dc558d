//! Log records through the `log` facade, written by `env_logger` to stderr or to a file.
//!
//! The level names (`trace`, `debug`, `info`, `warn`, `error`) are those of `MSB_LOG`, of a
//! sandbox config's `log_level` and of the Python module's `configure_logging`. The logger
//! can be configured again at any time: a long-running Python process may turn logging on,
//! off or to another file while it runs.

use crate::error::{Result, SupervisorError};
use log::{LevelFilter, Log, Metadata, Record};
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use std::sync::{Once, RwLock};

/// The environment variable holding the log level (unset or empty: the program's default).
pub const LOG_ENV: &str = "MSB_LOG";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub const ALL: [Self; 5] = [
        Self::Trace,
        Self::Debug,
        Self::Info,
        Self::Warn,
        Self::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }

    fn filter(self) -> LevelFilter {
        match self {
            Self::Trace => LevelFilter::Trace,
            Self::Debug => LevelFilter::Debug,
            Self::Info => LevelFilter::Info,
            Self::Warn => LevelFilter::Warn,
            Self::Error => LevelFilter::Error,
        }
    }

    /// The level of the configured logger; `None` while logging is off.
    pub fn current() -> Option<Self> {
        let current = log::max_level();
        Self::ALL
            .into_iter()
            .find(|level| level.filter() == current)
    }

    /// The level `MSB_LOG` names; `None` when it is unset or empty.
    pub fn from_env() -> Result<Option<Self>> {
        match std::env::var(LOG_ENV) {
            Ok(text) if !text.is_empty() => text.parse().map(Some),
            Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(text)) => Err(unknown_level(&text)),
        }
    }
}

impl FromStr for LogLevel {
    type Err = SupervisorError;

    fn from_str(text: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|level| level.as_str() == text)
            .ok_or_else(|| unknown_level(text))
    }
}

fn unknown_level(text: &(impl std::fmt::Debug + ?Sized)) -> SupervisorError {
    let names: Vec<&str> = LogLevel::ALL.iter().map(|level| level.as_str()).collect();
    SupervisorError::InvalidConfig(format!(
        "unknown log level {text:?}: expected one of {}",
        names.join(", ")
    ))
}

/// Where records go.
pub enum Destination {
    Stderr,
    /// Appended to this (open) file.
    File(std::fs::File),
}

/// Sends records of `level` and above to `destination`; `None` turns logging off.
pub fn configure(level: Option<LogLevel>, destination: Destination) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Fails only if another logger was installed first; then that one keeps logging.
        let _ = log::set_logger(&LOGGER);
    });
    let filter = level.map_or(LevelFilter::Off, LogLevel::filter);
    let target = match destination {
        Destination::Stderr => env_logger::Target::Stderr,
        Destination::File(file) => env_logger::Target::Pipe(Box::new(file)),
    };
    let logger = env_logger::Builder::new()
        .filter_level(filter)
        .target(target)
        .format_timestamp_millis()
        .build();
    *LOGGER
        .0
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(logger);
    log::set_max_level(filter);
}

/// The installed logger: `env_logger` formats and writes; this lets it be replaced.
struct Reconfigurable(RwLock<Option<env_logger::Logger>>);

static LOGGER: Reconfigurable = Reconfigurable(RwLock::new(None));

impl Reconfigurable {
    fn with(&self, use_logger: impl FnOnce(&env_logger::Logger)) {
        let guard = self
            .0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(logger) = guard.as_ref() {
            use_logger(logger);
        }
    }
}

impl Log for Reconfigurable {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        let mut enabled = false;
        self.with(|logger| enabled = logger.enabled(metadata));
        enabled
    }

    fn log(&self, record: &Record<'_>) {
        self.with(|logger| {
            if logger.matches(record) {
                logger.log(record);
            }
        });
    }

    fn flush(&self) {
        self.with(Log::flush);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_names_parse_and_unknown_ones_are_invalid_config() {
        for level in LogLevel::ALL {
            assert_eq!(level.as_str().parse::<LogLevel>().unwrap(), level);
            let json = serde_json::to_string(&level).unwrap();
            assert_eq!(json, format!("\"{}\"", level.as_str()));
        }
        assert!(matches!(
            "verbose".parse::<LogLevel>(),
            Err(SupervisorError::InvalidConfig(message)) if message.contains("trace, debug")
        ));
    }

    #[test]
    fn records_go_to_the_configured_file_at_the_configured_level() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let file = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap()
        };
        configure(Some(LogLevel::Info), Destination::File(file()));
        assert_eq!(LogLevel::current(), Some(LogLevel::Info));
        log::info!("kept");
        log::debug!("below the level");
        configure(None, Destination::File(file()));
        assert_eq!(LogLevel::current(), None);
        log::error!("logging is off");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("INFO") && text.contains("kept"), "{text}");
        assert!(
            !text.contains("below the level") && !text.contains("off"),
            "{text}"
        );
    }
}
