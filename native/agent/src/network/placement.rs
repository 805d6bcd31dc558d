//! Putting the generated `/etc` files in place, by whose root it is.
//!
//! A root of our own (an overlay whose upper disk belongs to the sandbox) gets them as
//! regular files, replacing whatever was there, a symlink included (systemd-resolved's stub
//! link points into `/run`, which is a fresh tmpfs here). A live host directory (a virtio-fs
//! root) is the user's own and is never written: the text goes to the sandbox's tmpfs and is
//! bind-mounted over the file. A file that directory does not have is skipped, since even an
//! empty mount target would be created on the host; only a link into `/run`, which is the
//! sandbox's tmpfs, gets its destination there.

use super::{NetworkError, Root};
use crate::sys;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// The tmpfs the agent mounts at `/run` for every root (see `rootfs::prepare_system_dirs`).
const RUN: &str = "/run";
/// Where the files bind-mounted over a live root's are kept.
const STAGING_DIR: &str = "/run/msb";
const FILE_MODE: u32 = 0o644;

/// Makes `path` (absolute: a file of `/etc` or of the trust stores) read `text`.
pub fn place(path: &str, text: &str, root: Root) -> Result<(), NetworkError> {
    match root {
        Root::Ours => replace(Path::new(path), text).map_err(write_error(path)),
        Root::LiveHostDirectory => place_on_live_root(path, text),
    }
}

fn place_on_live_root(path: &str, text: &str) -> Result<(), NetworkError> {
    match std::fs::metadata(path) {
        Ok(_) => bind_over(path, text),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            let Ok(link) = std::fs::read_link(path) else {
                return Err(NetworkError::AbsentOnLiveRoot {
                    path: path.to_string(),
                });
            };
            let destination = link_destination(Path::new(path), &link);
            if destination.starts_with(RUN) && destination != Path::new(RUN) {
                let destination = destination.to_string_lossy();
                replace(Path::new(&*destination), text).map_err(write_error(&destination))
            } else {
                Err(NetworkError::DanglingOnLiveRoot {
                    path: path.to_string(),
                    destination,
                })
            }
        }
        Err(error) => Err(write_error(path)(error)),
    }
}

fn write_error(path: &str) -> impl FnOnce(io::Error) -> NetworkError + '_ {
    move |source| NetworkError::Write {
        path: path.to_string(),
        source,
    }
}

/// Writes `text` to a new file next to `path` and renames it over `path`: a reader never
/// sees half a file, and a symlink at `path` is replaced rather than followed.
fn replace(path: &Path, text: &str) -> io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = parent.join(format!(".{name}.msb-new"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(&temporary)?;
    file.write_all(text.as_bytes())?;
    drop(file);
    std::fs::rename(&temporary, path)
}

/// Stages `text` in [`STAGING_DIR`] and bind-mounts it over `path` (through a symlink, onto
/// the file it names).
fn bind_over(path: &str, text: &str) -> Result<(), NetworkError> {
    let name = Path::new(path).file_name().unwrap_or_default();
    let staged = Path::new(STAGING_DIR).join(name);
    let staged = staged.to_string_lossy();
    replace(Path::new(&*staged), text).map_err(write_error(&staged))?;
    sys::mount(&staged, path, "", libc::MS_BIND, "").map_err(|source| NetworkError::Bind {
        staged: staged.to_string(),
        path: path.to_string(),
        source,
    })
}

/// Where a symlink at `link_path` whose text is `link` points, without touching the file
/// system (the destination may not exist): relative to the link's directory, `.` and `..`
/// resolved by name.
fn link_destination(link_path: &Path, link: &Path) -> PathBuf {
    let joined = link_path.parent().unwrap_or(Path::new("/")).join(link);
    let mut destination = PathBuf::from("/");
    for component in joined.components() {
        match component {
            Component::ParentDir => {
                destination.pop();
            }
            Component::Normal(part) => destination.push(part),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    destination
}

#[cfg(test)]
mod tests {
    use super::*;
    use tempfile::TempDir;

    #[test]
    fn link_destinations_resolve_by_name() {
        let resolv = Path::new("/etc/resolv.conf");
        for (link, destination) in [
            (
                "../run/systemd/resolve/stub-resolv.conf",
                "/run/systemd/resolve/stub-resolv.conf",
            ),
            ("/run/resolvconf/resolv.conf", "/run/resolvconf/resolv.conf"),
            (
                "resolvconf/./run/resolv.conf",
                "/etc/resolvconf/run/resolv.conf",
            ),
            ("../../../run/x", "/run/x"),
            ("../runaway", "/runaway"),
        ] {
            assert_eq!(
                link_destination(resolv, Path::new(link)),
                Path::new(destination),
                "{link}"
            );
        }
        // Not under /run by name alone.
        assert!(!link_destination(resolv, Path::new("../runaway")).starts_with(RUN));
    }

    #[test]
    fn a_file_of_our_own_root_is_replaced_even_when_it_is_a_symlink() {
        let dir = TempDir::new().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "theirs\n").unwrap();
        let link = dir.path().join("resolv.conf");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        place(link.to_str().unwrap(), "ours\n", Root::Ours).unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().is_file());
        assert_eq!(std::fs::read_to_string(&link).unwrap(), "ours\n");
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "theirs\n",
            "the link's destination is left alone"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&link).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, FILE_MODE);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 2, "no temporary file is left behind");
    }

    #[test]
    fn a_missing_file_or_directory_of_our_own_root_is_created() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("etc/hosts");
        place(path.to_str().unwrap(), "ours\n", Root::Ours).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "ours\n");
    }

    #[test]
    fn nothing_is_created_in_a_live_host_directory() {
        let dir = TempDir::new().unwrap();
        let absent = dir.path().join("hosts");
        let error = place(absent.to_str().unwrap(), "ours\n", Root::LiveHostDirectory);
        assert!(
            matches!(error, Err(NetworkError::AbsentOnLiveRoot { .. })),
            "{error:?}"
        );
        let dangling = dir.path().join("resolv.conf");
        std::os::unix::fs::symlink("gone/resolv.conf", &dangling).unwrap();
        let error = place(
            dangling.to_str().unwrap(),
            "ours\n",
            Root::LiveHostDirectory,
        );
        assert!(
            matches!(&error, Err(NetworkError::DanglingOnLiveRoot { destination, .. })
                if destination == &dir.path().join("gone/resolv.conf")),
            "{error:?}"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "only the link the test made is there");
    }
}
