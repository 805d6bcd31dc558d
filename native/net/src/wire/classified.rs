//! What classifying a guest frame gives: the gateway it was classified for, and for each kind
//! of frame just what the stack needs, borrowing payloads from the frame. Its own module so that
//! the Ethernet/IP layer (`classify`) and the transport layer (`transport`) both build these
//! without importing each other.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use smoltcp::wire::EthernetAddress;
use thiserror::Error;

use super::reassembly::Ipv4Fragment;

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
    /// The guest's answer to the gateway's own ARP request (its neighbour entry for the guest
    /// expired): the stack must learn the MAC from it or it can no longer reach the guest.
    ArpReplyForGateway {
        sender_mac: EthernetAddress,
        sender_ip: Ipv4Addr,
    },
    /// Answer with a neighbour advertisement for the gateway.
    NeighborSolicitationForGateway {
        sender_ip: Ipv6Addr,
        sender_mac: Option<EthernetAddress>,
    },
    /// The guest's answer to the gateway's own solicitation (its neighbour entry for the
    /// guest expired): the stack must learn the MAC from it, as from an ARP reply.
    NeighborAdvertisementForGateway {
        target_ip: Ipv6Addr,
        target_mac: Option<EthernetAddress>,
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
    #[error("an ARP packet that is neither a request nor a reply for the gateway")]
    ArpNotForGateway,
    #[error("IP protocol {0}")]
    IpProtocol(u8),
    #[error("an IPv6 extension header ({0})")]
    Ipv6ExtensionHeader(u8),
    #[error("ICMP message type {0}")]
    Icmpv4Message(u8),
    #[error("ICMPv6 message type {0}")]
    Icmpv6Message(u8),
    #[error("neighbour discovery that is neither a solicitation for the gateway nor an advertisement to it")]
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
