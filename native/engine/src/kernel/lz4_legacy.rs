//! Decoder for the LZ4 "legacy" frame, the format of an LZ4-compressed Linux kernel payload.
//!
//! Layout: the magic `0x184C2102` (LE), then blocks, each a little-endian `u32` compressed
//! size followed by that many bytes of an LZ4 block that decompresses to at most 8 MiB. The
//! magic may appear again between blocks (concatenated streams). The kernel build appends the
//! uncompressed size as a final `u32`; when present it is checked against what was decoded.

use thiserror::Error;

pub(crate) const MAGIC: u32 = 0x184C_2102;
/// The legacy format's fixed block size: every block decodes to at most this.
const MAX_BLOCK: usize = 8 << 20;
/// A sanity cap on the trailer used to pre-allocate: no kernel decompresses to 1 GiB.
const MAX_PREALLOCATION: usize = 1 << 30;

#[derive(Debug, Error)]
pub enum Lz4LegacyError {
    #[error("not an LZ4 legacy frame (magic {found:#010x}, expected {MAGIC:#010x})")]
    BadMagic { found: u32 },
    #[error("LZ4 legacy frame truncated at byte {offset}")]
    Truncated { offset: usize },
    #[error("LZ4 block at byte {offset} claims {size} compressed bytes, more than an 8 MiB block can need")]
    OversizedBlock { offset: usize, size: usize },
    #[error("LZ4 block at byte {offset} is corrupt: {reason}")]
    Block { offset: usize, reason: String },
    #[error("LZ4 stream decoded to {actual} bytes but its trailer says {expected}")]
    SizeMismatch { expected: usize, actual: usize },
}

fn read_u32(input: &[u8], at: usize) -> Option<u32> {
    let bytes = input.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

/// Decodes a whole legacy frame (with or without the kernel's size trailer).
pub(crate) fn decode(input: &[u8]) -> Result<Vec<u8>, Lz4LegacyError> {
    let magic = read_u32(input, 0).ok_or(Lz4LegacyError::Truncated { offset: 0 })?;
    if magic != MAGIC {
        return Err(Lz4LegacyError::BadMagic { found: magic });
    }
    let mut output = Vec::with_capacity(expected_size(input).unwrap_or(0));
    let max_compressed = lz4_flex::block::get_maximum_output_size(MAX_BLOCK);
    let mut pos = 4;
    while pos < input.len() {
        let size = read_u32(input, pos).ok_or(Lz4LegacyError::Truncated { offset: pos })?;
        if size == MAGIC {
            pos += 4;
            continue;
        }
        if input.len() - pos == 4 {
            return check_trailer(output, size as usize);
        }
        let size = size as usize;
        if size > max_compressed {
            return Err(Lz4LegacyError::OversizedBlock { offset: pos, size });
        }
        let block = input
            .get(pos + 4..pos + 4 + size)
            .ok_or(Lz4LegacyError::Truncated { offset: pos })?;
        decode_block(block, pos, &mut output)?;
        pos += 4 + size;
    }
    Ok(output)
}

/// The uncompressed size announced by a trailer, used only to allocate once.
fn expected_size(input: &[u8]) -> Option<usize> {
    let size = read_u32(input, input.len().checked_sub(4)?)? as usize;
    (size <= MAX_PREALLOCATION).then_some(size)
}

fn check_trailer(output: Vec<u8>, expected: usize) -> Result<Vec<u8>, Lz4LegacyError> {
    if expected == output.len() {
        Ok(output)
    } else {
        Err(Lz4LegacyError::SizeMismatch {
            expected,
            actual: output.len(),
        })
    }
}

fn decode_block(block: &[u8], offset: usize, output: &mut Vec<u8>) -> Result<(), Lz4LegacyError> {
    let start = output.len();
    output.resize(start + MAX_BLOCK, 0);
    match lz4_flex::block::decompress_into(block, &mut output[start..]) {
        Ok(written) => {
            output.truncate(start + written);
            Ok(())
        }
        Err(error) => Err(Lz4LegacyError::Block {
            offset,
            reason: error.to_string(),
        }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a legacy frame from `blocks`, optionally with the kernel's size trailer.
    pub(crate) fn frame(blocks: &[&[u8]], trailer: bool) -> Vec<u8> {
        let mut out = MAGIC.to_le_bytes().to_vec();
        let mut total = 0u32;
        for block in blocks {
            let compressed = lz4_flex::block::compress(block);
            out.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
            out.extend_from_slice(&compressed);
            total += block.len() as u32;
        }
        if trailer {
            out.extend_from_slice(&total.to_le_bytes());
        }
        out
    }

    fn sample(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i / 7) as u8 ^ seed).collect()
    }

    #[test]
    fn decodes_several_blocks_with_and_without_trailer() {
        let (a, b) = (sample(5000, 1), sample(300, 9));
        let expected = [a.clone(), b.clone()].concat();
        assert_eq!(decode(&frame(&[&a, &b], true)).unwrap(), expected);
        assert_eq!(decode(&frame(&[&a, &b], false)).unwrap(), expected);
    }

    #[test]
    fn repeated_magic_between_blocks_is_skipped() {
        let a = sample(1000, 3);
        let mut stream = frame(&[&a], false);
        stream.extend_from_slice(&frame(&[&a], false));
        assert_eq!(decode(&stream).unwrap(), [a.clone(), a].concat());
    }

    #[test]
    fn wrong_trailer_is_reported() {
        let mut stream = frame(&[&sample(100, 0)], false);
        stream.extend_from_slice(&99u32.to_le_bytes());
        assert!(matches!(
            decode(&stream),
            Err(Lz4LegacyError::SizeMismatch {
                expected: 99,
                actual: 100
            })
        ));
    }

    #[test]
    fn bad_magic_truncation_and_oversize_are_errors() {
        assert!(matches!(
            decode(b"\x1f\x8b\x08\x00"),
            Err(Lz4LegacyError::BadMagic { .. })
        ));
        let mut stream = frame(&[&sample(4000, 2)], false);
        stream.truncate(stream.len() - 10);
        assert!(matches!(
            decode(&stream),
            Err(Lz4LegacyError::Truncated { .. })
        ));
        let mut huge = MAGIC.to_le_bytes().to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&[0; 8]);
        assert!(matches!(
            decode(&huge),
            Err(Lz4LegacyError::OversizedBlock { .. })
        ));
    }

    #[test]
    fn garbage_block_is_an_error_not_a_panic() {
        let mut stream = MAGIC.to_le_bytes().to_vec();
        stream.extend_from_slice(&8u32.to_le_bytes());
        stream.extend_from_slice(&[0xff; 8]);
        assert!(matches!(decode(&stream), Err(Lz4LegacyError::Block { .. })));
    }
}
