//! `Write` requests: the file is opened, the host streams its data in `FsChunk` frames that
//! the dispatcher queues here, and `FsFinish` ends it.

use super::dirs::{create_dirs, DEFAULT_DIR_MODE};
use super::error::FsError;
use super::job::{Job, Piece};
use msb_protocol::guest::AgentMessage;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::mpsc::Receiver;

/// Mode of a new file written without one.
pub const DEFAULT_FILE_MODE: u32 = 0o644;

/// Where and how a `Write` writes.
pub struct Target {
    pub path: PathBuf,
    /// Applied exactly; `None` keeps an existing file's mode and gives a new one 0644.
    pub mode: Option<u32>,
    pub append: bool,
    pub create_parents: bool,
}

/// Opens the file, says `FsReady`, writes the pieces in order until `Finish`, and flushes
/// the file to its disk. Returns the number of bytes written.
pub fn write(
    target: &Target,
    job: Job,
    emit: &mut dyn FnMut(AgentMessage),
) -> Result<u64, FsError> {
    let failed = |e| FsError::io("write", target.path.display(), e);
    let mut file = open(target).map_err(failed)?;
    emit(AgentMessage::FsReady);
    let written = receive(&mut file, &job, &failed)?;
    // The answer promises the data is stored; a delayed write error (virtio-fs, a full
    // thin disk) only shows here. Devices and FIFOs have nothing to sync (EINVAL).
    if file.metadata().map_err(failed)?.is_file() {
        file.sync_data().map_err(failed)?;
    }
    Ok(written)
}

fn open(target: &Target) -> io::Result<File> {
    if target.create_parents {
        if let Some(parent) = target.path.parent() {
            create_dirs(parent, DEFAULT_DIR_MODE)?;
        }
    }
    let mut options = OpenOptions::new();
    options
        .write(true)
        .append(target.append)
        .truncate(!target.append);
    let created = OpenOptions::clone(&options)
        .create_new(true)
        .mode(target.mode.unwrap_or(DEFAULT_FILE_MODE))
        .open(&target.path);
    let (file, created) = match created {
        Ok(file) => (file, true),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            (options.open(&target.path)?, false)
        }
        Err(error) => return Err(error),
    };
    // The mode given to open() went through the umask; fchmod sets it as asked.
    if created || target.mode.is_some() {
        file.set_permissions(Permissions::from_mode(
            target.mode.unwrap_or(DEFAULT_FILE_MODE),
        ))?;
    }
    Ok(file)
}

/// Writes pieces to `sink` in order until `Finish`. The queue's senders are gone when the
/// request was cancelled or the host left.
pub fn receive(
    sink: &mut impl Write,
    job: &Job,
    failed: &dyn Fn(io::Error) -> FsError,
) -> Result<u64, FsError> {
    let pieces: &Receiver<Piece> = &job.pieces;
    let mut written = 0u64;
    loop {
        let piece = pieces.recv().map_err(|_| FsError::Cancelled)?;
        if job.cancelled() {
            return Err(FsError::Cancelled);
        }
        match piece {
            Piece::Data(data) => {
                sink.write_all(&data).map_err(failed)?;
                written += data.len() as u64;
            }
            Piece::Finish => return Ok(written),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use msb_protocol::guest::AgentErrorKind;
    use std::fs;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;
    use std::sync::atomic::AtomicBool;
    use std::sync::mpsc::sync_channel;
    use std::sync::Arc;
    use tempfile::TempDir;

    fn target(path: &Path, mode: Option<u32>, append: bool, create_parents: bool) -> Target {
        Target {
            path: path.to_path_buf(),
            mode,
            append,
            create_parents,
        }
    }

    /// Writes `chunks` through a queue of `bound` pieces fed by another thread, as the
    /// dispatcher does.
    fn write_chunks(target: &Target, chunks: Vec<Vec<u8>>, bound: usize) -> Result<u64, FsError> {
        let (feed, pieces) = sync_channel(bound);
        let feeder = std::thread::spawn(move || {
            for chunk in chunks {
                // Fails only once the writer is gone.
                if feed.send(Piece::Data(chunk)).is_err() {
                    return;
                }
            }
            let _ = feed.send(Piece::Finish);
        });
        let job = Job {
            cancel: Arc::default(),
            pieces,
        };
        let mut emitted = Vec::new();
        let result = write(target, job, &mut |message| emitted.push(message));
        feeder.join().unwrap();
        if result.is_ok() {
            assert_eq!(emitted, [AgentMessage::FsReady]);
        }
        result
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn new_files_get_their_mode_exactly() {
        let dir = TempDir::new().unwrap();
        let plain = dir.path().join("plain");
        write_chunks(&target(&plain, None, false, false), vec![], 1).unwrap();
        assert_eq!(mode_of(&plain), DEFAULT_FILE_MODE);
        // A umask would take the group and other write bits away.
        let shared = dir.path().join("shared");
        write_chunks(&target(&shared, Some(0o666), false, false), vec![], 1).unwrap();
        assert_eq!(mode_of(&shared), 0o666);
    }

    #[test]
    fn existing_files_keep_their_mode_unless_one_is_given() {
        let dir = TempDir::new().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, b"old content").unwrap();
        fs::set_permissions(&file, Permissions::from_mode(0o600)).unwrap();
        write_chunks(&target(&file, None, false, false), vec![b"new".to_vec()], 1).unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"new", "truncated");
        assert_eq!(mode_of(&file), 0o600);
        write_chunks(&target(&file, Some(0o4750), false, false), vec![], 1).unwrap();
        assert_eq!(mode_of(&file), 0o4750);
    }

    #[test]
    fn a_device_takes_data_without_a_sync() {
        let null = Path::new("/dev/null");
        let written = write_chunks(&target(null, None, false, false), vec![vec![0; 10]], 1);
        assert_eq!(written.unwrap(), 10);
    }

    #[test]
    fn append_adds_to_the_end() {
        let dir = TempDir::new().unwrap();
        let file = dir.path().join("log");
        fs::write(&file, b"one,").unwrap();
        let chunks = vec![b"two,".to_vec(), b"three".to_vec()];
        let written = write_chunks(&target(&file, None, true, false), chunks, 1).unwrap();
        assert_eq!(written, 9);
        assert_eq!(fs::read(&file).unwrap(), b"one,two,three");
    }

    #[test]
    fn missing_parents_are_created_only_when_asked() {
        let dir = TempDir::new().unwrap();
        let file = dir.path().join("a/b/file");
        let error = write_chunks(&target(&file, None, false, false), vec![], 1).unwrap_err();
        let error = error.to_agent_error();
        assert_eq!(
            (error.kind, error.errno),
            (AgentErrorKind::PathNotFound, Some(libc::ENOENT))
        );
        assert!(error.message.starts_with("write /"), "{}", error.message);
        write_chunks(
            &target(&file, Some(0o600), false, true),
            vec![b"x".to_vec()],
            1,
        )
        .unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"x");
        assert_eq!(mode_of(&dir.path().join("a")), DEFAULT_DIR_MODE);
        assert_eq!(mode_of(&dir.path().join("a/b")), DEFAULT_DIR_MODE);
        assert_eq!(mode_of(&file), 0o600);
    }

    #[test]
    fn more_chunks_than_the_queue_holds_are_written_in_order() {
        let dir = TempDir::new().unwrap();
        let file = dir.path().join("big");
        let chunks: Vec<Vec<u8>> = (0..200u32)
            .map(|index| index.to_le_bytes().repeat(1000))
            .collect();
        let expected = chunks.concat();
        let written = write_chunks(&target(&file, None, false, false), chunks, 2).unwrap();
        assert_eq!(written, expected.len() as u64);
        assert_eq!(fs::read(&file).unwrap(), expected);
    }

    #[test]
    fn a_cancelled_write_drops_what_is_still_queued() {
        let (feed, pieces) = sync_channel(4);
        for chunk in [b"a", b"b", b"c"] {
            feed.send(Piece::Data(chunk.to_vec())).unwrap();
        }
        feed.send(Piece::Finish).unwrap();
        let job = Job {
            cancel: Arc::new(AtomicBool::new(true)),
            pieces,
        };
        let mut sink = Vec::new();
        let result = receive(&mut sink, &job, &|e| FsError::io("write", "/x", e));
        assert!(matches!(result, Err(FsError::Cancelled)));
        assert!(sink.is_empty());
    }

    #[test]
    fn a_write_without_its_finish_is_cancelled() {
        let (feed, pieces) = sync_channel(4);
        feed.send(Piece::Data(b"partial".to_vec())).unwrap();
        drop(feed);
        let job = Job {
            cancel: Arc::default(),
            pieces,
        };
        let mut sink = Vec::new();
        let result = receive(&mut sink, &job, &|e| FsError::io("write", "/x", e));
        assert!(matches!(result, Err(FsError::Cancelled)));
    }

    #[test]
    fn a_failing_disk_ends_the_write_with_its_errno() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from_raw_os_error(libc::ENOSPC))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (feed, pieces) = sync_channel(4);
        feed.send(Piece::Data(b"x".to_vec())).unwrap();
        feed.send(Piece::Finish).unwrap();
        let job = Job {
            cancel: Arc::default(),
            pieces,
        };
        let error = receive(&mut Full, &job, &|e| FsError::io("write", "/data/x", e))
            .unwrap_err()
            .to_agent_error();
        assert_eq!(
            (error.kind, error.errno),
            (AgentErrorKind::Filesystem, Some(libc::ENOSPC))
        );
        assert_eq!(error.message, "write /data/x: No space left on device");
    }
}
