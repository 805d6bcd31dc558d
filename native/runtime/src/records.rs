//! Sandbox records as they are, not only as stored: a record whose supervisor is gone is
//! corrected (the VM died with it) whenever it is read, so a dead sandbox never reads as
//! running.

use crate::error::{Result, RuntimeError};
use msb_state::{Database, SandboxRecord, SandboxStatus, StateError, StatusChange};
use msb_supervisor::paths::SandboxFiles;
use msb_supervisor::{database, process};

/// A starting sandbox whose supervisor never registered after this long is reported crashed
/// (its creator died between recording it and starting the supervisor).
const ORPHANED_START_MS: i64 = 5 * 60 * 1000;

/// Corrects a record whose supervisor is gone: the VM died with it.
pub fn reconcile(db: &mut Database, record: SandboxRecord) -> Result<SandboxRecord> {
    if !record.status.is_live() {
        return Ok(record);
    }
    match (record.supervisor_pid, record.supervisor_start) {
        (Some(pid), Some(started)) if !process::is_alive(pid, started) => {
            db.mark_crashed_if_owned_by(&record.name, pid, "the supervisor exited unexpectedly")?;
            Ok(db.sandbox(&record.name)?)
        }
        (None, _)
            if record.status == SandboxStatus::Starting
                && msb_state::now_ms() - record.created_at > ORPHANED_START_MS =>
        {
            db.set_status(
                &record.name,
                StatusChange {
                    status: SandboxStatus::Crashed,
                    reason: Some("never started"),
                },
            )?;
            Ok(db.sandbox(&record.name)?)
        }
        _ => Ok(record),
    }
}

/// The record of `name`, reconciled; `SandboxNotFound` if there is none.
pub fn get_with(db: &mut Database, name: &str) -> Result<SandboxRecord> {
    SandboxFiles::new(name)?;
    let record = db.sandbox(name).map_err(|error| match error {
        StateError::SandboxNotFound(name) => RuntimeError::SandboxNotFound(name),
        other => other.into(),
    })?;
    reconcile(db, record)
}

pub fn get(name: &str) -> Result<SandboxRecord> {
    get_with(&mut database::open()?, name)
}

/// Every record, reconciled.
pub fn list() -> Result<Vec<SandboxRecord>> {
    let mut db = database::open()?;
    let records = db.sandboxes()?;
    records
        .into_iter()
        .map(|record| reconcile(&mut db, record))
        .collect()
}

/// The live records (a supervisor should exist), reconciled: stopped sandboxes are not read.
pub fn list_live() -> Result<Vec<SandboxRecord>> {
    let mut db = database::open()?;
    let records = db.live_sandboxes()?;
    records
        .into_iter()
        .map(|record| reconcile(&mut db, record))
        .collect()
}

/// See [`msb_state::Database::sandboxes_version`].
pub fn version() -> Result<i64> {
    Ok(database::open()?.sandboxes_version()?)
}
