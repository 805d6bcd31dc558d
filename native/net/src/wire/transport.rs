//! The transport layer of classification: TCP, UDP, ICMP and ICMPv6 inside an IP packet (or a
//! reassembled IPv4 datagram), with their checksums verified.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpAddress, IpProtocol,
    NdiscRepr, RawHardwareAddress, TcpPacket, TcpRepr, UdpPacket, UdpRepr,
};

use super::classified::{
    Classified, EchoRequest, FlowTuple, Gateway, Ignored, Malformed, TcpFlags, TcpSegment,
    UdpDatagram,
};
use super::counters::ChecksumFailures;

/// The DNS port the gateway answers on.
const DNS_PORT: u16 = 53;

/// Neighbour discovery must arrive with the hop limit it was sent with (RFC 4861 7.1.1), which
/// proves it came from the link.
const NDP_HOP_LIMIT: u8 = 255;

/// A MAC address; a link-layer option of any other length is not Ethernet's.
const ETHERNET_ADDRESS_LEN: usize = 6;

/// What classification reads and counts, borrowed from the classifier.
pub(super) struct State<'c> {
    pub gateway: &'c Gateway,
    pub checksum_failures: &'c mut ChecksumFailures,
}

/// The IP header fields the transport layer needs.
#[derive(Clone, Copy)]
pub(super) struct IpContext {
    src: IpAddress,
    dst: IpAddress,
    hop_limit: u8,
}

impl IpContext {
    /// An IPv4 packet (its TTL never matters above IP).
    pub fn v4(src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        Self {
            src: IpAddress::Ipv4(src),
            dst: IpAddress::Ipv4(dst),
            hop_limit: 0,
        }
    }

    pub fn v6(src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8) -> Self {
        Self {
            src: IpAddress::Ipv6(src),
            dst: IpAddress::Ipv6(dst),
            hop_limit,
        }
    }

    fn tuple(&self, src_port: u16, dst_port: u16) -> FlowTuple {
        FlowTuple {
            src: SocketAddr::new(IpAddr::from(self.src), src_port),
            dst: SocketAddr::new(IpAddr::from(self.dst), dst_port),
        }
    }
}

/// Classifies the transport payload of one IP packet.
pub(super) fn classify<'a>(
    state: State<'_>,
    context: IpContext,
    protocol: IpProtocol,
    payload: &'a [u8],
) -> Classified<'a> {
    match (protocol, context.src, context.dst) {
        (IpProtocol::Tcp, _, _) => classify_tcp(state, context, payload),
        (IpProtocol::Udp, _, _) => classify_udp(state, context, payload),
        (IpProtocol::Icmp, IpAddress::Ipv4(_), IpAddress::Ipv4(_)) => {
            classify_icmpv4(state, context, payload)
        }
        (IpProtocol::Icmpv6, IpAddress::Ipv6(src), IpAddress::Ipv6(dst)) => {
            classify_icmpv6(state, context, src, dst, payload)
        }
        (other, _, _) => Classified::Ignored(Ignored::IpProtocol(u8::from(other))),
    }
}

fn classify_tcp<'a>(state: State<'_>, context: IpContext, payload: &'a [u8]) -> Classified<'a> {
    let Ok(packet) = TcpPacket::new_checked(payload) else {
        return Classified::Malformed(Malformed::TcpHeader);
    };
    if !packet.verify_checksum(&context.src, &context.dst) {
        state.checksum_failures.tcp += 1;
        return Classified::Malformed(Malformed::TcpChecksum);
    }
    // The checksum is verified above, so it is counted apart from other header faults; the
    // parse rejects zero ports, contradictory flags (SYN with FIN or RST) and bad options.
    let parsed = TcpRepr::parse(
        &packet,
        &context.src,
        &context.dst,
        &ChecksumCapabilities::ignored(),
    );
    let Ok(repr) = parsed else {
        return Classified::Malformed(Malformed::TcpHeader);
    };
    Classified::Tcp(TcpSegment {
        tuple: context.tuple(repr.src_port, repr.dst_port),
        flags: TcpFlags {
            syn: packet.syn(),
            ack: packet.ack(),
            fin: packet.fin(),
            rst: packet.rst(),
        },
        seq_number: packet.seq_number().0 as u32,
        ack_number: repr.ack_number.map(|number| number.0 as u32),
        payload_len: repr.payload.len(),
    })
}

fn classify_udp<'a>(state: State<'_>, context: IpContext, payload: &'a [u8]) -> Classified<'a> {
    let Ok(packet) = UdpPacket::new_checked(payload) else {
        return Classified::Malformed(Malformed::UdpHeader);
    };
    // A zero checksum means "none" over IPv4 only (RFC 768); over IPv6 it is mandatory.
    let checksum_omitted = packet.checksum() == 0 && matches!(context.src, IpAddress::Ipv4(_));
    if !checksum_omitted && !packet.verify_checksum(&context.src, &context.dst) {
        state.checksum_failures.udp += 1;
        return Classified::Malformed(Malformed::UdpChecksum);
    }
    let parsed = UdpRepr::parse(
        &packet,
        &context.src,
        &context.dst,
        &ChecksumCapabilities::ignored(),
    );
    let Ok(repr) = parsed else {
        return Classified::Malformed(Malformed::UdpHeader);
    };
    let tuple = context.tuple(repr.src_port, repr.dst_port);
    let is_gateway_dns = repr.dst_port == DNS_PORT && state.gateway.owns(tuple.dst.ip());
    Classified::Udp(UdpDatagram {
        tuple,
        is_gateway_dns,
        payload: packet.payload(),
    })
}

fn classify_icmpv4<'a>(state: State<'_>, context: IpContext, payload: &'a [u8]) -> Classified<'a> {
    let Ok(packet) = Icmpv4Packet::new_checked(payload) else {
        return Classified::Malformed(Malformed::Icmp);
    };
    if !packet.verify_checksum() {
        state.checksum_failures.icmp += 1;
        return Classified::Malformed(Malformed::IcmpChecksum);
    }
    match Icmpv4Repr::parse(&packet, &ChecksumCapabilities::ignored()) {
        Ok(Icmpv4Repr::EchoRequest {
            ident,
            seq_no,
            data,
        }) => Classified::EchoRequest(EchoRequest {
            src: IpAddr::from(context.src),
            dst: IpAddr::from(context.dst),
            ident,
            seq_no,
            payload: data,
        }),
        _ => Classified::Ignored(Ignored::Icmpv4Message(u8::from(packet.msg_type()))),
    }
}

fn classify_icmpv6<'a>(
    state: State<'_>,
    context: IpContext,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    payload: &'a [u8],
) -> Classified<'a> {
    let Ok(packet) = Icmpv6Packet::new_checked(payload) else {
        return Classified::Malformed(Malformed::Icmpv6);
    };
    if !packet.verify_checksum(&src, &dst) {
        state.checksum_failures.icmp += 1;
        return Classified::Malformed(Malformed::Icmpv6Checksum);
    }
    let message = packet.msg_type();
    if message.is_ndisc() && context.hop_limit != NDP_HOP_LIMIT {
        return Classified::Malformed(Malformed::NeighborDiscoveryHopLimit);
    }
    match Icmpv6Repr::parse(&src, &dst, &packet, &ChecksumCapabilities::ignored()) {
        Ok(Icmpv6Repr::EchoRequest {
            ident,
            seq_no,
            data,
        }) => Classified::EchoRequest(EchoRequest {
            src: IpAddr::V6(src),
            dst: IpAddr::V6(dst),
            ident,
            seq_no,
            payload: data,
        }),
        Ok(Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
            target_addr,
            lladdr,
        })) => {
            if Some(target_addr) != state.gateway.ipv6 {
                return Classified::Ignored(Ignored::NeighborDiscoveryNotForGateway);
            }
            let Ok(sender_mac) = ethernet_option(lladdr) else {
                return Classified::Malformed(Malformed::Icmpv6);
            };
            Classified::NeighborSolicitationForGateway {
                sender_ip: src,
                sender_mac,
            }
        }
        Ok(Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
            target_addr,
            lladdr,
            ..
        })) => {
            if !state.gateway.owns(IpAddr::V6(dst)) {
                return Classified::Ignored(Ignored::NeighborDiscoveryNotForGateway);
            }
            let Ok(target_mac) = ethernet_option(lladdr) else {
                return Classified::Malformed(Malformed::Icmpv6);
            };
            Classified::NeighborAdvertisementForGateway {
                target_ip: target_addr,
                target_mac,
            }
        }
        Ok(Icmpv6Repr::Ndisc(_)) => Classified::Ignored(Ignored::NeighborDiscoveryNotForGateway),
        Ok(_) => Classified::Ignored(Ignored::Icmpv6Message(u8::from(message))),
        Err(_) if message.is_ndisc() => Classified::Malformed(Malformed::Icmpv6),
        Err(_) => Classified::Ignored(Ignored::Icmpv6Message(u8::from(message))),
    }
}

/// The MAC of a neighbour discovery link-layer option; `Err` for one of another length.
fn ethernet_option(lladdr: Option<RawHardwareAddress>) -> Result<Option<EthernetAddress>, ()> {
    match lladdr {
        None => Ok(None),
        Some(address) if address.len() == ETHERNET_ADDRESS_LEN => {
            Ok(Some(EthernetAddress::from_bytes(address.as_bytes())))
        }
        Some(_) => Err(()),
    }
}
