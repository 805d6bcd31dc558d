//! The runtime's persistent state: one SQLite database (WAL) in the runtime home.
//!
//! Several processes use it at once (SDK clients, one supervisor per sandbox), so every
//! connection waits on locks instead of failing, and each change is one transaction.

mod images;
mod migrations;
mod sandboxes;
mod volumes;

pub use images::{ImageRecord, NewImage};
pub use sandboxes::{SandboxRecord, SandboxStatus, StatusChange};
pub use volumes::VolumeRecord;

use rusqlite::Connection;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("no sandbox named {0:?}")]
    SandboxNotFound(String),
    #[error("a sandbox named {0:?} already exists")]
    SandboxExists(String),
    #[error("no volume named {0:?}")]
    VolumeNotFound(String),
    #[error("a volume named {0:?} already exists")]
    VolumeExists(String),
    #[error("the state database has schema version {found}, newer than this runtime knows ({known}); upgrade microsandbox-tui")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("corrupt state: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, StateError>;

/// How long a connection waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// An open state database.
pub struct Database {
    conn: Connection,
}

impl Database {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut db = Self { conn };
        migrations::apply(&mut db.conn)?;
        Ok(db)
    }

    /// Runs `work` as one write transaction: other processes' writes wait until it ends, so a
    /// check and the change it guards cannot interleave with theirs. An error rolls it back.
    pub fn exclusive<T, E: From<StateError>>(
        &mut self,
        work: impl FnOnce(&mut Self) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(StateError::from)?;
        let result = work(self);
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        self.conn.execute_batch(end).map_err(StateError::from)?;
        result
    }

    /// An in-memory database with the current schema, for tests.
    pub fn open_in_memory() -> Result<Self> {
        let mut conn = Connection::open_in_memory()?;
        migrations::apply(&mut conn)?;
        Ok(Self { conn })
    }
}

/// Milliseconds since the Unix epoch, the time unit of every timestamp column.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_commits_on_success_and_rolls_back_on_error() {
        let mut db = Database::open_in_memory().unwrap();
        db.exclusive(|db| db.insert_volume("kept", 8, 0)).unwrap();
        let failed: Result<()> = db.exclusive(|db| {
            db.insert_volume("dropped", 8, 0)?;
            Err(StateError::Corrupt("check failed".into()))
        });
        assert!(failed.is_err());
        let names: Vec<String> = db.volumes().unwrap().into_iter().map(|v| v.name).collect();
        assert_eq!(names, ["kept"]);
    }
}
