//! The file system operations as plain functions over paths: each takes a request's fields
//! and gives its answers, so every one of them runs (and is tested) on any Linux host.

use super::dirs::{create_dir_exact, create_dirs, DEFAULT_DIR_MODE};
use super::error::FsError;
use super::job::Job;
use super::write;
use crate::sys;
use msb_protocol::guest::{AgentMessage, FsEntry, FsEntryKind, FsRequest};
use msb_protocol::MAX_PAYLOAD_CHUNK;
use std::fs::{self, File, Metadata, Permissions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Most entries in one `FsEntries` frame.
pub const LIST_BATCH: usize = 256;
/// Most path and link-target bytes in one `FsEntries` frame. Either may be 4 KiB long, so a
/// count alone would not keep a frame under `MAX_FRAME_LEN`.
pub const LIST_BATCH_BYTES: usize = 256 * 1024;
/// A generous bound of what an entry's fields other than its strings take in MessagePack.
const ENTRY_OVERHEAD: usize = 160;
const PERMISSION_BITS: u32 = 0o7777;

/// Carries out `request`. Intermediate answers (entries, data, `FsReady`) go to `emit`; the
/// last one is returned.
pub fn run(
    request: FsRequest,
    job: Job,
    emit: &mut dyn FnMut(AgentMessage),
) -> Result<AgentMessage, FsError> {
    let done = |()| AgentMessage::Done;
    match request {
        FsRequest::Stat { path, follow } => stat(&absolute(&path)?, follow),
        FsRequest::List { path } => list(&absolute(&path)?, &mut |entries| {
            emit(AgentMessage::FsEntries { entries })
        })
        .map(done),
        FsRequest::Read {
            path,
            offset,
            length,
        } => read(&absolute(&path)?, offset, length, &job, &mut |data| {
            emit(AgentMessage::FsData { data })
        })
        .map(done),
        FsRequest::Write {
            path,
            mode,
            append,
            create_parents,
        } => {
            let target = write::Target {
                path: absolute(&path)?,
                mode: mode.map(permission_bits).transpose()?,
                append,
                create_parents,
            };
            write::write(&target, job, emit).map(|bytes| AgentMessage::FsWritten { bytes })
        }
        FsRequest::Mkdir {
            path,
            mode,
            parents,
        } => {
            let mode = permission_bits(mode.unwrap_or(DEFAULT_DIR_MODE))?;
            mkdir(&absolute(&path)?, mode, parents).map(done)
        }
        FsRequest::Remove { path, recursive } => remove(&absolute(&path)?, recursive).map(done),
        FsRequest::Rename { from, to } => rename(&absolute(&from)?, &absolute(&to)?).map(done),
        FsRequest::Copy { from, to } => copy(&absolute(&from)?, &absolute(&to)?, &job).map(done),
        FsRequest::Symlink { target, link } => symlink(&target, &absolute(&link)?).map(done),
        FsRequest::Chmod { path, mode } => {
            chmod(&absolute(&path)?, permission_bits(mode)?).map(done)
        }
        FsRequest::Usage { path } => usage(&absolute(&path)?),
    }
}

/// A request's path, normalised: `.` components and trailing slashes go (a trailing slash
/// would make the kernel follow a final symlink that `Remove` or `Stat` must not follow).
pub fn absolute(path: &str) -> Result<PathBuf, FsError> {
    if !path.starts_with('/') {
        return Err(FsError::Invalid(format!(
            "{path:?} is not an absolute path"
        )));
    }
    if path.contains('\0') {
        return Err(FsError::Invalid(format!("{path:?} contains a NUL byte")));
    }
    Ok(Path::new(path).components().collect())
}

/// A requested mode, which may only hold permission, set-id and sticky bits.
pub fn permission_bits(mode: u32) -> Result<u32, FsError> {
    if mode & !PERMISSION_BITS != 0 {
        return Err(FsError::Invalid(format!(
            "mode {mode:#o} has bits outside {PERMISSION_BITS:#o}"
        )));
    }
    Ok(mode)
}

fn kind_of(metadata: &Metadata) -> FsEntryKind {
    let file_type = metadata.file_type();
    if file_type.is_symlink() {
        FsEntryKind::Symlink
    } else if file_type.is_dir() {
        FsEntryKind::Directory
    } else if file_type.is_file() {
        FsEntryKind::File
    } else {
        FsEntryKind::Other
    }
}

/// Milliseconds since the epoch; the seconds may be negative, the nanoseconds never are.
pub fn modified_ms(seconds: i64, nanoseconds: i64) -> i64 {
    seconds
        .saturating_mul(1000)
        .saturating_add(nanoseconds / 1_000_000)
}

/// The metadata of `path` (of what it points to, with `follow`).
pub fn entry_of(path: &Path, follow: bool) -> io::Result<FsEntry> {
    let metadata = if follow {
        fs::metadata(path)?
    } else {
        fs::symlink_metadata(path)?
    };
    let link_target = if metadata.file_type().is_symlink() {
        Some(fs::read_link(path)?.to_string_lossy().into_owned())
    } else {
        None
    };
    Ok(FsEntry {
        path: path.to_string_lossy().into_owned(),
        kind: kind_of(&metadata),
        size: metadata.len(),
        mode: metadata.mode() & PERMISSION_BITS,
        modified_ms: modified_ms(metadata.mtime(), metadata.mtime_nsec()),
        uid: metadata.uid(),
        gid: metadata.gid(),
        link_target,
    })
}

fn stat(path: &Path, follow: bool) -> Result<AgentMessage, FsError> {
    let entry = entry_of(path, follow).map_err(|e| FsError::io("stat", path.display(), e))?;
    Ok(AgentMessage::FsEntries {
        entries: vec![entry],
    })
}

fn rename(from: &Path, to: &Path) -> Result<(), FsError> {
    fs::rename(from, to).map_err(|e| {
        let paths = format!("{} to {}", from.display(), to.display());
        FsError::io("rename", paths, e)
    })
}

fn symlink(target: &str, link: &Path) -> Result<(), FsError> {
    std::os::unix::fs::symlink(target, link)
        .map_err(|e| FsError::io("symlink", format!("{} -> {target}", link.display()), e))
}

/// `chmod(2)`: follows a symlink, as permissions of a link mean nothing on Linux.
fn chmod(path: &Path, mode: u32) -> Result<(), FsError> {
    fs::set_permissions(path, Permissions::from_mode(mode))
        .map_err(|e| FsError::io("chmod", path.display(), e))
}

fn usage(path: &Path) -> Result<AgentMessage, FsError> {
    let space = sys::statvfs(path).map_err(|e| FsError::io("usage", path.display(), e))?;
    Ok(AgentMessage::FsUsage {
        total_bytes: space.total,
        free_bytes: space.free,
        available_bytes: space.available,
    })
}

/// Entries gathered into frames bounded both in count and in size.
#[derive(Default)]
pub struct Batch {
    entries: Vec<FsEntry>,
    bytes: usize,
}

impl Batch {
    fn size_of(entry: &FsEntry) -> usize {
        ENTRY_OVERHEAD + entry.path.len() + entry.link_target.as_ref().map_or(0, String::len)
    }

    /// Adds `entry`; returns the batch to send first when it would not fit.
    pub fn push(&mut self, entry: FsEntry) -> Option<Vec<FsEntry>> {
        let size = Self::size_of(&entry);
        let full = !self.entries.is_empty()
            && (self.entries.len() >= LIST_BATCH || self.bytes + size > LIST_BATCH_BYTES);
        let ready = full.then(|| {
            self.bytes = 0;
            std::mem::take(&mut self.entries)
        });
        self.bytes += size;
        self.entries.push(entry);
        ready
    }

    /// What is left to send.
    pub fn finish(self) -> Option<Vec<FsEntry>> {
        (!self.entries.is_empty()).then_some(self.entries)
    }
}

/// The entries of `dir` sorted by name, in batches. Only the names are held in memory at
/// once; an entry removed while the listing runs is left out.
pub fn list(dir: &Path, emit: &mut dyn FnMut(Vec<FsEntry>)) -> Result<(), FsError> {
    let failed = |e| FsError::io("list", dir.display(), e);
    let mut names = fs::read_dir(dir)
        .map_err(failed)?
        .map(|entry| entry.map(|entry| entry.file_name()))
        .collect::<io::Result<Vec<_>>>()
        .map_err(failed)?;
    names.sort_unstable();
    let mut batch = Batch::default();
    for name in names {
        let path = dir.join(name);
        let entry = match entry_of(&path, false) {
            Ok(entry) => entry,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(FsError::io("list", path.display(), error)),
        };
        if let Some(full) = batch.push(entry) {
            emit(full);
        }
    }
    if let Some(rest) = batch.finish() {
        emit(rest);
    }
    Ok(())
}

/// Up to `length` bytes of `path` from `offset` (to its end with `None`), in chunks of
/// [`MAX_PAYLOAD_CHUNK`] bytes (the last one shorter).
pub fn read(
    path: &Path,
    offset: u64,
    length: Option<u64>,
    job: &Job,
    emit: &mut dyn FnMut(Vec<u8>),
) -> Result<(), FsError> {
    let failed = |e| FsError::io("read", path.display(), e);
    let mut file = File::open(path).map_err(failed)?;
    // Opening a directory works; say why it cannot be read at once.
    if file.metadata().map_err(failed)?.is_dir() {
        return Err(failed(io::Error::from_raw_os_error(libc::EISDIR)));
    }
    if offset > 0 {
        file.seek(SeekFrom::Start(offset)).map_err(failed)?;
    }
    let mut left = length.unwrap_or(u64::MAX);
    while left > 0 {
        if job.cancelled() {
            return Err(FsError::Cancelled);
        }
        let wanted = left.min(MAX_PAYLOAD_CHUNK as u64) as usize;
        let mut chunk = vec![0u8; wanted];
        let filled = fill(&mut file, &mut chunk).map_err(failed)?;
        chunk.truncate(filled);
        if filled > 0 {
            emit(chunk);
        }
        if filled < wanted {
            break;
        }
        left -= filled as u64;
    }
    Ok(())
}

/// Reads until `buffer` is full or the file ends; returns how much was read.
fn fill(file: &mut File, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

pub fn mkdir(dir: &Path, mode: u32, parents: bool) -> Result<(), FsError> {
    let failed = |e| FsError::io("mkdir", dir.display(), e);
    if !parents {
        return create_dir_exact(dir, mode).map_err(failed);
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent, DEFAULT_DIR_MODE).map_err(failed)?;
    }
    match create_dir_exact(dir, mode) {
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        other => other.map_err(failed),
    }
}

/// Removes a file, a symlink (never what it points to) or a directory (with its content
/// when `recursive`; symlinks inside are removed, not followed).
pub fn remove(path: &Path, recursive: bool) -> Result<(), FsError> {
    let failed = |e| FsError::io("remove", path.display(), e);
    let metadata = fs::symlink_metadata(path).map_err(failed)?;
    let result = if !metadata.is_dir() {
        fs::remove_file(path)
    } else if recursive {
        fs::remove_dir_all(path)
    } else {
        fs::remove_dir(path)
    };
    result.map_err(failed)
}

/// One directory of a tree copy still to do: first its content, then its final mode (a
/// read-only directory could not be filled after it).
enum Step {
    Fill {
        from: PathBuf,
        to: PathBuf,
        mode: u32,
    },
    Seal {
        dir: PathBuf,
        mode: u32,
    },
}

fn copy_failed(from: &Path, to: &Path) -> impl Fn(io::Error) -> FsError {
    let action = format!("{} to {}", from.display(), to.display());
    move |error| FsError::io("copy", &action, error)
}

/// Copies a file, symlink or special file to `to`, or a directory tree to a new `to`,
/// keeping modes. Symlinks are copied as symlinks, never followed.
pub fn copy(from: &Path, to: &Path, job: &Job) -> Result<(), FsError> {
    let metadata = fs::symlink_metadata(from).map_err(copy_failed(from, to))?;
    if !metadata.is_dir() {
        return copy_node(from, to, &metadata).map_err(copy_failed(from, to));
    }
    refuse_copy_into_itself(from, to)?;
    let mut steps = vec![Step::Fill {
        from: from.to_path_buf(),
        to: to.to_path_buf(),
        mode: metadata.mode() & PERMISSION_BITS,
    }];
    while let Some(step) = steps.pop() {
        if job.cancelled() {
            return Err(FsError::Cancelled);
        }
        match step {
            Step::Seal { dir, mode } => fs::set_permissions(&dir, Permissions::from_mode(mode))
                .map_err(|e| FsError::io("copy", dir.display(), e))?,
            Step::Fill { from, to, mode } => {
                // Sealed after everything pushed below it, i.e. after its whole subtree.
                steps.push(Step::Seal {
                    dir: to.clone(),
                    mode,
                });
                fill_dir(&from, &to, &mut steps)?;
            }
        }
    }
    Ok(())
}

/// Creates `to` and copies the non-directories of `from` into it; subdirectories become
/// steps, so that deep trees need no deep recursion.
fn fill_dir(from: &Path, to: &Path, steps: &mut Vec<Step>) -> Result<(), FsError> {
    let failed = copy_failed(from, to);
    // Writable by its owner until its content is in.
    fs::DirBuilder::new()
        .mode(0o700)
        .create(to)
        .map_err(&failed)?;
    for entry in fs::read_dir(from).map_err(&failed)? {
        let entry = entry.map_err(&failed)?;
        let (child_from, child_to) = (entry.path(), to.join(entry.file_name()));
        let child_failed = copy_failed(&child_from, &child_to);
        // A DirEntry's metadata is the entry's own: a symlink is not followed.
        let metadata = entry.metadata().map_err(&child_failed)?;
        if metadata.is_dir() {
            steps.push(Step::Fill {
                from: child_from,
                to: child_to,
                mode: metadata.mode() & PERMISSION_BITS,
            });
        } else {
            copy_node(&child_from, &child_to, &metadata).map_err(child_failed)?;
        }
    }
    Ok(())
}

/// Copies one non-directory: a file's bytes and mode, a symlink's target, a special file's
/// type and device number.
fn copy_node(from: &Path, to: &Path, metadata: &Metadata) -> io::Result<()> {
    let file_type = metadata.file_type();
    if file_type.is_symlink() {
        return std::os::unix::fs::symlink(fs::read_link(from)?, to);
    }
    if file_type.is_file() {
        // Sets the mode with fchmod, so the umask does not alter it.
        return fs::copy(from, to).map(drop);
    }
    sys::mknod(to, metadata.mode(), metadata.rdev())?;
    fs::set_permissions(
        to,
        Permissions::from_mode(metadata.mode() & PERMISSION_BITS),
    )
}

/// A directory copied into itself would grow while it is walked.
fn refuse_copy_into_itself(from: &Path, to: &Path) -> Result<(), FsError> {
    let Ok(source) = from.canonicalize() else {
        return Ok(());
    };
    // `to` does not exist yet: resolve its parent.
    let destination = match (to.parent().map(Path::canonicalize), to.file_name()) {
        (Some(Ok(parent)), Some(name)) => parent.join(name),
        _ => return Ok(()),
    };
    if destination.starts_with(&source) {
        return Err(FsError::Invalid(format!(
            "cannot copy {} into itself ({})",
            from.display(),
            to.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use msb_protocol::guest::{AgentError, AgentErrorKind};
    use msb_protocol::{Frame, MAX_FRAME_LEN};
    use std::os::unix::fs::{symlink, FileTypeExt};
    use std::sync::atomic::Ordering;
    use std::sync::mpsc::sync_channel;
    use std::sync::Arc;
    use tempfile::TempDir;

    fn job() -> Job {
        Job {
            cancel: Arc::default(),
            pieces: sync_channel(1).1,
        }
    }

    /// Runs `request`; returns what it emitted and its last answer.
    fn run_request(request: FsRequest) -> (Vec<AgentMessage>, Result<AgentMessage, FsError>) {
        let mut emitted = Vec::new();
        let result = run(request, job(), &mut |message| emitted.push(message));
        (emitted, result)
    }

    fn done(request: FsRequest) {
        let (emitted, result) = run_request(request);
        assert!(emitted.is_empty());
        assert_eq!(result.unwrap(), AgentMessage::Done);
    }

    fn failure(request: FsRequest) -> AgentError {
        match run_request(request).1 {
            Ok(answer) => panic!("expected an error, got {answer:?}"),
            Err(error) => error.to_agent_error(),
        }
    }

    fn assert_fails(request: FsRequest, kind: AgentErrorKind, errno: Option<i32>) {
        let error = failure(request);
        assert_eq!(
            (error.kind, error.errno),
            (kind, errno),
            "{}",
            error.message
        );
    }

    fn path(dir: &TempDir, name: &str) -> String {
        dir.path().join(name).to_str().unwrap().to_string()
    }

    fn mode_of(path: &str) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    fn set_mode(path: &str, mode: u32) {
        fs::set_permissions(path, Permissions::from_mode(mode)).unwrap();
    }

    fn stat_entry(path: &str, follow: bool) -> FsEntry {
        match run_request(FsRequest::Stat {
            path: path.into(),
            follow,
        }) {
            (emitted, Ok(AgentMessage::FsEntries { mut entries })) if emitted.is_empty() => {
                assert_eq!(entries.len(), 1);
                entries.remove(0)
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }

    #[test]
    fn relative_paths_and_stray_mode_bits_are_invalid() {
        let invalid = AgentErrorKind::InvalidRequest;
        for request in [
            FsRequest::Stat {
                path: "etc".into(),
                follow: false,
            },
            FsRequest::List { path: "".into() },
            FsRequest::Remove {
                path: "./x".into(),
                recursive: true,
            },
            FsRequest::Rename {
                from: "/a".into(),
                to: "b".into(),
            },
            FsRequest::Read {
                path: "/a\0b".into(),
                offset: 0,
                length: None,
            },
            FsRequest::Chmod {
                path: "/tmp".into(),
                mode: 0o100644,
            },
            FsRequest::Mkdir {
                path: "/tmp/x".into(),
                mode: Some(0o40755),
                parents: false,
            },
        ] {
            assert_fails(request, invalid, None);
        }
    }

    #[test]
    fn paths_lose_dots_and_trailing_slashes() {
        assert_eq!(absolute("/a/./b//c/").unwrap(), Path::new("/a/b/c"));
        assert_eq!(absolute("/").unwrap(), Path::new("/"));
        assert_eq!(absolute("/a/..").unwrap(), Path::new("/a/.."));
    }

    #[test]
    fn stat_describes_files_directories_and_symlinks() {
        let dir = TempDir::new().unwrap();
        let file = path(&dir, "file");
        fs::write(&file, b"hello").unwrap();
        set_mode(&file, 0o4751);
        let entry = stat_entry(&file, false);
        assert_eq!(entry.path, file);
        assert_eq!(entry.kind, FsEntryKind::File);
        assert_eq!((entry.size, entry.mode), (5, 0o4751));
        // SAFETY: geteuid has no preconditions.
        assert_eq!(entry.uid, unsafe { libc::geteuid() });
        assert_eq!(entry.link_target, None);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!((now_ms - entry.modified_ms).abs() < 60_000, "{entry:?}");
        let link = path(&dir, "link");
        symlink(dir.path(), &link).unwrap();
        let entry = stat_entry(&link, false);
        assert_eq!(entry.kind, FsEntryKind::Symlink);
        assert_eq!(entry.link_target.as_deref(), dir.path().to_str());
        let followed = stat_entry(&link, true);
        assert_eq!(
            (followed.kind, followed.link_target),
            (FsEntryKind::Directory, None)
        );
        assert_eq!(followed.path, link);
        assert_eq!(
            stat_entry(&format!("{link}/"), false).kind,
            FsEntryKind::Symlink
        );
        assert_fails(
            FsRequest::Stat {
                path: path(&dir, "missing"),
                follow: false,
            },
            AgentErrorKind::PathNotFound,
            Some(libc::ENOENT),
        );
    }

    #[test]
    fn modification_times_before_the_epoch_are_negative() {
        assert_eq!(modified_ms(1_700_000_000, 123_456_789), 1_700_000_000_123);
        // 1.5 s before the epoch is -2 s + 0.5 s.
        assert_eq!(modified_ms(-2, 500_000_000), -1500);
        assert_eq!(modified_ms(i64::MIN, 0), i64::MIN, "no overflow");
    }

    fn list(path: &str) -> Vec<Vec<FsEntry>> {
        let (emitted, result) = run_request(FsRequest::List { path: path.into() });
        assert_eq!(result.unwrap(), AgentMessage::Done);
        emitted
            .into_iter()
            .map(|message| match message {
                AgentMessage::FsEntries { entries } => entries,
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn lists_are_sorted_and_sent_in_batches() {
        let dir = TempDir::new().unwrap();
        assert!(list(dir.path().to_str().unwrap()).is_empty());
        for index in (0..300).rev() {
            fs::write(path(&dir, &format!("f{index:03}")), b"").unwrap();
        }
        fs::create_dir(path(&dir, "sub")).unwrap();
        symlink("f000", path(&dir, "ln")).unwrap();
        let batches = list(dir.path().to_str().unwrap());
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [LIST_BATCH, 302 - LIST_BATCH]);
        let entries: Vec<FsEntry> = batches.into_iter().flatten().collect();
        let names: Vec<&str> = entries
            .iter()
            .map(|entry| entry.path.rsplit('/').next().unwrap())
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert_eq!(names[0], "f000");
        let link = &entries[names.iter().position(|name| *name == "ln").unwrap()];
        assert_eq!(
            (link.kind, link.link_target.as_deref()),
            (FsEntryKind::Symlink, Some("f000"))
        );
        assert_eq!(entries.last().unwrap().kind, FsEntryKind::Directory);
    }

    #[test]
    fn listing_a_file_or_nothing_fails() {
        let dir = TempDir::new().unwrap();
        let file = path(&dir, "file");
        fs::write(&file, b"").unwrap();
        let filesystem = AgentErrorKind::Filesystem;
        assert_fails(
            FsRequest::List { path: file },
            filesystem,
            Some(libc::ENOTDIR),
        );
        let missing = FsRequest::List {
            path: path(&dir, "missing"),
        };
        assert_fails(missing, AgentErrorKind::PathNotFound, Some(libc::ENOENT));
    }

    #[test]
    fn batches_of_long_paths_fit_in_a_frame() {
        let long = FsEntry {
            path: format!("/{}", "d".repeat(4000)),
            kind: FsEntryKind::Symlink,
            size: u64::MAX,
            mode: 0o7777,
            modified_ms: i64::MIN,
            uid: u32::MAX,
            gid: u32::MAX,
            link_target: Some("t".repeat(4000)),
        };
        let mut batch = Batch::default();
        let mut sent = Vec::new();
        for _ in 0..LIST_BATCH {
            sent.extend(batch.push(long.clone()));
        }
        sent.extend(batch.finish());
        assert!(
            sent.len() > 1,
            "the byte bound splits what the count allows"
        );
        assert_eq!(sent.iter().map(Vec::len).sum::<usize>(), LIST_BATCH);
        for entries in sent {
            let frame = Frame::new(1, 0, &AgentMessage::FsEntries { entries }).unwrap();
            assert!(frame.body.len() <= LIST_BATCH_BYTES && frame.body.len() < MAX_FRAME_LEN);
        }
    }

    fn read(path: &str, offset: u64, length: Option<u64>) -> Vec<Vec<u8>> {
        let (emitted, result) = run_request(FsRequest::Read {
            path: path.into(),
            offset,
            length,
        });
        assert_eq!(result.unwrap(), AgentMessage::Done);
        emitted
            .into_iter()
            .map(|message| match message {
                AgentMessage::FsData { data } => data,
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn reads_come_in_full_chunks_from_an_offset() {
        let dir = TempDir::new().unwrap();
        let file = path(&dir, "data");
        let content: Vec<u8> = (0..MAX_PAYLOAD_CHUNK * 5 / 2)
            .map(|index| (index % 251) as u8)
            .collect();
        fs::write(&file, &content).unwrap();
        let chunks = read(&file, 0, None);
        let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
        assert_eq!(
            sizes,
            [MAX_PAYLOAD_CHUNK, MAX_PAYLOAD_CHUNK, MAX_PAYLOAD_CHUNK / 2]
        );
        assert_eq!(chunks.concat(), content);
        assert_eq!(read(&file, 10, Some(5)).concat(), &content[10..15]);
        let tail = read(&file, 100, Some(MAX_PAYLOAD_CHUNK as u64 + 1));
        assert_eq!(
            tail.iter().map(Vec::len).collect::<Vec<_>>(),
            [MAX_PAYLOAD_CHUNK, 1]
        );
        assert_eq!(tail.concat(), &content[100..100 + MAX_PAYLOAD_CHUNK + 1]);
        assert!(read(&file, content.len() as u64 + 7, None).is_empty());
        assert!(read(&file, 0, Some(0)).is_empty());
    }

    #[test]
    fn reading_a_directory_or_nothing_fails() {
        let dir = TempDir::new().unwrap();
        let read = |path: String| FsRequest::Read {
            path,
            offset: 0,
            length: None,
        };
        let error = failure(read(path(&dir, "")));
        assert_eq!(
            (error.kind, error.errno),
            (AgentErrorKind::Filesystem, Some(libc::EISDIR))
        );
        assert!(error.message.starts_with("read /"), "{}", error.message);
        assert!(
            error.message.ends_with(": Is a directory"),
            "{}",
            error.message
        );
        let missing = read(path(&dir, "missing"));
        assert_fails(missing, AgentErrorKind::PathNotFound, Some(libc::ENOENT));
    }

    #[test]
    fn a_cancelled_read_stops() {
        let job = job();
        job.cancel.store(true, Ordering::SeqCst);
        let mut chunks = 0;
        let result = super::read(Path::new("/dev/zero"), 0, None, &job, &mut |_| chunks += 1);
        assert!(matches!(result, Err(FsError::Cancelled)));
        assert_eq!(chunks, 0);
    }

    #[test]
    fn mkdir_applies_modes_exactly() {
        let dir = TempDir::new().unwrap();
        let plain = path(&dir, "plain");
        done(FsRequest::Mkdir {
            path: plain.clone(),
            mode: None,
            parents: false,
        });
        assert_eq!(mode_of(&plain), DEFAULT_DIR_MODE);
        // A umask would take the group and other write bits away.
        let open = path(&dir, "open");
        done(FsRequest::Mkdir {
            path: open.clone(),
            mode: Some(0o1777),
            parents: false,
        });
        assert_eq!(mode_of(&open), 0o1777);
        let deep = path(&dir, "a/b/c");
        done(FsRequest::Mkdir {
            path: deep.clone(),
            mode: Some(0o700),
            parents: true,
        });
        assert_eq!(mode_of(&deep), 0o700);
        assert_eq!(mode_of(&path(&dir, "a/b")), DEFAULT_DIR_MODE);
        done(FsRequest::Mkdir {
            path: deep.clone(),
            mode: Some(0o777),
            parents: true,
        });
        assert_eq!(mode_of(&deep), 0o700, "an existing directory is left alone");
    }

    #[test]
    fn mkdir_fails_on_existing_paths_and_missing_parents() {
        let dir = TempDir::new().unwrap();
        let file = path(&dir, "file");
        fs::write(&file, b"").unwrap();
        for parents in [false, true] {
            let request = FsRequest::Mkdir {
                path: file.clone(),
                mode: None,
                parents,
            };
            assert_fails(request, AgentErrorKind::Filesystem, Some(libc::EEXIST));
        }
        let orphan = FsRequest::Mkdir {
            path: path(&dir, "no/such"),
            mode: None,
            parents: false,
        };
        assert_fails(orphan, AgentErrorKind::PathNotFound, Some(libc::ENOENT));
    }

    #[test]
    fn remove_takes_files_empty_directories_and_trees() {
        let dir = TempDir::new().unwrap();
        let file = path(&dir, "file");
        fs::write(&file, b"x").unwrap();
        done(FsRequest::Remove {
            path: file.clone(),
            recursive: false,
        });
        assert!(!Path::new(&file).exists());
        let tree = path(&dir, "tree");
        fs::create_dir_all(format!("{tree}/a/b")).unwrap();
        fs::write(format!("{tree}/a/b/f"), b"x").unwrap();
        let flat = FsRequest::Remove {
            path: tree.clone(),
            recursive: false,
        };
        assert_fails(flat, AgentErrorKind::Filesystem, Some(libc::ENOTEMPTY));
        done(FsRequest::Remove {
            path: tree.clone(),
            recursive: true,
        });
        assert!(!Path::new(&tree).exists());
        let missing = FsRequest::Remove {
            path: tree,
            recursive: true,
        };
        assert_fails(missing, AgentErrorKind::PathNotFound, Some(libc::ENOENT));
    }

    #[test]
    fn remove_never_follows_a_symlink_to_a_directory() {
        let dir = TempDir::new().unwrap();
        let kept = path(&dir, "kept");
        fs::create_dir(&kept).unwrap();
        fs::write(format!("{kept}/precious"), b"x").unwrap();
        let link = path(&dir, "link");
        symlink(&kept, &link).unwrap();
        for request_path in [format!("{link}/"), link.clone()] {
            symlink(&kept, &link).ok();
            done(FsRequest::Remove {
                path: request_path,
                recursive: true,
            });
            assert!(fs::symlink_metadata(&link).is_err(), "the link is gone");
            assert!(Path::new(&format!("{kept}/precious")).exists());
        }
        let tree = path(&dir, "tree");
        fs::create_dir(&tree).unwrap();
        symlink(&kept, format!("{tree}/inner")).unwrap();
        done(FsRequest::Remove {
            path: tree,
            recursive: true,
        });
        assert!(Path::new(&format!("{kept}/precious")).exists());
    }

    #[test]
    fn rename_symlink_and_chmod() {
        let dir = TempDir::new().unwrap();
        let (from, to) = (path(&dir, "from"), path(&dir, "to"));
        fs::write(&from, b"x").unwrap();
        done(FsRequest::Rename {
            from: from.clone(),
            to: to.clone(),
        });
        assert_eq!(fs::read(&to).unwrap(), b"x");
        let again = FsRequest::Rename {
            from: from.clone(),
            to: to.clone(),
        };
        assert_fails(again, AgentErrorKind::PathNotFound, Some(libc::ENOENT));
        let link = path(&dir, "link");
        done(FsRequest::Symlink {
            target: "to".into(),
            link: link.clone(),
        });
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("to"));
        let taken = FsRequest::Symlink {
            target: "to".into(),
            link,
        };
        assert_fails(taken, AgentErrorKind::Filesystem, Some(libc::EEXIST));
        done(FsRequest::Chmod {
            path: to.clone(),
            mode: 0o4777,
        });
        assert_eq!(mode_of(&to), 0o4777);
    }

    #[test]
    fn copy_of_a_file_keeps_its_mode() {
        let dir = TempDir::new().unwrap();
        let (from, to) = (path(&dir, "from"), path(&dir, "to"));
        fs::write(&from, b"content").unwrap();
        set_mode(&from, 0o777);
        done(FsRequest::Copy {
            from: from.clone(),
            to: to.clone(),
        });
        assert_eq!(fs::read(&to).unwrap(), b"content");
        assert_eq!(mode_of(&to), 0o777);
    }

    #[test]
    fn copy_of_a_tree_keeps_modes_and_symlinks() {
        let dir = TempDir::new().unwrap();
        let from = path(&dir, "from");
        fs::create_dir_all(format!("{from}/sub/deeper")).unwrap();
        fs::write(format!("{from}/sub/deeper/file"), b"deep").unwrap();
        fs::write(format!("{from}/run.sh"), b"#!/bin/sh").unwrap();
        set_mode(&format!("{from}/run.sh"), 0o4755);
        symlink("sub/deeper/file", format!("{from}/relative")).unwrap();
        symlink("/nonexistent", format!("{from}/dangling")).unwrap();
        symlink(dir.path(), format!("{from}/outside")).unwrap();
        sys::mknod(Path::new(&format!("{from}/fifo")), libc::S_IFIFO | 0o600, 0).unwrap();
        set_mode(&format!("{from}/sub/deeper"), 0o700);
        set_mode(&format!("{from}/sub"), 0o555);
        set_mode(&from, 0o1777);
        let to = path(&dir, "to");
        done(FsRequest::Copy {
            from: from.clone(),
            to: to.clone(),
        });
        assert_eq!(fs::read(format!("{to}/sub/deeper/file")).unwrap(), b"deep");
        assert_eq!(mode_of(&to), 0o1777);
        assert_eq!(mode_of(&format!("{to}/sub")), 0o555);
        assert_eq!(mode_of(&format!("{to}/sub/deeper")), 0o700);
        assert_eq!(mode_of(&format!("{to}/run.sh")), 0o4755);
        for (name, target) in [
            ("relative", Path::new("sub/deeper/file")),
            ("dangling", Path::new("/nonexistent")),
            ("outside", dir.path()),
        ] {
            assert_eq!(fs::read_link(format!("{to}/{name}")).unwrap(), target);
        }
        let fifo = fs::symlink_metadata(format!("{to}/fifo")).unwrap();
        assert!(fifo.file_type().is_fifo());
        assert_eq!(fifo.mode() & 0o7777, 0o600);
        set_mode(&format!("{from}/sub"), 0o755);
        set_mode(&format!("{to}/sub"), 0o755);
    }

    #[test]
    fn copy_refuses_a_directory_into_itself_or_onto_an_existing_one() {
        let dir = TempDir::new().unwrap();
        let from = path(&dir, "from");
        fs::create_dir(&from).unwrap();
        let inside = FsRequest::Copy {
            from: from.clone(),
            to: format!("{from}/copy"),
        };
        assert_fails(inside, AgentErrorKind::InvalidRequest, None);
        assert!(!Path::new(&format!("{from}/copy")).exists());
        let onto_itself = FsRequest::Copy {
            from: from.clone(),
            to: from.clone(),
        };
        assert_fails(onto_itself, AgentErrorKind::InvalidRequest, None);
        let sibling = path(&dir, "other");
        fs::create_dir(&sibling).unwrap();
        let onto = FsRequest::Copy { from, to: sibling };
        assert_fails(onto, AgentErrorKind::Filesystem, Some(libc::EEXIST));
    }

    #[test]
    fn usage_reports_the_space_of_the_file_system() {
        let dir = TempDir::new().unwrap();
        let (emitted, result) = run_request(FsRequest::Usage {
            path: path(&dir, ""),
        });
        assert!(emitted.is_empty());
        match result.unwrap() {
            AgentMessage::FsUsage {
                total_bytes,
                free_bytes,
                available_bytes,
            } => assert!(total_bytes >= free_bytes && free_bytes >= available_bytes),
            other => panic!("unexpected {other:?}"),
        }
        let missing = FsRequest::Usage {
            path: path(&dir, "missing"),
        };
        assert_fails(missing, AgentErrorKind::PathNotFound, Some(libc::ENOENT));
    }
}
