//! Replacing a sandbox's secrets: the whole new set handed to its running gateway through the
//! supervisor (with the values given), then the set's configs (never a value) and their
//! placeholders in the exec environment written into its stored config for the next start.

use crate::client::Connection;
use crate::error::{Result, RuntimeError};
use crate::records::get_with;
use msb_state::SandboxStatus;
use msb_supervisor::database;
use msb_supervisor::secrets::{self, SecretUpdate};
use msb_supervisor::spec::SandboxSpec;
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// Sets `update_json` (`[{"config": <SecretConfig>, "value": "..." | null}]`) as the secrets
/// of `name`. A running or paused sandbox gets the set first, and a refusal leaves the stored
/// config as it was; a stopped sandbox's config alone changes (its values must come again
/// at its next start).
pub fn set_secrets(name: &str, update_json: &str) -> Result<()> {
    let update = secrets::parse_update(update_json)?;
    let mut db = database::open()?;
    let record = get_with(&mut db, name)?;
    let (secrets_json, env_json) = stored_form(&record.config, update_json)?;
    if matches!(
        record.status,
        SandboxStatus::Running | SandboxStatus::Paused
    ) {
        check_running_values(&record.config, &update)?;
        match Connection::open(name) {
            Ok(connection) => connection.set_secrets(update_json)?,
            // It stopped since its record was read: its stored config is all there is.
            Err(RuntimeError::SandboxNotRunning { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    db.set_secrets(name, &secrets_json, &env_json)?;
    Ok(())
}

/// A secret without a value keeps its running one, which only a secret the sandbox was
/// started with (or given since) has: its stored config lists exactly those.
fn check_running_values(config_json: &str, update: &[SecretUpdate]) -> Result<()> {
    let spec = SandboxSpec::from_json(config_json)?;
    let running: BTreeSet<&str> = spec
        .secrets
        .iter()
        .map(|secret| secret.env_var.as_str())
        .collect();
    match update
        .iter()
        .find(|entry| entry.value.is_none() && !running.contains(entry.spec.env_var.as_str()))
    {
        Some(entry) => Err(RuntimeError::SecretValueMissing(entry.spec.env_var.clone())),
        None => Ok(()),
    }
}

/// The stored config's new `secrets` (the configs as the SDK wrote them, `source` included)
/// and `env`: the placeholders of the new set in, the variables of secrets no longer there
/// out. Checked as the next start reads it.
fn stored_form(config_json: &str, update_json: &str) -> Result<(String, String)> {
    let corrupt = |error: serde_json::Error| {
        RuntimeError::State(msb_state::StateError::Corrupt(format!(
            "a sandbox config: {error}"
        )))
    };
    let mut config: Value = serde_json::from_str(config_json).map_err(corrupt)?;
    let entries: Vec<Value> = serde_json::from_str(update_json)
        .map_err(|_| RuntimeError::InvalidConfig("secrets: not a list of secrets".into()))?;
    let configs: Vec<Value> = entries
        .into_iter()
        .map(|mut entry| entry["config"].take())
        .collect();
    let mut env = match config["env"].take() {
        Value::Object(env) => env,
        _ => Map::new(),
    };
    for old in config["secrets"].as_array().into_iter().flatten() {
        if let Some(env_var) = old["env_var"].as_str() {
            env.remove(env_var);
        }
    }
    for new in &configs {
        if let (Some(env_var), Some(placeholder)) =
            (new["env_var"].as_str(), new["placeholder"].as_str())
        {
            env.insert(env_var.to_owned(), Value::String(placeholder.to_owned()));
        }
    }
    config["secrets"] = Value::Array(configs);
    config["env"] = Value::Object(env);
    SandboxSpec::from_json(&config.to_string())?;
    Ok((config["secrets"].to_string(), config["env"].to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{"name": "a", "image": {"kind": "local", "name": "msb-base"},
        "cpus": 1, "memory_mib": 256, "env": {"HOME": "/root", "OLD": "$MSB_OLD"},
        "secrets": [{"env_var": "OLD", "allow_hosts": ["old.test"], "placeholder": "$MSB_OLD"}]}"#;

    fn update(entries: &[(&str, Option<&str>)]) -> String {
        let entries: Vec<Value> = entries
            .iter()
            .map(|(env_var, value)| {
                serde_json::json!({
                    "config": {"env_var": env_var, "allow_hosts": ["api.test"],
                               "placeholder": format!("$MSB_{env_var}"),
                               "source": {"kind": "env", "name": env_var}},
                    "value": value,
                })
            })
            .collect();
        Value::Array(entries).to_string()
    }

    #[test]
    fn the_stored_form_has_the_new_configs_and_their_placeholders_and_no_value() {
        let (secrets_json, env_json) =
            stored_form(CONFIG, &update(&[("NEW", Some("sk-value-77"))])).unwrap();
        assert!(!secrets_json.contains("sk-value-77"), "{secrets_json}");
        let secrets: Value = serde_json::from_str(&secrets_json).unwrap();
        assert_eq!(secrets[0]["env_var"], "NEW");
        assert_eq!(secrets[0]["source"]["kind"], "env");
        let env: Value = serde_json::from_str(&env_json).unwrap();
        assert_eq!(env, serde_json::json!({"HOME": "/root", "NEW": "$MSB_NEW"}));
    }

    #[test]
    fn only_a_secret_the_sandbox_runs_with_may_keep_its_value() {
        let keep_old = secrets::parse_update(&update(&[("OLD", None)])).unwrap();
        check_running_values(CONFIG, &keep_old).unwrap();
        let keep_unknown = secrets::parse_update(&update(&[("OLD", None), ("NEW", None)])).unwrap();
        assert!(matches!(
            check_running_values(CONFIG, &keep_unknown),
            Err(RuntimeError::SecretValueMissing(name)) if name == "NEW"
        ));
    }

    #[test]
    fn a_set_the_next_start_would_refuse_is_invalid() {
        let bad = r#"[{"config": {"env_var": "X", "placeholder": "$MSB_X", "on_violation": "shout"}, "value": null}]"#;
        assert!(matches!(
            stored_form(CONFIG, bad),
            Err(RuntimeError::InvalidConfig(_))
        ));
    }
}
