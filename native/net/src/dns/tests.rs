//! Behaviour of the whole resolver: queries in, actions out, answers built with hickory as a
//! nameserver would send them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::upstream_id::Xorshift64;
use super::*;

const GUEST: u32 = 7;

fn server(text: &str) -> SocketAddr {
    text.parse().expect("test address")
}

fn first_ns() -> SocketAddr {
    server("198.51.100.53:53")
}

fn second_ns() -> SocketAddr {
    server("203.0.113.53:53")
}

fn resolver_with(config: DnsConfig, has_ipv6_route: bool, max_pending: usize) -> Resolver<u32> {
    let host = HostDns {
        nameservers: vec![first_ns(), second_ns()],
        has_ipv6_route,
        max_pending,
        id_seed: 0x5EED,
    };
    Resolver::new(&config, &host).expect("valid resolver")
}

fn resolver() -> Resolver<u32> {
    resolver_with(DnsConfig::default(), true, DEFAULT_MAX_PENDING)
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).expect("test name")
}

fn query(id: u16, qname: &str, qtype: RecordType) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(name(qname), qtype));
    message.to_vec().expect("encodes")
}

/// The nameserver's answer to `sent`, with `records` and `code`.
fn answer(sent: &[u8], code: ResponseCode, records: Vec<Record>) -> Vec<u8> {
    let sent = Message::from_vec(sent).expect("a query");
    let mut message = Message::response(sent.id, OpCode::Query);
    message.metadata.response_code = code;
    message.metadata.recursion_available = true;
    message.add_queries(sent.queries.iter().cloned());
    message.add_answers(records);
    message.to_vec().expect("encodes")
}

fn a(owner: &str, address: &str) -> Record {
    Record::from_rdata(name(owner), 60, RData::A(A(address.parse().expect("v4"))))
}

fn t0() -> Instant {
    Instant::now()
}

fn sent_udp(action: Action<u32>) -> (SocketAddr, Vec<u8>) {
    match action {
        Action::SendUdp { server, bytes } => (server, bytes),
        other => panic!("expected SendUdp, got {other:?}"),
    }
}

fn reply_of(action: Action<u32>) -> (Message, Vec<ResolvedAddress>) {
    match action {
        Action::Reply {
            client,
            bytes,
            resolved,
        } => {
            assert_eq!(client, GUEST);
            (Message::from_vec(&bytes).expect("a reply"), resolved)
        }
        other => panic!("expected Reply, got {other:?}"),
    }
}

fn no_internal(_: &ResolvedAddress) -> bool {
    false
}

#[test]
fn a_query_is_forwarded_under_a_new_id_and_answered_under_the_guest_id() {
    let mut resolver = resolver();
    let now = t0();
    let guest_query = query(0x1111, "www.example.com.", RecordType::A);
    let action = resolver.on_guest_query(GUEST, Transport::Udp, &guest_query, now);
    let (to, upstream) = sent_udp(action);
    assert_eq!(to, first_ns());
    let upstream_message = Message::from_vec(&upstream).expect("a query");
    assert_ne!(upstream_message.id, 0x1111);
    let records = vec![a("www.example.com.", "198.51.100.80")];
    let response = answer(&upstream, ResponseCode::NoError, records);
    let action =
        resolver.on_upstream_answer(first_ns(), Transport::Udp, &response, now, &no_internal);
    let (reply, resolved) = reply_of(action);
    assert_eq!(reply.id, 0x1111);
    assert_eq!(reply.answers.len(), 1);
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].address.to_string(), "198.51.100.80");
    assert_eq!(resolver.pending_count(), 0);
    assert_eq!(resolver.poll_timeout(), None);
}

#[test]
fn two_guest_queries_with_the_same_id_get_different_upstream_ids() {
    let mut resolver = resolver();
    let now = t0();
    let bytes = query(42, "a.example.", RecordType::A);
    let (_, first) = sent_udp(resolver.on_guest_query(1, Transport::Udp, &bytes, now));
    let (_, second) = sent_udp(resolver.on_guest_query(2, Transport::Udp, &bytes, now));
    let id = |bytes: &[u8]| Message::from_vec(bytes).expect("query").id;
    assert_ne!(id(&first), id(&second));
}

#[test]
fn spoofed_answers_are_ignored_and_the_real_one_still_accepted() {
    let mut resolver = resolver();
    let now = t0();
    let guest_query = query(9, "bank.example.", RecordType::A);
    let (_, upstream) = sent_udp(resolver.on_guest_query(GUEST, Transport::Udp, &guest_query, now));
    let genuine = answer(
        &upstream,
        ResponseCode::NoError,
        vec![a("bank.example.", "198.51.100.1")],
    );
    let mut wrong_id = Message::from_vec(&genuine).expect("answer");
    wrong_id.metadata.id = wrong_id.id.wrapping_add(1);
    let mut wrong_question = Message::from_vec(&genuine).expect("answer");
    wrong_question.queries = vec![Query::query(name("evil.example."), RecordType::A)];
    let forged = [
        (
            first_ns(),
            Transport::Udp,
            wrong_id.to_vec().expect("encodes"),
        ),
        (
            first_ns(),
            Transport::Udp,
            wrong_question.to_vec().expect("encodes"),
        ),
        (second_ns(), Transport::Udp, genuine.clone()),
        (first_ns(), Transport::Tcp, genuine.clone()),
        (first_ns(), Transport::Udp, upstream.clone()),
    ];
    for (from, transport, bytes) in forged {
        let action = resolver.on_upstream_answer(from, transport, &bytes, now, &no_internal);
        assert_eq!(action, Action::Drop, "{from} {transport:?}");
    }
    assert_eq!(resolver.pending_count(), 1);
    let action =
        resolver.on_upstream_answer(first_ns(), Transport::Udp, &genuine, now, &no_internal);
    assert_eq!(reply_of(action).0.id, 9);
}

#[test]
fn a_dead_first_nameserver_falls_back_to_the_next_after_the_timeout() {
    let mut resolver = resolver();
    let now = t0();
    let guest_query = query(5, "www.example.com.", RecordType::A);
    let (_, first) = sent_udp(resolver.on_guest_query(GUEST, Transport::Udp, &guest_query, now));
    assert_eq!(resolver.poll_timeout(), Some(now + DEFAULT_QUERY_TIMEOUT));
    assert!(resolver
        .on_timeout(now + Duration::from_millis(4999))
        .is_empty());
    let later = now + DEFAULT_QUERY_TIMEOUT;
    let mut actions = resolver.on_timeout(later);
    assert_eq!(actions.len(), 1);
    let (to, retried) = sent_udp(actions.remove(0));
    assert_eq!((to, &retried), (second_ns(), &first));
    // The dead server's late answer no longer counts.
    let late = answer(
        &first,
        ResponseCode::NoError,
        vec![a("www.example.com.", "198.51.100.2")],
    );
    let ignored =
        resolver.on_upstream_answer(first_ns(), Transport::Udp, &late, later, &no_internal);
    assert_eq!(ignored, Action::Drop);
    let response = answer(
        &retried,
        ResponseCode::NoError,
        vec![a("www.example.com.", "198.51.100.3")],
    );
    let action =
        resolver.on_upstream_answer(second_ns(), Transport::Udp, &response, later, &no_internal);
    assert_eq!(reply_of(action).0.answers.len(), 1);
}

#[test]
fn every_nameserver_failing_gives_servfail() {
    let mut resolver = resolver();
    let now = t0();
    let guest_query = query(6, "down.example.", RecordType::A);
    let (_, upstream) = sent_udp(resolver.on_guest_query(GUEST, Transport::Udp, &guest_query, now));
    // The first refuses, the second times out.
    let refused = answer(&upstream, ResponseCode::Refused, vec![]);
    let next = resolver.on_upstream_answer(first_ns(), Transport::Udp, &refused, now, &no_internal);
    assert_eq!(sent_udp(next).0, second_ns());
    let mut actions = resolver.on_timeout(now + DEFAULT_QUERY_TIMEOUT);
    let (reply, _) = reply_of(actions.remove(0));
    assert_eq!((reply.id, reply.response_code), (6, ResponseCode::ServFail));
    assert_eq!(reply.queries.len(), 1);
    assert_eq!(resolver.pending_count(), 0);
}

#[test]
fn a_truncated_udp_answer_is_retried_over_tcp_at_the_same_server() {
    let mut resolver = resolver();
    let now = t0();
    let guest_query = query(8, "big.example.", RecordType::TXT);
    let (_, upstream) = sent_udp(resolver.on_guest_query(GUEST, Transport::Udp, &guest_query, now));
    let mut truncated =
        Message::from_vec(&answer(&upstream, ResponseCode::NoError, vec![])).expect("answer");
    truncated.metadata.truncation = true;
    let truncated = truncated.to_vec().expect("encodes");
    let action =
        resolver.on_upstream_answer(first_ns(), Transport::Udp, &truncated, now, &no_internal);
    let Action::SendTcp { server, bytes } = action else {
        panic!("expected SendTcp, got {action:?}");
    };
    assert_eq!((server, &bytes), (first_ns(), &upstream));
    let full = answer(
        &bytes,
        ResponseCode::NoError,
        vec![a("big.example.", "198.51.100.4")],
    );
    let action = resolver.on_upstream_answer(first_ns(), Transport::Tcp, &full, now, &no_internal);
    assert_eq!(reply_of(action).0.id, 8);
}

#[test]
fn a_guest_query_over_tcp_goes_upstream_over_tcp() {
    let mut resolver = resolver();
    let bytes = query(3, "x.example.", RecordType::A);
    let action = resolver.on_guest_query(GUEST, Transport::Tcp, &bytes, t0());
    assert!(matches!(action, Action::SendTcp { server, .. } if server == first_ns()));
}

#[test]
fn denied_names_get_nxdomain_without_a_query_leaving() {
    let config = DnsConfig {
        deny_domains: vec!["blocked.example.".into()],
        deny_domain_suffixes: vec![".ads.example".into()],
        ..DnsConfig::default()
    };
    let mut resolver = resolver_with(config, true, DEFAULT_MAX_PENDING);
    for (qname, denied) in [
        ("blocked.example.", true),
        ("BLOCKED.example.", true),
        ("ads.example.", true),
        ("x.ads.example.", true),
        ("badads.example.", false),
        ("sub.blocked.example.", false),
    ] {
        let action = resolver.on_guest_query(
            GUEST,
            Transport::Udp,
            &query(77, qname, RecordType::A),
            t0(),
        );
        if denied {
            let (reply, _) = reply_of(action);
            assert_eq!(reply.response_code, ResponseCode::NXDomain, "{qname}");
            assert_eq!((reply.id, reply.recursion_available), (77, true));
            assert_eq!(reply.queries[0].name, name(qname));
            assert!(reply.answers.is_empty());
        } else {
            assert!(matches!(action, Action::SendUdp { .. }), "{qname}");
        }
    }
}

#[test]
fn a_name_the_policy_denies_gets_nxdomain_without_a_query_leaving_even_for_aaaa() {
    let mut resolver = resolver_with(DnsConfig::default(), false, DEFAULT_MAX_PENDING);
    for qtype in [RecordType::A, RecordType::AAAA, RecordType::TXT] {
        let action = resolver.on_denied_guest_query(
            GUEST,
            Transport::Udp,
            &query(9, "other.example.", qtype),
            t0(),
        );
        let (reply, resolved) = reply_of(action);
        assert_eq!(reply.response_code, ResponseCode::NXDomain, "{qtype}");
        assert!(resolved.is_empty());
    }
    assert_eq!(resolver.pending_count(), 0);
    let malformed = resolver.on_denied_guest_query(GUEST, Transport::Udp, &[0, 1, 0], t0());
    assert_eq!(malformed, Action::Drop);
}

#[test]
fn the_question_of_a_query_is_read_and_an_answer_has_none() {
    let bytes = query(5, "API.example.", RecordType::AAAA);
    let read = question(&bytes).expect("a question");
    assert_eq!(read.query_type, RecordType::AAAA);
    assert_eq!(crate::dns::plain_name(&read.name), "api.example");
    let reply = answer(&bytes, ResponseCode::NoError, vec![]);
    assert_eq!(question(&reply), None);
    assert_eq!(question(b"junk"), None);
}

#[test]
fn aaaa_on_an_ipv4_only_host_is_answered_empty_locally_and_stripped_from_answers() {
    let mut resolver = resolver_with(DnsConfig::default(), false, DEFAULT_MAX_PENDING);
    let action = resolver.on_guest_query(
        GUEST,
        Transport::Udp,
        &query(1, "v6.example.", RecordType::AAAA),
        t0(),
    );
    let (reply, _) = reply_of(action);
    assert_eq!(reply.response_code, ResponseCode::NoError);
    assert!(reply.answers.is_empty());
    assert_eq!(resolver.pending_count(), 0);

    let (_, upstream) = sent_udp(resolver.on_guest_query(
        GUEST,
        Transport::Udp,
        &query(2, "v6.example.", RecordType::ANY),
        t0(),
    ));
    let aaaa = Record::from_rdata(
        name("v6.example."),
        60,
        RData::AAAA(AAAA("2001:db8::1".parse().expect("v6"))),
    );
    let response = answer(
        &upstream,
        ResponseCode::NoError,
        vec![aaaa, a("v6.example.", "198.51.100.6")],
    );
    let (reply, resolved) = reply_of(resolver.on_upstream_answer(
        first_ns(),
        Transport::Udp,
        &response,
        t0(),
        &no_internal,
    ));
    assert_eq!(reply.answers.len(), 1);
    assert_eq!(reply.answers[0].record_type(), RecordType::A);
    assert_eq!(resolved.len(), 1);
}

#[test]
fn a_cname_chain_to_a_private_address_is_answered_noerror_with_the_chain_only() {
    let mut resolver = resolver();
    let (_, upstream) = sent_udp(resolver.on_guest_query(
        GUEST,
        Transport::Udp,
        &query(4, "app.example.", RecordType::A),
        t0(),
    ));
    let chain = vec![
        Record::from_rdata(
            name("app.example."),
            60,
            RData::CNAME(CNAME(name("lan.example."))),
        ),
        a("lan.example.", "10.0.0.8"),
    ];
    let response = answer(&upstream, ResponseCode::NoError, chain);
    let (reply, resolved) = reply_of(resolver.on_upstream_answer(
        first_ns(),
        Transport::Udp,
        &response,
        t0(),
        &no_internal,
    ));
    assert_eq!(reply.response_code, ResponseCode::NoError);
    assert_eq!(reply.answers.len(), 1);
    assert_eq!(reply.answers[0].record_type(), RecordType::CNAME);
    assert!(resolved.is_empty());
}

#[test]
fn an_allowed_internal_address_is_kept_and_reported() {
    let mut resolver = resolver();
    let (_, upstream) = sent_udp(resolver.on_guest_query(
        GUEST,
        Transport::Udp,
        &query(4, "db.corp.", RecordType::A),
        t0(),
    ));
    let response = answer(
        &upstream,
        ResponseCode::NoError,
        vec![a("db.corp.", "10.1.1.1")],
    );
    let allow_corp = |resolved: &ResolvedAddress| resolved.query_name == name("db.corp.");
    let (_, resolved) = reply_of(resolver.on_upstream_answer(
        first_ns(),
        Transport::Udp,
        &response,
        t0(),
        &allow_corp,
    ));
    assert_eq!(resolved.len(), 1);
}

#[test]
fn beyond_the_pending_limit_a_query_gets_servfail_at_once() {
    let mut resolver = resolver_with(DnsConfig::default(), true, 2);
    let now = t0();
    for id in 0..2 {
        let action = resolver.on_guest_query(
            GUEST,
            Transport::Udp,
            &query(id, "a.example.", RecordType::A),
            now,
        );
        assert!(matches!(action, Action::SendUdp { .. }));
    }
    let (reply, _) = reply_of(resolver.on_guest_query(
        GUEST,
        Transport::Udp,
        &query(9, "a.example.", RecordType::A),
        now,
    ));
    assert_eq!((reply.id, reply.response_code), (9, ResponseCode::ServFail));
    assert_eq!(resolver.pending_count(), 2);
}

#[test]
fn malformed_guest_queries_get_formerr_when_the_header_is_readable_else_nothing() {
    let mut resolver = resolver();
    let whole = query(0xABCD, "www.example.com.", RecordType::A);
    assert_eq!(
        resolver.on_guest_query(GUEST, Transport::Udp, &whole[..11], t0()),
        Action::Drop
    );
    let (reply, _) = reply_of(resolver.on_guest_query(GUEST, Transport::Udp, &whole[..20], t0()));
    assert_eq!(
        (reply.id, reply.response_code),
        (0xABCD, ResponseCode::FormErr)
    );

    let mut two_questions = Message::from_vec(&whole).expect("query");
    two_questions.add_query(Query::query(name("b.example."), RecordType::A));
    let bytes = two_questions.to_vec().expect("encodes");
    let (reply, _) = reply_of(resolver.on_guest_query(GUEST, Transport::Udp, &bytes, t0()));
    assert_eq!(reply.response_code, ResponseCode::FormErr);

    let mut an_answer = Message::from_vec(&whole).expect("query");
    an_answer.metadata.message_type = MessageType::Response;
    let bytes = an_answer.to_vec().expect("encodes");
    assert_eq!(
        resolver.on_guest_query(GUEST, Transport::Udp, &bytes, t0()),
        Action::Drop
    );
    assert_eq!(resolver.pending_count(), 0);
}

#[test]
fn a_bad_pending_limit_is_an_error() {
    for value in [0, MAX_PENDING_LIMIT + 1] {
        let host = HostDns {
            nameservers: vec![first_ns()],
            has_ipv6_route: true,
            max_pending: value,
            id_seed: 1,
        };
        let error = Resolver::<u32>::new(&DnsConfig::default(), &host).unwrap_err();
        assert_eq!(error, ResolverError::MaxPending { value });
    }
}

/// Random bytes, and truncations and bit flips of real messages, as guest queries and as
/// upstream answers: nothing panics and the pending table stays within its limit.
#[test]
fn random_and_truncated_bytes_never_panic_and_state_stays_bounded() {
    const ROUNDS: usize = 20_000;
    const MAX_PENDING: usize = 8;
    let mut rng = Xorshift64::new(0xD1CE_5EED);
    let mut resolver = resolver_with(DnsConfig::default(), false, MAX_PENDING);
    let mut now = t0();
    let mut last_upstream = query(1, "seed.example.", RecordType::A);
    let (mut forwarded, mut replied) = (0, 0);
    for round in 0..ROUNDS {
        let roll = rng.next_u64();
        let template = if roll & 1 == 0 {
            query((roll >> 8) as u16, "fuzz.example.", RecordType::A)
        } else {
            answer(
                &last_upstream,
                ResponseCode::NoError,
                vec![a("fuzz.example.", "10.0.0.1")],
            )
        };
        let bytes = mutate(&mut rng, template);
        let transport = if roll & 2 == 0 {
            Transport::Udp
        } else {
            Transport::Tcp
        };
        let actions = if roll & 4 == 0 {
            vec![resolver.on_guest_query(GUEST, transport, &bytes, now)]
        } else {
            let from = if roll & 8 == 0 {
                first_ns()
            } else {
                second_ns()
            };
            vec![resolver.on_upstream_answer(from, transport, &bytes, now, &no_internal)]
        };
        for action in actions {
            match action {
                Action::SendUdp { bytes, .. } | Action::SendTcp { bytes, .. } => {
                    forwarded += 1;
                    last_upstream = bytes;
                }
                Action::Reply { .. } => replied += 1,
                Action::Drop => {}
            }
        }
        if round % 64 == 0 {
            now += Duration::from_secs(1);
            let _ = resolver.on_timeout(now);
        }
        assert!(resolver.pending_count() <= MAX_PENDING);
    }
    // The mutations must reach the forwarding and answering paths, not only the parser.
    assert!(
        forwarded > 100 && replied > 100,
        "{forwarded} sent, {replied} replies"
    );
}

/// One of: random bytes, a prefix, or a few flipped bytes of `template`.
fn mutate(rng: &mut Xorshift64, mut template: Vec<u8>) -> Vec<u8> {
    match rng.next_u64() % 3 {
        0 => (0..rng.next_u64() % 64)
            .map(|_| rng.next_u64() as u8)
            .collect(),
        1 => {
            let keep = (rng.next_u64() as usize) % (template.len() + 1);
            template.truncate(keep);
            template
        }
        _ => {
            let len = template.len().max(1);
            for _ in 0..1 + rng.next_u64() % 4 {
                let at = (rng.next_u64() as usize) % len;
                if let Some(byte) = template.get_mut(at) {
                    *byte ^= rng.next_u64() as u8;
                }
            }
            template
        }
    }
}
