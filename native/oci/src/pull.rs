//! Pulling an image into the store, and finding what an earlier pull stored.

use crate::auth::{self, Credentials};
use crate::digest::{Digest, VerifyingWriter};
use crate::error::{io_at, Error, Result};
use crate::layer::{self, Compression, LayerEvent};
use crate::reference::Reference;
use crate::registry::{Descriptor, ParsedConfig, Platform, RegistryClient};
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

const DOWNLOAD_CHUNK: usize = 64 * 1024;
/// Download progress is reported at most once per this many bytes (and at the end).
const PROGRESS_STEP: u64 = 512 * 1024;

#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// Talk plain HTTP to the registry (and its token service); HTTPS otherwise.
    pub insecure: bool,
    /// Used instead of anything in the Docker config.
    pub credentials: Option<Credentials>,
    /// The Docker config to take credentials from; `None` means the default location
    /// (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`), if it exists.
    pub docker_config: Option<PathBuf>,
}

/// What a pull is doing; layers are named by their compressed (manifest) digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Progress {
    Resolving {
        reference: Reference,
    },
    Resolved {
        reference: Reference,
        manifest_digest: Digest,
        layers: Vec<LayerSize>,
    },
    LayerDownloadProgress {
        digest: Digest,
        downloaded: u64,
        total: u64,
    },
    /// Also sent at once for a layer that is already stored.
    LayerDownloadComplete {
        digest: Digest,
    },
    LayerExtractStarted {
        digest: Digest,
    },
    /// Compressed bytes consumed so far (compare with the layer's size).
    LayerExtractProgress {
        digest: Digest,
        bytes: u64,
    },
    LayerExtractComplete {
        digest: Digest,
    },
    /// Building the layer's ext4 image.
    LayerIndexStarted {
        digest: Digest,
    },
    LayerIndexComplete {
        digest: Digest,
    },
    PullComplete {
        reference: Reference,
        manifest_digest: Digest,
    },
}

/// A layer as a resolved manifest lists it: its digest and compressed size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerSize {
    pub digest: Digest,
    pub size_bytes: u64,
}

/// What a sandbox needs from the image config to run the image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PulledLayer {
    /// Digest of the compressed blob, as in the manifest.
    pub digest: Digest,
    /// Digest of the uncompressed tar; the layer image is stored under it.
    pub diff_id: Digest,
    pub compressed_size: u64,
    /// The read-only ext4 image of this layer.
    pub path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PulledImage {
    pub reference: Reference,
    /// Digest of the manifest (or index) the reference resolved to.
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    pub config: ImageConfig,
    /// Bottom layer first, as overlayfs' lower directories are stacked.
    pub layers: Vec<PulledLayer>,
    /// Disk space the layer images use.
    pub size_bytes: u64,
}

/// Pulls `reference` into `store`: resolves it, then downloads and converts each layer
/// that is not stored yet. Checks `cancel` between chunks; a cancelled or failed pull
/// leaves the store as it found it (the blobs and layers it completed belong to no image,
/// so they are removed too).
pub fn pull(
    store: &Store,
    reference: &Reference,
    options: &PullOptions,
    progress: &mut dyn FnMut(Progress),
    cancel: &AtomicBool,
) -> Result<PulledImage> {
    let mut created = Vec::new();
    let pulled = pull_recording(store, reference, options, progress, cancel, &mut created);
    if pulled.is_err() {
        for path in created {
            let _ = std::fs::remove_file(path);
        }
    }
    pulled
}

/// `pull`, noting in `created` each store entry it adds.
fn pull_recording(
    store: &Store,
    reference: &Reference,
    options: &PullOptions,
    progress: &mut dyn FnMut(Progress),
    cancel: &AtomicBool,
    created: &mut Vec<PathBuf>,
) -> Result<PulledImage> {
    progress(Progress::Resolving {
        reference: reference.clone(),
    });
    let credentials = match &options.credentials {
        Some(credentials) => Some(credentials.clone()),
        None => match options
            .docker_config
            .clone()
            .or_else(auth::default_docker_config_path)
        {
            Some(path) => auth::credentials_from_docker_config(&path, reference.registry())?,
            None => None,
        },
    };
    let mut client = RegistryClient::new(reference, credentials, options.insecure);
    let resolved = client.resolve(reference, &Platform::current())?;
    check(cancel)?;
    let manifest = resolved.manifest;
    // Refuse unsupported layers before downloading anything.
    let compressions = manifest
        .layers
        .iter()
        .map(|layer| Compression::from_media_type(&layer.media_type))
        .collect::<Result<Vec<_>>>()?;
    progress(Progress::Resolved {
        reference: reference.clone(),
        manifest_digest: resolved.digest.clone(),
        layers: manifest
            .layers
            .iter()
            .map(|layer| LayerSize {
                digest: layer.digest.clone(),
                size_bytes: layer.size,
            })
            .collect(),
    });
    let config = fetch_config(store, &mut client, &manifest.config, created)?;
    if config.diff_ids.len() != manifest.layers.len() {
        return Err(Error::InvalidConfig {
            detail: format!(
                "{} diff_ids for {} layers",
                config.diff_ids.len(),
                manifest.layers.len()
            ),
        });
    }
    let mut layers = Vec::new();
    for ((descriptor, diff_id), compression) in manifest
        .layers
        .iter()
        .zip(&config.diff_ids)
        .zip(compressions)
    {
        check(cancel)?;
        let path = ensure_layer(
            store,
            &mut client,
            descriptor,
            diff_id,
            compression,
            progress,
            cancel,
            created,
        )?;
        layers.push(PulledLayer {
            digest: descriptor.digest.clone(),
            diff_id: diff_id.clone(),
            compressed_size: descriptor.size,
            path,
        });
    }
    let image = PulledImage {
        reference: reference.clone(),
        manifest_digest: resolved.digest.clone(),
        config_digest: manifest.config.digest.clone(),
        size_bytes: disk_usage(&layers),
        config: ImageConfig {
            env: config.env,
            entrypoint: config.entrypoint,
            cmd: config.cmd,
            working_dir: config.working_dir,
            user: config.user,
        },
        layers,
    };
    store.write_record(reference, &resolved.digest, &image)?;
    progress(Progress::PullComplete {
        reference: reference.clone(),
        manifest_digest: resolved.digest,
    });
    Ok(image)
}

/// What an earlier pull stored for `reference` (by digest if it has one, else by tag),
/// provided all its layer images are still there.
pub fn local(store: &Store, reference: &Reference) -> Option<PulledImage> {
    let mut image: PulledImage = store.read_record(reference)?;
    for layer in &mut image.layers {
        // Paths are recomputed: the store may have moved since the record was written.
        layer.path = store.layer_path(&layer.diff_id);
        if !layer.path.is_file() {
            return None;
        }
    }
    image.reference = reference.clone();
    Some(image)
}

fn check(cancel: &AtomicBool) -> Result<()> {
    if cancel.load(Ordering::Relaxed) {
        Err(Error::Cancelled)
    } else {
        Ok(())
    }
}

fn disk_usage(layers: &[PulledLayer]) -> u64 {
    layers
        .iter()
        .filter_map(|layer| std::fs::metadata(&layer.path).ok())
        .map(|metadata| metadata.blocks() * 512)
        .sum()
}

/// The config from the store, else from the registry (verified, then stored).
fn fetch_config(
    store: &Store,
    client: &mut RegistryClient,
    descriptor: &Descriptor,
    created: &mut Vec<PathBuf>,
) -> Result<ParsedConfig> {
    let path = store.blob_path(&descriptor.digest);
    if let Ok(bytes) = std::fs::read(&path) {
        return crate::registry::parse_config(&bytes);
    }
    let (bytes, parsed) = client.fetch_config(descriptor)?;
    created.push(store.write_blob(&descriptor.digest, &bytes)?);
    Ok(parsed)
}

#[allow(clippy::too_many_arguments)]
fn ensure_layer(
    store: &Store,
    client: &mut RegistryClient,
    descriptor: &Descriptor,
    diff_id: &Digest,
    compression: Compression,
    progress: &mut dyn FnMut(Progress),
    cancel: &AtomicBool,
    created: &mut Vec<PathBuf>,
) -> Result<PathBuf> {
    let digest = &descriptor.digest;
    if store.has_layer(diff_id) {
        progress(Progress::LayerDownloadComplete {
            digest: digest.clone(),
        });
        progress(Progress::LayerExtractComplete {
            digest: digest.clone(),
        });
        progress(Progress::LayerIndexComplete {
            digest: digest.clone(),
        });
        return Ok(store.layer_path(diff_id));
    }
    if !store.has_blob(digest) {
        download(store, client, descriptor, progress, cancel)?;
        created.push(store.blob_path(digest));
    }
    progress(Progress::LayerDownloadComplete {
        digest: digest.clone(),
    });
    progress(Progress::LayerExtractStarted {
        digest: digest.clone(),
    });
    let mut events = |event| {
        progress(match event {
            LayerEvent::Extracting(bytes) => Progress::LayerExtractProgress {
                digest: digest.clone(),
                bytes,
            },
            LayerEvent::Extracted => Progress::LayerExtractComplete {
                digest: digest.clone(),
            },
            LayerEvent::Indexing => Progress::LayerIndexStarted {
                digest: digest.clone(),
            },
        })
    };
    let path = layer::build_layer(
        store,
        &store.blob_path(digest),
        compression,
        diff_id,
        &mut events,
        cancel,
    )?;
    created.push(path.clone());
    progress(Progress::LayerIndexComplete {
        digest: digest.clone(),
    });
    Ok(path)
}

/// Streams a blob into the store, verifying size and digest before it becomes visible.
fn download(
    store: &Store,
    client: &mut RegistryClient,
    descriptor: &Descriptor,
    progress: &mut dyn FnMut(Progress),
    cancel: &AtomicBool,
) -> Result<()> {
    let digest = &descriptor.digest;
    let total = descriptor.size;
    let (mut reader, _) = client.open_blob(digest)?;
    let mut temp = store.temp_file()?;
    let temp_path = temp.path().to_path_buf();
    let mut writer = VerifyingWriter::new(temp.file(), digest.clone(), Some(total));
    let mut buffer = vec![0u8; DOWNLOAD_CHUNK];
    let mut reported = 0;
    loop {
        check(cancel)?;
        let read = reader.read(&mut buffer).map_err(|error| Error::Transport {
            url: format!("blob {digest}"),
            detail: error.to_string(),
        })?;
        if read == 0 {
            break;
        }
        // A server sending more than the manifest promised is wrong; stop reading early.
        if writer.bytes_written() + read as u64 > total {
            return Err(Error::SizeMismatch {
                digest: digest.to_string(),
                expected: total,
                actual: writer.bytes_written() + read as u64,
            });
        }
        writer
            .write_all(&buffer[..read])
            .map_err(io_at(&temp_path))?;
        let downloaded = writer.bytes_written();
        if downloaded - reported >= PROGRESS_STEP || downloaded == total {
            reported = downloaded;
            progress(Progress::LayerDownloadProgress {
                digest: digest.clone(),
                downloaded,
                total,
            });
        }
    }
    writer.finish()?;
    temp.persist(&store.blob_path(digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_events_are_json_objects_tagged_by_event() {
        let digest = Digest::of(b"layer");
        let resolved = Progress::Resolved {
            reference: Reference::parse("alpine").unwrap(),
            manifest_digest: digest.clone(),
            layers: vec![LayerSize {
                digest: digest.clone(),
                size_bytes: 7,
            }],
        };
        assert_eq!(
            serde_json::to_value(&resolved).unwrap(),
            serde_json::json!({
                "event": "resolved",
                "reference": "docker.io/library/alpine:latest",
                "manifest_digest": digest.to_string(),
                "layers": [{"digest": digest.to_string(), "size_bytes": 7}],
            })
        );
        let download = Progress::LayerDownloadProgress {
            digest: digest.clone(),
            downloaded: 1,
            total: 2,
        };
        assert_eq!(
            serde_json::to_value(&download).unwrap(),
            serde_json::json!({
                "event": "layer_download_progress",
                "digest": digest.to_string(),
                "downloaded": 1,
                "total": 2,
            })
        );
    }
}
