//! The content store: verified blobs, ext4 layer images and image records under one root.
//!
//! ```text
//! <root>/blobs/sha256/<hex>              compressed layer blobs and image configs, verified
//! <root>/layers/sha256/<diff_id hex>.ext4  read-only ext4 layers, keyed by uncompressed digest
//! <root>/manifests/sha256/<hex>.json     a pulled image's record, by manifest digest
//! <root>/refs/<registry>/<repository>/_tags/<tag>.json   the same record, by tag
//! <root>/tmp/                            work in progress; never read as content
//! ```
//!
//! Every entry is written under `tmp/` and renamed into place, so an entry that exists is
//! complete. `_tags` cannot clash with a repository component, which must start with a
//! letter or digit.

use crate::digest::Digest;
use crate::error::{io_at, Error, Result};
use crate::reference::Reference;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Work older than this in `tmp/` belongs to a process that died; prune may remove it.
const STALE_TEMP_AGE: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// What [`Store::remove_unreferenced`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Removed {
    pub entries: usize,
    pub bytes: u64,
}

impl Store {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let store = Store { root: root.into() };
        for dir in [
            store.root.join("blobs/sha256"),
            store.root.join("layers/sha256"),
            store.root.join("manifests/sha256"),
            store.root.join("refs"),
            store.tmp_dir(),
        ] {
            fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    pub fn layer_path(&self, diff_id: &Digest) -> PathBuf {
        self.root
            .join("layers/sha256")
            .join(format!("{}.ext4", diff_id.hex()))
    }

    fn manifest_record_path(&self, manifest_digest: &Digest) -> PathBuf {
        self.root
            .join("manifests/sha256")
            .join(format!("{}.json", manifest_digest.hex()))
    }

    /// The record for a tag reference; `None` for a reference that only has a digest.
    fn tag_record_path(&self, reference: &Reference) -> Option<PathBuf> {
        let tag = reference.tag()?;
        // Registry, repository and tag were validated by the parser: no `..`, no `/` in a
        // component, none starting with `_`.
        Some(
            self.root
                .join("refs")
                .join(reference.registry())
                .join(reference.repository())
                .join("_tags")
                .join(format!("{tag}.json")),
        )
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.layer_path(diff_id).is_file()
    }

    /// A new file under `tmp/`, removed again unless persisted.
    pub fn temp_file(&self) -> Result<TempFile> {
        let path = self.tmp_dir().join(random_name());
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_at(&path))?;
        Ok(TempFile {
            path,
            file: Some(file),
        })
    }

    /// A new directory under `tmp/`, removed with everything in it when dropped.
    pub fn temp_dir(&self) -> Result<TempDir> {
        let path = self.tmp_dir().join(random_name());
        fs::create_dir(&path).map_err(io_at(&path))?;
        Ok(TempDir { path })
    }

    /// Stores a small blob held in memory (an image config) after checking its digest.
    pub fn write_blob(&self, digest: &Digest, bytes: &[u8]) -> Result<PathBuf> {
        digest.expect(&Digest::of(bytes))?;
        let target = self.blob_path(digest);
        if !target.is_file() {
            let mut temp = self.temp_file()?;
            temp.file().write_all(bytes).map_err(io_at(&temp.path))?;
            temp.persist(&target)?;
        }
        Ok(target)
    }

    /// Records a pulled image under its manifest digest and, for a tag, under the tag.
    pub(crate) fn write_record<T: Serialize>(
        &self,
        reference: &Reference,
        manifest_digest: &Digest,
        record: &T,
    ) -> Result<()> {
        let json = serde_json::to_vec_pretty(record).map_err(|error| Error::Io {
            path: self.root.display().to_string(),
            source: error.into(),
        })?;
        let mut targets = vec![self.manifest_record_path(manifest_digest)];
        targets.extend(self.tag_record_path(reference));
        for target in targets {
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(io_at(parent))?;
            }
            let mut temp = self.temp_file()?;
            temp.file().write_all(&json).map_err(io_at(&temp.path))?;
            temp.persist(&target)?;
        }
        Ok(())
    }

    /// The record a previous pull left for `reference`: by digest if it has one, else by tag.
    pub(crate) fn read_record<T: DeserializeOwned>(&self, reference: &Reference) -> Option<T> {
        let path = match reference.digest() {
            Some(digest) => self.manifest_record_path(digest),
            None => self.tag_record_path(reference)?,
        };
        read_json(&path)
    }

    /// Removes every blob, layer and record not reachable from `keep`.
    ///
    /// `keep` holds digests to keep: a manifest digest keeps its record and everything the
    /// record names (config, layer blobs, layer images); a blob or layer digest keeps that
    /// entry alone. Tag records pointing at removed manifests go too. Temporary work older
    /// than a day (from processes that died) is removed as well.
    pub fn remove_unreferenced(&self, keep: &HashSet<Digest>) -> Result<Removed> {
        let mut keep = keep.clone();
        let mut removed = Removed::default();
        let records_dir = self.root.join("manifests/sha256");
        for (path, digest) in entries_by_digest(&records_dir, ".json")? {
            if keep.contains(&digest) {
                if let Some(record) = read_json::<RecordDigests>(&path) {
                    keep.extend(record.digests());
                }
            } else {
                remove_entry(&path, &mut removed)?;
            }
        }
        self.remove_tag_records(&self.root.join("refs"), &keep, &mut removed)?;
        for (path, digest) in entries_by_digest(&self.root.join("blobs/sha256"), "")? {
            if !keep.contains(&digest) {
                remove_entry(&path, &mut removed)?;
            }
        }
        for (path, digest) in entries_by_digest(&self.root.join("layers/sha256"), ".ext4")? {
            if !keep.contains(&digest) {
                remove_entry(&path, &mut removed)?;
            }
        }
        let tmp = self.tmp_dir();
        for entry in fs::read_dir(&tmp).map_err(io_at(&tmp))? {
            let path = entry.map_err(io_at(&tmp))?.path();
            let age = fs::symlink_metadata(&path)
                .and_then(|metadata| metadata.modified())
                .ok()
                .and_then(|modified| SystemTime::now().duration_since(modified).ok());
            if age.is_some_and(|age| age > STALE_TEMP_AGE) {
                remove_entry(&path, &mut removed)?;
            }
        }
        Ok(removed)
    }

    fn remove_tag_records(
        &self,
        dir: &Path,
        keep: &HashSet<Digest>,
        removed: &mut Removed,
    ) -> Result<()> {
        for entry in fs::read_dir(dir).map_err(io_at(dir))? {
            let path = entry.map_err(io_at(dir))?.path();
            if path.is_dir() {
                self.remove_tag_records(&path, keep, removed)?;
                // Leave no empty repository directories behind.
                let _ = fs::remove_dir(&path);
            } else if path.extension().is_some_and(|ext| ext == "json") {
                let wanted = read_json::<RecordDigests>(&path)
                    .is_some_and(|record| keep.contains(&record.manifest_digest));
                if !wanted {
                    remove_entry(&path, removed)?;
                }
            }
        }
        Ok(())
    }
}

/// The digests a stored image record refers to, read without depending on the full record
/// type (so prune keeps working on records from other versions).
#[derive(serde::Deserialize)]
struct RecordDigests {
    manifest_digest: Digest,
    #[serde(default)]
    config_digest: Option<Digest>,
    #[serde(default)]
    layers: Vec<RecordLayer>,
}

#[derive(serde::Deserialize)]
struct RecordLayer {
    digest: Digest,
    diff_id: Digest,
}

impl RecordDigests {
    fn digests(self) -> impl Iterator<Item = Digest> {
        self.config_digest.into_iter().chain(
            self.layers
                .into_iter()
                .flat_map(|layer| [layer.digest, layer.diff_id]),
        )
    }
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

/// Store entries named `<hex><suffix>`; anything else in the directory is left alone.
fn entries_by_digest(dir: &Path, suffix: &str) -> Result<Vec<(PathBuf, Digest)>> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_at(dir))? {
        let entry = entry.map_err(io_at(dir))?;
        let name = entry.file_name();
        let Some(hex) = name.to_str().and_then(|name| name.strip_suffix(suffix)) else {
            continue;
        };
        if let Ok(digest) = Digest::from_hex(hex) {
            entries.push((entry.path(), digest));
        }
    }
    Ok(entries)
}

fn remove_entry(path: &Path, removed: &mut Removed) -> Result<()> {
    let metadata = fs::symlink_metadata(path).map_err(io_at(path))?;
    let result = if metadata.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    match result {
        Ok(()) => {
            removed.entries += 1;
            removed.bytes += metadata.len();
            Ok(())
        }
        // Someone else removed it first: the goal is reached all the same.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(io_at(path)(error)),
    }
}

fn random_name() -> String {
    let suffix: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(16)
        .collect();
    format!("{}-{suffix}", std::process::id())
}

/// A file being written under `tmp/`; dropped without [`TempFile::persist`] it is deleted.
pub struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("file is open until persisted")
    }

    /// Flushes the file to disk and renames it to `target` atomically.
    pub fn persist(mut self, target: &Path) -> Result<()> {
        if let Some(file) = self.file.take() {
            file.sync_all().map_err(io_at(&self.path))?;
        }
        fs::rename(&self.path, target).map_err(io_at(target))?;
        // Renamed away: nothing left for drop to remove.
        self.path = PathBuf::new();
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A directory of work under `tmp/`, removed with its contents when dropped.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_is_empty(store: &Store) -> bool {
        fs::read_dir(store.root().join("tmp"))
            .unwrap()
            .next()
            .is_none()
    }

    #[test]
    fn temp_entries_vanish_unless_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        {
            let mut file = store.temp_file().unwrap();
            file.file().write_all(b"partial").unwrap();
            let work = store.temp_dir().unwrap();
            fs::write(work.path().join("x"), b"x").unwrap();
        }
        assert!(tmp_is_empty(&store));
        let digest = Digest::of(b"blob");
        store.write_blob(&digest, b"blob").unwrap();
        assert_eq!(fs::read(store.blob_path(&digest)).unwrap(), b"blob");
        assert!(matches!(
            store.write_blob(&Digest::of(b"other"), b"blob"),
            Err(Error::DigestMismatch { .. })
        ));
        assert!(tmp_is_empty(&store));
    }

    #[test]
    fn prune_keeps_what_kept_manifests_reach() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let blob = |text: &str| {
            let digest = Digest::of(text.as_bytes());
            store.write_blob(&digest, text.as_bytes()).unwrap();
            digest
        };
        let (config, layer, other) = (blob("config"), blob("layer"), blob("other"));
        let diff_id = Digest::of(b"diff");
        fs::write(store.layer_path(&diff_id), b"ext4").unwrap();
        let orphan_layer = Digest::of(b"orphan");
        fs::write(store.layer_path(&orphan_layer), b"ext4").unwrap();
        let record = |manifest: &Digest, layers: serde_json::Value| {
            serde_json::json!({
                "manifest_digest": manifest, "config_digest": config, "layers": layers
            })
        };
        let kept = Digest::of(b"kept manifest");
        let dropped = Digest::of(b"dropped manifest");
        let kept_ref = Reference::parse("localhost:5000/app:v1").unwrap();
        let dropped_ref = Reference::parse("localhost:5000/app:v2").unwrap();
        store
            .write_record(
                &kept_ref,
                &kept,
                &record(
                    &kept,
                    serde_json::json!([{"digest": layer, "diff_id": diff_id}]),
                ),
            )
            .unwrap();
        store
            .write_record(
                &dropped_ref,
                &dropped,
                &record(&dropped, serde_json::json!([])),
            )
            .unwrap();

        let removed = store
            .remove_unreferenced(&HashSet::from([kept.clone()]))
            .unwrap();
        // The other blob, the orphan layer, the dropped record and its tag record.
        assert_eq!(removed.entries, 4);
        assert!(store.has_blob(&config) && store.has_blob(&layer) && !store.has_blob(&other));
        assert!(store.has_layer(&diff_id) && !store.has_layer(&orphan_layer));
        assert!(store.read_record::<serde_json::Value>(&kept_ref).is_some());
        assert!(store
            .read_record::<serde_json::Value>(&dropped_ref)
            .is_none());
        assert!(store
            .read_record::<serde_json::Value>(&kept_ref.with_digest(kept.clone()))
            .is_some());
    }
}
