//! Schema migrations, applied in order inside one transaction each. A migration is never
//! edited once released; changes come as new entries.

use crate::{Result, StateError};
use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: sandboxes and images.
    "CREATE TABLE sandboxes (
        name            TEXT PRIMARY KEY,
        config          TEXT NOT NULL,
        status          TEXT NOT NULL,
        detached        INTEGER NOT NULL,
        created_at      INTEGER NOT NULL,
        started_at      INTEGER,
        stopped_at      INTEGER,
        supervisor_pid  INTEGER,
        supervisor_start INTEGER,
        vmm_pid         INTEGER,
        accelerator     TEXT,
        boot_ms         INTEGER,
        exit_reason     TEXT
    );
    CREATE TABLE images (
        name        TEXT PRIMARY KEY,
        kind        TEXT NOT NULL,
        path        TEXT NOT NULL,
        digest      TEXT NOT NULL,
        size_bytes  INTEGER NOT NULL,
        created_at  INTEGER NOT NULL
    );",
    // 2: OCI images: their layer files (top first), their config, and when a sandbox last
    // used them.
    "ALTER TABLE images ADD COLUMN layers TEXT NOT NULL DEFAULT '[]';
     ALTER TABLE images ADD COLUMN config TEXT;
     ALTER TABLE images ADD COLUMN last_used_at INTEGER;",
    // 3: named volumes. Their image file's path follows from the name; which sandboxes use
    // one follows from the sandboxes' configs.
    "CREATE TABLE volumes (
        name            TEXT PRIMARY KEY,
        quota_mib       INTEGER NOT NULL,
        overhead_bytes  INTEGER NOT NULL,
        created_at      INTEGER NOT NULL
    );",
    // 4: each sandbox's network slot, which its addresses follow from; unique, so no two
    // sandboxes ever share an address. Existing sandboxes take their row's number.
    "ALTER TABLE sandboxes ADD COLUMN net_slot INTEGER;
     UPDATE sandboxes SET net_slot = rowid - 1;
     CREATE UNIQUE INDEX sandboxes_net_slot ON sandboxes(net_slot);",
    // 5: a number that every change of the sandboxes table bumps, so a dashboard reads one
    // integer a second and the whole listing only when it changed.
    "CREATE TABLE sandboxes_version (version INTEGER NOT NULL);
     INSERT INTO sandboxes_version VALUES (0);
     CREATE TRIGGER sandboxes_version_insert AFTER INSERT ON sandboxes
         BEGIN UPDATE sandboxes_version SET version = version + 1; END;
     CREATE TRIGGER sandboxes_version_update AFTER UPDATE ON sandboxes
         BEGIN UPDATE sandboxes_version SET version = version + 1; END;
     CREATE TRIGGER sandboxes_version_delete AFTER DELETE ON sandboxes
         BEGIN UPDATE sandboxes_version SET version = version + 1; END;",
];

pub fn apply(conn: &mut Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY,
            applied_at INTEGER NOT NULL
        )",
    )?;
    let current: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(StateError::SchemaTooNew {
            found: current,
            known,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Another process may have applied it while we waited for the lock.
        let applied: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM schema_migrations WHERE version = ?1)",
            [index as i64 + 1],
            |r| r.get(0),
        )?;
        if !applied {
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                (index as i64 + 1, crate::now_ms()),
            )?;
        }
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn).unwrap();
        apply(&mut conn).unwrap();
        let version: i64 = conn
            .query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
    }

    #[test]
    fn newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn).unwrap();
        conn.execute("INSERT INTO schema_migrations VALUES (999, 0)", [])
            .unwrap();
        assert!(matches!(
            apply(&mut conn),
            Err(StateError::SchemaTooNew { found: 999, .. })
        ));
    }
}
