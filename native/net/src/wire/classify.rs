//! From one Ethernet frame the guest sent to what the stack must do with it, without any of
//! smoltcp's interface state: the frame is parsed with smoltcp's `wire` types, checksums are
//! verified (failures are counted and the frame reported as malformed), and the result carries
//! just what the stack needs, borrowing payloads from the frame.
//!
//! The guest is hostile: any byte sequence gives some [`Classified`], never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, IpProtocol,
    Ipv4Packet, Ipv6Packet,
};
use thiserror::Error;

use super::counters::ChecksumFailures;
use super::reassembly::{FragmentKey, Ipv4Fragment, Reassembled};
use super::transport;

/// The gateway's addresses, as the guest is told them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gateway {
    pub mac: EthernetAddress,
    pub ipv4: Ipv4Addr,
    /// `None` when the sandbox has no IPv6.
    pub ipv6: Option<Ipv6Addr>,
}

impl Gateway {
    /// Whether `address` is one of the gateway's own.
    pub fn owns(&self, address: IpAddr) -> bool {
        match address {
            IpAddr::V4(v4) => v4 == self.ipv4,
            IpAddr::V6(v6) => Some(v6) == self.ipv6,
        }
    }
}

/// The addresses and ports of a TCP segment or UDP datagram, as the guest sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowTuple {
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

/// The TCP control flags the stack acts on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpFlags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

/// A TCP segment; the stack hands the whole frame to smoltcp once the flow is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment {
    pub tuple: FlowTuple,
    pub flags: TcpFlags,
    pub seq_number: u32,
    /// Present when the ACK flag is set.
    pub ack_number: Option<u32>,
    pub payload_len: usize,
}

impl TcpSegment {
    /// A SYN without ACK: the guest opens a new flow, which the policy must decide.
    pub fn opens_flow(&self) -> bool {
        self.flags.syn && !self.flags.ack
    }
}

/// A UDP datagram and its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpDatagram<'a> {
    pub tuple: FlowTuple,
    /// Sent to the gateway's port 53: a query for the gateway's DNS, not a flow to relay.
    pub is_gateway_dns: bool,
    pub payload: &'a [u8],
}

/// An ICMP (IPv4) or ICMPv6 (IPv6) echo request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoRequest<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ident: u16,
    pub seq_no: u16,
    pub payload: &'a [u8],
}

/// What the stack must do with one frame from the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classified<'a> {
    /// Answer with the gateway's MAC.
    ArpRequestForGateway {
        sender_mac: EthernetAddress,
        sender_ip: Ipv4Addr,
    },
    /// Answer with a neighbour advertisement for the gateway.
    NeighborSolicitationForGateway {
        sender_ip: Ipv6Addr,
        sender_mac: Option<EthernetAddress>,
    },
    Tcp(TcpSegment),
    Udp(UdpDatagram<'a>),
    EchoRequest(EchoRequest<'a>),
    /// A piece of a fragmented IPv4 datagram: for the [`super::reassembly::Reassembler`].
    Ipv4Fragment(Ipv4Fragment<'a>),
    /// Unicast to another MAC: nothing here is for the gateway.
    NotForGateway {
        dst_mac: EthernetAddress,
    },
    /// Well formed, but nothing the gateway serves.
    Ignored(Ignored),
    Malformed(Malformed),
}

/// Why a well-formed frame needs no action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Ignored {
    #[error("EtherType {0:#06x}")]
    EtherType(u16),
    #[error("an ARP packet that is not a request for the gateway")]
    ArpNotForGateway,
    #[error("IP protocol {0}")]
    IpProtocol(u8),
    #[error("an IPv6 extension header ({0})")]
    Ipv6ExtensionHeader(u8),
    #[error("ICMP message type {0}")]
    Icmpv4Message(u8),
    #[error("ICMPv6 message type {0}")]
    Icmpv6Message(u8),
    #[error("neighbour discovery that is not a solicitation for the gateway")]
    NeighborDiscoveryNotForGateway,
}

/// Why a frame was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Malformed {
    #[error("truncated Ethernet header")]
    Ethernet,
    #[error("bad ARP packet")]
    Arp,
    #[error("bad IPv4 header")]
    Ipv4Header,
    #[error("IPv4 header checksum mismatch")]
    Ipv4HeaderChecksum,
    #[error("bad IPv6 header")]
    Ipv6Header,
    #[error("bad TCP header")]
    TcpHeader,
    #[error("TCP checksum mismatch")]
    TcpChecksum,
    #[error("bad UDP header")]
    UdpHeader,
    #[error("UDP checksum mismatch")]
    UdpChecksum,
    #[error("bad ICMP message")]
    Icmp,
    #[error("ICMP checksum mismatch")]
    IcmpChecksum,
    #[error("bad ICMPv6 message")]
    Icmpv6,
    #[error("ICMPv6 checksum mismatch")]
    Icmpv6Checksum,
    #[error("neighbour discovery with a hop limit other than 255 (RFC 4861 7.1.1)")]
    NeighborDiscoveryHopLimit,
}

/// Classifies frames for one gateway and counts the checksum failures it finds.
#[derive(Debug)]
pub struct Classifier {
    gateway: Gateway,
    checksum_failures: ChecksumFailures,
}

impl Classifier {
    pub fn new(gateway: Gateway) -> Self {
        Self {
            gateway,
            checksum_failures: ChecksumFailures::default(),
        }
    }

    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    pub fn checksum_failures(&self) -> ChecksumFailures {
        self.checksum_failures
    }

    /// Classifies one Ethernet frame from the guest.
    pub fn classify<'a>(&mut self, frame: &'a [u8]) -> Classified<'a> {
        let Ok(ethernet) = EthernetFrame::new_checked(frame) else {
            return Classified::Malformed(Malformed::Ethernet);
        };
        let dst_mac = ethernet.dst_addr();
        if dst_mac != self.gateway.mac && !dst_mac.is_broadcast() && !dst_mac.is_multicast() {
            return Classified::NotForGateway { dst_mac };
        }
        let payload = ethernet.payload();
        match ethernet.ethertype() {
            EthernetProtocol::Arp => self.classify_arp(payload),
            EthernetProtocol::Ipv4 => self.classify_ipv4(payload),
            EthernetProtocol::Ipv6 => self.classify_ipv6(payload),
            other => Classified::Ignored(Ignored::EtherType(u16::from(other))),
        }
    }

    /// Classifies a datagram the reassembler completed, as if it had come in one frame.
    pub fn classify_reassembled<'a>(&mut self, datagram: &'a Reassembled) -> Classified<'a> {
        let key = datagram.key;
        let packet = transport::IpContext::v4(key.src, key.dst);
        transport::classify(
            self.transport_state(),
            packet,
            IpProtocol::from(key.protocol),
            &datagram.payload,
        )
    }

    fn transport_state(&mut self) -> transport::State<'_> {
        transport::State {
            gateway: &self.gateway,
            checksum_failures: &mut self.checksum_failures,
        }
    }

    fn classify_arp<'a>(&mut self, payload: &'a [u8]) -> Classified<'a> {
        let Ok(packet) = ArpPacket::new_checked(payload) else {
            return Classified::Malformed(Malformed::Arp);
        };
        let Ok(ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_protocol_addr,
            ..
        }) = ArpRepr::parse(&packet)
        else {
            return Classified::Malformed(Malformed::Arp);
        };
        if operation == ArpOperation::Request && target_protocol_addr == self.gateway.ipv4 {
            Classified::ArpRequestForGateway {
                sender_mac: source_hardware_addr,
                sender_ip: source_protocol_addr,
            }
        } else {
            Classified::Ignored(Ignored::ArpNotForGateway)
        }
    }

    fn classify_ipv4<'a>(&mut self, payload: &'a [u8]) -> Classified<'a> {
        let Ok(packet) = Ipv4Packet::new_checked(payload) else {
            return Classified::Malformed(Malformed::Ipv4Header);
        };
        if packet.version() != 4 {
            return Classified::Malformed(Malformed::Ipv4Header);
        }
        if !packet.verify_checksum() {
            self.checksum_failures.ipv4_header += 1;
            return Classified::Malformed(Malformed::Ipv4HeaderChecksum);
        }
        let (src, dst) = (packet.src_addr(), packet.dst_addr());
        let protocol = packet.next_header();
        // `payload` ends at the header's total length: Ethernet padding is left out.
        let ip_payload = packet.payload();
        if packet.more_frags() || packet.frag_offset() != 0 {
            return Classified::Ipv4Fragment(Ipv4Fragment {
                key: FragmentKey {
                    src,
                    dst,
                    id: packet.ident(),
                    protocol: u8::from(protocol),
                },
                offset: usize::from(packet.frag_offset()),
                more_fragments: packet.more_frags(),
                payload: ip_payload,
            });
        }
        transport::classify(
            self.transport_state(),
            transport::IpContext::v4(src, dst),
            protocol,
            ip_payload,
        )
    }

    fn classify_ipv6<'a>(&mut self, payload: &'a [u8]) -> Classified<'a> {
        let Ok(packet) = Ipv6Packet::new_checked(payload) else {
            return Classified::Malformed(Malformed::Ipv6Header);
        };
        if packet.version() != 6 {
            return Classified::Malformed(Malformed::Ipv6Header);
        }
        let context =
            transport::IpContext::v6(packet.src_addr(), packet.dst_addr(), packet.hop_limit());
        let protocol = packet.next_header();
        match protocol {
            IpProtocol::Tcp | IpProtocol::Udp | IpProtocol::Icmpv6 => {
                transport::classify(self.transport_state(), context, protocol, packet.payload())
            }
            IpProtocol::HopByHop
            | IpProtocol::Ipv6Route
            | IpProtocol::Ipv6Frag
            | IpProtocol::Ipv6Opts => {
                Classified::Ignored(Ignored::Ipv6ExtensionHeader(u8::from(protocol)))
            }
            other => Classified::Ignored(Ignored::IpProtocol(u8::from(other))),
        }
    }
}
