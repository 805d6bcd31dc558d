//! A scripted guest for the tests: builds its TCP segments with smoltcp's `wire` emitters (via
//! the wire module's test frames) and parses what the stack sends it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet, Ipv6Packet,
    TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
};

use super::{Action, FlowId, Ipv6Link, NetConfig, NoResolvedNames, Received, Stack, StackOptions};
use crate::policy::{Evaluator, HostAddresses, Policy};
use crate::wire::framing::FrameDecoder;
use crate::wire::test_frames::{
    self, GATEWAY_MAC, GATEWAY_V4, GATEWAY_V6, GUEST_MAC, GUEST_V4, GUEST_V6,
};

pub const PUBLIC: Ipv4Addr = test_frames::PUBLIC_V4;

/// A TCP segment the stack sent to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub control: TcpControl,
    pub seq: u32,
    pub ack: Option<u32>,
    pub window: u16,
    pub payload: Vec<u8>,
}

pub fn config() -> NetConfig {
    NetConfig {
        gateway_v4: GATEWAY_V4,
        guest_v4: GUEST_V4,
        gateway_mac: GATEWAY_MAC,
        ipv6: Some(Ipv6Link {
            gateway: GATEWAY_V6,
            guest: GUEST_V6,
        }),
        ..NetConfig::default()
    }
}

/// A stack with `policy`, a clock, and the guest's ARP and neighbour solicitation for the
/// gateway already answered (as a booting guest does before its first SYN).
pub struct Harness {
    pub stack: Stack,
    pub now: Duration,
}

impl Harness {
    pub fn new(policy: Policy, options: StackOptions) -> Self {
        let evaluator = Evaluator::new(policy, HostAddresses::new([]));
        let stack = Stack::new(config(), options, evaluator, Duration::ZERO).expect("config");
        let mut harness = Self {
            stack,
            now: Duration::ZERO,
        };
        harness.send(&test_frames::arp(ArpOperation::Request, GATEWAY_V4));
        let replies = harness.take_frames();
        assert_eq!(replies.len(), 1, "one ARP reply");
        harness.send(&test_frames::neighbor_solicitation(GATEWAY_V6, 255));
        let replies = harness.take_frames();
        assert_eq!(replies.len(), 1, "one neighbour advertisement");
        harness
    }

    /// A harness around a stack whose guest has not yet announced itself.
    pub fn from_stack(stack: Stack) -> Self {
        Self {
            stack,
            now: Duration::ZERO,
        }
    }

    pub fn send(&mut self, frame: &[u8]) -> bool {
        matches!(
            self.stack.receive_frame(self.now, frame, &NoResolvedNames),
            Received::Handled
        )
    }

    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        self.stack.poll(self.now);
    }

    /// What the guest sent on an open flow and the stack holds, taken as by a host that
    /// accepts all of it.
    pub fn take_guest_data(&mut self, flow_id: FlowId) -> Vec<u8> {
        let mut host = Vec::new();
        self.stack
            .write_guest_data(flow_id, |pending| {
                host.extend_from_slice(pending);
                pending.len()
            })
            .expect("an open flow");
        host
    }

    pub fn actions(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.stack.next_action()).collect()
    }

    /// Every frame queued for the guest, drained.
    pub fn take_frames(&mut self) -> Vec<Vec<u8>> {
        let mut decoder = FrameDecoder::new();
        let mut frames = Vec::new();
        loop {
            let queue = self.stack.to_guest();
            if queue.is_empty() {
                break;
            }
            let mut taken = 0;
            let _ = queue.flush_with(|bytes| {
                taken = decoder.push(bytes);
                Ok::<_, ()>(taken)
            });
            while let Ok(Some(frame)) = decoder.next_frame() {
                frames.push(frame.to_vec());
            }
        }
        frames
    }

    pub fn take_segments(&mut self) -> Vec<Segment> {
        self.take_frames()
            .iter()
            .map(|frame| parse_segment(frame).expect("a TCP segment to the guest"))
            .collect()
    }
}

/// The TCP segment in `frame` (IPv4 or IPv6), checksums verified, or `None` for anything else.
pub fn parse_segment(frame: &[u8]) -> Option<Segment> {
    let ethernet = EthernetFrame::new_checked(frame).ok()?;
    if ethernet.dst_addr() != GUEST_MAC || ethernet.src_addr() != GATEWAY_MAC {
        return None;
    }
    let (src_ip, dst_ip, payload): (IpAddr, IpAddr, &[u8]) = match ethernet.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(ethernet.payload()).ok()?;
            if ip.next_header() != IpProtocol::Tcp || !ip.verify_checksum() {
                return None;
            }
            (ip.src_addr().into(), ip.dst_addr().into(), ip.payload())
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(ethernet.payload()).ok()?;
            if ip.next_header() != IpProtocol::Tcp {
                return None;
            }
            (ip.src_addr().into(), ip.dst_addr().into(), ip.payload())
        }
        _ => return None,
    };
    let tcp = TcpPacket::new_checked(payload).ok()?;
    let repr = TcpRepr::parse(
        &tcp,
        &src_ip.into(),
        &dst_ip.into(),
        &ChecksumCapabilities::default(),
    )
    .ok()?;
    Some(Segment {
        src: SocketAddr::new(src_ip, repr.src_port),
        dst: SocketAddr::new(dst_ip, repr.dst_port),
        control: repr.control,
        seq: repr.seq_number.0 as u32,
        ack: repr.ack_number.map(|ack| ack.0 as u32),
        window: repr.window_len,
        payload: repr.payload.to_vec(),
    })
}

/// One guest connection's sequence state.
#[derive(Debug, Clone, Copy)]
pub struct GuestConnection {
    pub src_port: u16,
    pub dst: SocketAddr,
    /// Next sequence number the guest sends.
    pub seq: u32,
    /// Next sequence number the guest expects (what it acknowledges).
    pub ack: u32,
}

impl GuestConnection {
    pub fn new(src_port: u16, dst: impl Into<SocketAddr>) -> Self {
        Self {
            src_port,
            dst: dst.into(),
            seq: 1000,
            ack: 0,
        }
    }

    pub fn syn(&self) -> Vec<u8> {
        self.frame(TcpControl::Syn, None, &[])
    }

    /// A segment with ACK set, advancing the guest's sequence by what it occupies.
    pub fn send(&mut self, control: TcpControl, payload: &[u8]) -> Vec<u8> {
        let frame = self.frame(control, Some(self.ack), payload);
        self.seq = self
            .seq
            .wrapping_add(payload.len() as u32 + u32::from(control == TcpControl::Fin));
        frame
    }

    pub fn frame(&self, control: TcpControl, ack: Option<u32>, payload: &[u8]) -> Vec<u8> {
        let repr = TcpRepr {
            src_port: self.src_port,
            seq_number: TcpSeqNumber(self.seq as i32),
            ..test_frames::tcp_repr(self.dst.port(), control, ack, payload)
        };
        test_frames::tcp(IpAddress::from(self.dst.ip()), &repr)
    }

    /// The guest's end: its address of the destination's family.
    pub fn guest_addr(&self) -> SocketAddr {
        let guest: IpAddr = match self.dst {
            SocketAddr::V4(_) => GUEST_V4.into(),
            SocketAddr::V6(_) => GUEST_V6.into(),
        };
        SocketAddr::new(guest, self.src_port)
    }
}
