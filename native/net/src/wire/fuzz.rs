//! A fixed-budget randomized test of everything the guest controls: random bytes, truncated
//! valid frames and bit-flipped valid frames go through framing, classification and
//! reassembly. Nothing may panic and the reassembly buffer must stay within its byte cap.

use std::time::{Duration, Instant};

use smoltcp::wire::{ArpOperation, IpAddress, IpProtocol, TcpControl};

use super::classify::{Classified, Classifier};
use super::framing::{encode_frame, FrameDecoder, LENGTH_PREFIX_LEN};
use super::reassembly::{Reassembler, ReassemblyLimits};
use super::test_frames::*;

/// A small xorshift64 generator: deterministic, so a failure reproduces from the seed.
pub(crate) struct XorShift(pub(crate) u64);

impl XorShift {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(crate) fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound.max(1) as u64) as usize
    }
}

fn valid_frames() -> Vec<Vec<u8>> {
    vec![
        arp(ArpOperation::Request, GATEWAY_V4),
        tcp(
            IpAddress::Ipv4(PUBLIC_V4),
            &tcp_repr(443, TcpControl::Syn, None, &[]),
        ),
        tcp(
            IpAddress::Ipv6(PUBLIC_V6),
            &tcp_repr(80, TcpControl::None, Some(1), b"GET /"),
        ),
        udp(IpAddress::Ipv4(GATEWAY_V4), 53, b"dns query"),
        udp(IpAddress::Ipv6(PUBLIC_V6), 4000, &pattern(300)),
        icmpv4_echo(PUBLIC_V4, &pattern(56)),
        icmpv6_echo(PUBLIC_V6, &pattern(56)),
        neighbor_solicitation(GATEWAY_V6, 255),
        ipv4_fragment(5, IpProtocol::Udp, 0, true, &pattern(64)),
        ipv4_fragment(5, IpProtocol::Udp, 64, false, &pattern(40)),
    ]
}

/// One hostile frame: random bytes, a truncated valid frame or a valid frame with bits flipped.
fn hostile_frame(rng: &mut XorShift, valid: &[Vec<u8>]) -> Vec<u8> {
    let base = &valid[rng.below(valid.len())];
    match rng.below(3) {
        0 => (0..rng.below(200)).map(|_| rng.next() as u8).collect(),
        1 => base[..rng.below(base.len() + 1)].to_vec(),
        _ => {
            let mut frame = base.clone();
            for _ in 0..=rng.below(3) {
                let at = rng.below(frame.len());
                frame[at] ^= 1 << rng.below(8);
            }
            frame
        }
    }
}

#[test]
fn hostile_frames_never_panic_and_reassembly_stays_within_its_cap() {
    let valid = valid_frames();
    let limits = ReassemblyLimits {
        max_bytes: 4096,
        max_sets: 8,
        timeout: Duration::from_secs(30),
    };
    let mut classifier = Classifier::new(gateway());
    let mut reassembler = Reassembler::new(limits);
    let start = Instant::now();
    let mut fragments_seen = 0;
    for seed in [
        0x9e37_79b9_7f4a_7c15_u64,
        0xdead_beef_cafe_f00d,
        0x0123_4567_89ab_cdef,
    ] {
        let mut rng = XorShift(seed);
        for case in 0..10_000u64 {
            let frame = hostile_frame(&mut rng, &valid);
            if let Classified::Ipv4Fragment(fragment) = classifier.classify(&frame) {
                fragments_seen += 1;
                let now = start + Duration::from_millis(case * 5);
                if let Ok(Some(datagram)) = reassembler.insert(fragment, now) {
                    let _ = classifier.classify_reassembled(&datagram);
                }
            }
            assert!(
                reassembler.held_bytes() <= limits.max_bytes,
                "seed {seed:#x} case {case}"
            );
            assert!(reassembler.set_count() <= limits.max_sets);
        }
    }
    // The flipped and truncated fragments must have reached the reassembler in numbers.
    assert!(fragments_seen > 500, "only {fragments_seen} fragments");
}

#[test]
fn a_random_stream_never_panics_and_stays_bounded() {
    for seed in [0x1234_5678_9abc_def1_u64, 0x0f0f_0f0f_f0f0_f0f0] {
        let mut rng = XorShift(seed);
        let mut decoder = FrameDecoder::new();
        let mut classifier = Classifier::new(gateway());
        for _ in 0..20_000 {
            let chunk: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
            decoder.push(&chunk);
            while let Ok(Some(frame)) = decoder.next_frame() {
                let _ = classifier.classify(frame);
            }
            if decoder.next_frame().is_err() {
                decoder = FrameDecoder::new();
            }
        }
    }
}

#[test]
fn a_stream_of_hostile_frames_in_random_chunks_yields_each_frame() {
    let valid = valid_frames();
    let mut rng = XorShift(0x5555_aaaa_3333_cccc);
    let mut stream = Vec::new();
    let mut sent = Vec::new();
    for _ in 0..5_000 {
        let mut frame = hostile_frame(&mut rng, &valid);
        frame.resize(frame.len().max(14), 0);
        let mut encoded = vec![0; LENGTH_PREFIX_LEN + frame.len()];
        encode_frame(&frame, &mut encoded).expect("valid length");
        stream.extend_from_slice(&encoded);
        sent.push(frame);
    }
    let mut decoder = FrameDecoder::new();
    let mut classifier = Classifier::new(gateway());
    let mut received = Vec::new();
    let mut rest = &stream[..];
    while !rest.is_empty() {
        let taken = decoder.push(&rest[..rng.below(3000).min(rest.len())]);
        rest = &rest[taken..];
        while let Some(frame) = decoder.next_frame().expect("valid stream") {
            let _ = classifier.classify(frame);
            received.push(frame.to_vec());
        }
    }
    assert_eq!(received, sent);
}
