//! The upstream side of an intercepted flow: the rustls client configuration our own
//! connection to the real server is made with. With verification on (the default), the real
//! server must show a certificate for the guest's SNI that chains to the host's trust store
//! (`rustls-native-certs`: `/etc/ssl/certs` and the `SSL_CERT_*` variables on Linux) or to
//! one of the extra CA files the user names. With verification off, ANY certificate is
//! accepted — only the handshake signature is still checked against the certificate shown —
//! so the flow is encrypted but not authenticated: anyone on the path can read it.
//!
//! Loading the host's store parses every certificate in it, so the configuration is built
//! once per sandbox and shared; [`UpstreamTls::client_config`] only adds a flow's ALPN.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::ca::{read_certificates, CaError};

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("an extra upstream CA: {0}")]
    ExtraCa(#[from] CaError),
    #[error("the upstream CA {path} is not usable as a trust anchor: {source}")]
    BadTrustAnchor {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error(
        "no trusted upstream CA: the host's trust store is empty or unreadable ({host_errors}) \
         and no extra CA was named"
    )]
    NoTrustAnchors { host_errors: String },
    #[error("cannot build the upstream TLS configuration: {0}")]
    Config(String),
}

/// How the real servers of intercepted flows are verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTrust {
    /// Off: any certificate is accepted (see the module doc).
    pub verify: bool,
    /// PEM files of CAs trusted besides the host's store.
    pub extra_ca_files: Vec<PathBuf>,
}

/// The upstream client configuration of a sandbox's intercepted flows.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    config: Arc<ClientConfig>,
}

impl UpstreamTls {
    pub fn new(trust: &UpstreamTrust) -> Result<Self, UpstreamError> {
        let provider = super::crypto_provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|error| UpstreamError::Config(error.to_string()))?;
        let config = if trust.verify {
            let roots = trusted_roots(&trust.extra_ca_files)?;
            let verifier = WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
                .build()
                .map_err(|error| UpstreamError::Config(error.to_string()))?;
            builder.with_webpki_verifier(verifier).with_no_client_auth()
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate { provider }))
                .with_no_client_auth()
        };
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// The configuration of one flow, offering the real server `alpn`: the guest's offer.
    pub fn client_config(&self, alpn: Vec<Vec<u8>>) -> Arc<ClientConfig> {
        if alpn.is_empty() {
            return self.config.clone();
        }
        let mut config = (*self.config).clone();
        config.alpn_protocols = alpn;
        Arc::new(config)
    }
}

/// The host's trust store and the extra CAs. A certificate of the host's store that webpki
/// cannot use is skipped (as every rustls user does); an extra one the user named is an error.
fn trusted_roots(extra_ca_files: &[PathBuf]) -> Result<RootCertStore, UpstreamError> {
    let mut roots = RootCertStore::empty();
    let host = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(host.certs);
    for path in extra_ca_files {
        for certificate in read_certificates(path)? {
            roots
                .add(certificate)
                .map_err(|source| UpstreamError::BadTrustAnchor {
                    path: path.clone(),
                    source,
                })?;
        }
    }
    if roots.is_empty() {
        let host_errors = host
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return Err(UpstreamError::NoTrustAnchors { host_errors });
    }
    Ok(roots)
}

/// Accepts every server certificate, for `verify = false`. The handshake signature is still
/// checked against the certificate shown, which costs nothing and keeps a broken server from
/// looking like a working one.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_extra_ca_file_that_is_missing_is_an_error_naming_it() {
        let trust = UpstreamTrust {
            verify: true,
            extra_ca_files: vec!["/nonexistent/upstream-ca.pem".into()],
        };
        let error = UpstreamTls::new(&trust).unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/upstream-ca.pem"),
            "{error}"
        );
    }

    #[test]
    fn a_flow_offers_the_guests_alpn_on_the_shared_configuration() {
        let trust = UpstreamTrust {
            verify: false,
            extra_ca_files: Vec::new(),
        };
        let upstream = UpstreamTls::new(&trust).unwrap();
        let offer = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        assert_eq!(upstream.client_config(offer.clone()).alpn_protocols, offer);
        assert!(upstream.client_config(Vec::new()).alpn_protocols.is_empty());
    }
}
