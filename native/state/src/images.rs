//! The `images` table: images the runtime can boot from its local store.

use crate::{now_ms, Database, Result};
use rusqlite::{params, OptionalExtension, Row};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    pub name: String,
    /// How the image is stored: `ext4` (a read-only layer image file).
    pub kind: String,
    pub path: String,
    /// Content digest of the stored image (`sha256:...`).
    pub digest: String,
    pub size_bytes: u64,
    pub created_at: i64,
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<ImageRecord> {
    Ok(ImageRecord {
        name: row.get(0)?,
        kind: row.get(1)?,
        path: row.get(2)?,
        digest: row.get(3)?,
        size_bytes: row.get::<_, i64>(4)? as u64,
        created_at: row.get(5)?,
    })
}

const COLUMNS: &str = "name, kind, path, digest, size_bytes, created_at";

impl Database {
    /// Records an image, replacing an older record of the same name.
    pub fn put_image(
        &mut self,
        name: &str,
        kind: &str,
        path: &str,
        digest: &str,
        size_bytes: u64,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT INTO images (name, kind, path, digest, size_bytes, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(name) DO UPDATE SET kind = ?2, path = ?3, digest = ?4, size_bytes = ?5,
                 created_at = ?6",
            params![name, kind, path, digest, size_bytes as i64, now_ms()],
        )?;
        Ok(())
    }

    pub fn image(&self, name: &str) -> Result<Option<ImageRecord>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM images WHERE name = ?1"),
                [name],
                from_row,
            )
            .optional()?)
    }

    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        let mut statement = self
            .conn
            .prepare(&format!("SELECT {COLUMNS} FROM images ORDER BY name"))?;
        let rows = statement.query_map([], from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_image_replaces_by_name() {
        let mut db = Database::open_in_memory().unwrap();
        db.put_image("base", "ext4", "/a", "sha256:1", 10).unwrap();
        db.put_image("base", "ext4", "/b", "sha256:2", 20).unwrap();
        let images = db.images().unwrap();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].path, "/b");
        assert_eq!(db.image("missing").unwrap(), None);
    }
}
