//! A sandbox's TLS interception as the gateway holds it: built once from the spec's `tls`
//! section when the gateway starts (the CA loaded or generated, the upstream trust store
//! parsed, the bypass list checked), then asked per flow whether to intercept it.

use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;

use super::spec::TlsSpec;
use crate::tls::bypass::{BypassError, BypassList};
use crate::tls::ca::{CaError, InterceptionCa};
use crate::tls::intercept::Interceptor;
use crate::tls::leaf::LeafCache;
use crate::tls::upstream::{UpstreamError, UpstreamTls, UpstreamTrust};

/// How many leaves a sandbox keeps: a guest that talks to more names mints the least recently
/// used again (about a millisecond each).
const LEAF_CACHE_CAPACITY: usize = 256;

/// Where the runtime home keeps its own interception CA, used when the spec names none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Error)]
pub enum TlsSetupError {
    #[error("network.tls: the interception CA: {0}")]
    Ca(#[from] CaError),
    #[error("network.tls: {0}")]
    Upstream(#[from] UpstreamError),
    #[error("network.tls.bypass: {0}")]
    Bypass(#[from] BypassError),
}

/// What the gateway needs to intercept a sandbox's TLS flows.
pub struct TlsInterception {
    spec: TlsSpec,
    bypass: BypassList,
    interceptor: Interceptor,
    ca_pem: String,
}

impl TlsInterception {
    /// Loads the spec's CA pair, or the home's at `home_ca` (generated there when absent).
    pub fn new(spec: &TlsSpec, home_ca: &CaPaths) -> Result<Self, TlsSetupError> {
        let (cert, key) = match (&spec.ca_cert, &spec.ca_key) {
            (Some(cert), Some(key)) => (cert, key),
            _ => (&home_ca.cert, &home_ca.key),
        };
        let ca = Arc::new(InterceptionCa::load_or_create(cert, key)?);
        let upstream = UpstreamTls::new(&UpstreamTrust {
            verify: spec.verify_upstream,
            extra_ca_files: spec.upstream_ca_certs.clone(),
        })?;
        let ca_pem = ca.cert_pem().to_owned();
        let leaves = Arc::new(LeafCache::new(ca, LEAF_CACHE_CAPACITY));
        Ok(Self {
            spec: spec.clone(),
            bypass: spec.bypass_list()?,
            interceptor: Interceptor::new(leaves, upstream),
            ca_pem,
        })
    }

    /// The CA certificate the guest is to trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn interceptor(&self) -> &Interceptor {
        &self.interceptor
    }

    /// Whether TCP flows to `port` are held until their first bytes show a ClientHello.
    pub fn intercepts_port(&self, port: u16) -> bool {
        self.spec.intercepts(port)
    }

    /// Whether a TCP flow to `port` whose ClientHello names `server_name` is intercepted.
    pub fn intercepts(&self, port: u16, server_name: &str) -> bool {
        self.intercepts_port(port) && !self.bypass.matches(server_name)
    }

    /// Whether a UDP datagram to `port` is refused (`block_quic`).
    pub fn blocks_udp(&self, port: u16) -> bool {
        self.spec.block_quic && self.spec.intercepts(port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> TlsSpec {
        serde_json::from_str(json).unwrap()
    }

    fn home(dir: &tempfile::TempDir) -> CaPaths {
        CaPaths {
            cert: dir.path().join("ca.pem"),
            key: dir.path().join("ca.key"),
        }
    }

    #[test]
    fn the_home_ca_is_generated_once_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first =
            TlsInterception::new(&spec(r#"{"verify_upstream": false}"#), &home(&dir)).unwrap();
        assert!(first.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let again =
            TlsInterception::new(&spec(r#"{"verify_upstream": false}"#), &home(&dir)).unwrap();
        assert_eq!(first.ca_pem(), again.ca_pem());
    }

    #[test]
    fn bypassed_names_and_other_ports_are_not_intercepted() {
        let dir = tempfile::tempdir().unwrap();
        let tls = TlsInterception::new(
            &spec(
                r#"{"verify_upstream": false, "intercepted_ports": [443, 8443],
                    "bypass": ["*.pinned.test"], "block_quic": true}"#,
            ),
            &home(&dir),
        )
        .unwrap();
        assert!(tls.intercepts(443, "api.test") && tls.intercepts(8443, "api.test"));
        assert!(!tls.intercepts(443, "a.pinned.test"));
        assert!(!tls.intercepts(80, "api.test"));
        assert!(tls.blocks_udp(443) && !tls.blocks_udp(53));
    }

    #[test]
    fn a_missing_upstream_ca_file_is_an_error_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let json = format!(r#"{{"upstream_ca_certs": [{:?}]}}"#, missing);
        assert!(matches!(
            TlsInterception::new(&spec(&json), &home(&dir)),
            Err(TlsSetupError::Upstream(_))
        ));
    }
}
