//! The local image store as the SDK sees it: pulling OCI images into the layer cache and
//! recording them, listing, inspecting, removing and pruning.
//!
//! Blobs and layer files live in the home's content store (`<home>/images`), shared by every
//! image of that home; the home's database records which images it has and their layers, so
//! removing or pruning never touches what another home uses.

use crate::error::{Result, RuntimeError};
use crate::{install, paths, sandboxes, spec};
use msb_oci::{Digest, PullOptions, PulledImage, Reference, Store};
use msb_state::{Database, ImageRecord, NewImage};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

pub const OCI_KIND: &str = "oci";

fn store() -> Result<Store> {
    Store::open(paths::home_dir().join("images")).map_err(pull_error)
}

/// The runtime error for an OCI failure, by what went wrong.
fn pull_error(error: msb_oci::Error) -> RuntimeError {
    match error {
        msb_oci::Error::InvalidReference { .. } => RuntimeError::InvalidConfig(error.to_string()),
        msb_oci::Error::Unauthorized { .. } => RuntimeError::RegistryAuth(error.to_string()),
        msb_oci::Error::Cancelled => RuntimeError::PullCancelled(error.to_string()),
        other => RuntimeError::ImagePullFailed(other.to_string()),
    }
}

pub fn canonical_reference(reference: &str) -> Result<String> {
    Ok(Reference::parse(reference).map_err(pull_error)?.to_string())
}

/// Pulls `reference` and records it under its canonical name, which is returned.
pub fn pull(
    reference: &str,
    options: &PullOptions,
    progress: &mut dyn FnMut(msb_oci::Progress),
    cancel: &AtomicBool,
) -> Result<String> {
    let reference = Reference::parse(reference).map_err(pull_error)?;
    let store = store()?;
    let before = cached_entries(&store);
    let pulled = match msb_oci::pull(&store, &reference, options, progress, cancel) {
        Ok(pulled) => pulled,
        Err(error) => {
            // Blobs this pull completed before failing (or being cancelled) are verified but
            // belong to no image: a failed pull leaves the cache as it found it.
            let db = sandboxes::open_db()?;
            let keep = referenced(&db)?;
            for entry in cached_entries(&store).difference(&before) {
                if !keep.iter().any(|digest| entry_is(entry, digest)) {
                    let _ = std::fs::remove_file(entry);
                }
            }
            return Err(pull_error(error));
        }
    };
    let name = reference.to_string();
    // Top-most first, as the guest stacks overlayfs lower directories.
    let layers: Vec<String> = pulled
        .layers
        .iter()
        .rev()
        .map(|layer| layer.path.display().to_string())
        .collect();
    let record = serde_json::to_string(&pulled).expect("a pulled image serialises");
    sandboxes::open_db()?.put_image(&NewImage {
        name: &name,
        kind: OCI_KIND,
        path: layers.first().map(String::as_str).unwrap_or_default(),
        digest: &pulled.manifest_digest.to_string(),
        size_bytes: pulled.size_bytes,
        layers: &layers,
        config: Some(&record),
    })?;
    Ok(name)
}

fn pulled(record: &ImageRecord) -> Option<PulledImage> {
    serde_json::from_str(record.config.as_deref()?).ok()
}

/// An image as JSON: `name`, `kind`, `digest`, `size_bytes`, `created_at_ms`,
/// `last_used_at_ms`, `layers` (bottom first: `digest`, `diff_id`, `size_bytes`) and
/// `config` (`env`, `entrypoint`, `cmd`, `working_dir`, `user`; `null` for non-OCI images).
fn describe(record: &ImageRecord) -> Value {
    let image = pulled(record);
    let layers: Vec<Value> = image
        .iter()
        .flat_map(|image| &image.layers)
        .map(|layer| {
            json!({
                "digest": layer.digest.to_string(),
                "diff_id": layer.diff_id.to_string(),
                "size_bytes": layer.compressed_size,
            })
        })
        .collect();
    json!({
        "name": record.name,
        "kind": record.kind,
        "digest": record.digest,
        "size_bytes": record.size_bytes,
        "created_at_ms": record.created_at,
        "last_used_at_ms": record.last_used_at,
        "layers": layers,
        "config": image.map(|image| image.config),
    })
}

pub fn list() -> Result<String> {
    let mut db = sandboxes::open_db()?;
    // A new home shares the cache: the default image is there once installed.
    let _ = install::register_base_image(&mut db, false);
    let images: Vec<Value> = db.images()?.iter().map(describe).collect();
    Ok(Value::Array(images).to_string())
}

pub fn inspect(name: &str) -> Result<String> {
    let db = sandboxes::open_db()?;
    let record = find(&db, name)?;
    Ok(describe(&record).to_string())
}

/// The record of `name`, or `ImageNotFound`; `name` may be any spelling of a reference.
fn find(db: &Database, name: &str) -> Result<ImageRecord> {
    if let Some(record) = db.image(name)? {
        return Ok(record);
    }
    if let Ok(canonical) = canonical_reference(name) {
        if let Some(record) = db.image(&canonical)? {
            return Ok(record);
        }
    }
    Err(RuntimeError::ImageNotFound(
        name.to_string(),
        "see `msb images`".into(),
    ))
}

/// Sandboxes (running or not) whose root filesystem is `image`.
fn users_of(db: &Database, image: &str) -> Result<Vec<String>> {
    Ok(db
        .sandboxes()?
        .into_iter()
        .filter(|sandbox| {
            spec::SandboxSpec::from_json(&sandbox.config).is_ok_and(|spec| match spec.image {
                spec::ImageSource::Local { name } => name == image,
                spec::ImageSource::Oci { reference } => reference == image,
                spec::ImageSource::Bind { .. } => false,
            })
        })
        .map(|sandbox| sandbox.name)
        .collect())
}

/// Removes the image's record, then the cached layers no remaining image uses.
pub fn remove(name: &str) -> Result<()> {
    let mut db = sandboxes::open_db()?;
    let record = find(&db, name)?;
    let users = users_of(&db, &record.name)?;
    if !users.is_empty() {
        return Err(RuntimeError::ImageInUse {
            image: record.name,
            sandboxes: users.join(", "),
        });
    }
    db.remove_image(&record.name)?;
    prune_with(&db)?;
    Ok(())
}

/// Removes cached blobs and layers no recorded image refers to; the bytes freed.
pub fn prune() -> Result<u64> {
    prune_with(&sandboxes::open_db()?)
}

fn prune_with(db: &Database) -> Result<u64> {
    let removed = store()?
        .remove_unreferenced(&referenced(db)?)
        .map_err(pull_error)?;
    Ok(removed.bytes)
}

/// Digests of every blob and layer the recorded images use.
fn referenced(db: &Database) -> Result<HashSet<Digest>> {
    Ok(db
        .images()?
        .iter()
        .filter_map(pulled)
        .flat_map(|image| {
            let layers = image.layers.into_iter();
            layers
                .flat_map(|layer| [layer.digest, layer.diff_id])
                .chain([image.config_digest])
        })
        .collect())
}

/// The blob and layer files in the store.
fn cached_entries(store: &Store) -> HashSet<PathBuf> {
    ["blobs/sha256", "layers/sha256"]
        .iter()
        .filter_map(|dir| std::fs::read_dir(store.root().join(dir)).ok())
        .flatten()
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect()
}

/// Whether a store file holds `digest` (blobs are named by it, layer images by it + `.ext4`).
fn entry_is(entry: &Path, digest: &Digest) -> bool {
    entry
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.trim_end_matches(".ext4") == digest.hex())
}
