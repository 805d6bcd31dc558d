//! The `volumes` table: named volumes, each an ext4 image file of its quota's size.

use crate::{now_ms, Database, Result, StateError};
use rusqlite::{params, OptionalExtension, Row};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRecord {
    pub name: String,
    pub quota_mib: u64,
    /// Bytes the empty file system already uses (journal, inode tables, bitmaps), measured
    /// right after formatting, so that usage can be reported as what the guest stored.
    pub overhead_bytes: u64,
    pub created_at: i64,
}

const COLUMNS: &str = "name, quota_mib, overhead_bytes, created_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<VolumeRecord> {
    Ok(VolumeRecord {
        name: row.get(0)?,
        quota_mib: row.get::<_, i64>(1)? as u64,
        overhead_bytes: row.get::<_, i64>(2)? as u64,
        created_at: row.get(3)?,
    })
}

impl Database {
    /// Records a new volume. Fails with [`StateError::VolumeExists`] when the name is taken.
    pub fn insert_volume(
        &mut self,
        name: &str,
        quota_mib: u64,
        overhead_bytes: u64,
    ) -> Result<VolumeRecord> {
        let inserted = self.conn.execute(
            "INSERT OR IGNORE INTO volumes (name, quota_mib, overhead_bytes, created_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![name, quota_mib as i64, overhead_bytes as i64, now_ms()],
        )?;
        if inserted == 0 {
            return Err(StateError::VolumeExists(name.to_string()));
        }
        self.volume(name)
    }

    /// The volume `name`, or [`StateError::VolumeNotFound`].
    pub fn volume(&self, name: &str) -> Result<VolumeRecord> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM volumes WHERE name = ?1"),
                [name],
                from_row,
            )
            .optional()?
            .ok_or_else(|| StateError::VolumeNotFound(name.to_string()))
    }

    pub fn volumes(&self) -> Result<Vec<VolumeRecord>> {
        let mut statement = self
            .conn
            .prepare(&format!("SELECT {COLUMNS} FROM volumes ORDER BY name"))?;
        let rows = statement.query_map([], from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Forgets a volume, or fails with [`StateError::VolumeNotFound`].
    pub fn remove_volume(&mut self, name: &str) -> Result<()> {
        if self
            .conn
            .execute("DELETE FROM volumes WHERE name = ?1", [name])?
            == 0
        {
            return Err(StateError::VolumeNotFound(name.to_string()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_round_trip_in_name_order() {
        let mut db = Database::open_in_memory().unwrap();
        let data = db.insert_volume("data", 100, 1 << 20).unwrap();
        assert_eq!(
            (data.name.as_str(), data.quota_mib, data.overhead_bytes),
            ("data", 100, 1 << 20)
        );
        assert!(data.created_at > 0);
        db.insert_volume("cache", 8, 0).unwrap();
        let names: Vec<String> = db.volumes().unwrap().into_iter().map(|v| v.name).collect();
        assert_eq!(names, ["cache", "data"]);
        assert_eq!(db.volume("data").unwrap(), data);
    }

    #[test]
    fn duplicate_and_missing_volumes_are_typed_errors() {
        let mut db = Database::open_in_memory().unwrap();
        db.insert_volume("data", 100, 0).unwrap();
        assert!(matches!(
            db.insert_volume("data", 200, 0),
            Err(StateError::VolumeExists(name)) if name == "data"
        ));
        assert_eq!(db.volume("data").unwrap().quota_mib, 100);
        db.remove_volume("data").unwrap();
        assert!(matches!(
            db.volume("data"),
            Err(StateError::VolumeNotFound(_))
        ));
        assert!(matches!(
            db.remove_volume("data"),
            Err(StateError::VolumeNotFound(_))
        ));
    }
}
