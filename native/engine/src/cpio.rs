//! A writer for the cpio "newc" format, the one the Linux kernel unpacks as an initramfs.
//!
//! Each entry is a 110-byte ASCII header (magic `070701` and 13 eight-digit hex fields), the
//! NUL-terminated name padded to a multiple of 4, then the data padded to a multiple of 4.
//! The archive ends with an entry named `TRAILER!!!`.

use std::io::{self, Write};

const MAGIC: &str = "070701";
const TRAILER: &str = "TRAILER!!!";
pub(crate) const S_IFDIR: u32 = 0o040000;
pub(crate) const S_IFREG: u32 = 0o100000;
pub(crate) const S_IFCHR: u32 = 0o020000;

/// One archive member. Paths are relative (`dev/console`), as the kernel expects.
pub(crate) struct Entry<'a> {
    pub path: &'a str,
    pub mode: u32,
    pub rdev: (u32, u32),
    pub data: &'a [u8],
}

impl<'a> Entry<'a> {
    pub(crate) fn dir(path: &'a str) -> Self {
        Self {
            path,
            mode: S_IFDIR | 0o755,
            rdev: (0, 0),
            data: &[],
        }
    }

    pub(crate) fn file(path: &'a str, permissions: u32, data: &'a [u8]) -> Self {
        Self {
            path,
            mode: S_IFREG | permissions,
            rdev: (0, 0),
            data,
        }
    }

    pub(crate) fn char_device(path: &'a str, permissions: u32, major: u32, minor: u32) -> Self {
        Self {
            path,
            mode: S_IFCHR | permissions,
            rdev: (major, minor),
            data: &[],
        }
    }
}

/// Writes entries in order; inode numbers are assigned sequentially and every timestamp is 0,
/// so the same input always gives the same bytes.
pub(crate) struct Writer<W: Write> {
    out: W,
    written: u64,
    next_inode: u32,
}

impl<W: Write> Writer<W> {
    pub(crate) fn new(out: W) -> Self {
        Self {
            out,
            written: 0,
            next_inode: 1,
        }
    }

    pub(crate) fn add(&mut self, entry: &Entry) -> io::Result<()> {
        let inode = self.next_inode;
        self.next_inode += 1;
        let nlink = if entry.mode & S_IFDIR == S_IFDIR {
            2
        } else {
            1
        };
        self.record(inode, entry, nlink)
    }

    /// Writes the trailer and returns the output.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.record(
            0,
            &Entry {
                path: TRAILER,
                mode: 0,
                rdev: (0, 0),
                data: &[],
            },
            1,
        )?;
        Ok(self.out)
    }

    fn record(&mut self, inode: u32, entry: &Entry, nlink: u32) -> io::Result<()> {
        let size = u32::try_from(entry.data.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "cpio newc members are limited to 4 GiB",
            )
        })?;
        let fields = [
            inode,
            entry.mode,
            0,
            0,
            nlink,
            0,
            size,
            0,
            0,
            entry.rdev.0,
            entry.rdev.1,
            entry.path.len() as u32 + 1,
            0,
        ];
        let mut header = String::with_capacity(110);
        header.push_str(MAGIC);
        for field in fields {
            header.push_str(&format!("{field:08x}"));
        }
        self.put(header.as_bytes())?;
        self.put(entry.path.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(entry.data)?;
        self.pad()
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let padding = (4 - self.written % 4) % 4;
        self.put(&[0; 3][..padding as usize])
    }
}

/// A parsed member, for tests that read an archive back.
#[cfg(test)]
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub path: String,
    pub mode: u32,
    pub rdev: (u32, u32),
    pub data: Vec<u8>,
}

/// Reads a newc archive up to its trailer, checking magic and alignment.
#[cfg(test)]
pub(crate) fn parse(mut bytes: &[u8]) -> Vec<Parsed> {
    let align = |n: usize| n.next_multiple_of(4);
    let mut entries = Vec::new();
    let total = bytes.len();
    loop {
        assert_eq!((total - bytes.len()) % 4, 0, "header alignment");
        assert_eq!(&bytes[..6], MAGIC.as_bytes());
        let field = |i: usize| {
            u32::from_str_radix(
                std::str::from_utf8(&bytes[6 + i * 8..14 + i * 8]).unwrap(),
                16,
            )
            .unwrap()
        };
        let (mode, size, namesize) = (field(1), field(6) as usize, field(11) as usize);
        let rdev = (field(9), field(10));
        let name_end = 110 + namesize;
        assert_eq!(bytes[name_end - 1], 0, "NUL-terminated name");
        let path = String::from_utf8(bytes[110..name_end - 1].to_vec()).unwrap();
        let data_start = align(name_end);
        let data = bytes[data_start..data_start + size].to_vec();
        bytes = &bytes[align(data_start + size)..];
        if path == TRAILER {
            assert!(bytes.is_empty(), "nothing after the trailer");
            return entries;
        }
        entries.push(Parsed {
            path,
            mode,
            rdev,
            data,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_with_padding() {
        let mut writer = Writer::new(Vec::new());
        writer.add(&Entry::dir("dev")).unwrap();
        writer
            .add(&Entry::char_device("dev/console", 0o600, 5, 1))
            .unwrap();
        writer.add(&Entry::file("init", 0o755, b"12345")).unwrap();
        writer.add(&Entry::file("a", 0o644, b"")).unwrap();
        let bytes = writer.finish().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let parsed = parse(&bytes);
        assert_eq!(parsed.len(), 4);
        assert_eq!(
            parsed[0],
            Parsed {
                path: "dev".into(),
                mode: S_IFDIR | 0o755,
                rdev: (0, 0),
                data: vec![]
            }
        );
        assert_eq!(parsed[1].rdev, (5, 1));
        assert_eq!(parsed[1].mode, S_IFCHR | 0o600);
        assert_eq!(parsed[2].data, b"12345");
        assert_eq!(parsed[2].mode, S_IFREG | 0o755);
    }

    #[test]
    fn header_is_110_ascii_bytes() {
        let bytes = Writer::new(Vec::new()).finish().unwrap();
        // Header + "TRAILER!!!\0" (11) = 121, padded to 124.
        assert_eq!(bytes.len(), 124);
        assert!(bytes.starts_with(b"070701"));
    }
}
