//! Pulls from a real registry: Debian's `docker-registry` (the CNCF Distribution server),
//! started on a free local port with its storage in a temporary directory. The test pushes
//! a two-layer image through the Distribution HTTP API first, so it needs no network.
//!
//! Set-up: `apt-get install -y docker-registry e2fsprogs` (the CI script installs both).

use msb_oci::store::Store;
use msb_oci::{local, pull, Digest, Error, Progress, PullOptions, Reference};
use std::collections::HashSet;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// The registry process, stopped when the test ends however it ends.
struct Registry {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry() -> Registry {
    assert!(
        Path::new(REGISTRY_BINARY).exists(),
        "{REGISTRY_BINARY} is missing: install Debian's docker-registry package \
         (apt-get install -y docker-registry) to run the msb-oci registry test"
    );
    let dir = tempfile::tempdir().unwrap();
    // Ask the kernel for a free port, then hand it to the registry.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {address}\n",
            dir.path().join("storage").display()
        ),
    )
    .unwrap();
    let child = Command::new(REGISTRY_BINARY)
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start docker-registry");
    let registry = Registry {
        child,
        address,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = ureq::get(&format!("http://{}/v2/", registry.address)).call() {
            if response.status() == 200 {
                return registry;
            }
        }
        assert!(Instant::now() < deadline, "docker-registry did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut header = tar::Header::new_gnu();
        if path.ends_with('/') {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
        } else {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o644);
        }
        header.set_size(data.len() as u64);
        header.set_mtime(1_700_000_000);
        builder.append_data(&mut header, path, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn push_blob(address: &str, repository: &str, blob: &[u8]) -> Digest {
    let digest = Digest::of(blob);
    let start = ureq::post(&format!("http://{address}/v2/{repository}/blobs/uploads/"))
        .call()
        .expect("start upload");
    assert_eq!(start.status(), 202);
    let location = start
        .header("Location")
        .expect("upload location")
        .to_string();
    let location = if location.starts_with('/') {
        format!("http://{address}{location}")
    } else {
        location
    };
    let separator = if location.contains('?') { '&' } else { '?' };
    let done = ureq::put(&format!("{location}{separator}digest={digest}"))
        .set("Content-Type", "application/octet-stream")
        .send_bytes(blob)
        .expect("finish upload");
    assert_eq!(done.status(), 201);
    digest
}

fn push_manifest(address: &str, repository: &str, selector: &str, media_type: &str, body: &[u8]) {
    let response = ureq::put(&format!(
        "http://{address}/v2/{repository}/manifests/{selector}"
    ))
    .set("Content-Type", media_type)
    .send_bytes(body)
    .expect("push manifest");
    assert_eq!(response.status(), 201);
}

struct Pushed {
    manifest_digest: Digest,
    index_digest: Digest,
    layers: Vec<(Digest, Digest)>,
}

/// Pushes `test/app:v1` (two layers, the second deleting a file of the first) and
/// `test/app:multi`, an index whose linux/amd64 entry is that image.
fn push_image(address: &str) -> Pushed {
    let repository = "test/app";
    let bottom = tar_of(&[
        ("etc/", b""),
        ("etc/hello", b"hello from layer one\n"),
        ("etc/old", b"to be deleted\n"),
    ]);
    let top = tar_of(&[
        ("etc/", b""),
        ("etc/.wh.old", b""),
        ("etc/new", b"added by layer two\n"),
    ]);
    let mut layers = Vec::new();
    let mut descriptors = Vec::new();
    for tar in [&bottom, &top] {
        let compressed = gzip(tar);
        let digest = push_blob(address, repository, &compressed);
        descriptors.push(serde_json::json!({
            "mediaType": GZIP_LAYER, "digest": digest, "size": compressed.len()
        }));
        layers.push((digest, Digest::of(tar)));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/bin:/bin", "GREETING=hi"],
            "Entrypoint": ["/bin/sh", "-c"],
            "Cmd": ["echo hello"],
            "WorkingDir": "/srv",
            "User": "1000"
        },
        "rootfs": {"type": "layers", "diff_ids": [layers[0].1, layers[1].1]}
    }))
    .unwrap();
    let config_digest = push_blob(address, repository, &config);
    let manifest_for = |annotation: &str| {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest, "size": config.len()
            },
            "layers": descriptors,
            "annotations": {"variant": annotation}
        }))
        .unwrap()
    };
    let manifest = manifest_for("amd64");
    push_manifest(address, repository, "v1", OCI_MANIFEST, &manifest);
    // A second manifest stands in for another platform's build.
    let other = manifest_for("arm64");
    let other_digest = Digest::of(&other);
    push_manifest(
        address,
        repository,
        &other_digest.to_string(),
        OCI_MANIFEST,
        &other,
    );
    let manifest_digest = Digest::of(&manifest);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": other_digest, "size": other.len(),
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": manifest.len(),
             "platform": {"os": "linux", "architecture": "amd64"}}
        ]
    }))
    .unwrap();
    push_manifest(address, repository, "multi", OCI_INDEX, &index);
    Pushed {
        manifest_digest,
        index_digest: Digest::of(&index),
        layers,
    }
}

fn insecure() -> PullOptions {
    PullOptions {
        insecure: true,
        credentials: None,
        // No credentials from the user's own Docker config in a test.
        docker_config: Some(PathBuf::from("/nonexistent/config.json")),
    }
}

fn debugfs(image: &Path, request: &str) -> String {
    let output = Command::new("debugfs")
        .args(["-R", request])
        .arg(image)
        .output()
        .expect("debugfs (e2fsprogs)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn dir_is_empty(path: &Path) -> bool {
    std::fs::read_dir(path).unwrap().next().is_none()
}

#[test]
fn pulls_a_two_layer_image_from_a_real_registry() {
    let registry = start_registry();
    let pushed = push_image(&registry.address);
    let cache = tempfile::tempdir().unwrap();
    let store = Store::open(cache.path().join("oci")).unwrap();
    let never = AtomicBool::new(false);

    // By tag.
    let reference = Reference::parse(&format!("{}/test/app:v1", registry.address)).unwrap();
    let mut events = Vec::new();
    let image = pull(
        &store,
        &reference,
        &insecure(),
        &mut |event| events.push(event),
        &never,
    )
    .unwrap();
    assert_eq!(image.manifest_digest, pushed.manifest_digest);
    assert_eq!(image.config.env, ["PATH=/usr/bin:/bin", "GREETING=hi"]);
    assert_eq!(image.config.entrypoint, ["/bin/sh", "-c"]);
    assert_eq!(image.config.cmd, ["echo hello"]);
    assert_eq!(image.config.working_dir.as_deref(), Some("/srv"));
    assert_eq!(image.config.user.as_deref(), Some("1000"));
    let layer_ids: Vec<_> = image
        .layers
        .iter()
        .map(|layer| (layer.digest.clone(), layer.diff_id.clone()))
        .collect();
    assert_eq!(layer_ids, pushed.layers);
    assert!(image.size_bytes > 0);
    assert_eq!(
        debugfs(&image.layers[0].path, "cat /etc/hello"),
        "hello from layer one\n"
    );
    let whiteout = debugfs(&image.layers[1].path, "stat /etc/old");
    assert!(whiteout.contains("Type: character special"), "{whiteout}");

    assert_eq!(
        events[0],
        Progress::Resolving {
            reference: reference.clone()
        }
    );
    match &events[1] {
        Progress::Resolved {
            manifest_digest,
            layers,
            ..
        } => {
            assert_eq!(manifest_digest, &pushed.manifest_digest);
            assert_eq!(layers.len(), 2);
        }
        other => panic!("expected Resolved, got {other:?}"),
    }
    for (digest, _) in &pushed.layers {
        let position = |wanted: &dyn Fn(&Progress) -> bool| {
            events
                .iter()
                .position(wanted)
                .unwrap_or_else(|| panic!("missing event for {digest}: {events:?}"))
        };
        let downloaded = position(
            &|e| matches!(e, Progress::LayerDownloadProgress { digest: d, downloaded, total } if d == digest && downloaded == total),
        );
        let complete = position(
            &|e| matches!(e, Progress::LayerDownloadComplete { digest: d } if d == digest),
        );
        let extracting =
            position(&|e| matches!(e, Progress::LayerExtractStarted { digest: d } if d == digest));
        let extracted =
            position(&|e| matches!(e, Progress::LayerExtractComplete { digest: d } if d == digest));
        let indexing =
            position(&|e| matches!(e, Progress::LayerIndexStarted { digest: d } if d == digest));
        let indexed =
            position(&|e| matches!(e, Progress::LayerIndexComplete { digest: d } if d == digest));
        assert!(downloaded < complete && complete < extracting && extracting < extracted);
        assert!(extracted < indexing && indexing < indexed);
    }
    assert_eq!(
        events.last(),
        Some(&Progress::PullComplete {
            reference: reference.clone(),
            manifest_digest: pushed.manifest_digest.clone()
        })
    );
    assert_eq!(local(&store, &reference), Some(image.clone()));

    // Again: everything is stored, so nothing is downloaded or built.
    let mut events = Vec::new();
    let again = pull(
        &store,
        &reference,
        &insecure(),
        &mut |event| events.push(event),
        &never,
    )
    .unwrap();
    assert_eq!(again, image);
    assert!(!events.iter().any(|event| matches!(
        event,
        Progress::LayerDownloadProgress { .. } | Progress::LayerExtractStarted { .. }
    )));

    // By digest, and through an index that offers two platforms.
    let by_digest = reference.with_digest(pushed.manifest_digest.clone());
    let pinned = pull(&store, &by_digest, &insecure(), &mut |_| {}, &never).unwrap();
    assert_eq!(pinned.layers, image.layers);
    let multi = Reference::parse(&format!("{}/test/app:multi", registry.address)).unwrap();
    let from_index = pull(&store, &multi, &insecure(), &mut |_| {}, &never).unwrap();
    assert_eq!(from_index.manifest_digest, pushed.index_digest);
    assert_eq!(from_index.layers, image.layers);
    let pinned_index = multi.with_digest(pushed.index_digest.clone());
    assert!(local(&store, &pinned_index).is_some());

    // A digest the registry does not have, and a tag it does not have.
    let wrong = reference.with_digest(Digest::of(b"not a manifest"));
    assert!(matches!(
        pull(&store, &wrong, &insecure(), &mut |_| {}, &never),
        Err(Error::NotFound { .. })
    ));
    let missing = Reference::parse(&format!("{}/test/app:nope", registry.address)).unwrap();
    assert!(matches!(
        pull(&store, &missing, &insecure(), &mut |_| {}, &never),
        Err(Error::NotFound { .. })
    ));
    // Without `insecure` the client speaks HTTPS, which a plain HTTP registry cannot answer.
    assert!(matches!(
        pull(
            &store,
            &reference,
            &PullOptions::default(),
            &mut |_| {},
            &never
        ),
        Err(Error::Transport { .. })
    ));

    // Prune keeping only the index: the layers stay, the v1 records go.
    let removed = store
        .remove_unreferenced(&HashSet::from([pushed.index_digest.clone()]))
        .unwrap();
    assert!(removed.entries >= 2, "{removed:?}");
    assert!(local(&store, &reference).is_none());
    assert!(local(&store, &multi).is_some());
    store.remove_unreferenced(&HashSet::new()).unwrap();
    assert!(local(&store, &multi).is_none());
    assert!(dir_is_empty(&store.root().join("layers/sha256")));
    assert!(dir_is_empty(&store.root().join("blobs/sha256")));
}

#[test]
fn a_cancelled_pull_leaves_no_partial_entries() {
    let registry = start_registry();
    let pushed = push_image(&registry.address);
    let reference = Reference::parse(&format!("{}/test/app:v1", registry.address)).unwrap();
    // Cancel before any layer, in the middle of a download, and while extracting.
    let triggers: [fn(&Progress) -> bool; 3] = [
        |event| matches!(event, Progress::Resolved { .. }),
        |event| matches!(event, Progress::LayerDownloadProgress { .. }),
        |event| matches!(event, Progress::LayerExtractStarted { .. }),
    ];
    for trigger in triggers {
        let cache = tempfile::tempdir().unwrap();
        let store = Store::open(cache.path().join("oci")).unwrap();
        let cancel = AtomicBool::new(false);
        let result = pull(
            &store,
            &reference,
            &insecure(),
            &mut |event| {
                if trigger(&event) {
                    cancel.store(true, Ordering::Relaxed);
                }
            },
            &cancel,
        );
        assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
        assert!(dir_is_empty(&store.root().join("tmp")));
        assert!(dir_is_empty(&store.root().join("layers/sha256")));
        // Only complete, verified blobs may be in the store.
        for entry in std::fs::read_dir(store.root().join("blobs/sha256")).unwrap() {
            let path = entry.unwrap().path();
            let digest = Digest::from_hex(path.file_name().unwrap().to_str().unwrap()).unwrap();
            assert_eq!(Digest::of(&std::fs::read(&path).unwrap()), digest);
        }
        assert!(local(&store, &reference).is_none());
        // The next pull finishes the job.
        let never = AtomicBool::new(false);
        let image = pull(&store, &reference, &insecure(), &mut |_| {}, &never).unwrap();
        assert_eq!(image.manifest_digest, pushed.manifest_digest);
    }
}
