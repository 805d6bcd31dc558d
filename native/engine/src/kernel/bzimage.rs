//! Getting the ELF `vmlinux` out of an x86 bzImage.
//!
//! Why: QEMU boots an ELF vmlinux through its PVH entry point, which skips the in-guest
//! decompression and saves about 2 s per boot under TCG. The compressed payload's place is
//! given by the boot-protocol setup header; scanning for compression magics instead finds
//! false matches inside the payload.

use super::lz4_legacy::{self, Lz4LegacyError};
use thiserror::Error;

/// Offsets of setup-header fields (Linux x86 boot protocol).
const SETUP_SECTS: usize = 0x1f1;
const HEADER_MAGIC: usize = 0x202;
const VERSION: usize = 0x206;
const KERNEL_VERSION_POINTER: usize = 0x20e;
const PAYLOAD_OFFSET: usize = 0x248;
const PAYLOAD_LENGTH: usize = 0x24c;
/// `payload_offset`/`payload_length` exist from boot protocol 2.08 on.
const MIN_VERSION: u16 = 0x0208;
const SECTOR: usize = 512;
pub(crate) const ELF_MAGIC: &[u8; 4] = b"\x7fELF";

#[derive(Debug, Error)]
pub enum BzImageError {
    #[error("not a bzImage (no \"HdrS\" setup header)")]
    NotBzImage,
    #[error("boot protocol {major}.{minor:02} is too old: the payload location needs 2.08 or later", major = .0 >> 8, minor = .0 & 0xff)]
    OldBootProtocol(u16),
    #[error("the payload ({start}+{length}) lies outside the {size}-byte image")]
    PayloadOutOfBounds {
        start: usize,
        length: usize,
        size: usize,
    },
    #[error("the kernel payload is {name}-compressed (magic {magic}); only LZ4 is supported, use the Debian cloud kernel or an uncompressed vmlinux")]
    UnsupportedCompression { name: &'static str, magic: String },
    #[error("decompressing the kernel payload: {0}")]
    Lz4(#[from] Lz4LegacyError),
    #[error("the decompressed payload is not an ELF file")]
    NotElf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SetupHeader {
    pub setup_sects: u8,
    pub version: u16,
    pub payload_offset: u32,
    pub payload_length: u32,
}

impl SetupHeader {
    pub(crate) fn parse(image: &[u8]) -> Result<Self, BzImageError> {
        if image.get(HEADER_MAGIC..HEADER_MAGIC + 4) != Some(b"HdrS") {
            return Err(BzImageError::NotBzImage);
        }
        let version = u16_at(image, VERSION).ok_or(BzImageError::NotBzImage)?;
        if version < MIN_VERSION {
            return Err(BzImageError::OldBootProtocol(version));
        }
        Ok(Self {
            setup_sects: image[SETUP_SECTS],
            version,
            payload_offset: u32_at(image, PAYLOAD_OFFSET).ok_or(BzImageError::NotBzImage)?,
            payload_length: u32_at(image, PAYLOAD_LENGTH).ok_or(BzImageError::NotBzImage)?,
        })
    }

    /// Where the protected-mode code starts: after the boot sector and the setup sectors
    /// (a zero count means 4, for historical reasons).
    fn protected_mode_start(&self) -> usize {
        let sects = if self.setup_sects == 0 {
            4
        } else {
            self.setup_sects as usize
        };
        (sects + 1) * SECTOR
    }
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// The compressed kernel inside a bzImage.
pub(crate) fn payload(image: &[u8]) -> Result<&[u8], BzImageError> {
    let header = SetupHeader::parse(image)?;
    let start = header.protected_mode_start() + header.payload_offset as usize;
    let length = header.payload_length as usize;
    image
        .get(start..start.saturating_add(length))
        .ok_or(BzImageError::PayloadOutOfBounds {
            start,
            length,
            size: image.len(),
        })
}

/// Decompresses a bzImage's payload into the ELF vmlinux.
pub(crate) fn extract_vmlinux(image: &[u8]) -> Result<Vec<u8>, BzImageError> {
    let payload = payload(image)?;
    if !payload.starts_with(&lz4_legacy::MAGIC.to_le_bytes()) {
        return Err(BzImageError::UnsupportedCompression {
            name: compression_name(payload),
            magic: payload.iter().take(6).map(|b| format!("{b:02x}")).collect(),
        });
    }
    let vmlinux = lz4_legacy::decode(payload)?;
    if !vmlinux.starts_with(ELF_MAGIC) {
        return Err(BzImageError::NotElf);
    }
    Ok(vmlinux)
}

/// Names the compressions a kernel can be built with, from the payload's first bytes.
fn compression_name(payload: &[u8]) -> &'static str {
    const KNOWN: &[(&[u8], &str)] = &[
        (b"\x1f\x8b", "gzip"),
        (b"\xfd7zXZ\x00", "xz"),
        (b"\x28\xb5\x2f\xfd", "zstd"),
        (b"BZh", "bzip2"),
        (b"\x89LZO", "lzo"),
        (b"\x5d\x00\x00", "lzma"),
    ];
    KNOWN
        .iter()
        .find(|(magic, _)| payload.starts_with(magic))
        .map_or("an unknown format", |(_, name)| name)
}

/// The release string a bzImage announces (e.g. `6.1.0-56-cloud-amd64`), from the
/// `kernel_version` pointer in its setup header.
pub(crate) fn release(image: &[u8]) -> Option<String> {
    SetupHeader::parse(image).ok()?;
    let pointer = u16_at(image, KERNEL_VERSION_POINTER)? as usize;
    if pointer == 0 {
        return None;
    }
    let text = image.get(pointer + SECTOR..)?;
    let end = text.iter().position(|&b| b == 0 || b == b' ')?;
    let release = std::str::from_utf8(&text[..end]).ok()?;
    (!release.is_empty()).then(|| release.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::lz4_legacy::tests::frame;

    /// A minimal bzImage: boot sector + `setup_sects` sectors, then the payload at
    /// `payload_offset` inside the protected-mode part.
    fn image(version: u16, setup_sects: u8, payload: &[u8]) -> Vec<u8> {
        let offset = 64usize;
        let start = (setup_sects as usize + 1) * SECTOR;
        let mut out = vec![0u8; start + offset];
        out[SETUP_SECTS] = setup_sects;
        out[HEADER_MAGIC..HEADER_MAGIC + 4].copy_from_slice(b"HdrS");
        out[VERSION..VERSION + 2].copy_from_slice(&version.to_le_bytes());
        out[PAYLOAD_OFFSET..PAYLOAD_OFFSET + 4].copy_from_slice(&(offset as u32).to_le_bytes());
        out[PAYLOAD_LENGTH..PAYLOAD_LENGTH + 4]
            .copy_from_slice(&(payload.len() as u32).to_le_bytes());
        // kernel_version string placed in the setup area, pointer relative to 0x200.
        let text = b"9.9.9-test (builder@host) #1\0";
        out[0x300..0x300 + text.len()].copy_from_slice(text);
        out[KERNEL_VERSION_POINTER..KERNEL_VERSION_POINTER + 2]
            .copy_from_slice(&0x100u16.to_le_bytes());
        out.extend_from_slice(payload);
        out.extend_from_slice(b"trailing setup data that is not payload");
        out
    }

    fn fake_elf() -> Vec<u8> {
        let mut elf = ELF_MAGIC.to_vec();
        elf.extend((0..20_000u32).map(|i| (i % 251) as u8));
        elf
    }

    #[test]
    fn header_fields_are_read_from_their_offsets() {
        let header = SetupHeader::parse(&image(0x020f, 3, b"xyz")).unwrap();
        assert_eq!(
            header,
            SetupHeader {
                setup_sects: 3,
                version: 0x020f,
                payload_offset: 64,
                payload_length: 3
            }
        );
        assert_eq!(header.protected_mode_start(), 2048);
    }

    #[test]
    fn zero_setup_sects_means_four() {
        let mut bytes = image(0x020f, 4, b"abc");
        bytes[SETUP_SECTS] = 0;
        assert_eq!(payload(&bytes).unwrap(), b"abc");
    }

    #[test]
    fn extracts_an_lz4_payload_and_checks_elf_magic() {
        let elf = fake_elf();
        let bytes = image(0x020f, 2, &frame(&[&elf], true));
        assert_eq!(extract_vmlinux(&bytes).unwrap(), elf);
        let not_elf = image(0x020f, 2, &frame(&[b"plain data, no ELF header"], true));
        assert!(matches!(
            extract_vmlinux(&not_elf),
            Err(BzImageError::NotElf)
        ));
    }

    #[test]
    fn old_protocols_and_other_files_are_rejected() {
        assert!(matches!(
            SetupHeader::parse(&image(0x0206, 2, b"x")),
            Err(BzImageError::OldBootProtocol(0x0206))
        ));
        assert!(matches!(
            SetupHeader::parse(&fake_elf()),
            Err(BzImageError::NotBzImage)
        ));
        assert!(matches!(
            SetupHeader::parse(b"short"),
            Err(BzImageError::NotBzImage)
        ));
    }

    #[test]
    fn other_compressions_are_named_in_the_error() {
        let error = extract_vmlinux(&image(0x020f, 2, b"\x1f\x8b\x08\x00\x00\x00")).unwrap_err();
        assert!(matches!(
            error,
            BzImageError::UnsupportedCompression { name: "gzip", .. }
        ));
        assert!(error.to_string().contains("1f8b08000000"), "{error}");
    }

    #[test]
    fn payload_beyond_the_file_is_an_error() {
        let mut bytes = image(0x020f, 2, b"abc");
        bytes[PAYLOAD_LENGTH..PAYLOAD_LENGTH + 4].copy_from_slice(&1_000_000u32.to_le_bytes());
        assert!(matches!(
            payload(&bytes),
            Err(BzImageError::PayloadOutOfBounds { .. })
        ));
    }

    #[test]
    fn release_comes_from_the_kernel_version_string() {
        assert_eq!(
            release(&image(0x020f, 2, b"x")).as_deref(),
            Some("9.9.9-test")
        );
    }
}
