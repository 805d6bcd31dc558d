//! What the relay does with the VM on a client's behalf beyond the agent channel (pause,
//! resume, detach, recording a drain, a new network policy, new secrets), and the QMP
//! connection the sampler reads disks with.

use crate::lifecycle::Lifecycle;
use crate::network::PolicyControl;
use crate::relay;
use crate::secrets::SecretsControl;
use msb_engine::qmp::{Qmp, QmpError};
use msb_state::{SandboxStatus, StatusChange};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What changes the running network.
pub struct NetworkControls {
    pub policy: PolicyControl,
    pub secrets: SecretsControl,
}

/// Pause, resume and detach, as the relay carries them out for clients.
pub struct VmControls {
    name: String,
    qmp_socket: std::path::PathBuf,
    /// One QMP connection, opened on first use (QEMU serves one QMP client at a time).
    qmp: Mutex<Option<Qmp>>,
    lifecycle: Arc<Lifecycle>,
    network: NetworkControls,
}

const QMP_TIMEOUT: Duration = Duration::from_secs(5);

impl VmControls {
    pub fn new(
        name: &str,
        qmp_socket: std::path::PathBuf,
        lifecycle: Arc<Lifecycle>,
        network: NetworkControls,
    ) -> Self {
        Self {
            name: name.to_string(),
            qmp_socket,
            qmp: Mutex::new(None),
            lifecycle,
            network,
        }
    }

    fn with_qmp(
        &self,
        action: impl FnOnce(&mut Qmp) -> std::result::Result<(), QmpError>,
    ) -> std::result::Result<(), String> {
        let mut guard = self.qmp.lock().unwrap();
        if guard.is_none() {
            *guard = Some(Qmp::connect(&self.qmp_socket, QMP_TIMEOUT).map_err(|e| e.to_string())?);
        }
        let result = action(guard.as_mut().expect("connected above"));
        if result.is_err() {
            // A broken connection is reopened next time.
            *guard = None;
        }
        result.map_err(|e| e.to_string())
    }

    fn record(&self, status: SandboxStatus) -> std::result::Result<(), String> {
        let mut db = crate::database::open().map_err(|e| e.to_string())?;
        db.set_status(
            &self.name,
            StatusChange {
                status,
                reason: None,
            },
        )
        .map_err(|e| e.to_string())
    }
}

impl VmControls {
    /// Bytes read and written by the VM's disks since boot.
    pub fn disk_bytes(&self) -> Option<(u64, u64)> {
        let mut totals = (0, 0);
        self.with_qmp(|qmp| {
            for device in qmp.block_stats()? {
                totals.0 += device.rd_bytes;
                totals.1 += device.wr_bytes;
            }
            Ok(())
        })
        .ok()?;
        Some(totals)
    }
}

impl relay::VmControl for VmControls {
    fn draining(&self) -> std::result::Result<(), String> {
        self.record(SandboxStatus::Draining)
    }

    fn pause(&self) -> std::result::Result<(), String> {
        self.with_qmp(Qmp::stop)?;
        log::info!("VM paused");
        self.record(SandboxStatus::Paused)
    }

    fn resume(&self) -> std::result::Result<(), String> {
        self.with_qmp(Qmp::cont)?;
        log::info!("VM resumed");
        self.record(SandboxStatus::Running)
    }

    fn set_network_policy(&self, policy: &str) -> std::result::Result<(), String> {
        self.network.policy.set(policy)
    }

    fn set_secrets(&self, update_json: &str) -> std::result::Result<(), String> {
        self.network.secrets.set(update_json)
    }

    fn detach(&self) -> std::result::Result<(), String> {
        self.lifecycle.detach();
        let mut db = crate::database::open().map_err(|e| e.to_string())?;
        db.set_detached(&self.name, true)
            .map_err(|e| e.to_string())?;
        log::info!("detached from its creator");
        Ok(())
    }
}
