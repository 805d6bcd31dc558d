//! The [`PlaintextFilter`] of an intercepted flow while the sandbox has secrets: it rewrites
//! the guest's requests, as HTTP/1.1 or, when the real server chose `h2`, HTTP/2, and leaves
//! what it did in the flow's [`SecretReports`] for the gateway to log.

use super::http1::Http1;
use super::http2::Http2;
use super::shared::{Flow, SharedSecrets};
use super::substitute::Route;
use super::violation::SecretReports;
use crate::tls::intercept::{Filtered, PlaintextFilter};

pub struct SecretsFilter {
    route: Route,
    secrets: SharedSecrets,
    reports: SecretReports,
    protocol: Protocol,
}

enum Protocol {
    Http1(Http1),
    Http2(Box<Http2>),
}

impl SecretsFilter {
    /// The filter of a flow to `route`; the current set is read from `secrets` at each request.
    pub fn new(route: Route, secrets: SharedSecrets, reports: SecretReports) -> Self {
        Self {
            route,
            secrets,
            reports,
            protocol: Protocol::Http1(Http1::default()),
        }
    }
}

impl PlaintextFilter for SecretsFilter {
    fn opened(&mut self, alpn: Option<&[u8]>) {
        if alpn == Some(b"h2") {
            self.protocol = Protocol::Http2(Box::default());
        }
    }

    fn guest_to_upstream(&mut self, plaintext: &[u8], out: &mut Filtered) {
        let flow = Flow {
            route: &self.route,
            secrets: &self.secrets,
            reports: &self.reports,
        };
        match &mut self.protocol {
            Protocol::Http1(http1) => http1.guest_bytes(plaintext, &flow, out),
            Protocol::Http2(http2) => http2.guest_bytes(plaintext, &flow, out),
        }
    }

    fn upstream_to_guest(&mut self, plaintext: &[u8], out: &mut Filtered) {
        match &mut self.protocol {
            Protocol::Http1(_) => out.to_guest.extend_from_slice(plaintext),
            Protocol::Http2(http2) => http2.server_bytes(plaintext, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::substitute::tests::{route, secret};
    use crate::secrets::{Injection, Secrets};

    fn filter() -> SecretsFilter {
        let key = secret("KEY", "api.test", "v", Injection::default());
        let secrets = SharedSecrets::new(Secrets::new(vec![key]).unwrap());
        SecretsFilter::new(route("api.test"), secrets, SecretReports::default())
    }

    #[test]
    fn the_protocol_the_server_chose_decides_how_requests_are_read() {
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        let mut http2 = filter();
        http2.opened(Some(b"h2"));
        let mut out = Filtered::default();
        http2.guest_to_upstream(preface, &mut out);
        assert_eq!(out.to_upstream, preface);
        assert!(!out.end);

        let mut http1 = filter();
        http1.opened(Some(b"http/1.1"));
        let mut out = Filtered::default();
        http1.guest_to_upstream(preface, &mut out);
        assert!(out.end, "a preface is no HTTP/1.1 request");
    }
}
