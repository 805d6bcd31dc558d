//! The `sandboxes` table.

use crate::{now_ms, Database, Result, StateError};
use rusqlite::{params, OptionalExtension, Row};

/// Lifecycle states as stored. `Starting` is the window between the record's creation and
/// the guest agent's first answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxStatus {
    Starting,
    Running,
    Paused,
    Draining,
    Stopped,
    Crashed,
}

impl SandboxStatus {
    const ALL: [Self; 6] = [
        Self::Starting,
        Self::Running,
        Self::Paused,
        Self::Draining,
        Self::Stopped,
        Self::Crashed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Draining => "draining",
            Self::Stopped => "stopped",
            Self::Crashed => "crashed",
        }
    }

    fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "starting" => Self::Starting,
            "running" => Self::Running,
            "paused" => Self::Paused,
            "draining" => Self::Draining,
            "stopped" => Self::Stopped,
            "crashed" => Self::Crashed,
            other => {
                return Err(StateError::Corrupt(format!(
                    "unknown sandbox status {other:?}"
                )))
            }
        })
    }

    /// Whether a supervisor process is supposed to exist for this status.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            Self::Starting | Self::Running | Self::Paused | Self::Draining
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxRecord {
    pub name: String,
    /// The validated configuration as JSON (owned by the SDK's schema).
    pub config: String,
    pub status: SandboxStatus,
    pub detached: bool,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub stopped_at: Option<i64>,
    pub supervisor_pid: Option<u32>,
    /// Start time of the supervisor process (clock ticks since boot, from /proc), so that a
    /// reused pid is never mistaken for our supervisor.
    pub supervisor_start: Option<u64>,
    pub vmm_pid: Option<u32>,
    pub accelerator: Option<String>,
    pub boot_ms: Option<u64>,
    pub exit_reason: Option<String>,
    /// Which of the sandbox networks' address blocks is this sandbox's (see `msb_net`).
    pub net_slot: u32,
}

/// What a supervisor reports when the VM is up.
pub struct StatusChange<'a> {
    pub status: SandboxStatus,
    pub reason: Option<&'a str>,
}

const COLUMNS: &str = "name, config, status, detached, created_at, started_at, stopped_at, \
     supervisor_pid, supervisor_start, vmm_pid, accelerator, boot_ms, exit_reason, net_slot";

fn from_row(row: &Row<'_>) -> rusqlite::Result<(SandboxRecord, String)> {
    let status: String = row.get(2)?;
    Ok((
        SandboxRecord {
            name: row.get(0)?,
            config: row.get(1)?,
            status: SandboxStatus::Starting,
            detached: row.get(3)?,
            created_at: row.get(4)?,
            started_at: row.get(5)?,
            stopped_at: row.get(6)?,
            supervisor_pid: row.get(7)?,
            supervisor_start: row.get::<_, Option<i64>>(8)?.map(|v| v as u64),
            vmm_pid: row.get(9)?,
            accelerator: row.get(10)?,
            boot_ms: row.get::<_, Option<i64>>(11)?.map(|v| v as u64),
            exit_reason: row.get(12)?,
            net_slot: row.get(13)?,
        },
        status,
    ))
}

fn with_status((mut record, status): (SandboxRecord, String)) -> Result<SandboxRecord> {
    record.status = SandboxStatus::parse(&status)?;
    Ok(record)
}

impl Database {
    /// Inserts a new sandbox in `Starting` state. Fails with [`StateError::SandboxExists`]
    /// when the name is taken.
    pub fn insert_sandbox(
        &mut self,
        name: &str,
        config: &str,
        detached: bool,
    ) -> Result<SandboxRecord> {
        // The lowest slot no other sandbox holds: 0, or one past a held slot whose successor
        // is free.
        let inserted = self.conn.execute(
            "INSERT OR IGNORE INTO sandboxes
                 (name, config, status, detached, created_at, net_slot)
             VALUES (?1, ?2, ?3, ?4, ?5, (
                 SELECT CASE
                     WHEN NOT EXISTS (SELECT 1 FROM sandboxes WHERE net_slot = 0) THEN 0
                     ELSE (SELECT MIN(held.net_slot) + 1 FROM sandboxes held
                           WHERE NOT EXISTS (SELECT 1 FROM sandboxes next
                                             WHERE next.net_slot = held.net_slot + 1))
                 END))",
            params![
                name,
                config,
                SandboxStatus::Starting.as_str(),
                detached,
                now_ms()
            ],
        )?;
        if inserted == 0 {
            return Err(StateError::SandboxExists(name.to_string()));
        }
        self.sandbox(name)
    }

    pub fn sandbox(&self, name: &str) -> Result<SandboxRecord> {
        let row = self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM sandboxes WHERE name = ?1"),
                [name],
                from_row,
            )
            .optional()?;
        match row {
            Some(row) => with_status(row),
            None => Err(StateError::SandboxNotFound(name.to_string())),
        }
    }

    pub fn sandboxes(&self) -> Result<Vec<SandboxRecord>> {
        let mut statement = self
            .conn
            .prepare(&format!("SELECT {COLUMNS} FROM sandboxes ORDER BY name"))?;
        let rows = statement.query_map([], from_row)?;
        rows.map(|row| with_status(row?)).collect()
    }

    /// The records whose status says a supervisor should exist (see
    /// [`SandboxStatus::is_live`]), by name: what a metrics reader needs, without the stopped
    /// ones however many there are.
    pub fn live_sandboxes(&self) -> Result<Vec<SandboxRecord>> {
        let live: Vec<String> = SandboxStatus::ALL
            .into_iter()
            .filter(|status| status.is_live())
            .map(|status| format!("'{}'", status.as_str()))
            .collect();
        let mut statement = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM sandboxes WHERE status IN ({}) ORDER BY name",
            live.join(", ")
        ))?;
        let rows = statement.query_map([], from_row)?;
        rows.map(|row| with_status(row?)).collect()
    }

    /// A number that changes whenever a sandbox record is inserted, changed or deleted (a
    /// trigger counts every change): equal numbers mean an equal listing.
    pub fn sandboxes_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT version FROM sandboxes_version", [], |row| {
                row.get(0)
            })?)
    }

    /// Records the supervisor that owns the sandbox from now on.
    pub fn set_supervisor(&mut self, name: &str, pid: u32, start_time: u64) -> Result<()> {
        self.update(
            name,
            "UPDATE sandboxes SET supervisor_pid = ?2, supervisor_start = ?3 WHERE name = ?1",
            params![name, pid, start_time as i64],
        )
    }

    /// The VM is up and its agent answered.
    pub fn set_running(
        &mut self,
        name: &str,
        vmm_pid: u32,
        accelerator: &str,
        boot_ms: u64,
    ) -> Result<()> {
        self.update(
            name,
            "UPDATE sandboxes SET status = 'running', vmm_pid = ?2, accelerator = ?3, boot_ms = ?4,
                 started_at = ?5, stopped_at = NULL, exit_reason = NULL
             WHERE name = ?1",
            params![name, vmm_pid, accelerator, boot_ms as i64, now_ms()],
        )
    }

    /// Moves to a new status. Terminal statuses (stopped, crashed) clear the process ids.
    pub fn set_status(&mut self, name: &str, change: StatusChange<'_>) -> Result<()> {
        if change.status.is_live() {
            return self.update(
                name,
                "UPDATE sandboxes SET status = ?2 WHERE name = ?1",
                params![name, change.status.as_str()],
            );
        }
        self.update(
            name,
            "UPDATE sandboxes SET status = ?2, exit_reason = ?3, stopped_at = ?4,
                 supervisor_pid = NULL, supervisor_start = NULL, vmm_pid = NULL
             WHERE name = ?1",
            params![name, change.status.as_str(), change.reason, now_ms()],
        )
    }

    /// Marks a sandbox crashed only if the given supervisor still owns it; used when a reader
    /// finds that supervisor dead, so two readers never overwrite a newer start.
    pub fn mark_crashed_if_owned_by(
        &mut self,
        name: &str,
        supervisor_pid: u32,
        reason: &str,
    ) -> Result<bool> {
        let changed = self.conn.execute(
            "UPDATE sandboxes SET status = 'crashed', exit_reason = ?3, stopped_at = ?4,
                 supervisor_pid = NULL, supervisor_start = NULL, vmm_pid = NULL
             WHERE name = ?1 AND supervisor_pid = ?2",
            params![name, supervisor_pid, reason, now_ms()],
        )?;
        Ok(changed == 1)
    }

    /// Whether the sandbox outlives the process that started it.
    pub fn set_detached(&mut self, name: &str, detached: bool) -> Result<()> {
        self.update(
            name,
            "UPDATE sandboxes SET detached = ?2 WHERE name = ?1",
            params![name, detached],
        )
    }

    /// Replaces the network policy in the sandbox's stored config (`config.network.policy`)
    /// with `policy_json` (a preset's name or a policy object, as JSON), leaving every other
    /// key of the config as it is. One statement, so a concurrent reader sees the old config
    /// or the new one. A config whose `network` is absent or null gets one holding only the
    /// policy, which reads as the default network with that policy.
    pub fn set_network_policy(&mut self, name: &str, policy_json: &str) -> Result<()> {
        self.update(
            name,
            "UPDATE sandboxes SET config = CASE
                 WHEN json_type(config, '$.network') = 'object'
                     THEN json_set(config, '$.network.policy', json(?2))
                 ELSE json_set(config, '$.network', json_object('policy', json(?2)))
             END
             WHERE name = ?1",
            params![name, policy_json],
        )
    }

    /// Replaces the sandbox's secrets (`config.secrets`, a JSON array of secret configs,
    /// never values) and its exec environment (`config.env`, which holds their placeholders)
    /// in one statement, leaving every other key as it is.
    pub fn set_secrets(&mut self, name: &str, secrets_json: &str, env_json: &str) -> Result<()> {
        self.update(
            name,
            "UPDATE sandboxes
             SET config = json_set(config, '$.secrets', json(?2), '$.env', json(?3))
             WHERE name = ?1",
            params![name, secrets_json, env_json],
        )
    }

    pub fn delete_sandbox(&mut self, name: &str) -> Result<()> {
        self.update(name, "DELETE FROM sandboxes WHERE name = ?1", params![name])
    }

    fn update(&mut self, name: &str, sql: &str, params: impl rusqlite::Params) -> Result<()> {
        if self.conn.execute(sql, params)? == 0 {
            return Err(StateError::SandboxNotFound(name.to_string()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_env_are_replaced_and_the_rest_of_the_config_kept() {
        let mut db = Database::open_in_memory().unwrap();
        db.insert_sandbox(
            "a",
            r#"{"cpus": 2, "env": {"A": "1"}, "secrets": []}"#,
            false,
        )
        .unwrap();
        db.set_secrets(
            "a",
            r#"[{"env_var": "KEY", "placeholder": "$MSB_KEY"}]"#,
            r#"{"A": "1", "KEY": "$MSB_KEY"}"#,
        )
        .unwrap();
        let config: serde_json::Value =
            serde_json::from_str(&db.sandbox("a").unwrap().config).unwrap();
        assert_eq!(config["cpus"], 2);
        assert_eq!(config["env"]["KEY"], "$MSB_KEY");
        assert_eq!(config["secrets"][0]["env_var"], "KEY");
        assert!(matches!(
            db.set_secrets("nope", "[]", "{}"),
            Err(StateError::SandboxNotFound(_))
        ));
    }

    #[test]
    fn live_sandboxes_leave_out_stopped_and_crashed_ones() {
        let mut db = Database::open_in_memory().unwrap();
        for name in ["booting", "crashed", "running", "stopped"] {
            db.insert_sandbox(name, "{}", true).unwrap();
        }
        for (name, status) in [
            ("crashed", SandboxStatus::Crashed),
            ("running", SandboxStatus::Running),
            ("stopped", SandboxStatus::Stopped),
        ] {
            let change = StatusChange {
                status,
                reason: None,
            };
            db.set_status(name, change).unwrap();
        }
        let live: Vec<String> = db
            .live_sandboxes()
            .unwrap()
            .into_iter()
            .map(|record| record.name)
            .collect();
        assert_eq!(live, ["booting", "running"]);
    }

    #[test]
    fn the_version_changes_with_every_write_and_with_no_read() {
        let mut db = Database::open_in_memory().unwrap();
        let mut seen = vec![db.sandboxes_version().unwrap()];
        db.insert_sandbox("a", "{}", true).unwrap();
        seen.push(db.sandboxes_version().unwrap());
        db.set_detached("a", false).unwrap();
        seen.push(db.sandboxes_version().unwrap());
        db.sandboxes().unwrap();
        db.sandbox("a").unwrap();
        assert_eq!(db.sandboxes_version().unwrap(), seen[2]);
        db.delete_sandbox("a").unwrap();
        seen.push(db.sandboxes_version().unwrap());
        seen.dedup();
        assert_eq!(seen.len(), 4, "every write gives a new version: {seen:?}");
    }

    #[test]
    fn insert_rejects_duplicate_names() {
        let mut db = Database::open_in_memory().unwrap();
        db.insert_sandbox("a", "{}", false).unwrap();
        assert!(matches!(
            db.insert_sandbox("a", "{}", true),
            Err(StateError::SandboxExists(_))
        ));
        assert_eq!(db.sandboxes().unwrap().len(), 1);
    }

    #[test]
    fn each_sandbox_gets_the_lowest_free_network_slot() {
        let mut db = Database::open_in_memory().unwrap();
        let slot =
            |db: &mut Database, name: &str| db.insert_sandbox(name, "{}", false).unwrap().net_slot;
        assert_eq!(slot(&mut db, "a"), 0);
        assert_eq!(slot(&mut db, "b"), 1);
        assert_eq!(slot(&mut db, "c"), 2);
        db.delete_sandbox("b").unwrap();
        assert_eq!(slot(&mut db, "d"), 1, "a freed slot is reused");
        db.delete_sandbox("a").unwrap();
        assert_eq!(slot(&mut db, "e"), 0);
        assert_eq!(slot(&mut db, "f"), 3);
        let mut slots: Vec<u32> = db.sandboxes().unwrap().iter().map(|s| s.net_slot).collect();
        slots.sort();
        assert_eq!(slots, [0, 1, 2, 3]);
    }

    #[test]
    fn lifecycle_updates_round_trip() {
        let mut db = Database::open_in_memory().unwrap();
        db.insert_sandbox("a", "{}", true).unwrap();
        db.set_supervisor("a", 42, 7).unwrap();
        db.set_running("a", 43, "tcg", 2300).unwrap();
        let record = db.sandbox("a").unwrap();
        assert_eq!(record.status, SandboxStatus::Running);
        assert_eq!(
            (record.supervisor_pid, record.vmm_pid, record.boot_ms),
            (Some(42), Some(43), Some(2300))
        );
        db.set_status(
            "a",
            StatusChange {
                status: SandboxStatus::Stopped,
                reason: Some("stopped by user"),
            },
        )
        .unwrap();
        let record = db.sandbox("a").unwrap();
        assert_eq!(record.status, SandboxStatus::Stopped);
        assert_eq!(record.supervisor_pid, None);
        assert!(record.stopped_at.is_some());
    }

    #[test]
    fn crash_mark_needs_the_owning_supervisor() {
        let mut db = Database::open_in_memory().unwrap();
        db.insert_sandbox("a", "{}", false).unwrap();
        db.set_supervisor("a", 42, 7).unwrap();
        assert!(!db.mark_crashed_if_owned_by("a", 41, "gone").unwrap());
        assert!(db.mark_crashed_if_owned_by("a", 42, "gone").unwrap());
        assert_eq!(db.sandbox("a").unwrap().status, SandboxStatus::Crashed);
    }

    fn stored_config(db: &Database, name: &str) -> serde_json::Value {
        serde_json::from_str(&db.sandbox(name).unwrap().config).unwrap()
    }

    #[test]
    fn a_new_network_policy_leaves_the_rest_of_the_config_as_it_was() {
        let mut db = Database::open_in_memory().unwrap();
        let config = r#"{"name":"a","cpus":2,"network":{"policy":"public_only",
            "dns":{"nameservers":["198.51.100.53"]},"ports":[{"host_port":8080,"guest_port":80}]}}"#;
        db.insert_sandbox("a", config, false).unwrap();
        let policy =
            r#"{"default_egress":"deny","rules":[{"action":"allow","destination":"host"}]}"#;
        db.set_network_policy("a", policy).unwrap();
        let mut expected: serde_json::Value = serde_json::from_str(config).unwrap();
        expected["network"]["policy"] = serde_json::from_str(policy).unwrap();
        assert_eq!(stored_config(&db, "a"), expected);
        db.set_network_policy("a", r#""none""#).unwrap();
        expected["network"]["policy"] = "none".into();
        assert_eq!(stored_config(&db, "a"), expected);
    }

    #[test]
    fn a_config_without_a_network_gets_one_holding_the_policy() {
        let mut db = Database::open_in_memory().unwrap();
        db.insert_sandbox("absent", r#"{"name":"absent"}"#, false)
            .unwrap();
        db.insert_sandbox("null", r#"{"name":"null","network":null}"#, false)
            .unwrap();
        for name in ["absent", "null"] {
            db.set_network_policy(name, r#""allow_all""#).unwrap();
            assert_eq!(
                stored_config(&db, name),
                serde_json::json!({"name": name, "network": {"policy": "allow_all"}})
            );
        }
        assert!(matches!(
            db.set_network_policy("nope", r#""none""#),
            Err(StateError::SandboxNotFound(_))
        ));
    }

    #[test]
    fn missing_sandbox_is_a_typed_error() {
        let mut db = Database::open_in_memory().unwrap();
        assert!(matches!(
            db.sandbox("nope"),
            Err(StateError::SandboxNotFound(_))
        ));
        assert!(matches!(
            db.delete_sandbox("nope"),
            Err(StateError::SandboxNotFound(_))
        ));
    }
}
