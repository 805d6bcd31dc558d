//! HTTP/2 requests rewritten on their way out: the guest's frames are read after the
//! connection preface, every header block (HEADERS and its CONTINUATIONs) is decoded with the
//! guest's HPACK context, its placeholders replaced (`:path`'s query, header values, Basic
//! credentials) and encoded again for the server. Our encoder never uses the dynamic table
//! (every field a literal, never indexed when it carries a secret), so whatever table size
//! the server allows is honoured, and the server's decoder state never depends on the guest's.
//! Every block is re-encoded, as the two contexts are independent. Other frames pass as they
//! are: flow control is untouched since DATA is never changed (bodies are not substituted
//! over HTTP/2).
//!
//! A request that may not carry a placeholder is answered on its stream: HEADERS (`:status
//! 403`) and a DATA frame with the reason (END_STREAM), put between the server's frames at a
//! frame boundary outside a header block; the guest's later frames on that stream are
//! dropped. The guest's connection window is kept true: the bytes of our DATA are taken off
//! the guest's next connection WINDOW_UPDATEs (the server never sent them), and the guest is
//! given back the window of its dropped DATA frames (the server never got them).
//!
//! A header block that cannot be decoded, or one over [`MAX_HEADER_BLOCK`], ends the flow.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use loona_hpack::encoder::encode_integer_into;
use loona_hpack::Decoder;

use super::http1::rewrite_basic;
use super::shared::Flow;
use super::substitute::{Place, Substitution, Violation};
use super::violation::{blocked_text, SecretEvent};
use crate::tls::intercept::Filtered;

/// The client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
/// The frame size every peer accepts (SETTINGS_MAX_FRAME_SIZE's least value).
const MAX_FRAME: usize = 16_384;
/// The largest header block held (a HEADERS and its CONTINUATIONs).
pub const MAX_HEADER_BLOCK: usize = 256 * 1024;
/// The largest HPACK table the guest may ask for; servers offer 4 KiB to 64 KiB.
const MAX_TABLE_SIZE: usize = 1024 * 1024;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const PUSH_PROMISE: u8 = 0x5;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

#[derive(Debug, Clone, Copy)]
struct FrameHeader {
    length: usize,
    kind: u8,
    flags: u8,
    stream: u32,
}

impl FrameHeader {
    fn parse(bytes: &[u8]) -> Self {
        Self {
            length: usize::from(bytes[0]) << 16
                | usize::from(bytes[1]) << 8
                | usize::from(bytes[2]),
            kind: bytes[3],
            flags: bytes[4],
            stream: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff,
        }
    }

    fn write(self, out: &mut Vec<u8>) {
        let length = u32::try_from(self.length).unwrap_or(u32::MAX).to_be_bytes();
        out.extend_from_slice(&length[1..]);
        out.push(self.kind);
        out.push(self.flags);
        out.extend_from_slice(&self.stream.to_be_bytes());
    }
}

/// A header block being gathered from a HEADERS frame and its CONTINUATIONs.
#[derive(Debug)]
struct Block {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
}

/// A frame whose payload passes (or is dropped) as it comes.
#[derive(Debug, Clone, Copy)]
struct Streaming {
    left: usize,
    forward: bool,
    /// Dropped DATA: its bytes are given back to the guest's window.
    dropped_data: bool,
}

/// Where the server's frames are, so frames of ours go in between.
#[derive(Debug, Default)]
struct ServerFraming {
    header: Vec<u8>,
    left: usize,
    current: Option<FrameHeader>,
    /// Inside a header block: nothing may come between its frames.
    in_block: bool,
    /// The server's first frame (its SETTINGS, the preface) has gone to the guest.
    started: bool,
}

impl ServerFraming {
    fn may_insert(&self) -> bool {
        self.started && self.header.is_empty() && self.left == 0 && !self.in_block
    }

    fn frame_done(&mut self) {
        self.started = true;
        if let Some(header) = self.current.take() {
            if matches!(header.kind, HEADERS | PUSH_PROMISE | CONTINUATION) {
                self.in_block = header.flags & END_HEADERS == 0;
            }
        }
    }
}

/// One HTTP/2 connection, both ways.
pub struct Http2 {
    preface_seen: usize,
    pending: Vec<u8>,
    streaming: Option<Streaming>,
    block: Option<Block>,
    decoder: Decoder<'static>,
    /// The host each open request named, for its trailers.
    hosts: HashMap<u32, Option<String>>,
    blocked: HashSet<u32>,
    /// Bytes of our DATA frames the guest will count in its connection WINDOW_UPDATEs.
    window_debt: u64,
    for_guest: Vec<u8>,
    server: ServerFraming,
    ended: bool,
}

impl Default for Http2 {
    fn default() -> Self {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(MAX_TABLE_SIZE);
        Self {
            preface_seen: 0,
            pending: Vec::new(),
            streaming: None,
            block: None,
            decoder,
            hosts: HashMap::new(),
            blocked: HashSet::new(),
            window_debt: 0,
            for_guest: Vec::new(),
            server: ServerFraming::default(),
            ended: false,
        }
    }
}

/// The flow cannot go on (the guest broke HTTP/2, or sent too much to hold).
struct Broken;

impl Http2 {
    /// Takes bytes the guest sent.
    pub fn guest_bytes(&mut self, input: &[u8], flow: &Flow<'_>, out: &mut Filtered) {
        if self.ended {
            return;
        }
        self.pending.extend_from_slice(input);
        let mut at = 0;
        loop {
            match self.step(at, flow, out) {
                Ok(Some(next)) => at = next,
                Ok(None) => break,
                Err(Broken) => {
                    self.ended = true;
                    self.pending.clear();
                    out.end = true;
                    return;
                }
            }
        }
        self.pending.drain(..at);
        self.flush_to_guest(out);
    }

    /// Takes bytes the server sent: they pass, with our frames put in between.
    pub fn server_bytes(&mut self, input: &[u8], out: &mut Filtered) {
        let mut at = 0;
        loop {
            self.flush_to_guest(out);
            if at == input.len() {
                return;
            }
            let server = &mut self.server;
            if server.left > 0 {
                let take = server.left.min(input.len() - at);
                out.to_guest.extend_from_slice(&input[at..at + take]);
                server.left -= take;
                at += take;
                if server.left == 0 {
                    server.frame_done();
                }
                continue;
            }
            let take = (FRAME_HEADER - server.header.len()).min(input.len() - at);
            server.header.extend_from_slice(&input[at..at + take]);
            out.to_guest.extend_from_slice(&input[at..at + take]);
            at += take;
            if server.header.len() == FRAME_HEADER {
                let header = FrameHeader::parse(&server.header);
                server.header.clear();
                server.left = header.length;
                server.current = Some(header);
                if header.length == 0 {
                    server.frame_done();
                }
            }
        }
    }

    fn flush_to_guest(&mut self, out: &mut Filtered) {
        if !self.for_guest.is_empty() && self.server.may_insert() {
            out.to_guest.append(&mut self.for_guest);
        }
    }

    fn step(
        &mut self,
        at: usize,
        flow: &Flow<'_>,
        out: &mut Filtered,
    ) -> Result<Option<usize>, Broken> {
        let rest = &self.pending[at..];
        if rest.is_empty() {
            return Ok(None);
        }
        if self.preface_seen < PREFACE.len() {
            let take = (PREFACE.len() - self.preface_seen).min(rest.len());
            if rest[..take] != PREFACE[self.preface_seen..self.preface_seen + take] {
                return Err(Broken);
            }
            out.to_upstream.extend_from_slice(&rest[..take]);
            self.preface_seen += take;
            return Ok(Some(at + take));
        }
        if let Some(mut streaming) = self.streaming.take() {
            let take = streaming.left.min(rest.len());
            if streaming.forward {
                out.to_upstream.extend_from_slice(&rest[..take]);
            } else if streaming.dropped_data {
                self.give_back_window(take);
            }
            streaming.left -= take;
            if streaming.left > 0 {
                self.streaming = Some(streaming);
            }
            return Ok(Some(at + take));
        }
        if rest.len() < FRAME_HEADER {
            return Ok(None);
        }
        let header = FrameHeader::parse(rest);
        if self.block.is_some() && header.kind != CONTINUATION {
            return Err(Broken);
        }
        let whole = matches!(header.kind, HEADERS | CONTINUATION)
            || (header.kind == WINDOW_UPDATE && header.stream == 0 && self.window_debt > 0);
        if whole {
            if header.length > MAX_HEADER_BLOCK {
                return Err(Broken);
            }
            if rest.len() < FRAME_HEADER + header.length {
                return Ok(None);
            }
            let payload = rest[FRAME_HEADER..FRAME_HEADER + header.length].to_vec();
            self.whole_frame(header, &payload, flow, out)?;
            return Ok(Some(at + FRAME_HEADER + header.length));
        }
        let dropped = header.stream != 0 && self.blocked.contains(&header.stream);
        if !dropped {
            out.to_upstream.extend_from_slice(&rest[..FRAME_HEADER]);
        }
        if (header.kind == DATA && header.flags & END_STREAM != 0) || header.kind == RST_STREAM {
            self.hosts.remove(&header.stream);
        }
        self.streaming = Some(Streaming {
            left: header.length,
            forward: !dropped,
            dropped_data: dropped && header.kind == DATA,
        })
        .filter(|streaming| streaming.left > 0);
        Ok(Some(at + FRAME_HEADER))
    }

    fn whole_frame(
        &mut self,
        header: FrameHeader,
        payload: &[u8],
        flow: &Flow<'_>,
        out: &mut Filtered,
    ) -> Result<(), Broken> {
        match header.kind {
            HEADERS => {
                let (priority, fragment) = headers_payload(header.flags, payload)?;
                self.block = Some(Block {
                    stream: header.stream,
                    end_stream: header.flags & END_STREAM != 0,
                    priority,
                    fragment: fragment.to_vec(),
                });
            }
            CONTINUATION => {
                let block = self.block.as_mut().ok_or(Broken)?;
                if block.stream != header.stream
                    || block.fragment.len() + payload.len() > MAX_HEADER_BLOCK
                {
                    return Err(Broken);
                }
                block.fragment.extend_from_slice(payload);
            }
            _ => {
                self.window_update(header, payload, out);
                return Ok(());
            }
        }
        if header.flags & END_HEADERS != 0 {
            let block = self.block.take().ok_or(Broken)?;
            self.header_block(block, flow, out)?;
        }
        Ok(())
    }

    /// A connection WINDOW_UPDATE from the guest, less what it counts of our own DATA.
    fn window_update(&mut self, header: FrameHeader, payload: &[u8], out: &mut Filtered) {
        let Ok(increment) = <[u8; 4]>::try_from(payload) else {
            // Malformed: the server answers it as it would.
            header.write(&mut out.to_upstream);
            out.to_upstream.extend_from_slice(payload);
            return;
        };
        let increment = u64::from(u32::from_be_bytes(increment) & 0x7fff_ffff);
        let owed = increment.min(self.window_debt);
        self.window_debt -= owed;
        let left = increment - owed;
        if left > 0 {
            window_update_frame(0, left, &mut out.to_upstream);
        }
    }

    /// The guest's window, as if the server had read `count` bytes of dropped DATA.
    fn give_back_window(&mut self, count: usize) {
        window_update_frame(0, count as u64, &mut self.for_guest);
    }

    fn header_block(
        &mut self,
        block: Block,
        flow: &Flow<'_>,
        out: &mut Filtered,
    ) -> Result<(), Broken> {
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        self.decoder
            .decode_with_cb(&block.fragment, |name: Cow<[u8]>, value: Cow<[u8]>| {
                fields.push((name.into_owned(), value.into_owned()))
            })
            .map_err(|_| Broken)?;
        if self.blocked.contains(&block.stream) {
            return Ok(());
        }
        let host = match self.hosts.get(&block.stream) {
            Some(host) => host.clone(),
            None => {
                let host = request_host(&fields);
                self.hosts.insert(block.stream, host.clone());
                host
            }
        };
        let secrets = flow.secrets.current();
        let mut substitution = Substitution::new(&secrets, flow.route, host.as_deref());
        let changed = match rewrite_fields(&mut fields, &mut substitution) {
            Ok(changed) => changed,
            Err(violation) => {
                self.block_stream(block.stream, violation, flow);
                return Ok(());
            }
        };
        for secret in substitution.injected() {
            flow.reports.push(SecretEvent::Injected {
                secret: secret.clone(),
                host: flow.route.sni.clone(),
            });
        }
        let mut encoded = Vec::new();
        for ((name, value), secret) in fields.iter().zip(changed) {
            literal_field(name, value, secret, &mut encoded);
        }
        header_frames(&block, &encoded, &mut out.to_upstream);
        if block.end_stream {
            self.hosts.remove(&block.stream);
        }
        Ok(())
    }

    /// Answers `stream` with a 403 and drops what the guest sends on it from now on.
    fn block_stream(&mut self, stream: u32, violation: Violation, flow: &Flow<'_>) {
        let body = blocked_text(&violation);
        flow.reports.push(SecretEvent::Blocked(violation));
        self.blocked.insert(stream);
        self.hosts.remove(&stream);
        let mut block = Vec::new();
        for (name, value) in [
            (&b":status"[..], &b"403"[..]),
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", body.len().to_string().as_bytes()),
        ] {
            literal_field(name, value, false, &mut block);
        }
        let response = Block {
            stream,
            end_stream: false,
            priority: None,
            fragment: Vec::new(),
        };
        header_frames(&response, &block, &mut self.for_guest);
        FrameHeader {
            length: body.len(),
            kind: DATA,
            flags: END_STREAM,
            stream,
        }
        .write(&mut self.for_guest);
        self.for_guest.extend_from_slice(body.as_bytes());
        self.window_debt += body.len() as u64;
    }
}

/// A HEADERS payload's priority fields and its block fragment, without padding.
fn headers_payload(flags: u8, payload: &[u8]) -> Result<(Option<[u8; 5]>, &[u8]), Broken> {
    let mut payload = payload;
    let mut padding = 0;
    if flags & PADDED != 0 {
        let (&length, rest) = payload.split_first().ok_or(Broken)?;
        padding = usize::from(length);
        payload = rest;
    }
    let mut priority = None;
    if flags & PRIORITY != 0 {
        let fields: [u8; 5] = payload
            .get(..5)
            .ok_or(Broken)?
            .try_into()
            .map_err(|_| Broken)?;
        priority = Some(fields);
        payload = &payload[5..];
    }
    let end = payload.len().checked_sub(padding).ok_or(Broken)?;
    Ok((priority, &payload[..end]))
}

/// The request's `:authority`, else its `host`.
fn request_host(fields: &[(Vec<u8>, Vec<u8>)]) -> Option<String> {
    let find = |wanted: &[u8]| {
        fields
            .iter()
            .find(|(name, _)| name.as_slice() == wanted)
            .and_then(|(_, value)| String::from_utf8(value.clone()).ok())
    };
    find(b":authority").or_else(|| find(b"host"))
}

/// Replaces placeholders in `:path`'s query and the header values; which fields changed.
fn rewrite_fields(
    fields: &mut [(Vec<u8>, Vec<u8>)],
    substitution: &mut Substitution<'_>,
) -> Result<Vec<bool>, Violation> {
    let mut changed = vec![false; fields.len()];
    for ((name, value), changed) in fields.iter_mut().zip(&mut changed) {
        if name.as_slice() == b":path" {
            if let Some(question) = memchr::memchr(b'?', value) {
                if let Some(query) = substitution.apply(&value[question + 1..], Place::Query)? {
                    value.truncate(question + 1);
                    value.extend_from_slice(&query);
                    *changed = true;
                }
            }
            continue;
        }
        if name.starts_with(b":") {
            continue;
        }
        if let Some(replaced) = substitution.apply(value, Place::Header)? {
            *value = replaced;
            *changed = true;
        }
        if name.as_slice() == b"authorization" {
            if let Some(replaced) = rewrite_basic(value, substitution)? {
                *value = replaced;
                *changed = true;
            }
        }
    }
    Ok(changed)
}

/// One field as an HPACK literal with a literal name, outside the dynamic table: "never
/// indexed" when it carries a secret, so no intermediary may store it (RFC 7541 §6.2.3).
fn literal_field(name: &[u8], value: &[u8], secret: bool, out: &mut Vec<u8>) {
    out.push(if secret { 0x10 } else { 0x00 });
    for string in [name, value] {
        // Writing into a Vec cannot fail.
        let _ = encode_integer_into(string.len(), 7, 0, out);
        out.extend_from_slice(string);
    }
}

/// `encoded` as a HEADERS frame and as many CONTINUATIONs as the frame size asks.
fn header_frames(block: &Block, encoded: &[u8], out: &mut Vec<u8>) {
    let priority_len = block.priority.map_or(0, |fields| fields.len());
    let first_len = encoded.len().min(MAX_FRAME - priority_len);
    let (first, mut rest) = encoded.split_at(first_len);
    let mut flags = 0;
    if block.end_stream {
        flags |= END_STREAM;
    }
    if block.priority.is_some() {
        flags |= PRIORITY;
    }
    if rest.is_empty() {
        flags |= END_HEADERS;
    }
    FrameHeader {
        length: priority_len + first.len(),
        kind: HEADERS,
        flags,
        stream: block.stream,
    }
    .write(out);
    if let Some(fields) = block.priority {
        out.extend_from_slice(&fields);
    }
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(rest.len().min(MAX_FRAME));
        rest = after;
        FrameHeader {
            length: chunk.len(),
            kind: CONTINUATION,
            flags: if rest.is_empty() { END_HEADERS } else { 0 },
            stream: block.stream,
        }
        .write(out);
        out.extend_from_slice(chunk);
    }
}

fn window_update_frame(stream: u32, increment: u64, out: &mut Vec<u8>) {
    // A WINDOW_UPDATE's increment is at most 2^31 - 1; more is split.
    let mut left = increment;
    while left > 0 {
        let step = left.min(0x7fff_ffff);
        left -= step;
        FrameHeader {
            length: 4,
            kind: WINDOW_UPDATE,
            flags: 0,
            stream,
        }
        .write(out);
        out.extend_from_slice(&(step as u32).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::substitute::tests::{route, secret};
    use crate::secrets::substitute::Route;
    use crate::secrets::{Injection, SecretReports, Secrets, SharedSecrets};
    use loona_hpack::Encoder;

    const SETTINGS: u8 = 0x4;

    struct Harness {
        route: Route,
        secrets: SharedSecrets,
        reports: SecretReports,
        http2: Http2,
        /// The guest's HPACK context.
        encoder: Encoder<'static>,
        /// The server's, to read what we sent it.
        decoder: Decoder<'static>,
    }

    impl Harness {
        fn new(sni: &str) -> Self {
            let key = secret("KEY", "api.test", "s3cr3t-value", Injection::default());
            Self {
                route: route(sni),
                secrets: SharedSecrets::new(Secrets::new(vec![key]).unwrap()),
                reports: SecretReports::default(),
                http2: Http2::default(),
                encoder: Encoder::new(),
                decoder: Decoder::new(),
            }
        }

        fn guest(&mut self, bytes: &[u8]) -> Filtered {
            let mut out = Filtered::default();
            let flow = Flow {
                route: &self.route,
                secrets: &self.secrets,
                reports: &self.reports,
            };
            self.http2.guest_bytes(bytes, &flow, &mut out);
            out
        }

        fn request(&mut self, authority: &str, headers: &[(&str, &str)]) -> Vec<u8> {
            let mut fields = vec![
                (&b":method"[..], &b"GET"[..]),
                (b":scheme", b"https"),
                (b":path", b"/v1"),
                (b":authority", authority.as_bytes()),
            ];
            fields.extend(headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
            self.encoder.encode(fields)
        }

        /// The header blocks of the HEADERS(+CONTINUATION) frames in `bytes`, decoded.
        fn server_reads(&mut self, bytes: &[u8]) -> Vec<(u32, Vec<(String, String)>)> {
            let mut blocks = Vec::new();
            let mut current: Option<(u32, Vec<u8>)> = None;
            for (header, payload) in frames(bytes) {
                match header.kind {
                    HEADERS => current = Some((header.stream, payload.to_vec())),
                    CONTINUATION => current.as_mut().unwrap().1.extend_from_slice(payload),
                    _ => continue,
                }
                if header.flags & END_HEADERS != 0 {
                    let (stream, block) = current.take().unwrap();
                    let fields = self.decoder.decode(&block).unwrap();
                    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
                    let fields = fields.into_iter().map(|(n, v)| (text(n), text(v)));
                    blocks.push((stream, fields.collect()));
                }
            }
            blocks
        }
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        FrameHeader {
            length: payload.len(),
            kind,
            flags,
            stream,
        }
        .write(&mut out);
        out.extend_from_slice(payload);
        out
    }

    fn frames(mut bytes: &[u8]) -> Vec<(FrameHeader, &[u8])> {
        let mut out = Vec::new();
        if bytes.starts_with(PREFACE) {
            bytes = &bytes[PREFACE.len()..];
        }
        while !bytes.is_empty() {
            let header = FrameHeader::parse(bytes);
            let end = FRAME_HEADER + header.length;
            out.push((header, &bytes[FRAME_HEADER..end]));
            bytes = &bytes[end..];
        }
        out
    }

    fn value<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
        let found = fields.iter().find(|(n, _)| n == name);
        found.map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_header_indexed_from_the_guests_dynamic_table_is_substituted_in_every_request() {
        let mut harness = Harness::new("api.test");
        let mut sent = PREFACE.to_vec();
        sent.extend(frame(SETTINGS, 0, 0, &[]));
        let first = harness.request("api.test", &[("x-api-key", "$MSB_KEY")]);
        sent.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &first));
        let second = harness.request("api.test", &[("x-api-key", "$MSB_KEY")]);
        assert!(
            second.len() < first.len(),
            "the second reuses the dynamic table"
        );
        sent.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, &second));
        let mut upstream = Vec::new();
        for piece in sent.chunks(3) {
            upstream.extend(harness.guest(piece).to_upstream);
        }
        assert!(upstream.starts_with(PREFACE));
        let blocks = harness.server_reads(&upstream);
        assert_eq!(blocks.len(), 2);
        for (stream, fields) in &blocks {
            assert_eq!(value(fields, "x-api-key"), Some("s3cr3t-value"), "{stream}");
            assert_eq!(value(fields, ":path"), Some("/v1"));
        }
        assert_eq!(harness.reports.take().len(), 2);
    }

    #[test]
    fn a_block_continued_in_continuation_frames_is_gathered_and_substituted() {
        let mut harness = Harness::new("api.test");
        let block = harness.request("api.test", &[("authorization", "Bearer $MSB_KEY")]);
        let (front, back) = block.split_at(block.len() / 2);
        let mut sent = PREFACE.to_vec();
        sent.extend(frame(HEADERS, END_STREAM, 1, front));
        sent.extend(frame(CONTINUATION, END_HEADERS, 1, back));
        sent.extend(frame(DATA, END_STREAM, 3, b"untouched $MSB_KEY"));
        let upstream = harness.guest(&sent).to_upstream;
        let blocks = harness.server_reads(&upstream);
        assert_eq!(
            value(&blocks[0].1, "authorization"),
            Some("Bearer s3cr3t-value")
        );
        let data = frames(&upstream).into_iter().find(|(h, _)| h.kind == DATA);
        assert_eq!(data.unwrap().1, b"untouched $MSB_KEY");
    }

    #[test]
    fn a_violation_is_answered_with_403_on_its_stream_between_the_servers_frames() {
        let mut harness = Harness::new("evil.test");
        let block = harness.request("evil.test", &[("x-api-key", "$MSB_KEY")]);
        let mut sent = PREFACE.to_vec();
        sent.extend(frame(HEADERS, END_HEADERS, 1, &block));
        sent.extend(frame(DATA, END_STREAM, 1, b"body"));
        let out = harness.guest(&sent);
        assert!(!out.end);
        assert!(
            frames(&out.to_upstream).is_empty(),
            "nothing of stream 1 goes on"
        );
        assert!(out.to_guest.is_empty(), "the server's preface comes first");

        let settings = frame(SETTINGS, 0, 0, &[]);
        let mut from_server = Filtered::default();
        harness.http2.server_bytes(&settings, &mut from_server);
        let to_guest = frames(&from_server.to_guest);
        let kinds: Vec<(u8, u32)> = to_guest.iter().map(|(h, _)| (h.kind, h.stream)).collect();
        // SETTINGS, then the 403, then the dropped body's window back.
        assert_eq!(
            kinds,
            [(SETTINGS, 0), (HEADERS, 1), (DATA, 1), (WINDOW_UPDATE, 0)]
        );
        let response = Decoder::new().decode(to_guest[1].1).unwrap();
        assert_eq!(response[0], (b":status".to_vec(), b"403".to_vec()));
        let body = String::from_utf8(to_guest[2].1.to_vec()).unwrap();
        assert!(
            body.contains("secret KEY") && body.contains("evil.test"),
            "{body}"
        );
        assert_eq!(to_guest[2].0.flags, END_STREAM);
        assert_eq!(
            to_guest[3].1,
            4u32.to_be_bytes(),
            "the 4 bytes of the dropped body"
        );
        let reports = harness.reports.take();
        assert!(matches!(&reports[..], [SecretEvent::Blocked(v)] if v.secret == "KEY"));

        // The guest's window update counting our DATA is not passed on.
        let update = frame(WINDOW_UPDATE, 0, 0, &(body.len() as u32).to_be_bytes());
        assert!(harness.guest(&update).to_upstream.is_empty());
    }

    #[test]
    fn frames_of_requests_without_placeholders_pass_with_their_headers_re_encoded() {
        let mut harness = Harness::new("evil.test");
        let block = harness.request("evil.test", &[("accept", "*/*")]);
        let mut sent = PREFACE.to_vec();
        sent.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &block));
        let upstream = harness.guest(&sent).to_upstream;
        let blocks = harness.server_reads(&upstream);
        assert_eq!(value(&blocks[0].1, "accept"), Some("*/*"));
        assert_eq!(value(&blocks[0].1, ":authority"), Some("evil.test"));
        assert!(harness.reports.take().is_empty());
    }

    #[test]
    fn a_block_over_the_frame_size_once_re_encoded_is_sent_with_continuations() {
        let mut harness = Harness::new("api.test");
        let long = "a".repeat(MAX_FRAME);
        let block = harness.request("api.test", &[("x-long", &long), ("x-key", "$MSB_KEY")]);
        let mut sent = PREFACE.to_vec();
        sent.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &block));
        let upstream = harness.guest(&sent).to_upstream;
        let kinds: Vec<u8> = frames(&upstream).iter().map(|(h, _)| h.kind).collect();
        assert_eq!(kinds, [HEADERS, CONTINUATION]);
        assert!(frames(&upstream).iter().all(|(h, _)| h.length <= MAX_FRAME));
        let blocks = harness.server_reads(&upstream);
        assert_eq!(value(&blocks[0].1, "x-key"), Some("s3cr3t-value"));
        assert_eq!(value(&blocks[0].1, "x-long").map(str::len), Some(MAX_FRAME));
    }

    #[test]
    fn trailers_are_substituted_for_the_host_their_request_named() {
        let mut harness = Harness::new("api.test");
        let request = harness.request("api.test", &[]);
        let trailers = harness.encoder.encode([(&b"x-sig"[..], &b"$MSB_KEY"[..])]);
        let mut sent = PREFACE.to_vec();
        sent.extend(frame(HEADERS, END_HEADERS, 1, &request));
        sent.extend(frame(DATA, 0, 1, b"body"));
        sent.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &trailers));
        let upstream = harness.guest(&sent).to_upstream;
        let blocks = harness.server_reads(&upstream);
        assert_eq!(value(&blocks[1].1, "x-sig"), Some("s3cr3t-value"));
    }

    #[test]
    fn a_guest_that_does_not_speak_http2_ends_the_flow() {
        let mut harness = Harness::new("api.test");
        let out = harness.guest(b"GET / HTTP/1.1\r\n\r\n");
        assert!(out.end && out.to_upstream.is_empty());
    }
}
