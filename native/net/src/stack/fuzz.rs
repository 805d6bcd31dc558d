//! A fixed-budget randomized test of the stack under a hostile guest and an erratic host:
//! random bytes, bit-flipped and valid segments on a handful of tuples, dial results, host
//! EOFs and resets, data both ways, and a QEMU reader that drains the queue only now and then.
//! Nothing may panic, the flows stay within the cap and the queue within its capacity.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use smoltcp::wire::TcpControl;

use super::guest::{parse_segment, GuestConnection, Harness, PUBLIC};
use super::{Action, DialError, Event, FlowId, StackOptions};
use crate::policy::Policy;
use crate::wire::fuzz::XorShift;

const MAX_CONNECTIONS: usize = 4;

fn connections() -> Vec<GuestConnection> {
    let destinations = [
        SocketAddrV4::new(PUBLIC, 443),
        SocketAddrV4::new(PUBLIC, 80),
        SocketAddrV4::new(Ipv4Addr::new(10, 1, 2, 3), 22),
    ];
    (0..9)
        .map(|index| GuestConnection::new(41000 + index as u16, destinations[index % 3]))
        .collect()
}

fn guest_frame(rng: &mut XorShift, conns: &mut [GuestConnection]) -> Vec<u8> {
    let conn = &mut conns[rng.below(conns.len())];
    let controls = [
        TcpControl::None,
        TcpControl::Psh,
        TcpControl::Syn,
        TcpControl::Fin,
        TcpControl::Rst,
    ];
    // Sometimes in sequence, sometimes anywhere.
    if rng.below(8) == 0 {
        conn.seq = rng.next() as u32;
        conn.ack = rng.next() as u32;
    }
    let payload: Vec<u8> = (0..rng.below(1400)).map(|_| rng.next() as u8).collect();
    match rng.below(6) {
        0 => conn.syn(),
        1 => {
            let mut frame = conn.send(controls[rng.below(controls.len())], &payload);
            for _ in 0..=rng.below(4) {
                let at = rng.below(frame.len());
                frame[at] ^= 1 << rng.below(8);
            }
            frame
        }
        2 => (0..rng.below(200)).map(|_| rng.next() as u8).collect(),
        _ => conn.send(controls[rng.below(controls.len())], &payload),
    }
}

/// Drains the queue to the guest and mostly answers as a real guest would (ACKs, sometimes a
/// FIN), so that many flows get past the handshake into data and close.
fn answer_like_a_guest(rng: &mut XorShift, harness: &mut Harness, conns: &mut [GuestConnection]) {
    for frame in harness.take_frames() {
        let Some(segment) = parse_segment(&frame) else {
            continue;
        };
        let Some(conn) = conns
            .iter_mut()
            .find(|conn| conn.guest_addr() == segment.dst && conn.dst == segment.src)
        else {
            continue;
        };
        let occupied = segment.payload.len() as u32
            + u32::from(matches!(segment.control, TcpControl::Syn | TcpControl::Fin));
        if occupied == 0 || rng.below(8) == 0 {
            continue;
        }
        if let Some(ack) = segment.ack {
            conn.seq = ack;
        }
        conn.ack = segment.seq.wrapping_add(occupied);
        let control = if rng.below(6) == 0 {
            TcpControl::Fin
        } else {
            TcpControl::None
        };
        let reply = conn.send(control, &[]);
        harness.send(&reply);
    }
}

fn host_event(rng: &mut XorShift, flow_id: FlowId) -> Event {
    let results = [
        Ok(()),
        Ok(()),
        Err(DialError::Refused),
        Err(DialError::Unreachable),
        Err(DialError::TimedOut),
    ];
    match rng.below(6) {
        0..=3 => Event::Dialed {
            flow_id,
            result: results[rng.below(results.len())],
        },
        4 => Event::HostEof { flow_id },
        _ => Event::HostReset { flow_id },
    }
}

fn move_data(rng: &mut XorShift, harness: &mut Harness, flow_id: FlowId) {
    let data: Vec<u8> = (0..rng.below(20_000)).map(|_| rng.next() as u8).collect();
    if let Ok(capacity) = harness.stack.guest_send_capacity(flow_id) {
        if let Ok(taken) = harness.stack.send_to_guest(flow_id, &data) {
            assert!(taken <= capacity, "took {taken} with room for {capacity}");
        }
    }
    let limit = rng.below(5000);
    let _ = harness
        .stack
        .write_guest_data(flow_id, |pending| pending.len().min(limit));
}

#[test]
fn hostile_guest_and_erratic_host_never_panic_and_stay_bounded() {
    let options = StackOptions {
        max_connections: MAX_CONNECTIONS,
        socket_buffer_len: 4096,
        outbound_queue_len: 128 * 1024,
        ..StackOptions::default()
    };
    let mut harness = Harness::new(Policy::public_only(), options);
    let capacity = harness.stack.to_guest().capacity();
    let mut conns = connections();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut known_flows: Vec<FlowId> = Vec::new();
    let mut seen = Seen::default();
    for _ in 0..20_000 {
        match rng.below(10) {
            0..=5 => {
                let frame = guest_frame(&mut rng, &mut conns);
                harness.send(&frame);
            }
            6 | 7 if !known_flows.is_empty() => {
                let flow_id = known_flows[rng.below(known_flows.len())];
                if rng.below(2) == 0 {
                    let _ = harness
                        .stack
                        .handle(harness.now, host_event(&mut rng, flow_id));
                } else {
                    move_data(&mut rng, &mut harness, flow_id);
                }
            }
            _ => harness.advance(Duration::from_millis(rng.below(3000) as u64)),
        }
        for action in harness.actions() {
            match action {
                Action::Dial { flow_id, .. } => {
                    known_flows.push(flow_id);
                    seen.dials += 1;
                }
                Action::ShutdownWrite { .. } => seen.shutdowns += 1,
                Action::Close { .. } => seen.closes += 1,
            }
        }
        // Keep the flows the fuzzer can address few, as a real loop forgets closed ones.
        if known_flows.len() > 16 {
            known_flows.remove(0);
        }
        assert!(harness.stack.flow_count() <= MAX_CONNECTIONS);
        assert!(harness.stack.to_guest().queued_len() <= capacity);
        if rng.below(4) == 0 {
            answer_like_a_guest(&mut rng, &mut harness, &mut conns);
        }
    }
    // The budget must reach every kind of flow outcome, or it tests little.
    assert!(
        seen.dials > 200 && seen.shutdowns > 10 && seen.closes > 20,
        "{seen:?}"
    );
}

#[derive(Debug, Default)]
struct Seen {
    dials: usize,
    shutdowns: usize,
    closes: usize,
}
