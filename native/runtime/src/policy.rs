//! Replacing a sandbox's network policy: handed to its running gateway through the
//! supervisor, then written into its stored config so that the next start uses it too.

use crate::client::Connection;
use crate::error::{Result, RuntimeError};
use crate::records::get_with;
use msb_net::gateway::PolicySpec;
use msb_state::SandboxStatus;
use msb_supervisor::database;
use msb_supervisor::spec::SandboxSpec;
use serde_json::Value;

/// Sets `policy_json` (a preset's name or a policy object, as JSON) as the network policy of
/// `name`. A running or paused sandbox gets it first, and a refusal leaves the stored config
/// as it was; a stopped sandbox's config alone changes.
pub fn set_network_policy(name: &str, policy_json: &str) -> Result<()> {
    let mut db = database::open()?;
    let record = get_with(&mut db, name)?;
    check_policy(&record.config, policy_json)?;
    if matches!(
        record.status,
        SandboxStatus::Running | SandboxStatus::Paused
    ) {
        match Connection::open(name) {
            Ok(connection) => connection.set_network_policy(policy_json)?,
            // It stopped since its record was read: its stored config is all there is.
            Err(RuntimeError::SandboxNotRunning { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    db.set_network_policy(name, policy_json)?;
    Ok(())
}

/// The rules a preset stands for, as the JSON of a custom policy, so that a user can start
/// from a preset and edit it; the presets are defined once, by the gateway.
pub fn preset_policy(name: &str) -> Result<String> {
    let invalid = |why: String| RuntimeError::InvalidConfig(format!("network.policy: {why}"));
    match serde_json::from_value::<PolicySpec>(Value::String(name.to_owned())) {
        Ok(spec @ PolicySpec::Preset(_)) => {
            serde_json::to_string(&spec.policy()).map_err(|error| invalid(error.to_string()))
        }
        Ok(PolicySpec::Custom(_)) | Err(_) => Err(invalid(format!("{name:?} is not a preset"))),
    }
}

/// Refuses a policy the sandbox's next start would refuse: the stored config with the new
/// policy must read as a sandbox spec.
fn check_policy(config_json: &str, policy_json: &str) -> Result<()> {
    let policy: Value = serde_json::from_str(policy_json)
        .map_err(|error| RuntimeError::InvalidConfig(format!("network.policy: {error}")))?;
    let mut config: Value = serde_json::from_str(config_json).map_err(|error| {
        RuntimeError::State(msb_state::StateError::Corrupt(format!(
            "a sandbox config: {error}"
        )))
    })?;
    let network = &mut config["network"];
    if !network.is_object() {
        *network = Value::Object(serde_json::Map::new());
    }
    network["policy"] = policy;
    SandboxSpec::from_json(&config.to_string())
        .map(drop)
        .map_err(|error| RuntimeError::InvalidConfig(format!("network.policy: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{"name": "a", "image": {"kind": "local", "name": "msb-base"},
        "cpus": 1, "memory_mib": 256, "network": {"policy": "public_only"}}"#;

    #[test]
    fn presets_and_policy_objects_are_accepted() {
        for policy in [
            r#""none""#,
            r#""allow_all""#,
            r#"{"default_egress": "deny", "rules": [
                {"action": "allow", "destination": ".example.com", "protocol": "tcp", "port": 443}]}"#,
        ] {
            check_policy(CONFIG, policy).unwrap_or_else(|error| panic!("{policy}: {error}"));
        }
    }

    #[test]
    fn a_preset_spells_out_as_a_policy_the_next_start_takes() {
        for preset in ["none", "public_only", "allow_all"] {
            let policy = preset_policy(preset).unwrap();
            check_policy(CONFIG, &policy).unwrap_or_else(|error| panic!("{preset}: {error}"));
        }
        let public: Value = serde_json::from_str(&preset_policy("public_only").unwrap()).unwrap();
        assert_eq!(public["default_egress"], "allow");
        assert_eq!(public["rules"][0]["destination"], "loopback");
        assert!(matches!(
            preset_policy("public"),
            Err(RuntimeError::InvalidConfig(_))
        ));
    }

    #[test]
    fn a_config_without_a_network_takes_a_policy_too() {
        let config = r#"{"name": "a", "image": {"kind": "local", "name": "msb-base"},
            "cpus": 1, "memory_mib": 256, "network": null}"#;
        check_policy(config, r#""none""#).unwrap();
    }

    #[test]
    fn a_policy_the_next_start_would_refuse_is_invalid() {
        for policy in [
            "not json",
            r#""public""#,
            r#"{"rules": [{"action": "allow", "destination": "10.0.0.0/33"}]}"#,
            r#"{"default_egress": "deny", "colour": "red"}"#,
        ] {
            let error = check_policy(CONFIG, policy).unwrap_err();
            assert!(matches!(error, RuntimeError::InvalidConfig(_)), "{policy}");
            assert!(error.to_string().starts_with("network.policy: "), "{error}");
        }
    }
}
