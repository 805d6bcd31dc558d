//! The interception CA: the certificate authority whose leaves the guest is shown for an
//! intercepted TLS flow, and which the guest trusts. One per runtime home, generated on first
//! use (ECDSA P-256) or supplied by the user as a PEM certificate and key.
//!
//! This is the only file of `tls` that touches the file system: it reads and writes the CA's
//! pair, and reads the PEM certificate files the upstream side trusts in addition to the
//! host's store ([`read_certificates`]).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

/// The name the generated CA carries, so a user who finds it in a trust store knows whose it is.
const GENERATED_CA_NAME: &str = "microsandbox-tui interception CA";
/// How long a generated CA is valid: long, because every guest and every user who trusted it
/// would have to trust a new one.
const GENERATED_CA_LIFETIME: Duration = Duration::days(10 * 365);
/// How far before its creation a generated CA is valid, for guests whose clock is behind.
const GENERATED_CA_BACKDATE: Duration = Duration::days(1);

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error(
        "the interception CA is half there: {present} exists but {missing} does not \
         (remove the one or supply the other)"
    )]
    HalfPair { present: PathBuf, missing: PathBuf },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} is not a readable X.509 certificate: {reason}")]
    UnreadableCertificate { path: PathBuf, reason: String },
    #[error("{path} is not a CA certificate (its basic constraints do not say CA:TRUE)")]
    NotCa { path: PathBuf },
    #[error("{path} holds no usable private key (PKCS#8 PEM, ECDSA, Ed25519 or RSA): {source}")]
    UnusableKey { path: PathBuf, source: rcgen::Error },
    #[error("the key {key} does not belong to the certificate {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("cannot generate the interception CA: {0}")]
    Generate(rcgen::Error),
}

/// The CA that signs the leaves of intercepted flows.
pub struct InterceptionCa {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for InterceptionCa {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        formatter
            .debug_struct("InterceptionCa")
            .field("cert_der_len", &self.cert_der.len())
            .finish_non_exhaustive()
    }
}

impl InterceptionCa {
    /// The CA in `cert_path` and `key_path` (PEM), or a new one written there when neither
    /// exists. The key is written mode 0600, both atomically (a temporary file renamed into
    /// place), so a crash leaves no half-written file. Two processes creating the same home's
    /// CA at the same moment must be serialised by the caller (the home's lock).
    pub fn load_or_create(cert_path: &Path, key_path: &Path) -> Result<Self, CaError> {
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => Self::load(cert_path, key_path),
            (false, false) => {
                let (ca, key_pem) = Self::generate()?;
                write_atomically(key_path, key_pem.as_bytes(), 0o600)?;
                write_atomically(cert_path, ca.cert_pem.as_bytes(), 0o644)?;
                Ok(ca)
            }
            (true, false) => Err(CaError::HalfPair {
                present: cert_path.into(),
                missing: key_path.into(),
            }),
            (false, true) => Err(CaError::HalfPair {
                present: key_path.into(),
                missing: cert_path.into(),
            }),
        }
    }

    /// The CA certificate as PEM: what the guest installs into its trust stores.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    /// A new CA and its key as PEM (the key is returned only to be written to its file).
    fn generate() -> Result<(Self, String), CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(CaError::Generate)?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, GENERATED_CA_NAME);
        name.push(DnType::OrganizationName, "microsandbox-tui");
        params.distinguished_name = name;
        // Path length 0: it signs leaves only, never another CA.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - GENERATED_CA_BACKDATE;
        params.not_after = now + GENERATED_CA_LIFETIME;
        let cert = params.self_signed(&key).map_err(CaError::Generate)?;
        let key_pem = key.serialize_pem();
        let ca = Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        };
        Ok((ca, key_pem))
    }

    fn load(cert_path: &Path, key_path: &Path) -> Result<Self, CaError> {
        let cert_pem = read_text(cert_path)?;
        // A file with a chain holds the CA first.
        let cert_der = parse_certificates(&cert_pem, cert_path)?.remove(0);
        let key =
            KeyPair::from_pem(&read_text(key_path)?).map_err(|source| CaError::UnusableKey {
                path: key_path.into(),
                source,
            })?;
        check_ca_and_key(&cert_der, &key, cert_path, key_path)?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(|error| {
            CaError::UnreadableCertificate {
                path: cert_path.into(),
                reason: error.to_string(),
            }
        })?;
        Ok(Self {
            cert_pem,
            cert_der,
            issuer,
        })
    }
}

/// Refuses a certificate that is not a CA, or whose public key is not `key`'s.
fn check_ca_and_key(
    cert_der: &CertificateDer<'_>,
    key: &KeyPair,
    cert_path: &Path,
    key_path: &Path,
) -> Result<(), CaError> {
    let unreadable = |reason: String| CaError::UnreadableCertificate {
        path: cert_path.into(),
        reason,
    };
    let (_, cert) =
        x509_parser::parse_x509_certificate(cert_der).map_err(|e| unreadable(e.to_string()))?;
    let is_ca = cert
        .basic_constraints()
        .map_err(|e| unreadable(e.to_string()))?
        .is_some_and(|constraints| constraints.value.ca);
    if !is_ca {
        return Err(CaError::NotCa {
            path: cert_path.into(),
        });
    }
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(CaError::KeyMismatch {
            cert: cert_path.into(),
            key: key_path.into(),
        });
    }
    Ok(())
}

/// Every certificate of the PEM file at `path` (at least one).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, CaError> {
    parse_certificates(&read_text(path)?, path)
}

fn parse_certificates(text: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, CaError> {
    let certificates = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| CaError::UnreadableCertificate {
            path: path.into(),
            reason: error.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(CaError::NoCertificate { path: path.into() });
    }
    Ok(certificates)
}

fn read_text(path: &Path) -> Result<String, CaError> {
    fs::read_to_string(path).map_err(|source| CaError::Read {
        path: path.into(),
        source,
    })
}

/// Writes `bytes` to `path` through a temporary file in the same directory, created with
/// `mode` (so the key is never readable by others, not even for a moment) and renamed over.
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    let write_error = |source| CaError::Write {
        path: path.into(),
        source,
    };
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        fs::create_dir_all(parent).map_err(write_error)?;
    }
    let mut temporary_name = path.as_os_str().to_owned();
    temporary_name.push(format!(".tmp-{}", std::process::id()));
    let temporary = PathBuf::from(temporary_name);
    let written = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temporary)
        .and_then(|mut file| {
            // The umask may have narrowed `mode`; the cert must stay world-readable.
            file.set_permissions(fs::Permissions::from_mode(mode))?;
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| fs::rename(&temporary, path));
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written.map_err(write_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair_in(dir: &Path) -> (PathBuf, PathBuf) {
        (dir.join("ca.pem"), dir.join("ca.key"))
    }

    #[test]
    fn a_ca_is_created_on_first_use_with_a_private_key_and_loaded_after() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair_in(&dir.path().join("tls"));
        let created = InterceptionCa::load_or_create(&cert, &key).unwrap();
        let key_mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(key_mode, 0o600);
        let loaded = InterceptionCa::load_or_create(&cert, &key).unwrap();
        assert_eq!(loaded.cert_der(), created.cert_der());
        assert_eq!(loaded.cert_pem(), created.cert_pem());
        let leftovers: Vec<_> = fs::read_dir(cert.parent().unwrap())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .filter(|name| name.to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn the_generated_ca_is_a_ca_valid_since_yesterday() {
        let (ca, _) = InterceptionCa::generate().unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(ca.cert_der()).unwrap();
        assert!(cert.is_ca());
        let not_before = cert.validity().not_before.to_datetime();
        assert!(not_before <= OffsetDateTime::now_utc() - Duration::hours(23));
    }

    #[test]
    fn a_half_present_pair_is_refused_rather_than_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair_in(dir.path());
        fs::write(&cert, "not touched").unwrap();
        let error = InterceptionCa::load_or_create(&cert, &key).unwrap_err();
        assert!(matches!(error, CaError::HalfPair { .. }), "{error}");
        assert_eq!(fs::read_to_string(&cert).unwrap(), "not touched");
    }

    #[test]
    fn a_user_certificate_that_is_not_a_ca_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair_in(dir.path());
        let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let leaf = CertificateParams::new(vec!["a.test".to_string()])
            .unwrap()
            .self_signed(&leaf_key)
            .unwrap();
        fs::write(&cert, leaf.pem()).unwrap();
        fs::write(&key, leaf_key.serialize_pem()).unwrap();
        let error = InterceptionCa::load_or_create(&cert, &key).unwrap_err();
        assert!(matches!(error, CaError::NotCa { .. }), "{error}");
    }

    #[test]
    fn a_user_ca_with_another_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair_in(dir.path());
        InterceptionCa::load_or_create(&cert, &key).unwrap();
        let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        fs::write(&key, other.serialize_pem()).unwrap();
        let error = InterceptionCa::load_or_create(&cert, &key).unwrap_err();
        assert!(matches!(error, CaError::KeyMismatch { .. }), "{error}");
    }

    #[test]
    fn files_without_a_certificate_or_key_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair_in(dir.path());
        fs::write(&cert, "no pem here").unwrap();
        fs::write(&key, "nor here").unwrap();
        let error = InterceptionCa::load_or_create(&cert, &key).unwrap_err();
        assert!(matches!(error, CaError::NoCertificate { .. }), "{error}");
        let (ca, _) = InterceptionCa::generate().unwrap();
        fs::write(&cert, ca.cert_pem()).unwrap();
        let error = InterceptionCa::load_or_create(&cert, &key).unwrap_err();
        assert!(matches!(error, CaError::UnusableKey { .. }), "{error}");
    }
}
