//! The sandbox's secrets on the supervisor's side: their values, which reach it only over the
//! pipe the runtime hands it (`--secrets-fd`, one JSON object `{"ENV_VAR": "value", ...}` read
//! to its end before anything else), the set the gateway gets, and a client's new set
//! (`SetSecrets`).
//!
//! Values are never logged, never written to a file and never part of an error message: a
//! JSON text that does not parse is reported by its position only, since serde's messages
//! quote what they found.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, RawFd};
use std::sync::{Arc, Mutex};

use msb_net::gateway::{SecretsHandle, TerminateReason};
use msb_net::secrets::{Secret, SecretSpec, SecretValue, Secrets, ViolationAction};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::error::{Result, SupervisorError};
use crate::lifecycle::Lifecycle;

/// Values by environment variable, as the runtime sends them.
pub type SecretValues = BTreeMap<String, SecretValue>;

/// Reads the values from descriptor `fd` (which this takes over and closes) to its end.
pub fn read_values(fd: RawFd) -> Result<SecretValues> {
    // SAFETY: the runtime passes a pipe's read end that this process owns from now on.
    let mut pipe = unsafe { File::from_raw_fd(fd) };
    let mut text = Zeroizing::new(String::new());
    pipe.read_to_string(&mut text)
        .map_err(SupervisorError::io("reading the secrets pipe"))?;
    parse_values(&text)
}

/// The values of a `{"ENV_VAR": "value"}` JSON object.
pub fn parse_values(json: &str) -> Result<SecretValues> {
    let values: BTreeMap<String, String> =
        serde_json::from_str(json).map_err(|error| unreadable("the secrets pipe", &error))?;
    Ok(values
        .into_iter()
        .map(|(env_var, value)| (env_var, SecretValue::new(value)))
        .collect())
}

/// What the runtime writes into the pipe: the values as one JSON object.
pub fn values_json(values: &SecretValues) -> Zeroizing<String> {
    let exposed: BTreeMap<&str, &str> = values
        .iter()
        .map(|(env_var, value)| (env_var.as_str(), value.expose()))
        .collect();
    Zeroizing::new(serde_json::to_string(&exposed).expect("a map of strings serializes"))
}

/// The gateway's set: every secret of the config with its value. A secret without a value
/// fails, naming it.
pub fn build(specs: &[SecretSpec], values: &SecretValues) -> Result<Secrets> {
    let secrets = specs
        .iter()
        .map(|spec| {
            let value = values
                .get(&spec.env_var)
                .ok_or_else(|| SupervisorError::SecretValueMissing(spec.env_var.clone()))?;
            Ok(Secret {
                spec: spec.clone(),
                value: value.clone(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    validated(secrets)
}

/// One secret of a client's new set; no value keeps the running one.
#[derive(Debug, Clone)]
pub struct SecretUpdate {
    pub spec: SecretSpec,
    pub value: Option<SecretValue>,
}

#[derive(Deserialize)]
struct WireUpdate {
    config: SecretSpec,
    value: Option<String>,
}

/// A new set, as the JSON `[{"config": <SecretConfig>, "value": "..." | null}, ...]`.
pub fn parse_update(json: &str) -> Result<Vec<SecretUpdate>> {
    let entries: Vec<WireUpdate> =
        serde_json::from_str(json).map_err(|error| unreadable("the secrets update", &error))?;
    Ok(entries
        .into_iter()
        .map(|entry| SecretUpdate {
            spec: entry.config,
            value: entry.value.map(SecretValue::new),
        })
        .collect())
}

/// The set `update` makes of `running`: each secret with its new value, or with the value
/// its environment variable has now.
pub fn apply(update: Vec<SecretUpdate>, running: &Secrets) -> Result<Secrets> {
    let secrets = update
        .into_iter()
        .map(|SecretUpdate { spec, value }| {
            let value = match value {
                Some(value) => value,
                None => running
                    .iter()
                    .find(|secret| secret.spec.env_var == spec.env_var)
                    .map(|secret| secret.value.clone())
                    .ok_or_else(|| SupervisorError::SecretValueMissing(spec.env_var.clone()))?,
            };
            Ok(Secret { spec, value })
        })
        .collect::<Result<Vec<_>>>()?;
    validated(secrets)
}

/// One line per secret for the supervisor's log: where it may go, never its value.
pub fn describe(secrets: &Secrets) -> Vec<String> {
    secrets
        .iter()
        .map(|secret| {
            let spec = &secret.spec;
            let hosts: Vec<&str> = spec
                .allow_hosts
                .iter()
                .chain(&spec.allow_host_patterns)
                .map(String::as_str)
                .collect();
            format!(
                "secret {} may be sent to {}; elsewhere: {}",
                spec.env_var,
                hosts.join(", "),
                violation_name(spec.on_violation)
            )
        })
        .collect()
}

/// What changes the running gateway's secrets, with the set it runs now (whose values an
/// update without a value keeps).
#[derive(Clone)]
pub struct SecretsControl {
    handle: Option<SecretsHandle>,
    running: Arc<Mutex<Secrets>>,
}

impl SecretsControl {
    /// `handle` is `None` under a benchmark baseline, which has no gateway.
    pub fn new(handle: Option<SecretsHandle>, running: Secrets) -> Self {
        Self {
            handle,
            running: Arc::new(Mutex::new(running)),
        }
    }

    /// Parses a client's new set (see [`parse_update`]) and swaps it into the gateway. The
    /// error names what was wrong, never a value.
    pub fn set(&self, update_json: &str) -> std::result::Result<(), String> {
        let Some(handle) = &self.handle else {
            return Err(
                "this sandbox's network cannot change its secrets: it runs a \
                        benchmark baseline, which has no gateway"
                    .into(),
            );
        };
        let mut running = self.running.lock().unwrap();
        let secrets = parse_update(update_json)
            .and_then(|update| apply(update, &running))
            .map_err(|error| error.to_string())?;
        handle.set_secrets(secrets.clone()).map_err(|error| {
            format!("this sandbox's network cannot change its secrets: {error}")
        })?;
        log::info!("secrets replaced ({} now)", secrets.iter().count());
        describe(&secrets)
            .iter()
            .for_each(|line| log::info!("{line}"));
        *running = secrets;
        Ok(())
    }
}

/// Stops the VM when the gateway reports a `block_and_terminate` secret sent where it may
/// not go. The gateway starts before QEMU, so a report can come before the VM's lifecycle
/// exists; it is then carried out as soon as it does.
#[derive(Default)]
pub struct Terminator(Mutex<TerminatorState>);

#[derive(Default)]
struct TerminatorState {
    lifecycle: Option<Arc<Lifecycle>>,
    pending: Option<String>,
}

impl Terminator {
    /// The callback the gateway gets as `on_terminate`.
    pub fn callback(self: &Arc<Self>) -> Box<dyn Fn(TerminateReason) + Send> {
        let terminator = self.clone();
        Box::new(move |reason| terminator.terminate(&reason))
    }

    fn terminate(&self, reason: &TerminateReason) {
        let why = format!(
            "secret {} was sent to {}, which it may not go to (block_and_terminate)",
            reason.secret, reason.host
        );
        log::warn!("{why}: stopping the VM");
        let mut state = self.0.lock().unwrap();
        match &state.lifecycle {
            Some(lifecycle) => lifecycle.kill_vm(&why),
            None => {
                state.pending.get_or_insert(why);
            }
        }
    }

    /// The VM is up: later reports kill it, and one made meanwhile does now.
    pub(crate) fn attach(&self, lifecycle: Arc<Lifecycle>) {
        let mut state = self.0.lock().unwrap();
        if let Some(why) = state.pending.take() {
            lifecycle.kill_vm(&why);
        }
        state.lifecycle = Some(lifecycle);
    }
}

fn violation_name(action: ViolationAction) -> &'static str {
    match action {
        ViolationAction::Block => "block",
        ViolationAction::BlockAndLog => "block_and_log",
        ViolationAction::BlockAndTerminate => "block_and_terminate",
    }
}

fn validated(secrets: Vec<Secret>) -> Result<Secrets> {
    Secrets::new(secrets).map_err(|error| SupervisorError::InvalidConfig(error.to_string()))
}

fn unreadable(what: &str, error: &serde_json::Error) -> SupervisorError {
    SupervisorError::InvalidConfig(format!(
        "{what} is not the expected JSON (line {}, column {})",
        error.line(),
        error.column()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::IntoRawFd;

    const VALUE: &str = "sk-test-4f1c9e7a";

    fn spec(env_var: &str) -> SecretSpec {
        serde_json::from_str(&format!(
            r#"{{"env_var": "{env_var}", "allow_hosts": ["api.example.com"],
                "placeholder": "$MSB_{env_var}", "source": {{"kind": "env", "name": "X"}}}}"#
        ))
        .unwrap()
    }

    fn values(pairs: &[(&str, &str)]) -> SecretValues {
        pairs
            .iter()
            .map(|(env_var, value)| (env_var.to_string(), SecretValue::new(value.to_string())))
            .collect()
    }

    #[test]
    fn the_values_survive_the_pipe() {
        let sent = values(&[("OPENAI_API_KEY", VALUE), ("OTHER", "two")]);
        let (read_end, write_end) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut writer = write_end;
        writer.write_all(values_json(&sent).as_bytes()).unwrap();
        drop(writer);
        assert_eq!(read_values(read_end.into_raw_fd()).unwrap(), sent);
    }

    #[test]
    fn a_secret_without_a_value_fails_the_start_naming_it() {
        let error = build(&[spec("A"), spec("B")], &values(&[("A", VALUE)])).unwrap_err();
        assert!(matches!(&error, SupervisorError::SecretValueMissing(name) if name == "B"));
        assert_eq!(
            error.to_string(),
            "secret B has no value: pass it again with secrets=[...] or give it a source"
        );
        let secrets = build(&[spec("A")], &values(&[("A", VALUE), ("UNUSED", "x")])).unwrap();
        assert_eq!(secrets.iter().count(), 1);
    }

    #[test]
    fn an_update_keeps_a_running_value_when_it_gives_none() {
        let running = build(&[spec("A")], &values(&[("A", VALUE)])).unwrap();
        let update = parse_update(
            r#"[{"config": {"env_var": "A", "allow_hosts": ["new.example.com"],
                            "placeholder": "$MSB_A"}, "value": null},
                {"config": {"env_var": "B", "allow_hosts": ["b.example.com"],
                            "placeholder": "$MSB_B"}, "value": "rotated-b"}]"#,
        )
        .unwrap();
        let secrets = apply(update, &running).unwrap();
        let by_name: BTreeMap<&str, &Secret> = secrets
            .iter()
            .map(|secret| (secret.spec.env_var.as_str(), secret))
            .collect();
        assert_eq!(by_name["A"].value.expose(), VALUE);
        assert_eq!(by_name["A"].spec.allow_hosts, ["new.example.com"]);
        assert_eq!(by_name["B"].value.expose(), "rotated-b");
        let unknown =
            parse_update(r#"[{"config": {"env_var": "C", "allow_hosts": ["c.test"], "placeholder": "$MSB_C"}, "value": null}]"#)
                .unwrap();
        assert!(matches!(
            apply(unknown, &running),
            Err(SupervisorError::SecretValueMissing(name)) if name == "C"
        ));
    }

    #[test]
    fn unreadable_json_is_reported_without_what_it_holds() {
        for json in [
            format!(r#"{{"A": "{VALUE}""#),
            format!(r#"{{"A": ["{VALUE}"]}}"#),
            format!(r#"[{{"config": "{VALUE}", "value": null}}]"#),
        ] {
            let error = parse_values(&json)
                .err()
                .or_else(|| parse_update(&json).err())
                .unwrap();
            assert!(!error.to_string().contains(VALUE), "{error}");
            assert!(parse_update(&json).is_err());
        }
    }

    #[test]
    fn the_log_lines_name_the_hosts_and_never_the_value() {
        let secrets = build(&[spec("A")], &values(&[("A", VALUE)])).unwrap();
        let lines = describe(&secrets);
        assert_eq!(
            lines,
            ["secret A may be sent to api.example.com; elsewhere: block_and_log"]
        );
        assert!(!format!("{secrets:?}").contains(VALUE));
    }
}
