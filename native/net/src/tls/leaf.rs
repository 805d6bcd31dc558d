//! Leaf certificates for intercepted flows: one per server name the guest asks for, signed by
//! the interception CA, with that name as its only subject alternative name (a DNS name, or an
//! IP address when the name is one). Minting costs a key generation and a signature, so leaves
//! are cached by name, at most [`LeafCache::new`]'s capacity of them (the least recently used
//! goes first), and minted again when half their lifetime is gone.
//!
//! A leaf is valid from a day before it was minted: a guest whose clock is behind the host's
//! (a restored snapshot, no NTP yet) would otherwise refuse it as not yet valid (upstream
//! microsandbox #969, `CERT_NOT_YET_VALID`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SanType,
    PKCS_ECDSA_P256_SHA256,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::ServerConfig;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use time::{Duration, OffsetDateTime};

use super::ca::InterceptionCa;

/// How far back a leaf's validity starts (see the module doc).
const BACKDATE: Duration = Duration::days(1);
/// How long a leaf is valid after it was minted: short, since a new one costs a millisecond.
const LIFETIME: Duration = Duration::days(7);
/// How long a cached leaf is handed out before it is minted again, so none is ever shown
/// close to its expiry.
const REUSE_FOR: Duration = Duration::days(3);

#[derive(Debug, thiserror::Error)]
pub enum LeafError {
    #[error("{name:?} cannot be a certificate's subject alternative name: {source}")]
    BadName { name: String, source: rcgen::Error },
    #[error("cannot mint a leaf certificate for {name:?}: {source}")]
    Mint { name: String, source: rcgen::Error },
    #[error("rustls refused the leaf certificate for {name:?}: {source}")]
    Rustls { name: String, source: rustls::Error },
}

/// The leaves of one CA, by server name. Shared by every flow of a sandbox (hence the lock,
/// which is held only while a leaf is looked up or minted).
pub struct LeafCache {
    ca: Arc<InterceptionCa>,
    provider: Arc<CryptoProvider>,
    capacity: usize,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    by_name: HashMap<String, Entry>,
    /// Counts look-ups, so the least recently used entry is the one with the smallest stamp.
    clock: u64,
    minted: u64,
}

struct Entry {
    key: Arc<CertifiedKey>,
    minted_at: OffsetDateTime,
    last_used: u64,
}

impl LeafCache {
    /// A cache of at most `capacity` leaves (at least one).
    pub fn new(ca: Arc<InterceptionCa>, capacity: usize) -> Self {
        Self {
            ca,
            provider: super::crypto_provider(),
            capacity: capacity.max(1),
            entries: Mutex::default(),
        }
    }

    /// The leaf for `server_name` (lower-cased, trailing dot dropped), minted if needed.
    pub fn certified_key(&self, server_name: &str) -> Result<Arc<CertifiedKey>, LeafError> {
        self.certified_key_at(server_name, OffsetDateTime::now_utc())
    }

    /// A guest-side server configuration showing the leaf for `server_name` and offering
    /// `alpn` (the protocol the real server chose, so the guest gets the same one).
    pub fn server_config(
        &self,
        server_name: &str,
        alpn: Option<&[u8]>,
    ) -> Result<Arc<ServerConfig>, LeafError> {
        let key = self.certified_key(server_name)?;
        let rustls_error = |source| LeafError::Rustls {
            name: server_name.to_string(),
            source,
        };
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(rustls_error)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SingleCertAndKey::from(key)));
        config.alpn_protocols = alpn
            .map(|protocol| vec![protocol.to_vec()])
            .unwrap_or_default();
        // A configuration serves one flow, so a ticket could never be redeemed: do not send
        // any (each costs a record and a key derivation).
        config.send_tls13_tickets = 0;
        Ok(Arc::new(config))
    }

    /// How many leaves were minted since the cache was made.
    pub fn minted(&self) -> u64 {
        self.lock().minted
    }

    fn certified_key_at(
        &self,
        server_name: &str,
        now: OffsetDateTime,
    ) -> Result<Arc<CertifiedKey>, LeafError> {
        let name = server_name
            .strip_suffix('.')
            .unwrap_or(server_name)
            .to_ascii_lowercase();
        let mut entries = self.lock();
        entries.clock += 1;
        let stamp = entries.clock;
        if let Some(entry) = entries.by_name.get_mut(&name) {
            if now < entry.minted_at + REUSE_FOR {
                entry.last_used = stamp;
                return Ok(entry.key.clone());
            }
        }
        let key = Arc::new(self.mint(&name, now)?);
        entries.minted += 1;
        if !entries.by_name.contains_key(&name) && entries.by_name.len() >= self.capacity {
            evict_least_recently_used(&mut entries.by_name);
        }
        let entry = Entry {
            key: key.clone(),
            minted_at: now,
            last_used: stamp,
        };
        entries.by_name.insert(name, entry);
        Ok(key)
    }

    fn mint(&self, name: &str, now: OffsetDateTime) -> Result<CertifiedKey, LeafError> {
        let mint_error = |source| LeafError::Mint {
            name: name.to_string(),
            source,
        };
        let subject_alt_name = match name.parse::<IpAddr>() {
            Ok(address) => SanType::IpAddress(address),
            Err(_) => SanType::DnsName(name.try_into().map_err(|source| LeafError::BadName {
                name: name.to_string(),
                source,
            })?),
        };
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![subject_alt_name];
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - BACKDATE;
        params.not_after = now + LIFETIME;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(mint_error)?;
        let cert = params
            .signed_by(&key, self.ca.issuer())
            .map_err(mint_error)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        CertifiedKey::from_der(vec![cert.der().clone()], key_der, &self.provider).map_err(
            |source| LeafError::Rustls {
                name: name.to_string(),
                source,
            },
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // The entries stay consistent even if a holder panicked: each update is one insert.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn evict_least_recently_used(by_name: &mut HashMap<String, Entry>) {
    let oldest = by_name
        .iter()
        .min_by_key(|(_, entry)| entry.last_used)
        .map(|(name, _)| name.clone());
    if let Some(name) = oldest {
        by_name.remove(&name);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use x509_parser::extensions::GeneralName;

    pub(crate) fn test_ca() -> Arc<InterceptionCa> {
        let dir = tempfile::tempdir().unwrap();
        let ca = InterceptionCa::load_or_create(&dir.path().join("ca.pem"), &dir.path().join("k"));
        Arc::new(ca.unwrap())
    }

    fn names_of(key: &CertifiedKey) -> Vec<String> {
        subject_alt_names(key.end_entity_cert().unwrap())
    }

    /// A certificate's subject alternative names, as `dns:NAME` or `ip:[OCTETS]`.
    pub(crate) fn subject_alt_names(cert: &rustls::pki_types::CertificateDer<'_>) -> Vec<String> {
        let (_, cert) = x509_parser::parse_x509_certificate(cert).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        san.value
            .general_names
            .iter()
            .map(|name| match name {
                GeneralName::DNSName(dns) => format!("dns:{dns}"),
                GeneralName::IPAddress(bytes) => format!("ip:{bytes:?}"),
                other => format!("other:{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_leaf_names_the_sni_as_its_only_dns_name() {
        let leaves = LeafCache::new(test_ca(), 8);
        let key = leaves.certified_key("API.Example.com.").unwrap();
        assert_eq!(names_of(&key), ["dns:api.example.com"]);
    }

    #[test]
    fn a_leaf_for_an_ip_address_names_it_as_an_ip() {
        let leaves = LeafCache::new(test_ca(), 8);
        let key = leaves.certified_key("10.1.2.3").unwrap();
        assert_eq!(names_of(&key), ["ip:[10, 1, 2, 3]"]);
    }

    #[test]
    fn a_leaf_is_valid_from_a_day_back_for_a_short_while_and_signed_by_the_ca() {
        let ca = test_ca();
        let leaves = LeafCache::new(ca.clone(), 8);
        let now = OffsetDateTime::now_utc();
        let key = leaves.certified_key("a.test").unwrap();
        let (_, cert) =
            x509_parser::parse_x509_certificate(key.end_entity_cert().unwrap()).unwrap();
        let validity = cert.validity();
        assert!(validity.not_before.to_datetime() <= now - Duration::hours(23));
        assert!(validity.not_after.to_datetime() <= now + LIFETIME + Duration::minutes(1));
        let (_, ca_cert) = x509_parser::parse_x509_certificate(ca.cert_der()).unwrap();
        assert_eq!(cert.issuer(), ca_cert.subject());
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
    }

    #[test]
    fn a_leaf_is_minted_once_per_name_then_served_from_the_cache() {
        let leaves = LeafCache::new(test_ca(), 8);
        let first = leaves.certified_key("a.test").unwrap();
        let again = leaves.certified_key("A.TEST.").unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        leaves.certified_key("b.test").unwrap();
        assert_eq!(leaves.minted(), 2);
    }

    #[test]
    fn the_least_recently_used_leaf_goes_when_the_cache_is_full() {
        let leaves = LeafCache::new(test_ca(), 2);
        let a = leaves.certified_key("a.test").unwrap();
        leaves.certified_key("b.test").unwrap();
        leaves.certified_key("a.test").unwrap();
        leaves.certified_key("c.test").unwrap(); // evicts b, the least recently used
        assert!(Arc::ptr_eq(&a, &leaves.certified_key("a.test").unwrap()));
        assert_eq!(leaves.minted(), 3);
        leaves.certified_key("b.test").unwrap();
        assert_eq!(leaves.minted(), 4);
    }

    #[test]
    fn a_leaf_half_way_through_its_life_is_minted_again() {
        let leaves = LeafCache::new(test_ca(), 8);
        let now = OffsetDateTime::now_utc();
        let first = leaves.certified_key_at("a.test", now).unwrap();
        let soon = leaves
            .certified_key_at("a.test", now + Duration::days(1))
            .unwrap();
        assert!(Arc::ptr_eq(&first, &soon));
        let later = leaves.certified_key_at("a.test", now + REUSE_FOR).unwrap();
        assert!(!Arc::ptr_eq(&first, &later));
    }

    #[test]
    fn a_name_that_cannot_be_a_dns_name_is_refused() {
        let leaves = LeafCache::new(test_ca(), 8);
        let error = leaves.certified_key("bücher.test").unwrap_err();
        assert!(matches!(error, LeafError::BadName { .. }), "{error}");
    }
}
