//! Python bindings of the sandbox collection ([`crate::sandboxes`]): create, start, list,
//! get, remove, a new network policy or set of secrets, and where a sandbox's logs are.

use crate::binaries;
use crate::error::{Result, RuntimeError};
use crate::launch::Launch;
use crate::policy;
use crate::records;
use crate::sandboxes::{self, CreateRequest};
use crate::secrets;
use crate::wire::to_json;
use msb_net::secrets::SecretValue;
use msb_state::SandboxRecord;
use msb_supervisor::network;
use msb_supervisor::paths::SandboxFiles;
use msb_supervisor::secrets::SecretValues;
use pyo3::prelude::*;
use serde::Serialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::time::Duration;

/// A sandbox's record as the SDK's `SandboxInfo`.
#[derive(Serialize)]
struct SandboxInfo<'a> {
    name: &'a str,
    status: &'static str,
    /// The stored config, embedded as the JSON object it is.
    config: &'a RawValue,
    detached: bool,
    created_at: i64,
    started_at: Option<i64>,
    stopped_at: Option<i64>,
    accelerator: Option<&'a str>,
    boot_ms: Option<u64>,
    supervisor_pid: Option<u32>,
    vmm_pid: Option<u32>,
    exit_reason: Option<&'a str>,
    network: Option<NetworkInfo>,
}

/// The sandbox's addresses, which follow from its network slot.
#[derive(Serialize)]
struct NetworkInfo {
    guest_address: String,
    gateway: String,
    prefix_len: u8,
    host_alias: &'static str,
}

impl NetworkInfo {
    fn of(record: &SandboxRecord) -> Option<Self> {
        // The IPv4 side, which every sandbox has.
        let link = network::link(record.net_slot, false).ok()?;
        Some(Self {
            guest_address: link.guest_v4.to_string(),
            gateway: link.gateway_v4.to_string(),
            prefix_len: link.prefix,
            host_alias: network::HOST_ALIAS,
        })
    }
}

impl<'a> SandboxInfo<'a> {
    fn of(record: &'a SandboxRecord) -> Result<Self> {
        let config = serde_json::from_str(&record.config).map_err(|error| {
            RuntimeError::State(msb_state::StateError::Corrupt(format!(
                "the config of {:?}: {error}",
                record.name
            )))
        })?;
        Ok(Self {
            name: &record.name,
            status: record.status.as_str(),
            config,
            detached: record.detached,
            created_at: record.created_at,
            started_at: record.started_at,
            stopped_at: record.stopped_at,
            accelerator: record.accelerator.as_deref(),
            boot_ms: record.boot_ms,
            supervisor_pid: record.supervisor_pid,
            vmm_pid: record.vmm_pid,
            exit_reason: record.exit_reason.as_deref(),
            network: NetworkInfo::of(record),
        })
    }
}

fn info_json(record: &SandboxRecord) -> Result<String> {
    Ok(to_json(&SandboxInfo::of(record)?))
}

/// How a supervisor is to run, as the SDK asks for it.
struct LaunchRequest {
    detached: bool,
    timeout_s: f64,
    /// The secrets' values by environment variable, for the supervisor's pipe only.
    secret_values: SecretValues,
}

/// Starts a supervisor (through `start`) with this runtime's binaries, outside the GIL.
fn launch_supervisor(
    py: Python<'_>,
    request: LaunchRequest,
    start: impl FnOnce(Launch<'_>) -> Result<SandboxRecord> + Send,
) -> PyResult<String> {
    Ok(py.allow_threads(|| {
        let agent = binaries::agent()?;
        let supervisor = binaries::supervisor()?;
        let record = start(Launch {
            supervisor: &supervisor,
            agent: &agent,
            detached: request.detached,
            timeout: Duration::from_secs_f64(request.timeout_s.max(0.0)),
            secret_values: &request.secret_values,
        })?;
        info_json(&record)
    })?)
}

/// The values as the supervisor's pipe takes them, zeroed when dropped.
fn secret_values(values: BTreeMap<String, String>) -> SecretValues {
    values
        .into_iter()
        .map(|(env_var, value)| (env_var, SecretValue::new(value)))
        .collect()
}

/// Records the sandbox, starts its supervisor and waits until the guest agent answers.
/// `secret_values` holds the value of each of the config's secrets (by environment
/// variable); they go to the supervisor over a pipe and are stored nowhere.
#[pyfunction]
fn create_sandbox(
    py: Python<'_>,
    config_json: String,
    replace: bool,
    detached: bool,
    timeout_s: f64,
    secret_values: BTreeMap<String, String>,
) -> PyResult<String> {
    let request = LaunchRequest {
        detached,
        timeout_s,
        secret_values: self::secret_values(secret_values),
    };
    launch_supervisor(py, request, |launch| {
        sandboxes::create(CreateRequest {
            config_json: &config_json,
            replace,
            launch,
        })
    })
}

/// Boots a stopped or crashed sandbox again with its recorded configuration and disk, and
/// the values of its secrets (`secret_values`, as for `create_sandbox`).
#[pyfunction]
fn start_sandbox(
    py: Python<'_>,
    name: String,
    detached: bool,
    timeout_s: f64,
    secret_values: BTreeMap<String, String>,
) -> PyResult<String> {
    let request = LaunchRequest {
        detached,
        timeout_s,
        secret_values: self::secret_values(secret_values),
    };
    launch_supervisor(py, request, |launch| sandboxes::start(&name, launch))
}

#[pyfunction]
fn list_sandboxes(py: Python<'_>) -> PyResult<String> {
    Ok(py.allow_threads(|| -> Result<String> {
        let records = records::list()?;
        let infos = records
            .iter()
            .map(SandboxInfo::of)
            .collect::<Result<Vec<_>>>()?;
        Ok(to_json(&infos))
    })?)
}

/// A number that changes whenever any sandbox record changes (created, removed, a status
/// or config changed): one integer to read, so a poller lists only when it moved.
#[pyfunction]
fn sandboxes_version(py: Python<'_>) -> PyResult<i64> {
    Ok(py.allow_threads(records::version)?)
}

#[pyfunction]
fn get_sandbox(py: Python<'_>, name: String) -> PyResult<String> {
    Ok(py.allow_threads(|| info_json(&records::get(&name)?))?)
}

#[pyfunction]
#[pyo3(signature = (name, force=false))]
fn remove_sandbox(py: Python<'_>, name: String, force: bool) -> PyResult<()> {
    Ok(py.allow_threads(|| sandboxes::remove(&name, force))?)
}

/// Replaces the sandbox's network policy (`policy_json`: a preset's name or a policy
/// object, as JSON): live if it runs, and in its stored config for its next start.
#[pyfunction]
fn set_network_policy(py: Python<'_>, name: String, policy_json: String) -> PyResult<()> {
    Ok(py.allow_threads(|| policy::set_network_policy(&name, &policy_json))?)
}

/// Replaces the sandbox's secrets with the set `update_json`
/// (`[{"config": <SecretConfig>, "value": "..." | null}]`, `null` keeping a running value):
/// live if it runs, and in its stored config (without values) for its next start.
#[pyfunction]
fn set_secrets(py: Python<'_>, name: String, update_json: String) -> PyResult<()> {
    Ok(py.allow_threads(|| secrets::set_secrets(&name, &update_json))?)
}

/// The rules a preset (`none`, `public_only`, `allow_all`) stands for, as the JSON of a
/// custom policy.
#[pyfunction]
fn preset_policy(name: String) -> PyResult<String> {
    Ok(policy::preset_policy(&name)?)
}

/// The log file of a sandbox: `console` (the guest kernel's console), `exec` (commands and
/// how they ended), `network` (the flow log, one JSON record a line) or `runtime` (its
/// supervisor's: how the VM started, from a template or cold and why, and what went wrong). The previous
/// generation, if any, has the same path with `.1` appended.
#[pyfunction]
fn log_path(name: String, source: String) -> PyResult<String> {
    let files = SandboxFiles::new(&name).map_err(RuntimeError::from)?;
    let path = match source.as_str() {
        "console" => files.console_log(),
        "exec" => files.exec_log(),
        "network" => files.network_log(),
        "runtime" => files.supervisor_log(),
        other => {
            return Err(RuntimeError::InvalidConfig(format!(
                "unknown log {other:?}: expected console, exec, network or runtime"
            ))
            .into())
        }
    };
    Ok(path.display().to_string())
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(create_sandbox, module)?)?;
    module.add_function(wrap_pyfunction!(start_sandbox, module)?)?;
    module.add_function(wrap_pyfunction!(list_sandboxes, module)?)?;
    module.add_function(wrap_pyfunction!(sandboxes_version, module)?)?;
    module.add_function(wrap_pyfunction!(get_sandbox, module)?)?;
    module.add_function(wrap_pyfunction!(remove_sandbox, module)?)?;
    module.add_function(wrap_pyfunction!(set_network_policy, module)?)?;
    module.add_function(wrap_pyfunction!(set_secrets, module)?)?;
    module.add_function(wrap_pyfunction!(preset_policy, module)?)?;
    module.add_function(wrap_pyfunction!(log_path, module)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use msb_state::Database;

    #[test]
    fn sandbox_info_embeds_the_config_and_names_fields_as_python_does() {
        let mut db = Database::open_in_memory().unwrap();
        let record = db
            .insert_sandbox("web", r#"{"name":"web","cpus":1}"#, true)
            .unwrap();
        let json: serde_json::Value = serde_json::from_str(&info_json(&record).unwrap()).unwrap();
        assert_eq!(
            json["config"],
            serde_json::json!({"name": "web", "cpus": 1})
        );
        assert_eq!(json["status"], "starting");
        assert_eq!(json["created_at"], record.created_at);
        assert_eq!(json["started_at"], serde_json::Value::Null);
        // The first sandbox holds network slot 0: the first link.
        assert_eq!(
            json["network"],
            serde_json::json!({
                "guest_address": "172.16.0.2",
                "gateway": "172.16.0.1",
                "prefix_len": 30,
                "host_alias": "host.msb.internal",
            })
        );
        let mut fields: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            [
                "accelerator",
                "boot_ms",
                "config",
                "created_at",
                "detached",
                "exit_reason",
                "name",
                "network",
                "started_at",
                "status",
                "stopped_at",
                "supervisor_pid",
                "vmm_pid"
            ]
        );
    }
}
