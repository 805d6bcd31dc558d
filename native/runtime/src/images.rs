//! The local image store as the SDK sees it: pulling OCI images into the layer cache and
//! recording them, listing, inspecting, removing and pruning.
//!
//! Blobs and layer files live in the home's content store (`<home>/images`), shared by every
//! image of that home; the home's database records which images it has and their layers, so
//! removing or pruning never touches what another home uses.

use crate::error::{Result, RuntimeError};
use crate::install;
use msb_oci::{Digest, ImageConfig, PullOptions, PulledImage, Reference, Store};
use msb_state::{Database, ImageRecord, NewImage};
use msb_supervisor::spec::{ImageSource, SandboxSpec};
use msb_supervisor::{database, paths};
use serde::Serialize;
use std::collections::HashSet;
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
    let pulled =
        msb_oci::pull(&store, &reference, options, progress, cancel).map_err(pull_error)?;
    let name = reference.to_string();
    // Top-most first, as the guest stacks overlayfs lower directories.
    let layers: Vec<String> = pulled
        .layers
        .iter()
        .rev()
        .map(|layer| layer.path.display().to_string())
        .collect();
    let record = serde_json::to_string(&pulled).expect("a pulled image serialises");
    database::open()?.put_image(&NewImage {
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

/// A local image as the SDK sees it (`ImageInfo` / `ImageDetail`).
#[derive(Debug, Serialize)]
pub struct ImageInfo {
    pub name: String,
    /// `oci` or `ext4` (the default image).
    pub kind: String,
    pub digest: String,
    pub size_bytes: u64,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    /// Bottom layer first; none for a non-OCI image.
    pub layers: Vec<LayerInfo>,
    /// `None` for a non-OCI image.
    pub config: Option<ImageConfig>,
}

#[derive(Debug, Serialize)]
pub struct LayerInfo {
    pub digest: String,
    pub diff_id: String,
    /// Compressed size, as in the manifest.
    pub size_bytes: u64,
}

impl ImageInfo {
    fn of(record: ImageRecord) -> Self {
        let image = pulled(&record);
        let layers = image
            .iter()
            .flat_map(|image| &image.layers)
            .map(|layer| LayerInfo {
                digest: layer.digest.to_string(),
                diff_id: layer.diff_id.to_string(),
                size_bytes: layer.compressed_size,
            })
            .collect();
        Self {
            name: record.name,
            kind: record.kind,
            digest: record.digest,
            size_bytes: record.size_bytes,
            created_at: record.created_at,
            last_used_at: record.last_used_at,
            layers,
            config: image.map(|image| image.config),
        }
    }
}

pub fn list() -> Result<Vec<ImageInfo>> {
    let mut db = database::open()?;
    // A new home shares the cache: the default image is there once installed.
    let _ = install::register_base_image(&mut db, false);
    Ok(db.images()?.into_iter().map(ImageInfo::of).collect())
}

pub fn inspect(name: &str) -> Result<ImageInfo> {
    let db = database::open()?;
    Ok(ImageInfo::of(find(&db, name)?))
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
            SandboxSpec::from_json(&sandbox.config).is_ok_and(|spec| match spec.image {
                ImageSource::Local { name } => name == image,
                ImageSource::Oci { reference } => reference == image,
                ImageSource::Bind { .. } | ImageSource::Disk { .. } => false,
            })
        })
        .map(|sandbox| sandbox.name)
        .collect())
}

/// Removes the image's record, then the cached layers no remaining image uses.
pub fn remove(name: &str) -> Result<()> {
    let mut db = database::open()?;
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
    prune_with(&database::open()?)
}

fn prune_with(db: &Database) -> Result<u64> {
    let removed = store()?
        .remove_unreferenced(&referenced(db)?)
        .map_err(pull_error)?;
    Ok(removed.bytes)
}

/// The manifest digests of the recorded OCI images: the store keeps each one's config,
/// blobs and layers.
fn referenced(db: &Database) -> Result<HashSet<Digest>> {
    Ok(db
        .images()?
        .iter()
        .filter(|record| record.kind == OCI_KIND)
        .filter_map(|record| Digest::parse(&record.digest).ok())
        .collect())
}
