//! The name a guest's first bytes on a TCP flow claim: the SNI of a TLS ClientHello, or the
//! `Host` of an HTTP request head. Sans-IO: the caller holds the bytes back from the host
//! socket until [`inspect`] says what they are, then decides the flow again with that name
//! (see `tcp`), so a domain rule cannot be used to reach another name served from the same
//! address.
//!
//! The ClientHello is read with rustls's `Acceptor`, which parses the hello without a
//! crypto provider (nothing is signed or decrypted before the hello is accepted); the HTTP
//! head with `httparse`.

use rustls::server::Acceptor;

/// The most bytes a ClientHello is waited for: one full TLS record (16 KiB and its 5-byte
/// header); a hello that needs more passes as "no name".
pub const TLS_LIMIT: usize = 16 * 1024 + 5;
/// The most bytes an HTTP request head is waited for.
pub const HTTP_LIMIT: usize = 16 * 1024;
/// The content type of a TLS handshake record, the first byte of every ClientHello.
const TLS_HANDSHAKE: u8 = 0x16;
/// Headers an HTTP request head may have for its Host to be read.
const MAX_HEADERS: usize = 64;

/// What the first bytes are, so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstBytes {
    /// They may still become a ClientHello or a request head: hold them.
    NeedMore,
    /// They name a host (lower case, no port, no trailing dot).
    Named(NameSource, String),
    /// Neither, or one without a name, or too long to wait for: pass them on.
    Unnamed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameSource {
    Sni,
    HttpHost,
}

/// What `bytes`, the first the guest sent on a flow, are.
pub fn inspect(bytes: &[u8]) -> FirstBytes {
    match bytes.first() {
        None => FirstBytes::NeedMore,
        Some(&TLS_HANDSHAKE) => client_hello(bytes),
        Some(first) if first.is_ascii_uppercase() => request_head(bytes),
        Some(_) => FirstBytes::Unnamed,
    }
}

fn client_hello(bytes: &[u8]) -> FirstBytes {
    let mut acceptor = Acceptor::default();
    let mut rest = bytes;
    while !rest.is_empty() {
        match acceptor.read_tls(&mut rest) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    match acceptor.accept() {
        Ok(Some(accepted)) => accepted
            .client_hello()
            .server_name()
            .map_or(FirstBytes::Unnamed, |name| named(NameSource::Sni, name)),
        Ok(None) if bytes.len() < TLS_LIMIT => FirstBytes::NeedMore,
        Ok(None) | Err(_) => FirstBytes::Unnamed,
    }
}

fn request_head(bytes: &[u8]) -> FirstBytes {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => request
            .headers
            .iter()
            .find(|header| header.name.eq_ignore_ascii_case("host"))
            .and_then(|header| std::str::from_utf8(header.value).ok())
            .map_or(FirstBytes::Unnamed, |host| {
                named(NameSource::HttpHost, without_port(host.trim()))
            }),
        Ok(httparse::Status::Partial) if bytes.len() < HTTP_LIMIT => FirstBytes::NeedMore,
        Ok(httparse::Status::Partial) | Err(_) => FirstBytes::Unnamed,
    }
}

/// `example.com:8080` → `example.com`, `[2001:db8::1]:80` → `2001:db8::1`.
fn without_port(host: &str) -> &str {
    if let Some(bracketed) = host.strip_prefix('[') {
        return bracketed.split(']').next().unwrap_or(bracketed);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

fn named(source: NameSource, name: &str) -> FirstBytes {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name.is_empty() {
        FirstBytes::Unnamed
    } else {
        FirstBytes::Named(source, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_length(bytes: &[u8], width: usize) -> Vec<u8> {
        let len = bytes.len().to_be_bytes();
        let mut out = len[len.len() - width..].to_vec();
        out.extend_from_slice(bytes);
        out
    }

    /// A TLS 1.3 ClientHello as a client sends it, naming `sni` if given.
    fn client_hello_record(sni: Option<&str>) -> Vec<u8> {
        let mut extensions = Vec::new();
        if let Some(name) = sni {
            let mut entry = vec![0];
            entry.extend(with_length(name.as_bytes(), 2));
            extensions.extend([0, 0]);
            extensions.extend(with_length(&with_length(&entry, 2), 2));
        }
        // supported_versions: TLS 1.3; supported_groups: x25519; signature_algorithms:
        // ed25519; key_share: one x25519 share.
        extensions.extend([0, 0x2b, 0, 3, 2, 3, 4]);
        extensions.extend([0, 0x0a, 0, 4, 0, 2, 0, 0x1d]);
        extensions.extend([0, 0x0d, 0, 4, 0, 2, 8, 7]);
        let mut share = vec![0, 0x1d];
        share.extend(with_length(&[7; 32], 2));
        extensions.extend([0, 0x33]);
        extensions.extend(with_length(&with_length(&share, 2), 2));
        let mut hello = vec![3, 3];
        hello.extend([0x42; 32]);
        hello.push(0);
        hello.extend(with_length(&[0x13, 0x01], 2));
        hello.extend([1, 0]);
        hello.extend(with_length(&extensions, 2));
        let mut handshake = vec![1];
        handshake.extend(with_length(&hello, 3));
        let mut record = vec![TLS_HANDSHAKE, 3, 1];
        record.extend(with_length(&handshake, 2));
        record
    }

    #[test]
    fn a_client_hello_gives_its_sni_without_any_crypto_provider() {
        let hello = client_hello_record(Some("API.Example.com"));
        assert_eq!(
            inspect(&hello),
            FirstBytes::Named(NameSource::Sni, "api.example.com".into())
        );
        assert_eq!(inspect(&client_hello_record(None)), FirstBytes::Unnamed);
    }

    #[test]
    fn a_partial_client_hello_is_held_until_the_bound() {
        let hello = client_hello_record(Some("a.test"));
        for cut in [1, 5, 20, hello.len() - 1] {
            assert_eq!(inspect(&hello[..cut]), FirstBytes::NeedMore, "{cut}");
        }
        let mut endless = vec![TLS_HANDSHAKE, 3, 1, 0xff, 0xff, 1, 0, 0xff, 0xff];
        endless.resize(TLS_LIMIT, 0);
        assert_eq!(inspect(&endless), FirstBytes::Unnamed);
    }

    #[test]
    fn an_http_request_head_gives_its_host_without_the_port() {
        let cases = [
            ("GET / HTTP/1.1\r\nHost: b.test\r\n\r\n", "b.test"),
            (
                "POST /x HTTP/1.1\r\nhost: B.Test:8080\r\nA: b\r\n\r\nbody",
                "b.test",
            ),
            (
                "GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n",
                "2001:db8::1",
            ),
            ("GET / HTTP/1.1\r\nHost: c.test.\r\n\r\n", "c.test"),
        ];
        for (head, host) in cases {
            assert_eq!(
                inspect(head.as_bytes()),
                FirstBytes::Named(NameSource::HttpHost, host.into()),
                "{head:?}"
            );
        }
        assert_eq!(
            inspect(b"GET / HTTP/1.1\r\nHost: b.te"),
            FirstBytes::NeedMore
        );
        assert_eq!(inspect(b"GET / HTTP/1.0\r\n\r\n"), FirstBytes::Unnamed);
    }

    #[test]
    fn other_protocols_pass_at_once() {
        for bytes in [&b"SSH-2.0-OpenSSH_9.6\r\n"[..], b"\x00\x01binary", b"hello"] {
            assert_eq!(inspect(bytes), FirstBytes::Unnamed, "{bytes:?}");
        }
        let mut long_head = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long_head.resize(HTTP_LIMIT, b'a');
        assert_eq!(inspect(&long_head), FirstBytes::Unnamed);
    }
}
