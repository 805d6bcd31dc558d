//! The stack against a scripted guest: connect-first decisions, data both ways with
//! backpressure, half-close both ways and the connection cap.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::time::Duration;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetFrame, Icmpv6Packet, Icmpv6Repr, Ipv6Packet,
    NdiscRepr, TcpControl,
};

use super::guest::{config, GuestConnection, Harness, Segment, PUBLIC};
use super::{
    Action, ConfigError, DialError, Event, FlowError, FlowId, IngressError, NetConfig,
    NoResolvedNames, Received, Stack, StackOptions,
};
use crate::policy::{Evaluator, HostAddresses, Policy};
use crate::wire::classified::Classified;
use crate::wire::test_frames::{self, GATEWAY_V4, GATEWAY_V6, GUEST_V4, GUEST_V6, PUBLIC_V6};

const TICK: Duration = Duration::from_millis(20);

fn public_dst(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(PUBLIC, port)
}

fn public_v6_dst(port: u16) -> SocketAddrV6 {
    SocketAddrV6::new(PUBLIC_V6, port, 0, 0)
}

fn options() -> StackOptions {
    StackOptions {
        socket_buffer_len: 8 * 1024,
        ..StackOptions::default()
    }
}

/// Sends the guest's SYN and returns the flow the stack asked to dial.
fn syn_to_dial(harness: &mut Harness, conn: &GuestConnection) -> FlowId {
    assert!(harness.send(&conn.syn()));
    match harness.actions().as_slice() {
        [Action::Dial { flow_id, dst }] => {
            assert_eq!(*dst, conn.dst);
            *flow_id
        }
        other => panic!("expected one dial, got {other:?}"),
    }
}

/// SYN, dial, SYN-ACK, ACK: an established flow.
fn establish(harness: &mut Harness, conn: &mut GuestConnection) -> FlowId {
    let flow_id = syn_to_dial(harness, conn);
    assert!(
        harness.take_frames().is_empty(),
        "no SYN-ACK before the dial"
    );
    let event = Event::Dialed {
        flow_id,
        result: Ok(()),
    };
    harness.stack.handle(harness.now, event).expect("dialed");
    let segments = harness.take_segments();
    let [syn_ack] = segments.as_slice() else {
        panic!("expected one SYN-ACK, got {segments:?}");
    };
    assert_eq!(syn_ack.control, TcpControl::Syn);
    assert_eq!(syn_ack.src, conn.dst);
    assert_eq!(syn_ack.dst, conn.guest_addr());
    assert_eq!(syn_ack.ack, Some(conn.seq + 1));
    conn.seq += 1;
    conn.ack = syn_ack.seq.wrapping_add(1);
    assert!(harness.send(&conn.send(TcpControl::None, &[])));
    flow_id
}

fn assert_reset_for_syn(segments: &[Segment], conn: &GuestConnection) {
    let [reset] = segments else {
        panic!("expected one RST, got {segments:?}");
    };
    assert_eq!(reset.control, TcpControl::Rst);
    assert_eq!(reset.src, conn.dst);
    assert_eq!(reset.dst, conn.guest_addr());
    assert_eq!(reset.ack, Some(conn.seq + 1));
}

/// Guest side of receiving: keeps in-order payload, returns whether anything new came.
fn absorb(conn: &mut GuestConnection, segments: &[Segment], received: &mut Vec<u8>) -> bool {
    let mut advanced = false;
    for segment in segments {
        if segment.seq == conn.ack && !segment.payload.is_empty() {
            received.extend_from_slice(&segment.payload);
            conn.ack = conn.ack.wrapping_add(segment.payload.len() as u32);
            advanced = true;
        }
        if segment.control == TcpControl::Fin
            && segment.seq.wrapping_add(segment.payload.len() as u32) == conn.ack
        {
            conn.ack = conn.ack.wrapping_add(1);
            advanced = true;
        }
    }
    advanced
}

fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|index| (index as u8).wrapping_mul(31).wrapping_add(salt))
        .collect()
}

#[test]
fn denied_syn_gets_a_reset_at_once_and_no_dial() {
    let mut harness = Harness::new(Policy::public_only(), options());
    let conn = GuestConnection::new(40001, SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 5), 80));
    assert!(harness.send(&conn.syn()));
    assert_eq!(harness.actions(), []);
    assert_reset_for_syn(&harness.take_segments(), &conn);
    assert_eq!(harness.stack.flow_count(), 0);
}

#[test]
fn allowed_syn_is_dialed_and_the_handshake_completes_after_the_dial() {
    let mut harness = Harness::new(Policy::public_only(), options());
    let mut conn = GuestConnection::new(40002, public_dst(443));
    let flow_id = establish(&mut harness, &mut conn);
    assert_eq!(harness.stack.guest_data_len(flow_id), Ok(0));
    assert_eq!(harness.stack.guest_send_capacity(flow_id), Ok(8 * 1024));
}

#[test]
fn retransmitted_syn_while_dialing_is_not_a_second_flow() {
    let mut harness = Harness::new(Policy::allow_all(), options());
    let conn = GuestConnection::new(40003, public_dst(80));
    syn_to_dial(&mut harness, &conn);
    assert!(harness.send(&conn.syn()));
    assert_eq!(harness.actions(), []);
    assert_eq!(harness.stack.flow_count(), 1);
}

#[test]
fn refused_dial_resets_the_guest() {
    let mut harness = Harness::new(Policy::allow_all(), options());
    let conn = GuestConnection::new(40004, public_dst(81));
    let flow_id = syn_to_dial(&mut harness, &conn);
    let event = Event::Dialed {
        flow_id,
        result: Err(DialError::Refused),
    };
    harness.stack.handle(harness.now, event).expect("dialed");
    assert_reset_for_syn(&harness.take_segments(), &conn);
    assert_eq!(harness.stack.flow_count(), 0);
}

#[test]
fn unreachable_dial_is_silent_and_the_next_syn_dials_again() {
    let mut harness = Harness::new(Policy::allow_all(), options());
    let conn = GuestConnection::new(40005, public_dst(82));
    for result in [Err(DialError::Unreachable), Err(DialError::TimedOut)] {
        let flow_id = syn_to_dial(&mut harness, &conn);
        let event = Event::Dialed { flow_id, result };
        harness.stack.handle(harness.now, event).expect("dialed");
        assert!(harness.take_frames().is_empty());
        assert_eq!(harness.stack.flow_count(), 0);
    }
}

#[test]
fn guest_reset_while_dialing_forgets_the_flow() {
    let mut harness = Harness::new(Policy::allow_all(), options());
    let conn = GuestConnection::new(40006, public_dst(83));
    let flow_id = syn_to_dial(&mut harness, &conn);
    assert!(harness.send(&conn.frame(TcpControl::Rst, None, &[])));
    assert_eq!(harness.stack.flow_count(), 0);
    let event = Event::Dialed {
        flow_id,
        result: Ok(()),
    };
    assert_eq!(
        harness.stack.handle(harness.now, event),
        Err(FlowError::Unknown(flow_id))
    );
}

#[test]
fn syn_beyond_max_connections_gets_a_reset() {
    let options = StackOptions {
        max_connections: 1,
        ..options()
    };
    let mut harness = Harness::new(Policy::allow_all(), options);
    let mut first = GuestConnection::new(40007, public_dst(443));
    establish(&mut harness, &mut first);
    let second = GuestConnection::new(40008, public_dst(443));
    assert!(harness.send(&second.syn()));
    assert_eq!(harness.actions(), []);
    assert_reset_for_syn(&harness.take_segments(), &second);
}

#[test]
fn a_flow_in_time_wait_gives_its_slot_to_a_new_syn_at_the_cap() {
    let options = StackOptions {
        max_connections: 1,
        ..options()
    };
    let mut harness = Harness::new(Policy::allow_all(), options);
    let mut first = GuestConnection::new(40010, public_dst(80));
    let first_flow = establish(&mut harness, &mut first);
    // The host closes first, as an HTTP/1.0 server does: the gateway's side ends in TIME-WAIT.
    let event = Event::HostEof {
        flow_id: first_flow,
    };
    harness.stack.handle(harness.now, event).expect("open");
    let fin = harness.take_segments();
    let [fin] = fin.as_slice() else {
        panic!("expected the gateway's FIN, got {fin:?}");
    };
    assert_eq!(fin.control, TcpControl::Fin);
    first.ack = fin.seq.wrapping_add(1);
    assert!(harness.send(&first.send(TcpControl::Fin, &[])));
    harness.advance(TICK);
    assert!(harness.actions().contains(&Action::ShutdownWrite {
        flow_id: first_flow
    }));
    let second = GuestConnection::new(40011, public_dst(80));
    assert!(harness.send(&second.syn()));
    let actions = harness.actions();
    assert!(
        actions.contains(&Action::Close {
            flow_id: first_flow
        }),
        "{actions:?}"
    );
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Dial { dst, .. } if *dst == second.dst)),
        "{actions:?}"
    );
}

#[test]
fn a_published_port_client_is_connected_to_the_guest_port_both_ways() {
    let mut harness = Harness::new(Policy::public_only(), options());
    let peer = "127.0.0.1:40000".parse().expect("an address");
    let flow_id = harness
        .stack
        .connect_to_guest(harness.now, 8080, peer)
        .expect("public_only lets published ports in");
    let segments = harness.take_segments();
    let [syn] = segments.as_slice() else {
        panic!("expected one SYN, got {segments:?}");
    };
    assert_eq!(syn.control, TcpControl::Syn);
    assert_eq!(
        syn.dst,
        std::net::SocketAddr::from(SocketAddrV4::new(GUEST_V4, 8080))
    );
    assert_eq!(
        harness.stack.guest_send_capacity(flow_id),
        Ok(0),
        "nothing before the handshake"
    );
    // The guest's server answers from 8080 to the gateway's port.
    let mut server = GuestConnection::new(8080, syn.src);
    server.ack = syn.seq.wrapping_add(1);
    assert!(harness.send(&server.frame(TcpControl::Syn, Some(server.ack), &[])));
    server.seq += 1;
    harness.take_segments();
    assert_eq!(harness.stack.send_to_guest(flow_id, b"request"), Ok(7));
    harness.advance(TICK);
    let sent: Vec<u8> = harness
        .take_segments()
        .into_iter()
        .flat_map(|s| s.payload)
        .collect();
    assert_eq!(sent, b"request");
    server.ack = server.ack.wrapping_add(7);
    assert!(harness.send(&server.send(TcpControl::Psh, b"reply")));
    assert_eq!(harness.take_guest_data(flow_id), b"reply");
}

#[test]
fn none_refuses_published_port_clients() {
    let mut harness = Harness::new(Policy::none(), options());
    let peer: std::net::SocketAddr = "127.0.0.1:40001".parse().expect("an address");
    assert_eq!(
        harness.stack.connect_to_guest(harness.now, 8080, peer),
        Err(IngressError::Denied(peer.ip()))
    );
    assert_eq!(harness.stack.flow_count(), 0);
}

#[test]
fn data_calls_on_a_dialing_flow_are_refused() {
    let mut harness = Harness::new(Policy::allow_all(), options());
    let conn = GuestConnection::new(40009, public_dst(80));
    let flow_id = syn_to_dial(&mut harness, &conn);
    assert_eq!(
        harness.stack.send_to_guest(flow_id, b"x"),
        Err(FlowError::NotConnected(flow_id))
    );
    assert_eq!(
        harness.stack.guest_data_len(FlowId(99)),
        Err(FlowError::Unknown(FlowId(99)))
    );
}

#[test]
fn host_data_reaches_the_guest_byte_exact_within_the_socket_buffer() {
    let mut harness = Harness::new(Policy::allow_all(), options());
    let mut conn = GuestConnection::new(40010, public_dst(80));
    let flow_id = establish(&mut harness, &mut conn);
    let sent = pattern(100_000, 7);
    let mut offset = 0;
    let mut received = Vec::new();
    for _ in 0..10_000 {
        if received.len() == sent.len() {
            break;
        }
        let capacity = harness.stack.guest_send_capacity(flow_id).expect("open");
        assert!(capacity <= 8 * 1024, "bounded by the socket buffer");
        let end = (offset + capacity).min(sent.len());
        let taken = harness
            .stack
            .send_to_guest(flow_id, &sent[offset..end])
            .expect("open");
        assert_eq!(
            taken,
            end - offset,
            "the capacity it reported is what it takes"
        );
        offset += taken;
        harness.advance(TICK);
        let segments = harness.take_segments();
        if absorb(&mut conn, &segments, &mut received) {
            assert!(harness.send(&conn.send(TcpControl::None, &[])));
        }
    }
    assert_eq!(received, sent);
}

#[test]
fn guest_data_reaches_the_host_byte_exact_and_only_what_the_host_took_is_dropped() {
    let mut harness = Harness::new(Policy::allow_all(), options());
    let mut conn = GuestConnection::new(40011, public_dst(80));
    let flow_id = establish(&mut harness, &mut conn);
    let sent = pattern(60_000, 3);
    let mut acked = 0usize;
    let mut window = 8 * 1024usize;
    let mut host = Vec::new();
    for _ in 0..10_000 {
        if host.len() == sent.len() {
            break;
        }
        let in_flight = sent.len().min(acked + window);
        let next = (conn.seq.wrapping_sub(1001)) as usize;
        if next < in_flight {
            let end = (next + 1000).min(in_flight);
            assert!(harness.send(&conn.send(TcpControl::None, &sent[next..end])));
        }
        // A slow host: at most 700 bytes per turn.
        let took = harness
            .stack
            .write_guest_data(flow_id, |pending| {
                let take = pending.len().min(700);
                host.extend_from_slice(&pending[..take]);
                take
            })
            .expect("open");
        assert!(took <= 700);
        harness.advance(TICK);
        for segment in harness.take_segments() {
            if let Some(ack) = segment.ack {
                acked = acked.max(ack.wrapping_sub(1001) as usize);
            }
            window = usize::from(segment.window);
        }
    }
    assert_eq!(host, sent);
}

#[test]
fn guest_fin_shuts_the_host_write_side_after_its_data() {
    let mut harness = Harness::new(Policy::allow_all(), options());
    let mut conn = GuestConnection::new(40012, public_dst(80));
    let flow_id = establish(&mut harness, &mut conn);
    assert!(harness.send(&conn.send(TcpControl::None, b"request")));
    assert!(harness.send(&conn.send(TcpControl::Fin, &[])));
    harness.advance(TICK);
    assert_eq!(harness.actions(), [], "not before the host took the data");
    let host = harness.take_guest_data(flow_id);
    harness.advance(TICK);
    assert_eq!(host, b"request");
    assert_eq!(harness.actions(), [Action::ShutdownWrite { flow_id }]);
    // The other direction still works after the guest's FIN.
    assert_eq!(harness.stack.send_to_guest(flow_id, b"reply"), Ok(5));
    harness.advance(TICK);
    let mut received = Vec::new();
    absorb(&mut conn, &harness.take_segments(), &mut received);
    assert_eq!(received, b"reply");
}

#[test]
fn host_eof_sends_fin_after_the_data_and_the_flow_closes() {
    let mut harness = Harness::new(Policy::allow_all(), options());
    let mut conn = GuestConnection::new(40013, public_dst(80));
    let flow_id = establish(&mut harness, &mut conn);
    assert_eq!(harness.stack.send_to_guest(flow_id, b"last words"), Ok(10));
    let eof = Event::HostEof { flow_id };
    harness.stack.handle(harness.now, eof).expect("open");
    harness.advance(TICK);
    let segments = harness.take_segments();
    let mut received = Vec::new();
    absorb(&mut conn, &segments, &mut received);
    assert_eq!(received, b"last words");
    assert!(segments
        .iter()
        .any(|segment| segment.control == TcpControl::Fin));
    // The guest still sends after the host's EOF, then closes too.
    assert!(harness.send(&conn.send(TcpControl::None, b"more")));
    assert!(harness.send(&conn.send(TcpControl::Fin, &[])));
    harness.advance(TICK);
    let host = harness.take_guest_data(flow_id);
    harness.advance(TICK);
    assert_eq!(host, b"more");
    assert_eq!(harness.actions(), [Action::ShutdownWrite { flow_id }]);
    // TIME-WAIT ends; the slot is free again.
    harness.advance(Duration::from_secs(30));
    assert_eq!(harness.actions(), [Action::Close { flow_id }]);
    assert_eq!(harness.stack.flow_count(), 0);
}

#[test]
fn host_reset_resets_the_guest_and_closes_the_flow() {
    let mut harness = Harness::new(Policy::allow_all(), options());
    let mut conn = GuestConnection::new(40014, public_dst(80));
    let flow_id = establish(&mut harness, &mut conn);
    let reset = Event::HostReset { flow_id };
    harness.stack.handle(harness.now, reset).expect("open");
    let segments = harness.take_segments();
    assert!(segments
        .iter()
        .any(|segment| segment.control == TcpControl::Rst));
    assert_eq!(harness.actions(), [Action::Close { flow_id }]);
}

#[test]
fn guest_is_reached_again_after_its_neighbour_entry_expires() {
    let mut harness = Harness::new(Policy::allow_all(), options());
    let mut conn = GuestConnection::new(40016, public_dst(80));
    let flow_id = establish(&mut harness, &mut conn);
    // smoltcp forgets a neighbour 60 s after it learnt it, and learns only from ARP.
    harness.advance(Duration::from_secs(70));
    assert_eq!(harness.stack.send_to_guest(flow_id, b"late"), Ok(4));
    harness.advance(TICK);
    let frames = harness.take_frames();
    assert!(
        frames.iter().any(|frame| is_arp_request_for_guest(frame)),
        "the gateway asks for the guest's MAC"
    );
    assert!(harness.send(&test_frames::arp(ArpOperation::Reply, GATEWAY_V4)));
    let mut received = Vec::new();
    for _ in 0..10 {
        harness.advance(Duration::from_secs(1));
        absorb(&mut conn, &harness.take_segments(), &mut received);
    }
    assert_eq!(received, b"late");
}

fn is_arp_request_for_guest(frame: &[u8]) -> bool {
    let Ok(ethernet) = EthernetFrame::new_checked(frame) else {
        return false;
    };
    let Ok(packet) = ArpPacket::new_checked(ethernet.payload()) else {
        return false;
    };
    matches!(
        ArpRepr::parse(&packet),
        Ok(ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            target_protocol_addr,
            ..
        }) if target_protocol_addr == GUEST_V4
    )
}

#[test]
fn guest_reset_of_an_open_flow_closes_it() {
    let mut harness = Harness::new(Policy::allow_all(), options());
    let mut conn = GuestConnection::new(40017, public_dst(80));
    let flow_id = establish(&mut harness, &mut conn);
    assert!(harness.send(&conn.send(TcpControl::Rst, &[])));
    assert_eq!(harness.actions(), [Action::Close { flow_id }]);
    assert_eq!(harness.stack.flow_count(), 0);
}

#[test]
fn a_second_dial_result_for_one_flow_is_refused() {
    let mut harness = Harness::new(Policy::allow_all(), options());
    let mut conn = GuestConnection::new(40018, public_dst(80));
    let flow_id = establish(&mut harness, &mut conn);
    let again = Event::Dialed {
        flow_id,
        result: Err(DialError::Refused),
    };
    assert_eq!(
        harness.stack.handle(harness.now, again),
        Err(FlowError::NotDialing(flow_id))
    );
    assert_eq!(harness.stack.flow_count(), 1);
}

#[test]
fn stray_segment_of_no_flow_gets_a_reset() {
    let mut harness = Harness::new(Policy::allow_all(), options());
    let mut conn = GuestConnection::new(40015, public_dst(80));
    conn.ack = 5000;
    assert!(harness.send(&conn.send(TcpControl::None, b"late")));
    let segments = harness.take_segments();
    assert!(segments
        .iter()
        .any(|segment| segment.control == TcpControl::Rst));
    assert_eq!(harness.actions(), []);
}

#[test]
fn configs_that_cannot_work_are_refused() {
    let base = NetConfig::default();
    let cases = [
        (NetConfig { prefix: 31, ..base }, ConfigError::Prefix(31)),
        (
            NetConfig {
                guest_v4: base.gateway_v4,
                ..base
            },
            ConfigError::SameAddress(base.gateway_v4),
        ),
        (
            NetConfig {
                guest_v4: Ipv4Addr::new(172, 16, 0, 5),
                ..base
            },
            ConfigError::NotOnOneLink {
                gateway: base.gateway_v4,
                guest: Ipv4Addr::new(172, 16, 0, 5),
                prefix: 30,
            },
        ),
        (NetConfig { mtu: 100, ..base }, ConfigError::Mtu(100)),
    ];
    for (config, expected) in cases {
        assert_eq!(config.validate(), Err(expected), "{config:?}");
    }
    assert_eq!(base.validate(), Ok(()));
    let no_connections = StackOptions {
        max_connections: 0,
        ..StackOptions::default()
    };
    assert_eq!(
        no_connections.validate(&base),
        Err(ConfigError::NoConnections)
    );
}

#[test]
fn ipv6_syn_is_dialed_and_carries_data_once_the_dial_succeeds() {
    let mut harness = Harness::new(Policy::public_only(), options());
    let mut conn = GuestConnection::new(40020, public_v6_dst(443));
    let flow_id = establish(&mut harness, &mut conn);
    assert!(harness.send(&conn.send(TcpControl::Psh, b"over v6")));
    assert_eq!(harness.take_guest_data(flow_id), b"over v6");
}

#[test]
fn denied_ipv6_syn_gets_an_ipv6_reset_at_once() {
    let mut harness = Harness::new(Policy::public_only(), options());
    let private = SocketAddrV6::new(Ipv6Addr::new(0xfd00, 0, 0, 9, 0, 0, 0, 5), 80, 0, 0);
    let conn = GuestConnection::new(40021, private);
    assert!(harness.send(&conn.syn()));
    assert_eq!(harness.actions(), []);
    let segments = harness.take_segments();
    assert!(segments.iter().all(|segment| segment.dst.is_ipv6()));
    assert_reset_for_syn(&segments, &conn);
}

#[test]
fn refused_ipv6_dial_resets_the_guest() {
    let mut harness = Harness::new(Policy::allow_all(), options());
    let conn = GuestConnection::new(40022, public_v6_dst(81));
    let flow_id = syn_to_dial(&mut harness, &conn);
    let event = Event::Dialed {
        flow_id,
        result: Err(DialError::Refused),
    };
    harness.stack.handle(harness.now, event).expect("dialed");
    assert_reset_for_syn(&harness.take_segments(), &conn);
}

#[test]
fn pings_to_the_gateway_are_answered_and_others_are_left_to_the_caller() {
    let mut harness = Harness::new(Policy::allow_all(), options());
    assert!(harness.send(&test_frames::icmpv4_echo(GATEWAY_V4, b"hi")));
    assert_eq!(harness.take_frames().len(), 1, "one echo reply over IPv4");
    assert!(harness.send(&test_frames::icmpv6_echo(GATEWAY_V6, b"hi")));
    assert_eq!(harness.take_frames().len(), 1, "one echo reply over IPv6");
    assert!(!harness.send(&test_frames::icmpv6_echo(PUBLIC_V6, b"hi")));
    assert!(harness.take_frames().is_empty());
}

#[test]
fn a_link_without_ipv6_terminates_no_ipv6() {
    let evaluator = Evaluator::new(Policy::allow_all(), HostAddresses::new([]));
    let link = config().without_ipv6();
    let mut stack = Stack::new(link, options(), evaluator, Duration::ZERO).expect("config");
    let solicitation = test_frames::neighbor_solicitation(GATEWAY_V6, 255);
    assert!(matches!(
        stack.receive_frame(Duration::ZERO, &solicitation, &NoResolvedNames),
        Received::NotHandled(Classified::Ignored(_))
    ));
    let syn = GuestConnection::new(40023, public_v6_dst(443)).syn();
    assert!(matches!(
        stack.receive_frame(Duration::ZERO, &syn, &NoResolvedNames),
        Received::NotHandled(Classified::Tcp(_))
    ));
    assert_eq!(stack.next_action(), None);
    assert!(stack.to_guest().is_empty());
}

/// Whether `frame` is the gateway's neighbour solicitation for the guest's IPv6 address.
fn is_solicitation_for_the_guest(frame: &[u8]) -> bool {
    let Ok(ethernet) = EthernetFrame::new_checked(frame) else {
        return false;
    };
    let Ok(ip) = Ipv6Packet::new_checked(ethernet.payload()) else {
        return false;
    };
    let Ok(icmp) = Icmpv6Packet::new_checked(ip.payload()) else {
        return false;
    };
    let repr = Icmpv6Repr::parse(
        &ip.src_addr(),
        &ip.dst_addr(),
        &icmp,
        &ChecksumCapabilities::default(),
    );
    matches!(
        repr,
        Ok(Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit { target_addr, .. })) if target_addr == GUEST_V6
    )
}

#[test]
fn the_guests_neighbour_advertisement_lets_the_stack_answer_over_ipv6() {
    // No solicitation from the guest first: the stack does not know the guest's MAC, so it
    // must ask and learn it from the answer, as it does once its neighbour entry expires.
    let evaluator = Evaluator::new(Policy::allow_all(), HostAddresses::new([]));
    let mut stack = Stack::new(config(), options(), evaluator, Duration::ZERO).expect("config");
    let conn = GuestConnection::new(40024, public_v6_dst(443));
    let syn = conn.syn();
    let handled = stack.receive_frame(Duration::ZERO, &syn, &NoResolvedNames);
    assert_eq!(handled, Received::Handled);
    let Some(Action::Dial { flow_id, .. }) = stack.next_action() else {
        panic!("expected a dial");
    };
    let dialed = Event::Dialed {
        flow_id,
        result: Ok(()),
    };
    stack.handle(Duration::ZERO, dialed).expect("dialed");
    let mut harness = Harness::from_stack(stack);
    let frames = harness.take_frames();
    assert!(
        frames
            .iter()
            .any(|frame| is_solicitation_for_the_guest(frame)),
        "the stack asks for the guest's MAC"
    );
    assert!(harness.send(&test_frames::neighbor_advertisement(GATEWAY_V6)));
    harness.advance(TICK);
    let segments = harness.take_segments();
    assert!(
        segments
            .iter()
            .any(|segment| segment.control == TcpControl::Syn && segment.dst == conn.guest_addr()),
        "a SYN-ACK once the guest's MAC is known: {segments:?}"
    );
}

#[test]
fn the_guest_may_send_from_the_dial_until_its_fin() {
    let mut harness = Harness::new(Policy::allow_all(), options());
    let mut conn = GuestConnection::new(40_100, public_dst(443));
    let flow_id = syn_to_dial(&mut harness, &conn);
    let dialed = Event::Dialed {
        flow_id,
        result: Ok(()),
    };
    harness.stack.handle(harness.now, dialed).expect("dialed");
    // SYN-RECEIVED: the guest has not even acknowledged, and every byte is still to come.
    assert!(harness.stack.guest_may_send(flow_id));
    let segments = harness.take_segments();
    conn.seq += 1;
    conn.ack = segments[0].seq.wrapping_add(1);
    assert!(harness.send(&conn.send(TcpControl::None, &[])));
    assert!(harness.stack.guest_may_send(flow_id));
    assert!(harness.send(&conn.send(TcpControl::Fin, &[])));
    assert!(!harness.stack.guest_may_send(flow_id));
}
