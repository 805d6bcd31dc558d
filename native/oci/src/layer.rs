//! Turns a layer blob (tar, optionally gzip-compressed) into a read-only ext4 image.
//!
//! The tar is extracted into a staging directory and `mkfs.ext4 -d` copies that tree (with
//! owners, modes, times, device nodes and xattrs) into an image. Extraction runs as root on
//! untrusted input, so it never lets an entry reach outside the staging root: paths with
//! `..` or a leading `/` are refused, and no entry may pass through a symlink (parents are
//! checked with `lstat` before use; nothing else writes to the staging directory meanwhile).
//!
//! OCI whiteouts are rewritten into overlayfs' form, because the guest stacks these layers
//! with overlayfs: `.wh.NAME` becomes a 0:0 character device `NAME`, and `.wh..wh..opq`
//! marks its directory opaque with `trusted.overlay.opaque=y`.

use crate::digest::{Digest, VerifyingReader};
use crate::error::{io_at, Error, Result};
use crate::store::Store;
use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";
/// Progress is reported at most once per this many compressed bytes.
const PROGRESS_STEP: u64 = 256 * 1024;

/// How a layer blob is compressed, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

impl Compression {
    /// Accepts OCI and Docker layer media types. zstd layers are refused by name: the
    /// runtime would need a zstd decoder, which this crate does not carry.
    pub fn from_media_type(media_type: &str) -> Result<Compression> {
        // Non-distributable variants (`...nondistributable.v1.tar+gzip`) share the suffix.
        let compression = if media_type.ends_with(".tar+gzip")
            || media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip"
            || media_type == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
        {
            Compression::Gzip
        } else if media_type.ends_with(".tar") || media_type.ends_with(".diff.tar") {
            Compression::None
        } else {
            return Err(Error::UnsupportedMediaType {
                media_type: media_type.to_string(),
            });
        };
        Ok(compression)
    }
}

/// The stages of [`build_layer`], for progress reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerEvent {
    /// Compressed bytes of the blob consumed so far (comparable to the blob's size).
    Extracting(u64),
    Extracted,
    /// `mkfs.ext4` is building the image; it reports nothing until done.
    Indexing,
}

/// Builds (unless already stored) the ext4 image of the layer in `blob`, whose uncompressed
/// content must hash to `diff_id`, and returns its path in the store. On any failure or
/// cancellation nothing is left in the store.
pub fn build_layer(
    store: &Store,
    blob: &Path,
    compression: Compression,
    diff_id: &Digest,
    events: &mut dyn FnMut(LayerEvent),
    cancel: &AtomicBool,
) -> Result<PathBuf> {
    let target = store.layer_path(diff_id);
    if target.is_file() {
        return Ok(target);
    }
    let staging = store.temp_dir()?;
    let root = staging.path().join("root");
    fs::create_dir(&root).map_err(io_at(&root))?;
    let file = File::open(blob).map_err(io_at(blob))?;
    let mut progress = |bytes| events(LayerEvent::Extracting(bytes));
    let counted = ProgressReader {
        inner: file,
        read: 0,
        reported: 0,
        progress: &mut progress,
        cancel,
    };
    let result = match compression {
        Compression::None => extract_verified(BufReader::new(counted), &root, diff_id),
        Compression::Gzip => {
            // MultiGzDecoder: some tools write layers as several concatenated gzip members.
            let decoder = flate2::read::MultiGzDecoder::new(BufReader::new(counted));
            extract_verified(decoder, &root, diff_id)
        }
    };
    // A read error caused by the cancel flag is a cancellation, not a broken layer.
    if cancel.load(Ordering::Relaxed) {
        return Err(Error::Cancelled);
    }
    result?;
    events(LayerEvent::Extracted);
    events(LayerEvent::Indexing);
    let image = staging.path().join("layer.ext4");
    let label = format!("l-{}", &diff_id.hex()[..14]);
    msb_images::ext4::image_from_directory(&root, &image, &label)?;
    if cancel.load(Ordering::Relaxed) {
        return Err(Error::Cancelled);
    }
    fs::rename(&image, &target).map_err(io_at(&target))?;
    Ok(target)
}

/// Extracts the tar stream `reader` into `root` and checks it hashes to `diff_id`.
fn extract_verified(reader: impl Read, root: &Path, diff_id: &Digest) -> Result<()> {
    let verifying = VerifyingReader::new(reader, diff_id.clone(), None);
    let mut archive = tar::Archive::new(verifying);
    let extracted = extract(&mut archive, root, diff_id);
    // The tar reader stops at the end-of-archive blocks; the digest covers any padding after.
    let mut verifying = archive.into_inner();
    let drained = io::copy(&mut verifying, &mut io::sink());
    match (extracted, drained) {
        // With the whole stream read, a wrong digest explains any other failure best: a
        // corrupted stream usually breaks the tar structure too.
        (extracted, Ok(_)) => {
            verifying.finish()?;
            extracted
        }
        (Err(error), Err(_)) => Err(error),
        (Ok(()), Err(error)) => Err(invalid(diff_id, error)),
    }
}

fn invalid(diff_id: &Digest, error: impl std::fmt::Display) -> Error {
    Error::InvalidLayer {
        digest: diff_id.to_string(),
        detail: error.to_string(),
    }
}

/// Counts compressed bytes for progress and stops reading once `cancel` is set.
struct ProgressReader<'a, R> {
    inner: R,
    read: u64,
    reported: u64,
    progress: &'a mut dyn FnMut(u64),
    cancel: &'a AtomicBool,
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(io::Error::other("cancelled"));
        }
        let read = self.inner.read(buffer)?;
        self.read += read as u64;
        if self.read - self.reported >= PROGRESS_STEP || (read == 0 && self.read > self.reported) {
            self.reported = self.read;
            (self.progress)(self.read);
        }
        Ok(read)
    }
}

fn extract<R: Read>(archive: &mut tar::Archive<R>, root: &Path, diff_id: &Digest) -> Result<()> {
    let mut directory_times = Vec::new();
    for entry in archive.entries().map_err(|error| invalid(diff_id, error))? {
        let mut entry = entry.map_err(|error| invalid(diff_id, error))?;
        if let Some(mtime) = extract_entry(&mut entry, root, diff_id)? {
            directory_times.push(mtime);
        }
    }
    // Directory times last and deepest first: creating entries inside changes them.
    for (path, mtime) in directory_times.iter().rev() {
        set_mtime(path, *mtime)?;
    }
    Ok(())
}

/// Where an entry goes, as path components below the root (no `.`, `..` or `/`).
fn entry_components(raw: &Path) -> Result<Vec<OsString>> {
    let refuse = |reason: &str| Error::UnsafePath {
        entry: raw.display().to_string(),
        reason: reason.to_string(),
    };
    let mut components = Vec::new();
    for component in raw.components() {
        match component {
            Component::Normal(name) => components.push(name.to_os_string()),
            Component::CurDir => {}
            Component::ParentDir => return Err(refuse("contains a .. component")),
            Component::RootDir | Component::Prefix(_) => return Err(refuse("is an absolute path")),
        }
    }
    Ok(components)
}

/// Walks `components` from `root`, requiring each to be a real directory (never a symlink),
/// creating missing ones when `create` is set.
fn resolve_directory(
    root: &Path,
    components: &[OsString],
    raw: &Path,
    create: bool,
) -> Result<PathBuf> {
    let mut path = root.to_path_buf();
    for component in components {
        path.push(component);
        match fs::symlink_metadata(&path) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(metadata) => {
                let what = if metadata.file_type().is_symlink() {
                    "passes through a symlink"
                } else {
                    "passes through a non-directory"
                };
                return Err(Error::UnsafePath {
                    entry: raw.display().to_string(),
                    reason: format!("{what} ({})", display_below(root, &path)),
                });
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound && create => {
                fs::create_dir(&path).map_err(io_at(&path))?;
            }
            Err(error) => return Err(io_at(&path)(error)),
        }
    }
    Ok(path)
}

fn display_below(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Extracts one entry; returns the directory and its mtime when the entry is a directory
/// (applied after everything else).
fn extract_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    root: &Path,
    diff_id: &Digest,
) -> Result<Option<(PathBuf, u64)>> {
    let raw = entry
        .path()
        .map_err(|error| invalid(diff_id, error))?
        .into_owned();
    let components = entry_components(&raw)?;
    let kind = entry.header().entry_type();
    let Some((name, parents)) = components.split_last() else {
        // `./` itself: the layer's root directory.
        return if kind.is_dir() {
            apply_metadata(entry, root, diff_id)?;
            Ok(Some((root.to_path_buf(), header_mtime(entry))))
        } else {
            Err(Error::UnsafePath {
                entry: raw.display().to_string(),
                reason: "names the root as a non-directory".into(),
            })
        };
    };
    let parent = resolve_directory(root, parents, &raw, true)?;
    let name_bytes = name.as_bytes();
    if name_bytes == OPAQUE_MARKER.as_bytes() {
        set_xattr(&parent, OPAQUE_XATTR, b"y")?;
        return Ok(None);
    }
    if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
        // Other `.wh..wh.*` names are aufs bookkeeping with no meaning in an image.
        if !hidden.starts_with(WHITEOUT_PREFIX.as_bytes()) && !hidden.is_empty() {
            let path = parent.join(OsStr::from_bytes(hidden));
            remove_existing(&path, false)?;
            make_node(&path, libc::S_IFCHR, 0, 0, 0)?;
        }
        return Ok(None);
    }
    let path = parent.join(name);
    match kind {
        tar::EntryType::Directory => {
            remove_existing(&path, true)?;
            if !path.is_dir() {
                fs::create_dir(&path).map_err(io_at(&path))?;
            }
            apply_metadata(entry, &path, diff_id)?;
            return Ok(Some((path, header_mtime(entry))));
        }
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            remove_existing(&path, false)?;
            let mut file = File::options()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(io_at(&path))?;
            io::copy(entry, &mut file).map_err(|error| invalid(diff_id, error))?;
        }
        tar::EntryType::Symlink => {
            let target = link_name(entry, diff_id, &raw)?;
            remove_existing(&path, false)?;
            // The target is only ever followed inside the guest, never here.
            std::os::unix::fs::symlink(&target, &path).map_err(io_at(&path))?;
        }
        tar::EntryType::Link => {
            let target = link_name(entry, diff_id, &raw)?;
            let target_components = entry_components(&target)?;
            let Some((target_name, target_parents)) = target_components.split_last() else {
                return Err(Error::UnsafePath {
                    entry: raw.display().to_string(),
                    reason: "hard link to the root".into(),
                });
            };
            let source = resolve_directory(root, target_parents, &target, false)?.join(target_name);
            let metadata = fs::symlink_metadata(&source).map_err(|_| Error::InvalidLayer {
                digest: diff_id.to_string(),
                detail: format!(
                    "{} links to {}, which is not earlier in the layer",
                    raw.display(),
                    target.display()
                ),
            })?;
            if metadata.is_dir() {
                return Err(Error::InvalidLayer {
                    digest: diff_id.to_string(),
                    detail: format!("{} is a hard link to a directory", raw.display()),
                });
            }
            if source != path {
                remove_existing(&path, false)?;
                fs::hard_link(&source, &path).map_err(io_at(&path))?;
            }
            // A hard link shares its target's inode, metadata included.
            return Ok(None);
        }
        tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
            let header = entry.header();
            let major = header.device_major().ok().flatten().unwrap_or(0);
            let minor = header.device_minor().ok().flatten().unwrap_or(0);
            let file_type = match kind {
                tar::EntryType::Char => libc::S_IFCHR,
                tar::EntryType::Block => libc::S_IFBLK,
                _ => libc::S_IFIFO,
            };
            remove_existing(&path, false)?;
            make_node(&path, file_type, 0o600, major, minor)?;
        }
        // Metadata-only records (PAX globals and the like) create nothing.
        _ => return Ok(None),
    }
    apply_metadata(entry, &path, diff_id)?;
    set_mtime(&path, header_mtime(entry))?;
    Ok(None)
}

fn link_name<R: Read>(entry: &tar::Entry<'_, R>, diff_id: &Digest, raw: &Path) -> Result<PathBuf> {
    entry
        .link_name()
        .map_err(|error| invalid(diff_id, error))?
        .map(|name| name.into_owned())
        .ok_or_else(|| Error::InvalidLayer {
            digest: diff_id.to_string(),
            detail: format!("link {} has no target", raw.display()),
        })
}

/// Clears the way for a new entry at `path`, as a later tar entry replaces an earlier
/// one. An existing directory stays when a directory is wanted (it keeps its children).
fn remove_existing(path: &Path, want_directory: bool) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_dir() => {
            if !want_directory {
                fs::remove_dir_all(path).map_err(io_at(path))?;
            }
        }
        Ok(_) => fs::remove_file(path).map_err(io_at(path))?,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(io_at(path)(error)),
    }
    Ok(())
}

fn header_mtime<R: Read>(entry: &tar::Entry<'_, R>) -> u64 {
    entry.header().mtime().unwrap_or(0)
}

/// Owner (PAX `uid`/`gid` override the header's, for large ids), mode, then xattrs.
/// The mode comes after the owner: chown clears set-uid and set-gid bits.
fn apply_metadata<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    path: &Path,
    diff_id: &Digest,
) -> Result<()> {
    let header = entry.header();
    let old = header.as_old();
    let mut uid = numeric(&old.uid, header.uid(), diff_id)?;
    let mut gid = numeric(&old.gid, header.gid(), diff_id)?;
    let mode = numeric(&old.mode, header.mode().map(u64::from), diff_id)? as u32 & 0o7777;
    let is_symlink = header.entry_type().is_symlink();
    let mut xattrs = HashMap::new();
    if let Some(extensions) = entry
        .pax_extensions()
        .map_err(|error| invalid(diff_id, error))?
    {
        for extension in extensions {
            let extension = extension.map_err(|error| invalid(diff_id, error))?;
            let Ok(key) = extension.key() else { continue };
            match key {
                "uid" => uid = parse_id(extension.value_bytes()).unwrap_or(uid),
                "gid" => gid = parse_id(extension.value_bytes()).unwrap_or(gid),
                _ => {
                    if let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX) {
                        xattrs.insert(name.to_string(), extension.value_bytes().to_vec());
                    }
                }
            }
        }
    }
    let (uid, gid) = (
        u32::try_from(uid).map_err(|error| invalid(diff_id, error))?,
        u32::try_from(gid).map_err(|error| invalid(diff_id, error))?,
    );
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(io_at(path))?;
    if !is_symlink {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_at(path))?;
    }
    for (name, value) in xattrs {
        set_xattr(path, &name, &value)?;
    }
    Ok(())
}

/// A numeric header field; blank (all NUL or spaces) reads as 0, as Go's archive/tar (which
/// writes most layers) reads it too.
fn numeric(field: &[u8], parsed: io::Result<u64>, diff_id: &Digest) -> Result<u64> {
    if field.iter().all(|&byte| byte == 0 || byte == b' ') {
        return Ok(0);
    }
    parsed.map_err(|error| invalid(diff_id, error))
}

fn parse_id(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| Error::UnsafePath {
        entry: path.display().to_string(),
        reason: "contains a NUL byte".into(),
    })
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> Result<()> {
    let c_name = CString::new(name).map_err(|_| Error::UnsafePath {
        entry: path.display().to_string(),
        reason: format!("xattr name {name:?} contains a NUL byte"),
    })?;
    let c_path = c_path(path)?;
    // lsetxattr: on a symlink this sets the link's own attribute, never its target's.
    let result = unsafe {
        libc::lsetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if result != 0 {
        return Err(io_at(path)(io::Error::last_os_error()));
    }
    Ok(())
}

fn make_node(
    path: &Path,
    file_type: libc::mode_t,
    mode: libc::mode_t,
    major: u32,
    minor: u32,
) -> Result<()> {
    let c_path = c_path(path)?;
    let result = unsafe {
        libc::mknod(
            c_path.as_ptr(),
            file_type | mode,
            libc::makedev(major, minor),
        )
    };
    if result != 0 {
        return Err(io_at(path)(io::Error::last_os_error()));
    }
    Ok(())
}

fn set_mtime(path: &Path, mtime: u64) -> Result<()> {
    let c_path = c_path(path)?;
    let time = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    let times = [time, time];
    // AT_SYMLINK_NOFOLLOW: a symlink gets its own time; its target is never touched.
    let result = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if result != 0 {
        return Err(io_at(path)(io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;
    use std::process::Command;

    const MTIME: u64 = 1_600_000_000;

    fn header(kind: tar::EntryType, mode: u32, uid: u64, gid: u64) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(uid);
        header.set_gid(gid);
        header.set_mtime(MTIME);
        header.set_size(0);
        header
    }

    /// A header whose name is written raw: the tar builder itself refuses unsafe names,
    /// but the layers we receive are not made by it.
    fn raw_named(kind: tar::EntryType, name: &str, size: u64) -> tar::Header {
        let mut header = header(kind, 0o644, 0, 0);
        header.set_size(size);
        let field = &mut header.as_old_mut().name;
        field.fill(0);
        field[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        header
    }

    /// The layer the conversion test uses: every kind of entry a real layer has.
    fn sample_tar() -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let dir = header(tar::EntryType::Directory, 0o750, 1000, 1000);
        builder
            .append_data(&mut dir.clone(), "dir/", io::empty())
            .unwrap();
        builder
            .append_pax_extensions([("SCHILY.xattr.user.note", &b"kept"[..])])
            .unwrap();
        let mut file = header(tar::EntryType::Regular, 0o640, 1000, 1001);
        file.set_size(5);
        builder
            .append_data(&mut file, "dir/file.txt", &b"hello"[..])
            .unwrap();
        let mut link = header(tar::EntryType::Symlink, 0o777, 0, 0);
        builder
            .append_link(&mut link, "link", "dir/file.txt")
            .unwrap();
        let mut hard = header(tar::EntryType::Link, 0o640, 1000, 1001);
        builder
            .append_link(&mut hard, "dir/hard", "dir/file.txt")
            .unwrap();
        builder
            .append_data(&mut dir.clone(), "old/", io::empty())
            .unwrap();
        let mut whiteout = header(tar::EntryType::Regular, 0o644, 0, 0);
        builder
            .append_data(&mut whiteout, "old/.wh.gone", io::empty())
            .unwrap();
        builder
            .append_data(&mut dir.clone(), "opaque/", io::empty())
            .unwrap();
        builder
            .append_data(&mut whiteout, "opaque/.wh..wh..opq", io::empty())
            .unwrap();
        let mut device = header(tar::EntryType::Char, 0o666, 0, 0);
        device.set_device_major(1).unwrap();
        device.set_device_minor(3).unwrap();
        builder
            .append_data(&mut device, "null", io::empty())
            .unwrap();
        let mut fifo = header(tar::EntryType::Fifo, 0o600, 0, 0);
        builder.append_data(&mut fifo, "fifo", io::empty()).unwrap();
        builder.into_inner().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn debugfs(image: &Path, request: &str) -> String {
        let output = Command::new("debugfs")
            .args(["-R", request])
            .arg(image)
            .output()
            .expect("debugfs (e2fsprogs) must be installed");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Store,
        blob: PathBuf,
    }

    fn fixture(blob_bytes: &[u8]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("oci")).unwrap();
        let blob = dir.path().join("blob");
        fs::write(&blob, blob_bytes).unwrap();
        Fixture {
            _dir: dir,
            store,
            blob,
        }
    }

    fn build(fixture: &Fixture, compression: Compression, diff_id: &Digest) -> Result<PathBuf> {
        build_layer(
            &fixture.store,
            &fixture.blob,
            compression,
            diff_id,
            &mut |_| {},
            &AtomicBool::new(false),
        )
    }

    /// Nothing partial stays behind: no temp work, no layer image.
    fn assert_store_clean(store: &Store) {
        for dir in ["tmp", "layers/sha256"] {
            let entries: Vec<_> = fs::read_dir(store.root().join(dir))
                .unwrap()
                .map(|entry| entry.unwrap().path())
                .collect();
            assert!(entries.is_empty(), "{dir} must be empty: {entries:?}");
        }
    }

    #[test]
    fn gzip_layer_becomes_an_ext4_image_with_overlayfs_whiteouts() {
        let tar = sample_tar();
        let diff_id = Digest::of(&tar);
        let fixture = fixture(&gzip(&tar));
        let mut events = Vec::new();
        let image = build_layer(
            &fixture.store,
            &fixture.blob,
            Compression::Gzip,
            &diff_id,
            &mut |event| events.push(event),
            &AtomicBool::new(false),
        )
        .unwrap();
        assert_eq!(image, fixture.store.layer_path(&diff_id));
        assert!(matches!(events[0], LayerEvent::Extracting(_)));
        assert_eq!(
            events[events.len() - 2..],
            [LayerEvent::Extracted, LayerEvent::Indexing]
        );

        let file = debugfs(&image, "stat /dir/file.txt");
        assert!(file.contains("Mode:  0640"), "{file}");
        assert!(file.contains("User:  1000   Group:  1001"), "{file}");
        assert!(
            file.contains("Links: 2"),
            "hard link shares the inode: {file}"
        );
        assert!(file.contains(&format!("{MTIME:#x}")), "mtime kept: {file}");
        assert_eq!(debugfs(&image, "cat /dir/hard"), "hello");
        let xattrs = debugfs(&image, "ea_list /dir/file.txt");
        assert!(
            xattrs.contains("user.note") && xattrs.contains("kept"),
            "{xattrs}"
        );

        let dir = debugfs(&image, "stat /dir");
        assert!(
            dir.contains("Mode:  0750") && dir.contains("User:  1000"),
            "{dir}"
        );
        assert!(
            dir.contains(&format!("{MTIME:#x}")),
            "directory mtime kept: {dir}"
        );

        let link = debugfs(&image, "stat /link");
        assert!(
            link.contains("Type: symlink") && link.contains("dir/file.txt"),
            "{link}"
        );

        let whiteout = debugfs(&image, "stat /old/gone");
        assert!(whiteout.contains("Type: character special"), "{whiteout}");
        assert!(
            whiteout.contains("Device major/minor number: 00:00"),
            "{whiteout}"
        );
        let listing = debugfs(&image, "ls -l /old");
        assert!(
            !listing.contains(".wh."),
            "whiteout marker itself is gone: {listing}"
        );

        let opaque = debugfs(&image, "ea_list /opaque");
        assert!(
            opaque.contains("trusted.overlay.opaque") && opaque.contains("\"y\""),
            "{opaque}"
        );
        assert!(!debugfs(&image, "ls -l /opaque").contains(".wh."));

        let device = debugfs(&image, "stat /null");
        assert!(device.contains("Type: character special"), "{device}");
        assert!(
            device.contains("Device major/minor number: 01:03"),
            "{device}"
        );
        assert!(debugfs(&image, "stat /fifo").contains("Type: FIFO"));

        // Built once: a second build finds the stored image.
        let mut again = Vec::new();
        build_layer(
            &fixture.store,
            Path::new("/nonexistent"),
            Compression::Gzip,
            &diff_id,
            &mut |event| again.push(event),
            &AtomicBool::new(false),
        )
        .unwrap();
        assert!(again.is_empty());
        assert!(fs::read_dir(fixture.store.root().join("tmp"))
            .unwrap()
            .next()
            .is_none());
    }

    #[test]
    fn plain_tar_layers_are_accepted() {
        let tar = sample_tar();
        let fixture = fixture(&tar);
        let image = build(&fixture, Compression::None, &Digest::of(&tar)).unwrap();
        assert_eq!(debugfs(&image, "cat /dir/file.txt"), "hello");
    }

    fn unsafe_tar(entries: &[(tar::Header, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (header, data) in entries {
            builder.append(header, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn entries_escaping_the_root_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        let mut symlink = raw_named(tar::EntryType::Symlink, "escape", 0);
        symlink.set_link_name(outside.path()).unwrap();
        symlink.set_cksum();
        // (layer, the entry that must be named as refused)
        let cases = [
            (
                unsafe_tar(&[(raw_named(tar::EntryType::Regular, "../evil", 4), b"evil")]),
                "../evil",
            ),
            (
                unsafe_tar(&[(raw_named(tar::EntryType::Regular, "/abs", 4), b"evil")]),
                "/abs",
            ),
            (
                unsafe_tar(&[(
                    raw_named(tar::EntryType::Regular, "a/../../evil", 4),
                    b"evil",
                )]),
                "a/../../evil",
            ),
            (
                unsafe_tar(&[
                    (symlink.clone(), b""),
                    (
                        raw_named(tar::EntryType::Regular, "escape/evil", 4),
                        b"evil",
                    ),
                ]),
                "escape/evil",
            ),
            (
                unsafe_tar(&[
                    (symlink, b""),
                    (raw_named(tar::EntryType::Directory, "escape/sub/", 0), b""),
                ]),
                "escape/sub",
            ),
        ];
        for (tar, refused) in cases {
            let fixture = fixture(&gzip(&tar));
            match build(&fixture, Compression::Gzip, &Digest::of(&tar)) {
                Err(Error::UnsafePath { entry, reason }) => {
                    assert!(entry.starts_with(refused), "{entry} is not {refused}");
                    assert!(!reason.is_empty());
                }
                other => panic!("unsafe entry must be refused, got {other:?}"),
            }
            assert_store_clean(&fixture.store);
            assert!(
                fs::read_dir(outside.path()).unwrap().next().is_none(),
                "nothing may be written outside the root"
            );
        }
    }

    #[test]
    fn a_layer_not_matching_its_diff_id_is_refused_and_leaves_nothing() {
        let tar = sample_tar();
        let claimed = Digest::of(b"what the config promised");
        let fixture = fixture(&gzip(&tar));
        match build(&fixture, Compression::Gzip, &claimed) {
            Err(Error::DigestMismatch { digest, actual }) => {
                assert_eq!(digest, claimed.to_string());
                assert_eq!(actual, Digest::of(&tar).to_string());
            }
            other => panic!("expected DigestMismatch, got {other:?}"),
        }
        assert_store_clean(&fixture.store);

        // A truncated blob: the stream breaks, and still nothing stays.
        let compressed = gzip(&tar);
        let fixture = self::fixture(&compressed[..compressed.len() / 2]);
        assert!(build(&fixture, Compression::Gzip, &Digest::of(&tar)).is_err());
        assert_store_clean(&fixture.store);
    }

    #[test]
    fn cancelled_extraction_leaves_nothing() {
        let tar = sample_tar();
        let fixture = fixture(&gzip(&tar));
        let result = build_layer(
            &fixture.store,
            &fixture.blob,
            Compression::Gzip,
            &Digest::of(&tar),
            &mut |_| {},
            &AtomicBool::new(true),
        );
        assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
        assert_store_clean(&fixture.store);
    }

    #[test]
    fn media_types_map_to_compression() {
        for (media_type, expected) in [
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                Compression::Gzip,
            ),
            ("application/vnd.oci.image.layer.v1.tar", Compression::None),
        ] {
            assert_eq!(Compression::from_media_type(media_type).unwrap(), expected);
        }
        assert!(matches!(
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+zstd"),
            Err(Error::UnsupportedMediaType { .. })
        ));
    }
}
