//! Content digests (`sha256:<hex>`) and streams that verify them.
//!
//! Only sha256 exists in practice for OCI content; other algorithms are rejected by name
//! rather than silently treated as unverifiable.

use crate::error::{Error, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

const SHA256_HEX_LEN: usize = 64;

/// A sha256 content digest; its text form is `sha256:<64 lowercase hex>`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    pub fn parse(value: &str) -> Result<Digest> {
        let invalid = |reason: &str| Error::InvalidDigest {
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let (algorithm, hex) = value
            .split_once(':')
            .ok_or_else(|| invalid("expected <algorithm>:<hex>"))?;
        if algorithm != "sha256" {
            return Err(Error::UnsupportedDigestAlgorithm {
                algorithm: algorithm.to_string(),
            });
        }
        Digest::from_hex(hex).map_err(|_| invalid("sha256 needs 64 lowercase hex digits"))
    }

    /// Builds a digest from the hex part alone (as in store file names).
    pub fn from_hex(hex: &str) -> Result<Digest> {
        let valid = hex.len() == SHA256_HEX_LEN
            && hex
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
        if !valid {
            return Err(Error::InvalidDigest {
                value: hex.to_string(),
                reason: "sha256 needs 64 lowercase hex digits".into(),
            });
        }
        Ok(Digest {
            hex: hex.to_string(),
        })
    }

    /// The digest of a byte string held in memory (manifests, configs).
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_hasher(Sha256::new_with_prefix(bytes))
    }

    fn from_hasher(hasher: Sha256) -> Digest {
        Digest {
            hex: format!("{:x}", hasher.finalize()),
        }
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Fails with `DigestMismatch` unless `actual` is this digest.
    pub fn expect(&self, actual: &Digest) -> Result<()> {
        if self == actual {
            Ok(())
        } else {
            Err(Error::DigestMismatch {
                digest: self.to_string(),
                actual: actual.to_string(),
            })
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(value: &str) -> Result<Digest> {
        Digest::parse(value)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Digest::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Running sha256 and byte count over a stream, shared by the reader and writer below.
#[derive(Default)]
struct Tally {
    hasher: Sha256,
    bytes: u64,
}

impl Tally {
    fn add(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
    }

    /// Checks the size first: a short download says more than a digest mismatch would.
    fn verify(self, expected: &Digest, expected_size: Option<u64>) -> Result<()> {
        if let Some(size) = expected_size {
            if size != self.bytes {
                return Err(Error::SizeMismatch {
                    digest: expected.to_string(),
                    expected: size,
                    actual: self.bytes,
                });
            }
        }
        expected.expect(&Digest::from_hasher(self.hasher))
    }
}

/// A writer that hashes what passes through; `finish` says whether it matched.
pub struct VerifyingWriter<W: Write> {
    inner: W,
    tally: Tally,
    expected: Digest,
    expected_size: Option<u64>,
}

impl<W: Write> VerifyingWriter<W> {
    pub fn new(inner: W, expected: Digest, expected_size: Option<u64>) -> Self {
        VerifyingWriter {
            inner,
            tally: Tally::default(),
            expected,
            expected_size,
        }
    }

    pub fn bytes_written(&self) -> u64 {
        self.tally.bytes
    }

    /// Verifies size and digest of everything written, giving back the inner writer.
    pub fn finish(self) -> Result<W> {
        self.tally.verify(&self.expected, self.expected_size)?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for VerifyingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(data)?;
        self.tally.add(&data[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes what is read through it; `finish` says whether it matched.
///
/// `finish` only sees what was read: callers must read to the end first (tar readers stop
/// at the end-of-archive marker, before any trailing padding).
pub struct VerifyingReader<R: Read> {
    inner: R,
    tally: Tally,
    expected: Digest,
    expected_size: Option<u64>,
}

impl<R: Read> VerifyingReader<R> {
    pub fn new(inner: R, expected: Digest, expected_size: Option<u64>) -> Self {
        VerifyingReader {
            inner,
            tally: Tally::default(),
            expected,
            expected_size,
        }
    }

    pub fn bytes_read(&self) -> u64 {
        self.tally.bytes
    }

    pub fn finish(self) -> Result<R> {
        self.tally.verify(&self.expected, self.expected_size)?;
        Ok(self.inner)
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.tally.add(&buffer[..read]);
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn parses_and_prints_sha256() {
        let digest = Digest::parse(HELLO).unwrap();
        assert_eq!(digest.to_string(), HELLO);
        assert_eq!(Digest::of(b"hello"), digest);
        assert_eq!(
            serde_json::to_string(&digest).unwrap(),
            format!("\"{HELLO}\"")
        );
    }

    #[test]
    fn rejects_other_algorithms_and_bad_hex() {
        assert!(matches!(
            Digest::parse("sha512:abcd"),
            Err(Error::UnsupportedDigestAlgorithm { algorithm }) if algorithm == "sha512"
        ));
        for bad in [
            "sha256",
            "sha256:abc",
            &HELLO.to_uppercase().replace("SHA256", "sha256"),
            &format!("{HELLO}0"),
        ] {
            assert!(
                matches!(Digest::parse(bad), Err(Error::InvalidDigest { .. })),
                "{bad} must be refused"
            );
        }
    }

    #[test]
    fn writer_verifies_digest_and_size() {
        let digest = Digest::parse(HELLO).unwrap();
        let mut good = VerifyingWriter::new(Vec::new(), digest.clone(), Some(5));
        good.write_all(b"hello").unwrap();
        assert_eq!(good.finish().unwrap(), b"hello");

        let mut corrupted = VerifyingWriter::new(Vec::new(), digest.clone(), Some(5));
        corrupted.write_all(b"hellO").unwrap();
        match corrupted.finish() {
            Err(Error::DigestMismatch {
                digest: named,
                actual,
            }) => {
                assert_eq!(named, HELLO);
                assert_eq!(actual, Digest::of(b"hellO").to_string());
            }
            other => panic!("expected a digest mismatch, got {other:?}"),
        }

        let mut short = VerifyingWriter::new(Vec::new(), digest, Some(5));
        short.write_all(b"hell").unwrap();
        assert!(matches!(
            short.finish(),
            Err(Error::SizeMismatch {
                expected: 5,
                actual: 4,
                ..
            })
        ));
    }

    #[test]
    fn reader_verifies_digest() {
        let digest = Digest::parse(HELLO).unwrap();
        let mut reader = VerifyingReader::new(&b"hello"[..], digest.clone(), None);
        io::copy(&mut reader, &mut io::sink()).unwrap();
        assert!(reader.finish().is_ok());
        let mut reader = VerifyingReader::new(&b"jello"[..], digest, None);
        io::copy(&mut reader, &mut io::sink()).unwrap();
        assert!(matches!(reader.finish(), Err(Error::DigestMismatch { .. })));
    }
}
