//! A sandbox's TLS interception as the gateway holds it: built once when the gateway starts,
//! from the spec's `tls` section (the CA loaded or generated, the upstream trust store
//! parsed, the bypass list checked), or, for a sandbox with secrets and no `tls`, in the
//! secrets-only mode (the home's CA, port 443, the real servers verified against the host's
//! store); then asked per flow whether to intercept it. Secret hosts are intercepted on 443
//! in both modes, unless bypassed.

use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;

use super::spec::TlsSpec;
use crate::secrets::Secrets;
use crate::tls::bypass::{BypassError, BypassList};
use crate::tls::ca::{CaError, InterceptionCa};
use crate::tls::intercept::Interceptor;
use crate::tls::leaf::LeafCache;
use crate::tls::upstream::{UpstreamError, UpstreamTls, UpstreamTrust};

/// How many leaves a sandbox keeps: a guest that talks to more names mints the least recently
/// used again (about a millisecond each).
const LEAF_CACHE_CAPACITY: usize = 256;
/// The port whose TLS is intercepted for the hosts a secret may go to.
const SECRETS_PORT: u16 = 443;

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
    /// The spec's `tls`; `None` in the secrets-only mode.
    spec: Option<TlsSpec>,
    bypass: BypassList,
    interceptor: Interceptor,
    ca_pem: String,
}

impl TlsInterception {
    /// Loads the spec's CA pair, or the home's at `home_ca` (generated there when absent);
    /// with no spec, the secrets-only mode.
    pub fn new(spec: Option<&TlsSpec>, home_ca: &CaPaths) -> Result<Self, TlsSetupError> {
        let (cert, key) = match spec.map(|spec| (&spec.ca_cert, &spec.ca_key)) {
            Some((Some(cert), Some(key))) => (cert, key),
            _ => (&home_ca.cert, &home_ca.key),
        };
        let ca = Arc::new(InterceptionCa::load_or_create(cert, key)?);
        let upstream = UpstreamTls::new(&UpstreamTrust {
            verify: spec.is_none_or(|spec| spec.verify_upstream),
            extra_ca_files: spec
                .map(|spec| spec.upstream_ca_certs.clone())
                .unwrap_or_default(),
        })?;
        let ca_pem = ca.cert_pem().to_owned();
        let leaves = Arc::new(LeafCache::new(ca, LEAF_CACHE_CAPACITY));
        Ok(Self {
            spec: spec.cloned(),
            bypass: spec
                .map(TlsSpec::bypass_list)
                .transpose()?
                .unwrap_or_default(),
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
    pub fn intercepts_port(&self, port: u16, secrets: &Secrets) -> bool {
        self.spec_intercepts(port) || (port == SECRETS_PORT && !secrets.is_empty())
    }

    /// Whether a TCP flow to `port` whose ClientHello names `server_name` is intercepted.
    pub fn intercepts(&self, port: u16, server_name: &str, secrets: &Secrets) -> bool {
        let for_secret = port == SECRETS_PORT && secrets.any_allows(server_name);
        (self.spec_intercepts(port) || for_secret) && !self.bypass.matches(server_name)
    }

    /// Whether a UDP datagram to `port` is refused (`block_quic`).
    pub fn blocks_udp(&self, port: u16) -> bool {
        self.spec
            .as_ref()
            .is_some_and(|spec| spec.block_quic && spec.intercepts(port))
    }

    /// The hosts of `secrets` the bypass list keeps from being intercepted, so their secret
    /// is never substituted: `(env_var, host or pattern)`.
    pub fn bypassed_secret_hosts(&self, secrets: &Secrets) -> Vec<(String, String)> {
        secrets
            .iter()
            .flat_map(|secret| {
                let spec = &secret.spec;
                let patterns = spec.allow_host_patterns.iter().filter(|pattern| {
                    // A name below the pattern stands for all of them.
                    let example = pattern.replacen('*', "msb-probe", 1);
                    self.bypass.matches(&example)
                });
                spec.allow_hosts
                    .iter()
                    .filter(|host| self.bypass.matches(host))
                    .chain(patterns)
                    .map(|host| (spec.env_var.clone(), host.clone()))
            })
            .collect()
    }

    fn spec_intercepts(&self, port: u16) -> bool {
        self.spec.as_ref().is_some_and(|spec| spec.intercepts(port))
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
        let first = TlsInterception::new(Some(&spec(r#"{"verify_upstream": false}"#)), &home(&dir))
            .unwrap();
        assert!(first.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let again = TlsInterception::new(Some(&spec(r#"{"verify_upstream": false}"#)), &home(&dir))
            .unwrap();
        assert_eq!(first.ca_pem(), again.ca_pem());
    }

    #[test]
    fn bypassed_names_and_other_ports_are_not_intercepted() {
        let dir = tempfile::tempdir().unwrap();
        let tls = TlsInterception::new(
            Some(&spec(
                r#"{"verify_upstream": false, "intercepted_ports": [443, 8443],
                    "bypass": ["*.pinned.test"], "block_quic": true}"#,
            )),
            &home(&dir),
        )
        .unwrap();
        let none = Secrets::default();
        assert!(tls.intercepts(443, "api.test", &none) && tls.intercepts(8443, "api.test", &none));
        assert!(!tls.intercepts(443, "a.pinned.test", &none));
        assert!(!tls.intercepts(80, "api.test", &none));
        assert!(tls.blocks_udp(443) && !tls.blocks_udp(53));
    }

    fn secrets_for(hosts: &[&str], patterns: &[&str]) -> Secrets {
        let spec: crate::secrets::SecretSpec = serde_json::from_value(serde_json::json!({
            "env_var": "KEY", "placeholder": "$MSB_KEY",
            "allow_hosts": hosts, "allow_host_patterns": patterns,
        }))
        .unwrap();
        let value = crate::secrets::SecretValue::new("v".into());
        Secrets::new(vec![crate::secrets::Secret { spec, value }]).unwrap()
    }

    #[test]
    fn without_tls_only_secret_hosts_on_443_are_intercepted_and_upstreams_verified() {
        let dir = tempfile::tempdir().unwrap();
        let tls = TlsInterception::new(None, &home(&dir)).unwrap();
        let secrets = secrets_for(&["api.test"], &[]);
        assert!(tls.intercepts(443, "api.test", &secrets));
        assert!(!tls.intercepts(443, "other.test", &secrets));
        assert!(!tls.intercepts(8443, "api.test", &secrets));
        assert!(tls.intercepts_port(443, &secrets));
        assert!(!tls.intercepts_port(443, &Secrets::default()));
        assert!(!tls.blocks_udp(443));
        assert!(dir.path().join("ca.pem").exists(), "the home's CA is used");
    }

    #[test]
    fn a_bypassed_secret_host_is_not_intercepted_and_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let tls = TlsInterception::new(
            Some(&spec(
                r#"{"verify_upstream": false, "bypass": ["api.test", "*.cdn.test"]}"#,
            )),
            &home(&dir),
        )
        .unwrap();
        let secrets = secrets_for(&["api.test", "ok.test"], &["*.cdn.test"]);
        assert!(!tls.intercepts(443, "api.test", &secrets));
        assert_eq!(
            tls.bypassed_secret_hosts(&secrets),
            [
                ("KEY".to_owned(), "api.test".to_owned()),
                ("KEY".to_owned(), "*.cdn.test".to_owned())
            ]
        );
    }

    #[test]
    fn a_missing_upstream_ca_file_is_an_error_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let json = format!(r#"{{"upstream_ca_certs": [{:?}]}}"#, missing);
        assert!(matches!(
            TlsInterception::new(Some(&spec(&json)), &home(&dir)),
            Err(TlsSetupError::Upstream(_))
        ));
    }
}
