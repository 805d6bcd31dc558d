//! TLS interception, sans-IO: the pieces the gateway will use to terminate a guest's TLS flow
//! with a leaf certificate of our own, open a separate verified TLS connection to the real
//! server, and pass the plaintext between the two, where later work substitutes secrets into
//! requests (issue 15). Nothing here is wired into the gateway yet.
//!
//! - [`ca`]: the interception CA (generated per home on first use, or the user's);
//! - [`leaf`]: a leaf certificate per SNI, signed by the CA, cached;
//! - [`upstream`]: the rustls client configuration that verifies the real server;
//! - [`intercept`]: one intercepted flow, bytes in and bytes out on both sides;
//! - [`bypass`]: the names that are never intercepted.
//!
//! How the gateway is to use it: per sandbox, [`ca::InterceptionCa::load_or_create`] (the
//! home's pair or the user's), a [`leaf::LeafCache`] on it, [`upstream::UpstreamTls::new`]
//! and one [`intercept::Interceptor`] from both, and a [`bypass::BypassList`]. Per TCP flow
//! to an intercepted port, once the first bytes are a ClientHello (`gateway::sni`) naming a
//! host that is allowed and not bypassed: [`intercept::Interceptor::intercept`], then feed it
//! the held hello and everything after, and send what it has for each side.
//!
//! Crypto is rustls's `ring` provider (aws-lc-rs needs cmake to build).

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

pub mod bypass;
pub mod ca;
pub mod intercept;
pub mod leaf;
pub mod upstream;

/// The crypto provider of every TLS configuration here, passed explicitly so nothing depends
/// on a process-wide default being installed.
fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
