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
    /// Read-only layer files, top-most first; for `ext4` images the one file at `path`.
    pub layers: Vec<String>,
    /// The image's own config (OCI images) as JSON.
    pub config: Option<String>,
    pub last_used_at: Option<i64>,
}

impl ImageRecord {
    /// The layer files the guest mounts, top-most first.
    pub fn lower_layers(&self) -> Vec<String> {
        if self.layers.is_empty() {
            vec![self.path.clone()]
        } else {
            self.layers.clone()
        }
    }
}

/// What to record about an image.
pub struct NewImage<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub path: &'a str,
    pub digest: &'a str,
    pub size_bytes: u64,
    pub layers: &'a [String],
    pub config: Option<&'a str>,
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<ImageRecord> {
    let layers: String = row.get(6)?;
    Ok(ImageRecord {
        name: row.get(0)?,
        kind: row.get(1)?,
        path: row.get(2)?,
        digest: row.get(3)?,
        size_bytes: row.get::<_, i64>(4)? as u64,
        created_at: row.get(5)?,
        // Written by `put_image` only, as a JSON list of strings.
        layers: serde_json::from_str(&layers).unwrap_or_default(),
        config: row.get(7)?,
        last_used_at: row.get(8)?,
    })
}

const COLUMNS: &str =
    "name, kind, path, digest, size_bytes, created_at, layers, config, last_used_at";

impl Database {
    /// Records an image, replacing an older record of the same name.
    pub fn put_image(&mut self, image: &NewImage<'_>) -> Result<()> {
        let layers = serde_json::to_string(image.layers).expect("strings serialise");
        self.conn.execute(
            "INSERT INTO images (name, kind, path, digest, size_bytes, created_at, layers, config)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT(name) DO UPDATE SET kind = ?2, path = ?3, digest = ?4, size_bytes = ?5,
                 created_at = ?6, layers = ?7, config = ?8",
            params![
                image.name,
                image.kind,
                image.path,
                image.digest,
                image.size_bytes as i64,
                now_ms(),
                layers,
                image.config
            ],
        )?;
        Ok(())
    }

    /// Notes that a sandbox was just created from the image.
    pub fn touch_image(&mut self, name: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE images SET last_used_at = ?2 WHERE name = ?1",
            params![name, now_ms()],
        )?;
        Ok(())
    }

    /// Forgets an image; whether it existed.
    pub fn remove_image(&mut self, name: &str) -> Result<bool> {
        Ok(self
            .conn
            .execute("DELETE FROM images WHERE name = ?1", [name])?
            > 0)
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

    fn ext4<'a>(path: &'a str, digest: &'a str) -> NewImage<'a> {
        NewImage {
            name: "base",
            kind: "ext4",
            path,
            digest,
            size_bytes: 10,
            layers: &[],
            config: None,
        }
    }

    #[test]
    fn oci_image_keeps_layers_config_and_last_use() {
        let mut db = Database::open_in_memory().unwrap();
        let layers = vec!["/l/top.ext4".to_string(), "/l/base.ext4".to_string()];
        db.put_image(&NewImage {
            name: "127.0.0.1:5000/app:1",
            kind: "oci",
            path: "/l/top.ext4",
            digest: "sha256:m",
            size_bytes: 30,
            layers: &layers,
            config: Some("{}"),
        })
        .unwrap();
        db.touch_image("127.0.0.1:5000/app:1").unwrap();
        let image = db.image("127.0.0.1:5000/app:1").unwrap().unwrap();
        assert_eq!(image.lower_layers(), layers);
        assert_eq!(image.config.as_deref(), Some("{}"));
        assert!(image.last_used_at.is_some());
        assert!(db.remove_image("127.0.0.1:5000/app:1").unwrap());
        assert!(!db.remove_image("127.0.0.1:5000/app:1").unwrap());
    }

    #[test]
    fn put_image_replaces_by_name() {
        let mut db = Database::open_in_memory().unwrap();
        db.put_image(&ext4("/a", "sha256:1")).unwrap();
        db.put_image(&ext4("/b", "sha256:2")).unwrap();
        let images = db.images().unwrap();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].path, "/b");
        assert_eq!(db.image("missing").unwrap(), None);
    }
}
