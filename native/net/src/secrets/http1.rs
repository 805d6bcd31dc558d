//! HTTP/1.1 requests rewritten on their way out, sans-IO and across any read split,
//! keep-alive and pipelining: each request head is held until its blank line (at most
//! [`MAX_HEAD`]), its target's query, headers and `Authorization: Basic` credentials get their
//! placeholders replaced, and its body is framed (Content-Length or chunked) so the next head
//! is found. With body substitution on (and no `Content-Encoding`), a Content-Length body is
//! held whole (at most [`MAX_HELD_BODY`]) and sent with its new length; a chunked body is
//! decoded, substituted as it streams (keeping a placeholder's length less one byte back, so a
//! placeholder split across reads is found) and sent as new chunks; its trailers pass as
//! they are. After an `Upgrade` or `CONNECT` request the connection's bytes pass untouched.
//!
//! A request the rules refuse is answered here and the connection ended: 403 for a
//! placeholder headed where it may not go, 431 for a head over [`MAX_HEAD`], 400 for one that
//! cannot be read. Responses are never looked at.

use std::collections::BTreeSet;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::chunked::{encode_chunk, ChunkedDecoder};
use super::shared::Flow;
use super::substitute::{Place, Substitution, Violation};
use super::violation::{blocked_text, http1_response, SecretEvent};
use super::Secrets;
use crate::tls::intercept::Filtered;

/// The longest request head held: beyond it the request is refused with 431.
pub const MAX_HEAD: usize = 64 * 1024;
/// The longest Content-Length body held for substitution; a longer one passes untouched.
pub const MAX_HELD_BODY: u64 = 8 * 1024 * 1024;
/// Headers a request head may have.
const MAX_HEADERS: usize = 128;

/// One connection's requests, guest to server. No `Debug`: a rewritten head holds values.
#[derive(Default)]
pub struct Http1 {
    /// Bytes taken but not yet passed on (a head in the making, a held body).
    pending: Vec<u8>,
    state: State,
    /// The secrets put into the request under way, logged once it has gone.
    injected: BTreeSet<String>,
}

#[derive(Default)]
enum State {
    #[default]
    Head,
    /// A body passed on as it comes (substituted as it streams when `rewrite` is set).
    Body {
        framing: Framing,
        rewrite: Option<BodyRewrite>,
        tunnel_after: bool,
    },
    /// A Content-Length body held whole before the head goes.
    Held {
        head: Head,
        length: usize,
        secrets: Arc<Secrets>,
        host: Option<String>,
    },
    /// The connection is no longer HTTP/1.1 (an upgrade): its bytes pass untouched.
    Tunnel,
    /// The guest was refused and the connection ended: nothing more passes.
    Ended,
}

enum Framing {
    Length(u64),
    Chunked(ChunkedDecoder),
}

/// What a streamed chunked body needs to be substituted.
struct BodyRewrite {
    secrets: Arc<Secrets>,
    host: Option<String>,
    /// Decoded data not yet passed on: it may end with the start of a placeholder.
    carry: Vec<u8>,
}

/// A request head as read, kept to be written again once changed.
struct Head {
    raw: Vec<u8>,
    method: String,
    target: Vec<u8>,
    minor_version: u8,
    headers: Vec<(String, Vec<u8>)>,
    changed: bool,
}

impl Head {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(header, _)| header.eq_ignore_ascii_case(name))
            .flat_map(|(_, value)| value.split(|&b| b == b','))
            .any(|part| part.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    }

    fn remove(&mut self, name: &str) {
        let before = self.headers.len();
        self.headers
            .retain(|(header, _)| !header.eq_ignore_ascii_case(name));
        self.changed |= self.headers.len() != before;
    }

    fn set(&mut self, name: &str, value: Vec<u8>) {
        self.remove(name);
        self.headers.push((name.to_owned(), value));
        self.changed = true;
    }

    fn write(&self, out: &mut Vec<u8>) {
        if !self.changed {
            out.extend_from_slice(&self.raw);
            return;
        }
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(&self.target);
        out.extend_from_slice(format!(" HTTP/1.{}\r\n", self.minor_version).as_bytes());
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Why a request is answered here instead of being passed on.
enum Refusal {
    Blocked(Violation),
    HeadTooLarge,
    Unreadable,
}

impl Http1 {
    /// Takes bytes the guest sent; what goes on (and any answer to the guest) is in `out`.
    pub fn guest_bytes(&mut self, input: &[u8], flow: &Flow<'_>, out: &mut Filtered) {
        if matches!(self.state, State::Ended) {
            return;
        }
        if matches!(self.state, State::Tunnel) {
            out.to_upstream.extend_from_slice(input);
            return;
        }
        self.pending.extend_from_slice(input);
        let mut at = 0;
        let result = loop {
            match self.step(at, flow, out) {
                Ok(Some(next)) => at = next,
                Ok(None) => break Ok(()),
                Err(refusal) => break Err(refusal),
            }
        };
        match result {
            Ok(()) => {
                self.pending.drain(..at.min(self.pending.len()));
            }
            Err(refusal) => self.refuse(refusal, flow, out),
        }
    }

    /// Handles what `pending[at..]` allows; the new position, or `None` to wait for more.
    fn step(
        &mut self,
        at: usize,
        flow: &Flow<'_>,
        out: &mut Filtered,
    ) -> Result<Option<usize>, Refusal> {
        match std::mem::take(&mut self.state) {
            State::Head => self.read_head(at, flow, out),
            State::Body {
                framing,
                rewrite,
                tunnel_after,
            } => self.pass_body(at, framing, rewrite, tunnel_after, flow, out),
            State::Held {
                head,
                length,
                secrets,
                host,
            } => self.hold_body(at, head, length, (secrets, host), flow, out),
            State::Tunnel => {
                out.to_upstream.extend_from_slice(&self.pending[at..]);
                self.state = State::Tunnel;
                Ok((self.pending.len() > at).then_some(self.pending.len()))
            }
            State::Ended => {
                self.state = State::Ended;
                Ok(None)
            }
        }
    }

    fn read_head(
        &mut self,
        at: usize,
        flow: &Flow<'_>,
        out: &mut Filtered,
    ) -> Result<Option<usize>, Refusal> {
        let rest = &self.pending[at..];
        let Some(end) = memchr::memmem::find(rest, b"\r\n\r\n").map(|end| end + 4) else {
            self.state = State::Head;
            if rest.len() > MAX_HEAD {
                return Err(Refusal::HeadTooLarge);
            }
            return Ok(None);
        };
        if end > MAX_HEAD {
            return Err(Refusal::HeadTooLarge);
        }
        let head = parse_head(&rest[..end])?;
        self.begin_request(head, flow, out)?;
        Ok(Some(at + end))
    }

    /// Rewrites a request's head and decides how its body passes.
    fn begin_request(
        &mut self,
        mut head: Head,
        flow: &Flow<'_>,
        out: &mut Filtered,
    ) -> Result<(), Refusal> {
        let secrets = flow.secrets.current();
        let host = head
            .header("host")
            .and_then(|host| std::str::from_utf8(host).ok())
            .map(str::to_owned);
        let mut substitution = Substitution::new(&secrets, flow.route, host.as_deref());
        rewrite_head(&mut head, &mut substitution).map_err(Refusal::Blocked)?;
        self.injected
            .extend(substitution.injected().iter().cloned());
        let framing = framing(&head)?;
        let tunnel_after =
            head.method.eq_ignore_ascii_case("CONNECT") || head.header("upgrade").is_some();
        let rewrite_body = substitution.looks_at(Place::Body)
            && head.header("content-encoding").is_none()
            && !tunnel_after;
        match framing {
            Framing::Length(length) if rewrite_body && length > 0 && length <= MAX_HELD_BODY => {
                if head.has_token("expect", "100-continue") {
                    // The body is held before the head goes: the guest is told to send it
                    // now, rather than waiting for a server that has not seen the head.
                    head.remove("expect");
                    out.to_guest
                        .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                }
                self.state = State::Held {
                    head,
                    length: usize::try_from(length).unwrap_or(usize::MAX),
                    secrets,
                    host,
                };
                return Ok(());
            }
            Framing::Chunked(_) if rewrite_body => {
                head.remove("content-length");
                head.write(&mut out.to_upstream);
                self.state = State::Body {
                    framing,
                    rewrite: Some(BodyRewrite {
                        secrets,
                        host,
                        carry: Vec::new(),
                    }),
                    tunnel_after,
                };
            }
            framing => {
                head.write(&mut out.to_upstream);
                self.state = State::Body {
                    framing,
                    rewrite: None,
                    tunnel_after,
                };
            }
        }
        Ok(())
    }

    fn pass_body(
        &mut self,
        at: usize,
        framing: Framing,
        rewrite: Option<BodyRewrite>,
        tunnel_after: bool,
        flow: &Flow<'_>,
        out: &mut Filtered,
    ) -> Result<Option<usize>, Refusal> {
        let rest = &self.pending[at..];
        let (taken, framing, rewrite, done) = match framing {
            Framing::Length(left) => {
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                out.to_upstream.extend_from_slice(&rest[..take]);
                let left = left - take as u64;
                (take, Framing::Length(left), rewrite, left == 0)
            }
            Framing::Chunked(mut decoder) => {
                let mut data = Vec::new();
                let taken = decoder
                    .feed(rest, |bytes| data.extend_from_slice(bytes))
                    .map_err(|_| Refusal::Unreadable)?;
                let done = decoder.is_done();
                let rewrite = match rewrite {
                    None => {
                        out.to_upstream.extend_from_slice(&rest[..taken]);
                        None
                    }
                    Some(mut rewrite) => {
                        rewrite.carry.extend_from_slice(&data);
                        self.stream_body(&mut rewrite, done, flow, out)?;
                        if done {
                            out.to_upstream.extend_from_slice(b"0\r\n");
                            out.to_upstream.extend_from_slice(decoder.trailers());
                        }
                        Some(rewrite)
                    }
                };
                (taken, Framing::Chunked(decoder), rewrite, done)
            }
        };
        if done {
            self.end_request(flow);
            self.state = if tunnel_after {
                State::Tunnel
            } else {
                State::Head
            };
        } else {
            self.state = State::Body {
                framing,
                rewrite,
                tunnel_after,
            };
        }
        Ok((taken > 0 || done).then_some(at + taken))
    }

    /// Substitutes the decoded data of a chunked body and sends it on as one chunk, all of
    /// it once the body is `done`, else all but a placeholder's length less one.
    fn stream_body(
        &mut self,
        rewrite: &mut BodyRewrite,
        done: bool,
        flow: &Flow<'_>,
        out: &mut Filtered,
    ) -> Result<(), Refusal> {
        let mut substitution =
            Substitution::new(&rewrite.secrets, flow.route, rewrite.host.as_deref());
        let keep = if done {
            0
        } else {
            substitution
                .longest_placeholder(Place::Body)
                .saturating_sub(1)
        };
        let (front, until) = substitution
            .apply_streaming(&rewrite.carry, keep)
            .map_err(Refusal::Blocked)?;
        rewrite.carry.drain(..until);
        encode_chunk(&front, &mut out.to_upstream);
        self.injected
            .extend(substitution.injected().iter().cloned());
        Ok(())
    }

    fn hold_body(
        &mut self,
        at: usize,
        mut head: Head,
        length: usize,
        (secrets, host): (Arc<Secrets>, Option<String>),
        flow: &Flow<'_>,
        out: &mut Filtered,
    ) -> Result<Option<usize>, Refusal> {
        let rest = &self.pending[at..];
        if rest.len() < length {
            self.state = State::Held {
                head,
                length,
                secrets,
                host,
            };
            return Ok(None);
        }
        let body = &rest[..length];
        let mut substitution = Substitution::new(&secrets, flow.route, host.as_deref());
        let rewritten = substitution
            .apply(body, Place::Body)
            .map_err(Refusal::Blocked)?;
        if let Some(rewritten) = &rewritten {
            head.set("content-length", rewritten.len().to_string().into_bytes());
        }
        head.write(&mut out.to_upstream);
        out.to_upstream
            .extend_from_slice(rewritten.as_deref().unwrap_or(body));
        self.injected
            .extend(substitution.injected().iter().cloned());
        self.end_request(flow);
        self.state = State::Head;
        Ok(Some(at + length))
    }

    /// Reports the secrets the request that just went carried.
    fn end_request(&mut self, flow: &Flow<'_>) {
        for secret in std::mem::take(&mut self.injected) {
            flow.reports.push(SecretEvent::Injected {
                secret,
                host: flow.route.sni.clone(),
            });
        }
    }

    fn refuse(&mut self, refusal: Refusal, flow: &Flow<'_>, out: &mut Filtered) {
        self.state = State::Ended;
        self.pending.clear();
        self.injected.clear();
        let response = match refusal {
            Refusal::Blocked(violation) => {
                let response = http1_response(403, "Forbidden", &blocked_text(&violation));
                flow.reports.push(SecretEvent::Blocked(violation));
                response
            }
            Refusal::HeadTooLarge => http1_response(
                431,
                "Request Header Fields Too Large",
                "msb: request blocked: its head is over 64 KiB, too long to look for secrets in\n",
            ),
            Refusal::Unreadable => http1_response(
                400,
                "Bad Request",
                "msb: request blocked: it is not HTTP/1.1 that can be read\n",
            ),
        };
        out.to_guest.extend_from_slice(&response);
        out.end = true;
    }
}

fn parse_head(raw: &[u8]) -> Result<Head, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(raw) {
        Ok(httparse::Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => return Err(Refusal::HeadTooLarge),
        Ok(httparse::Status::Partial) | Err(_) => return Err(Refusal::Unreadable),
    }
    Ok(Head {
        raw: raw.to_vec(),
        method: request.method.unwrap_or_default().to_owned(),
        target: request.path.unwrap_or_default().as_bytes().to_vec(),
        minor_version: request.version.unwrap_or(1),
        headers: request
            .headers
            .iter()
            .map(|header| (header.name.to_owned(), header.value.to_vec()))
            .collect(),
        changed: false,
    })
}

/// Replaces the placeholders in the query, the header values and Basic credentials.
fn rewrite_head(head: &mut Head, substitution: &mut Substitution<'_>) -> Result<(), Violation> {
    if let Some(question) = memchr::memchr(b'?', &head.target) {
        if let Some(query) = substitution.apply(&head.target[question + 1..], Place::Query)? {
            head.target.truncate(question + 1);
            head.target.extend_from_slice(&query);
            head.changed = true;
        }
    }
    for (name, value) in &mut head.headers {
        if let Some(replaced) = substitution.apply(value, Place::Header)? {
            *value = replaced;
            head.changed = true;
        }
        if name.eq_ignore_ascii_case("authorization") {
            if let Some(replaced) = rewrite_basic(value, substitution)? {
                *value = replaced;
                head.changed = true;
            }
        }
    }
    Ok(())
}

/// `Basic <base64>` with the placeholders in the decoded credentials replaced.
pub(super) fn rewrite_basic(
    value: &[u8],
    substitution: &mut Substitution<'_>,
) -> Result<Option<Vec<u8>>, Violation> {
    let Some(scheme_end) = memchr::memchr(b' ', value) else {
        return Ok(None);
    };
    if !value[..scheme_end].eq_ignore_ascii_case(b"basic") {
        return Ok(None);
    }
    let Ok(credentials) = BASE64.decode(value[scheme_end + 1..].trim_ascii()) else {
        return Ok(None);
    };
    let Some(replaced) = substitution.apply(&credentials, Place::BasicAuth)? else {
        return Ok(None);
    };
    let mut rewritten = b"Basic ".to_vec();
    rewritten.extend_from_slice(BASE64.encode(replaced).as_bytes());
    Ok(Some(rewritten))
}

/// How the request's body is delimited: by `Transfer-Encoding: chunked` (which wins over a
/// `Content-Length`, dropped then), else by `Content-Length`, else there is none.
fn framing(head: &Head) -> Result<Framing, Refusal> {
    if let Some(codings) = head.header("transfer-encoding") {
        let last = codings.rsplit(|&b| b == b',').next().unwrap_or_default();
        if !last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
            return Err(Refusal::Unreadable);
        }
        return Ok(Framing::Chunked(ChunkedDecoder::default()));
    }
    let mut lengths = head
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map(|(_, value)| {
            std::str::from_utf8(value)
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
                .ok_or(Refusal::Unreadable)
        });
    let Some(first) = lengths.next().transpose()? else {
        return Ok(Framing::Length(0));
    };
    for other in lengths {
        if other? != first {
            return Err(Refusal::Unreadable);
        }
    }
    Ok(Framing::Length(first))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::substitute::tests::{route, secret};
    use crate::secrets::substitute::Route;
    use crate::secrets::{Injection, SecretReports, SharedSecrets};

    const ON_EVERYTHING: Injection = Injection {
        headers: true,
        basic_auth: true,
        query: true,
        body: true,
    };

    struct Harness {
        route: Route,
        secrets: SharedSecrets,
        reports: SecretReports,
        http1: Http1,
    }

    impl Harness {
        fn new(sni: &str, secrets: Vec<crate::secrets::Secret>) -> Self {
            Self {
                route: route(sni),
                secrets: SharedSecrets::new(Secrets::new(secrets).unwrap()),
                reports: SecretReports::default(),
                http1: Http1::default(),
            }
        }

        fn key(sni: &str, inject: Injection) -> Self {
            Self::new(sni, vec![secret("KEY", "api.test", "s3cr3t-value", inject)])
        }

        /// Feeds `pieces` in turn; what went upstream and to the guest.
        fn feed<'a>(&mut self, pieces: impl IntoIterator<Item = &'a [u8]>) -> Filtered {
            let mut out = Filtered::default();
            let flow = Flow {
                route: &self.route,
                secrets: &self.secrets,
                reports: &self.reports,
            };
            for piece in pieces {
                self.http1.guest_bytes(piece, &flow, &mut out);
            }
            out
        }

        fn injected(&self) -> Vec<String> {
            self.reports
                .take()
                .into_iter()
                .map(|event| match event {
                    SecretEvent::Injected { secret, .. } => secret,
                    SecretEvent::Blocked(violation) => format!("blocked {}", violation.secret),
                })
                .collect()
        }
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    #[test]
    fn a_request_split_at_every_byte_offset_is_rewritten_the_same() {
        let request = b"GET /v1/x?key=$MSB_KEY&a=1 HTTP/1.1\r\nHost: api.test\r\n\
            Authorization: Bearer $MSB_KEY\r\nX-Other: $MSB_KEY\r\n\r\n";
        let expected = "GET /v1/x?key=s3cr3t-value&a=1 HTTP/1.1\r\nHost: api.test\r\n\
            Authorization: Bearer s3cr3t-value\r\nX-Other: s3cr3t-value\r\n\r\n";
        for cut in 0..=request.len() {
            let mut harness = Harness::key("api.test", ON_EVERYTHING);
            let out = harness.feed([&request[..cut], &request[cut..]]);
            assert_eq!(text(&out.to_upstream), expected, "cut at {cut}");
            assert!(out.to_guest.is_empty() && !out.end);
            assert_eq!(harness.injected(), ["KEY"], "one record per request");
        }
    }

    #[test]
    fn pipelined_keep_alive_requests_are_each_rewritten() {
        let mut harness = Harness::key("api.test", Injection::default());
        let two = b"GET /a HTTP/1.1\r\nHost: api.test\r\nX-Key: $MSB_KEY\r\n\r\n\
            POST /b HTTP/1.1\r\nHost: api.test\r\nContent-Length: 8\r\n\r\n$MSB_KEY\
            GET /c HTTP/1.1\r\nHost: api.test\r\nX-Key: $MSB_KEY$MSB_KEY\r\n\r\n";
        let out = harness.feed([&two[..]]);
        assert_eq!(
            text(&out.to_upstream),
            "GET /a HTTP/1.1\r\nHost: api.test\r\nX-Key: s3cr3t-value\r\n\r\n\
             POST /b HTTP/1.1\r\nHost: api.test\r\nContent-Length: 8\r\n\r\n$MSB_KEY\
             GET /c HTTP/1.1\r\nHost: api.test\r\nX-Key: s3cr3t-values3cr3t-value\r\n\r\n"
        );
        assert_eq!(harness.injected(), ["KEY", "KEY"]);
    }

    #[test]
    fn a_content_length_body_is_substituted_and_its_length_fixed() {
        let mut harness = Harness::key("api.test", ON_EVERYTHING);
        let request = b"POST /p HTTP/1.1\r\nHost: api.test\r\nContent-Length: 21\r\n\r\n\
            {\"key\": \"$MSB_KEY\"} ";
        let mut pieces: Vec<&[u8]> = request.chunks(5).collect();
        pieces.push(b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n");
        let out = harness.feed(pieces);
        assert_eq!(
            text(&out.to_upstream),
            "POST /p HTTP/1.1\r\nHost: api.test\r\ncontent-length: 25\r\n\r\n\
             {\"key\": \"s3cr3t-value\"} GET / HTTP/1.1\r\nHost: api.test\r\n\r\n"
        );
    }

    #[test]
    fn a_held_body_expecting_100_continue_is_asked_for_here() {
        let mut harness = Harness::key("api.test", ON_EVERYTHING);
        let head = b"PUT /p HTTP/1.1\r\nHost: api.test\r\nExpect: 100-continue\r\n\
            Content-Length: 8\r\n\r\n";
        let out = harness.feed([&head[..]]);
        assert_eq!(out.to_guest, b"HTTP/1.1 100 Continue\r\n\r\n");
        assert!(out.to_upstream.is_empty(), "the head waits for the body");
        let out = harness.feed([&b"$MSB_KEY"[..]]);
        assert_eq!(
            text(&out.to_upstream),
            "PUT /p HTTP/1.1\r\nHost: api.test\r\ncontent-length: 12\r\n\r\ns3cr3t-value"
        );
    }

    #[test]
    fn a_chunked_body_is_substituted_even_across_chunks_and_sent_as_new_chunks() {
        let request = b"POST /c HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n\
            4\r\na=$M\r\n7\r\nSB_KEY&\r\n0\r\nX-T: 1\r\n\r\n";
        for piece in [1, 3, 7, request.len()] {
            let mut harness = Harness::key("api.test", ON_EVERYTHING);
            let out = harness.feed(request.chunks(piece));
            let sent = text(&out.to_upstream);
            let (head, body) = sent.split_once("\r\n\r\n").unwrap();
            assert!(head.ends_with("Transfer-Encoding: chunked"), "{head}");
            let mut decoder = ChunkedDecoder::default();
            let mut data = Vec::new();
            let taken = decoder
                .feed(body.as_bytes(), |bytes| data.extend_from_slice(bytes))
                .unwrap();
            assert_eq!(text(&data), "a=s3cr3t-value&", "pieces of {piece}");
            assert_eq!(taken, body.len());
            assert_eq!(decoder.trailers(), b"X-T: 1\r\n\r\n");
            assert_eq!(harness.injected(), ["KEY"]);
        }
    }

    #[test]
    fn a_chunked_body_without_body_substitution_passes_as_it_is() {
        let mut harness = Harness::key("api.test", Injection::default());
        let request = b"POST /c HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n\
            8\r\n$MSB_KEY\r\n0\r\n\r\nGET /n HTTP/1.1\r\nHost: api.test\r\nX: $MSB_KEY\r\n\r\n";
        let out = harness.feed(request.chunks(4));
        let sent = text(&out.to_upstream);
        assert!(sent.contains("8\r\n$MSB_KEY\r\n0\r\n\r\nGET /n"), "{sent}");
        assert!(sent.ends_with("X: s3cr3t-value\r\n\r\n"), "{sent}");
    }

    #[test]
    fn a_compressed_body_is_untouched_and_not_a_violation() {
        let mut harness = Harness::key("api.test", ON_EVERYTHING);
        let request = b"POST /z HTTP/1.1\r\nHost: api.test\r\nContent-Encoding: gzip\r\n\
            Content-Length: 8\r\n\r\n$MSB_KEY";
        let out = harness.feed([&request[..]]);
        assert_eq!(out.to_upstream, request);
        assert!(harness.injected().is_empty());
    }

    #[test]
    fn basic_credentials_are_decoded_substituted_and_encoded_again() {
        let mut harness = Harness::key("api.test", Injection::default());
        let credentials = BASE64.encode("user:$MSB_KEY");
        let request = format!(
            "GET / HTTP/1.1\r\nHost: api.test\r\nAuthorization: basic {credentials}\r\n\r\n"
        );
        let out = harness.feed([request.as_bytes()]);
        let expected = format!(
            "GET / HTTP/1.1\r\nHost: api.test\r\nAuthorization: Basic {}\r\n\r\n",
            BASE64.encode("user:s3cr3t-value")
        );
        assert_eq!(text(&out.to_upstream), expected);
    }

    #[test]
    fn two_secrets_in_one_request_are_both_put_in() {
        let mut harness = Harness::new(
            "api.test",
            vec![
                secret("KEY", "api.test", "first", Injection::default()),
                secret("OTHER", "api.test", "second", Injection::default()),
            ],
        );
        let request = b"GET / HTTP/1.1\r\nHost: api.test:443\r\nX: $MSB_KEY/$MSB_OTHER\r\n\r\n";
        let out = harness.feed([&request[..]]);
        assert!(text(&out.to_upstream).contains("X: first/second\r\n"));
        assert_eq!(harness.injected(), ["KEY", "OTHER"]);
    }

    #[test]
    fn a_placeholder_for_another_host_is_answered_with_a_403_and_nothing_is_forwarded() {
        let mut harness = Harness::key("evil.test", Injection::default());
        let request = b"GET / HTTP/1.1\r\nHost: evil.test\r\nX-Key: $MSB_KEY\r\n\r\nGET /2";
        let out = harness.feed([&request[..]]);
        assert!(out.to_upstream.is_empty());
        let body = "msb: request blocked: it holds the placeholder of secret KEY, which may not \
                    be sent to evil.test\n";
        let expected = format!(
            "HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain; charset=utf-8\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        assert_eq!(text(&out.to_guest), expected);
        assert!(out.end);
        assert_eq!(harness.injected(), ["blocked KEY"]);
        let later = harness.feed([&b" HTTP/1.1\r\nHost: evil.test\r\n\r\n"[..]]);
        assert!(later.to_upstream.is_empty() && later.to_guest.is_empty());
    }

    #[test]
    fn a_host_header_that_differs_from_the_sni_is_a_violation() {
        let mut harness = Harness::key("api.test", Injection::default());
        let request = b"GET / HTTP/1.1\r\nHost: evil.test\r\nX-Key: $MSB_KEY\r\n\r\n";
        let out = harness.feed([&request[..]]);
        assert!(out.to_upstream.is_empty() && out.end);
        assert!(text(&out.to_guest).starts_with("HTTP/1.1 403 "));
    }

    #[test]
    fn a_placeholder_in_a_body_without_body_substitution_is_passed_on_to_any_host() {
        let mut harness = Harness::key("evil.test", Injection::default());
        let request = b"POST / HTTP/1.1\r\nHost: evil.test\r\nContent-Length: 8\r\n\r\n$MSB_KEY";
        let out = harness.feed([&request[..]]);
        assert_eq!(out.to_upstream, request);
        assert!(out.to_guest.is_empty() && !out.end);
        assert!(harness.injected().is_empty());
    }

    #[test]
    fn a_head_over_64_kib_is_refused_with_431() {
        let mut harness = Harness::key("api.test", Injection::default());
        let mut request = b"GET / HTTP/1.1\r\nHost: api.test\r\nX-Long: ".to_vec();
        request.resize(MAX_HEAD + 1, b'a');
        let out = harness.feed(request.chunks(16 * 1024));
        assert!(out.to_upstream.is_empty() && out.end);
        assert!(text(&out.to_guest).starts_with("HTTP/1.1 431 "));
    }

    #[test]
    fn a_placeholder_for_another_host_in_a_streamed_chunk_ends_the_request_there() {
        let mut harness = Harness::key("evil.test", ON_EVERYTHING);
        let head = b"POST / HTTP/1.1\r\nHost: evil.test\r\nTransfer-Encoding: chunked\r\n\r\n";
        let out = harness.feed([&head[..], b"5\r\nfirst\r\n", b"8\r\n$MSB_KEY\r\n"]);
        let sent = text(&out.to_upstream);
        assert!(
            !sent.contains("$MSB_KEY") && !sent.contains("s3cr3t"),
            "{sent}"
        );
        assert!(text(&out.to_guest).starts_with("HTTP/1.1 403 ") && out.end);
        assert_eq!(harness.injected(), ["blocked KEY"]);
    }

    #[test]
    fn a_rotated_value_is_used_from_the_next_request_on() {
        let mut harness = Harness::key("api.test", Injection::default());
        let request = b"GET / HTTP/1.1\r\nHost: api.test\r\nX: $MSB_KEY\r\n\r\n";
        let before = harness.feed([&request[..]]);
        assert!(text(&before.to_upstream).contains("X: s3cr3t-value\r\n"));
        let rotated = secret("KEY", "api.test", "rotated-value", Injection::default());
        harness
            .secrets
            .replace(Secrets::new(vec![rotated]).unwrap());
        let after = harness.feed([&request[..]]);
        assert!(text(&after.to_upstream).contains("X: rotated-value\r\n"));
        harness.secrets.replace(Secrets::default());
        let removed = harness.feed([&request[..]]);
        assert_eq!(
            removed.to_upstream, request,
            "a removed secret is no longer put in"
        );
    }

    #[test]
    fn a_content_length_body_too_long_to_hold_passes_untouched() {
        let mut harness = Harness::key("api.test", ON_EVERYTHING);
        let length = MAX_HELD_BODY + 1;
        let head = format!("POST / HTTP/1.1\r\nHost: api.test\r\nContent-Length: {length}\r\n\r\n");
        let out = harness.feed([head.as_bytes(), b"$MSB_KEY"]);
        assert_eq!(text(&out.to_upstream), format!("{head}$MSB_KEY"));
    }

    #[test]
    fn the_bytes_after_an_upgrade_pass_untouched() {
        let mut harness = Harness::key("api.test", Injection::default());
        let request =
            b"GET /ws HTTP/1.1\r\nHost: api.test\r\nUpgrade: websocket\r\n\r\n\x81\x05$MSB_";
        let out = harness.feed([&request[..]]);
        assert_eq!(out.to_upstream, request);
    }
}
