//! Frames the gateway builds for the guest outside smoltcp: UDP datagrams it relays (fragmented
//! when they exceed the guest's MTU), echo replies it relays from the host's ping sockets,
//! ICMP errors for what it refuses, and the RST of a refused SYN (see `stack::reset`), over
//! IPv4 and IPv6 alike.
//!
//! Pure: every frame is built from values, so the event loop stays thin and every byte layout
//! is tested here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4DstUnreachable,
    Icmpv4Packet, Icmpv4Repr, Icmpv6DstUnreachable, Icmpv6Packet, Icmpv6Repr, IpAddress,
    IpProtocol, IpRepr, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, UdpPacket, UdpRepr,
};

use super::framing::ETHERNET_HEADER_LEN;

/// An IPv4 header without options.
pub const IPV4_HEADER_LEN: usize = 20;
/// The fixed IPv6 header.
pub const IPV6_HEADER_LEN: usize = 40;
/// An IPv6 fragment extension header (RFC 8200 4.5).
const IPV6_FRAGMENT_HEADER_LEN: usize = 8;
/// The IPv6 next-header value of a fragment header.
const IPV6_FRAGMENT_NEXT_HEADER: u8 = 44;
/// An ICMPv6 error carries as much of the offending packet as fits in IPv6's minimum MTU
/// (RFC 4443 2.4); the guest only needs the headers, so the quote stops after the same 8
/// payload bytes as IPv4's.
const ICMPV6_QUOTE_PAYLOAD_LEN: usize = ICMP_QUOTE_PAYLOAD_LEN;
const UDP_HEADER_LEN: usize = 8;
/// The TTL of what the gateway sends: the guest is one hop away.
const HOP_LIMIT: u8 = 64;
/// An ICMP error quotes the offending IP header and the first 8 bytes of its payload
/// (RFC 792), which is what a guest needs to match it to its socket.
const ICMP_QUOTE_PAYLOAD_LEN: usize = 8;
/// Fragment offsets count in units of 8 bytes.
const FRAGMENT_UNIT: usize = 8;

/// The two MACs of a frame to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkAddresses {
    pub gateway: EthernetAddress,
    pub guest: EthernetAddress,
}

/// An IPv4 packet's addressing, as the frame carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Route {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

/// One Ethernet frame holding an unfragmented IPv4 packet whose payload `fill` writes.
pub fn ipv4_frame(
    link: LinkAddresses,
    route: Ipv4Route,
    protocol: IpProtocol,
    payload_len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let ip = IpRepr::Ipv4(Ipv4Repr {
        src_addr: route.src,
        dst_addr: route.dst,
        next_header: protocol,
        payload_len,
        hop_limit: HOP_LIMIT,
    });
    frame_of(link, &ip, fill)
}

/// One Ethernet frame holding an IPv6 packet (no extension headers) whose payload `fill`
/// writes.
pub fn ipv6_frame(
    link: LinkAddresses,
    route: Ipv6Route,
    protocol: IpProtocol,
    payload_len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let ip = IpRepr::Ipv6(Ipv6Repr {
        src_addr: route.src,
        dst_addr: route.dst,
        next_header: protocol,
        payload_len,
        hop_limit: HOP_LIMIT,
    });
    frame_of(link, &ip, fill)
}

/// The Ethernet frame of the IP packet `ip`, its payload written by `fill`.
fn frame_of(link: LinkAddresses, ip: &IpRepr, fill: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let ethertype = match ip {
        IpRepr::Ipv4(_) => EthernetProtocol::Ipv4,
        IpRepr::Ipv6(_) => EthernetProtocol::Ipv6,
    };
    let mut frame = vec![0; ETHERNET_HEADER_LEN + ip.buffer_len()];
    let mut ethernet = EthernetFrame::new_unchecked(&mut frame[..]);
    ethernet_header(link, ethertype).emit(&mut ethernet);
    let packet = ethernet.payload_mut();
    ip.emit(&mut *packet, &ChecksumCapabilities::default());
    fill(&mut packet[ip.header_len()..]);
    frame
}

/// An IPv6 packet's addressing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Route {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
}

/// One frame from `src` to `dst` of whichever IP family both are; `None` when they differ.
pub fn ip_frame(
    link: LinkAddresses,
    src: IpAddr,
    dst: IpAddr,
    protocol: IpProtocol,
    payload_len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> Option<Vec<u8>> {
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let route = Ipv4Route { src, dst };
            Some(ipv4_frame(link, route, protocol, payload_len, fill))
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let route = Ipv6Route { src, dst };
            Some(ipv6_frame(link, route, protocol, payload_len, fill))
        }
        _ => None,
    }
}

/// The frames of one UDP datagram from `src` to `dst`, fragmented to fit `mtu` (the guest's
/// IP MTU) with the identification `id`. Empty when the addresses' families differ or the
/// datagram cannot be one at all (over 65,507 bytes of payload over IPv4, 65,527 over IPv6).
pub fn udp_frames(
    link: LinkAddresses,
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
    mtu: usize,
    id: u16,
) -> Vec<Vec<u8>> {
    let udp_len = UDP_HEADER_LEN + payload.len();
    let fits = match src {
        SocketAddr::V4(_) => IPV4_HEADER_LEN + udp_len <= usize::from(u16::MAX),
        // The IPv6 payload length excludes the fixed header.
        SocketAddr::V6(_) => udp_len <= usize::from(u16::MAX),
    };
    if !fits || src.is_ipv4() != dst.is_ipv4() {
        return Vec::new();
    }
    let mut datagram = vec![0; udp_len];
    UdpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
    }
    .emit(
        &mut UdpPacket::new_unchecked(&mut datagram[..]),
        &IpAddress::from(src.ip()),
        &IpAddress::from(dst.ip()),
        payload.len(),
        |buffer| buffer.copy_from_slice(payload),
        &ChecksumCapabilities::default(),
    );
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let route = Ipv4Route { src, dst };
            if IPV4_HEADER_LEN + udp_len <= mtu {
                let frame = ipv4_frame(link, route, IpProtocol::Udp, udp_len, |buffer| {
                    buffer.copy_from_slice(&datagram)
                });
                return vec![frame];
            }
            fragments(link, route, IpProtocol::Udp, &datagram, mtu, id)
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let route = Ipv6Route { src, dst };
            if IPV6_HEADER_LEN + udp_len <= mtu {
                let frame = ipv6_frame(link, route, IpProtocol::Udp, udp_len, |buffer| {
                    buffer.copy_from_slice(&datagram)
                });
                return vec![frame];
            }
            ipv6_fragments(link, route, IpProtocol::Udp, &datagram, mtu, u32::from(id))
        }
        _ => Vec::new(),
    }
}

/// Splits a transport payload into IPv6 fragments of at most `mtu` bytes each, each with a
/// fragment header: the gateway is the datagram's source, so it fragments as a source does
/// (RFC 8200 4.5).
fn ipv6_fragments(
    link: LinkAddresses,
    route: Ipv6Route,
    protocol: IpProtocol,
    datagram: &[u8],
    mtu: usize,
    id: u32,
) -> Vec<Vec<u8>> {
    let room = mtu.saturating_sub(IPV6_HEADER_LEN + IPV6_FRAGMENT_HEADER_LEN);
    let per_fragment = (room / FRAGMENT_UNIT) * FRAGMENT_UNIT;
    if per_fragment == 0 {
        return Vec::new();
    }
    datagram
        .chunks(per_fragment)
        .enumerate()
        .map(|(index, chunk)| {
            let offset = index * per_fragment;
            let more = offset + chunk.len() < datagram.len();
            let fragment_len = IPV6_FRAGMENT_HEADER_LEN + chunk.len();
            let mut frame = ipv6_frame(link, route, protocol, fragment_len, |buffer| {
                let (header, data) = buffer.split_at_mut(IPV6_FRAGMENT_HEADER_LEN);
                header[0] = u8::from(protocol);
                // Offset in 8-byte units above the reserved bits and the more-fragments flag;
                // offset < 65,536 by the size check of the caller.
                let field = ((offset / FRAGMENT_UNIT) as u16) << 3 | u16::from(more);
                header[2..4].copy_from_slice(&field.to_be_bytes());
                header[4..8].copy_from_slice(&id.to_be_bytes());
                data.copy_from_slice(chunk);
            });
            let mut packet = Ipv6Packet::new_unchecked(&mut frame[ETHERNET_HEADER_LEN..]);
            packet.set_next_header(IpProtocol::from(IPV6_FRAGMENT_NEXT_HEADER));
            frame
        })
        .collect()
}

/// Splits a transport payload into IPv4 fragments of at most `mtu` bytes each.
fn fragments(
    link: LinkAddresses,
    route: Ipv4Route,
    protocol: IpProtocol,
    datagram: &[u8],
    mtu: usize,
    id: u16,
) -> Vec<Vec<u8>> {
    // Every fragment but the last carries a multiple of 8 bytes.
    let per_fragment = (mtu.saturating_sub(IPV4_HEADER_LEN) / FRAGMENT_UNIT) * FRAGMENT_UNIT;
    if per_fragment == 0 {
        return Vec::new();
    }
    datagram
        .chunks(per_fragment)
        .enumerate()
        .map(|(index, chunk)| {
            let offset = index * per_fragment;
            let more = offset + chunk.len() < datagram.len();
            let mut frame = ipv4_frame(link, route, protocol, chunk.len(), |b| {
                b.copy_from_slice(chunk)
            });
            let mut packet = Ipv4Packet::new_unchecked(&mut frame[ETHERNET_HEADER_LEN..]);
            packet.set_ident(id);
            packet.set_more_frags(more);
            // offset < 65,535 by the size check of the caller.
            packet.set_frag_offset(offset as u16);
            packet.fill_checksum();
            frame
        })
        .collect()
}

/// An echo reply from `route.src` to the guest, carrying the guest's own identifier.
pub fn echo_reply(
    link: LinkAddresses,
    route: Ipv4Route,
    ident: u16,
    seq_no: u16,
    data: &[u8],
) -> Vec<u8> {
    icmp_frame(
        link,
        route,
        &Icmpv4Repr::EchoReply {
            ident,
            seq_no,
            data,
        },
    )
}

/// "Communication administratively prohibited" (ICMP type 3 code 13, ICMPv6 type 1 code 1)
/// from the gateway for the guest packet `offending` (its IP header and payload): the guest's
/// `ping` or UDP socket fails at once with a reason instead of waiting for an answer that
/// never comes. `None` for bytes that are no IP packet, or IPv6 when the gateway has none.
pub fn prohibited(
    link: LinkAddresses,
    gateway: Ipv4Addr,
    gateway_v6: Option<Ipv6Addr>,
    offending: &[u8],
) -> Option<Vec<u8>> {
    match offending.first().map(|byte| byte >> 4) {
        Some(6) => prohibited_v6(link, gateway_v6?, offending),
        _ => prohibited_v4(link, gateway, offending),
    }
}

fn prohibited_v4(link: LinkAddresses, gateway: Ipv4Addr, offending: &[u8]) -> Option<Vec<u8>> {
    let packet = Ipv4Packet::new_checked(offending).ok()?;
    let header = Ipv4Repr::parse(&packet, &ChecksumCapabilities::ignored()).ok()?;
    let quoted = packet.payload();
    let quoted = &quoted[..quoted.len().min(ICMP_QUOTE_PAYLOAD_LEN)];
    let route = Ipv4Route {
        src: gateway,
        dst: header.src_addr,
    };
    Some(icmp_frame(
        link,
        route,
        &Icmpv4Repr::DstUnreachable {
            reason: Icmpv4DstUnreachable::CommProhibited,
            header,
            data: quoted,
        },
    ))
}

fn prohibited_v6(link: LinkAddresses, gateway: Ipv6Addr, offending: &[u8]) -> Option<Vec<u8>> {
    let packet = Ipv6Packet::new_checked(offending).ok()?;
    let header = Ipv6Repr::parse(&packet).ok()?;
    let quoted = packet.payload();
    let quoted = &quoted[..quoted.len().min(ICMPV6_QUOTE_PAYLOAD_LEN)];
    let route = Ipv6Route {
        src: gateway,
        dst: header.src_addr,
    };
    let icmp = Icmpv6Repr::DstUnreachable {
        reason: Icmpv6DstUnreachable::AdminProhibit,
        header,
        data: quoted,
    };
    Some(ipv6_frame(
        link,
        route,
        IpProtocol::Icmpv6,
        icmp.buffer_len(),
        |buffer| {
            icmp.emit(
                &route.src,
                &route.dst,
                &mut Icmpv6Packet::new_unchecked(buffer),
                &ChecksumCapabilities::default(),
            )
        },
    ))
}

fn icmp_frame(link: LinkAddresses, route: Ipv4Route, icmp: &Icmpv4Repr<'_>) -> Vec<u8> {
    ipv4_frame(link, route, IpProtocol::Icmp, icmp.buffer_len(), |buffer| {
        icmp.emit(
            &mut Icmpv4Packet::new_unchecked(buffer),
            &ChecksumCapabilities::default(),
        )
    })
}

fn ethernet_header(link: LinkAddresses, ethertype: EthernetProtocol) -> EthernetRepr {
    EthernetRepr {
        src_addr: link.gateway,
        dst_addr: link.guest,
        ethertype,
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddrV4;
    use std::time::Instant;

    use super::*;
    use crate::wire::classified::{Classified, Gateway};
    use crate::wire::classify::Classifier;
    use crate::wire::reassembly::{Reassembler, ReassemblyLimits};

    const GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 1);
    const GUEST: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 2);
    const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfd6d, 0x7362, 0, 0, 0, 0, 0, 1);
    const GUEST_V6: Ipv6Addr = Ipv6Addr::new(0xfd6d, 0x7362, 0, 0, 0, 0, 0, 2);
    const PUBLIC_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 53);
    const PRIVATE_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 10);

    fn v6(ip: Ipv6Addr, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V6(ip), port)
    }

    fn link() -> LinkAddresses {
        LinkAddresses {
            gateway: EthernetAddress([2, 0, 0, 0, 0, 1]),
            guest: EthernetAddress([2, 0, 0, 0, 0, 2]),
        }
    }

    /// Classifies frames as the guest's kernel would see them: with the roles swapped, the
    /// "gateway" of the classifier is the guest.
    fn guest_side() -> Classifier {
        Classifier::new(Gateway {
            mac: link().guest,
            ipv4: GUEST,
            ipv6: Some(GUEST_V6),
        })
    }

    #[test]
    fn small_udp_datagram_is_one_frame_with_valid_checksums() {
        let src = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 53), 53);
        let dst = SocketAddrV4::new(GUEST, 40000);
        let frames = udp_frames(link(), src.into(), dst.into(), b"answer", 1500, 7);
        assert_eq!(frames.len(), 1);
        match guest_side().classify(&frames[0]) {
            Classified::Udp(datagram) => {
                assert_eq!(datagram.payload, b"answer");
                assert_eq!(datagram.tuple.src, src.into());
                assert_eq!(datagram.tuple.dst, dst.into());
            }
            other => panic!("not a UDP datagram: {other:?}"),
        }
    }

    #[test]
    fn large_udp_datagram_is_fragmented_within_the_mtu_and_reassembles_whole() {
        let src = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 10), 7);
        let dst = SocketAddrV4::new(GUEST, 40000);
        let payload: Vec<u8> = (0..4000u32).map(|i| i as u8).collect();
        let frames = udp_frames(link(), src.into(), dst.into(), &payload, 1500, 99);
        assert_eq!(frames.len(), 3);
        assert!(frames.iter().all(|f| f.len() <= 1500 + ETHERNET_HEADER_LEN));
        let mut classifier = guest_side();
        let mut reassembler = Reassembler::new(ReassemblyLimits::default());
        let now = Instant::now();
        let mut whole = None;
        for frame in &frames {
            let Classified::Ipv4Fragment(fragment) = classifier.classify(frame) else {
                panic!("not a fragment");
            };
            whole = reassembler.insert(fragment, now).expect("accepted");
        }
        let whole = whole.expect("complete after the last fragment");
        match classifier.classify_reassembled(&whole) {
            Classified::Udp(datagram) => assert_eq!(datagram.payload, &payload[..]),
            other => panic!("not a UDP datagram: {other:?}"),
        }
    }

    #[test]
    fn oversized_udp_payload_builds_nothing() {
        let src = SocketAddrV4::new(GATEWAY, 53);
        let dst = SocketAddrV4::new(GUEST, 1);
        assert!(udp_frames(link(), src.into(), dst.into(), &vec![0; 65508], 1500, 1).is_empty());
    }

    #[test]
    fn echo_reply_keeps_the_guests_identifier_and_sequence() {
        let route = Ipv4Route {
            src: Ipv4Addr::new(198, 51, 100, 10),
            dst: GUEST,
        };
        let frame = echo_reply(link(), route, 0x1234, 9, b"ping!");
        let packet = Ipv4Packet::new_checked(&frame[ETHERNET_HEADER_LEN..]).unwrap();
        assert_eq!(IpAddr::V4(packet.src_addr()), IpAddr::V4(route.src));
        let icmp = Icmpv4Packet::new_checked(packet.payload()).unwrap();
        let repr = Icmpv4Repr::parse(&icmp, &ChecksumCapabilities::default()).unwrap();
        assert_eq!(
            repr,
            Icmpv4Repr::EchoReply {
                ident: 0x1234,
                seq_no: 9,
                data: b"ping!"
            }
        );
    }

    #[test]
    fn prohibited_quotes_the_offending_header_and_goes_back_to_its_sender() {
        let offending = udp_frames(
            link(),
            SocketAddrV4::new(GUEST, 5000).into(),
            SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 10), 7).into(),
            b"hello",
            1500,
            1,
        );
        let ip = &offending[0][ETHERNET_HEADER_LEN..];
        let frame = prohibited(link(), GATEWAY, None, ip).expect("an IPv4 packet");
        let packet = Ipv4Packet::new_checked(&frame[ETHERNET_HEADER_LEN..]).unwrap();
        assert_eq!(packet.dst_addr(), GUEST);
        let icmp = Icmpv4Packet::new_checked(packet.payload()).unwrap();
        assert!(icmp.verify_checksum());
        assert_eq!(u8::from(icmp.msg_type()), 3);
        assert_eq!(icmp.msg_code(), 13);
        // The quote keeps the original total length, as routers send it, so smoltcp's strict
        // parser refuses it: read the quoted header by hand.
        let quoted = icmp.data();
        assert_eq!(quoted.len(), IPV4_HEADER_LEN + ICMP_QUOTE_PAYLOAD_LEN);
        assert_eq!(&quoted[..IPV4_HEADER_LEN], &ip[..IPV4_HEADER_LEN]);
    }

    #[test]
    fn prohibited_refuses_bytes_that_are_not_an_ipv4_packet() {
        assert_eq!(prohibited(link(), GATEWAY, None, b"\x45 not v4"), None);
        assert_eq!(
            prohibited(link(), GATEWAY, Some(GATEWAY_V6), b"\x60 not v6"),
            None
        );
    }

    #[test]
    fn an_ipv6_packet_is_not_refused_by_a_gateway_without_ipv6() {
        let offending = udp_frames(link(), v6(GUEST_V6, 5000), v6(PRIVATE_V6, 7), b"x", 1500, 1);
        let ip = &offending[0][ETHERNET_HEADER_LEN..];
        assert_eq!(prohibited(link(), GATEWAY, None, ip), None);
    }

    #[test]
    fn prohibited_over_ipv6_is_an_admin_prohibited_unreachable_to_the_sender() {
        let offending = udp_frames(link(), v6(GUEST_V6, 5000), v6(PRIVATE_V6, 7), b"x", 1500, 1);
        let ip = &offending[0][ETHERNET_HEADER_LEN..];
        let frame = prohibited(link(), GATEWAY, Some(GATEWAY_V6), ip).expect("an IPv6 packet");
        let packet = Ipv6Packet::new_checked(&frame[ETHERNET_HEADER_LEN..]).unwrap();
        assert_eq!(
            (packet.src_addr(), packet.dst_addr()),
            (GATEWAY_V6, GUEST_V6)
        );
        let icmp = Icmpv6Packet::new_checked(packet.payload()).unwrap();
        assert!(icmp.verify_checksum(&GATEWAY_V6, &GUEST_V6));
        assert_eq!((u8::from(icmp.msg_type()), icmp.msg_code()), (1, 1));
        let quoted = icmp.payload();
        assert_eq!(quoted.len(), IPV6_HEADER_LEN + ICMPV6_QUOTE_PAYLOAD_LEN);
        assert_eq!(&quoted[..IPV6_HEADER_LEN], &ip[..IPV6_HEADER_LEN]);
    }

    #[test]
    fn small_ipv6_udp_datagram_is_one_frame_the_guest_accepts() {
        let src = v6(PUBLIC_V6, 53);
        let dst = v6(GUEST_V6, 40000);
        let frames = udp_frames(link(), src, dst, b"answer", 1500, 7);
        assert_eq!(frames.len(), 1);
        match guest_side().classify(&frames[0]) {
            Classified::Udp(datagram) => {
                assert_eq!(datagram.payload, b"answer");
                assert_eq!((datagram.tuple.src, datagram.tuple.dst), (src, dst));
            }
            other => panic!("not a UDP datagram: {other:?}"),
        }
    }

    #[test]
    fn large_ipv6_udp_datagram_is_fragmented_within_the_mtu_and_reassembles_whole() {
        let src = v6(PUBLIC_V6, 7);
        let dst = v6(GUEST_V6, 40000);
        let payload: Vec<u8> = (0..4000u32).map(|i| (i * 7) as u8).collect();
        let frames = udp_frames(link(), src, dst, &payload, 1500, 0x4242);
        assert_eq!(frames.len(), 3);
        let mut whole = Vec::new();
        for (index, frame) in frames.iter().enumerate() {
            assert!(frame.len() <= 1500 + ETHERNET_HEADER_LEN);
            let packet = Ipv6Packet::new_checked(&frame[ETHERNET_HEADER_LEN..]).unwrap();
            assert_eq!(u8::from(packet.next_header()), IPV6_FRAGMENT_NEXT_HEADER);
            let (header, data) = packet.payload().split_at(IPV6_FRAGMENT_HEADER_LEN);
            assert_eq!(header[0], u8::from(IpProtocol::Udp));
            let field = u16::from_be_bytes([header[2], header[3]]);
            assert_eq!(usize::from(field >> 3) * FRAGMENT_UNIT, whole.len());
            assert_eq!(field & 1 == 1, index + 1 < frames.len());
            assert_eq!(&header[4..8], &0x4242u32.to_be_bytes());
            whole.extend_from_slice(data);
        }
        let udp = UdpPacket::new_checked(&whole[..]).unwrap();
        let (src_ip, dst_ip) = (IpAddress::from(src.ip()), IpAddress::from(dst.ip()));
        assert!(udp.verify_checksum(&src_ip, &dst_ip));
        assert_eq!(udp.payload(), &payload[..]);
    }

    #[test]
    fn udp_between_families_builds_nothing() {
        let src = SocketAddrV4::new(GATEWAY, 53).into();
        assert!(udp_frames(link(), src, v6(GUEST_V6, 1), b"x", 1500, 1).is_empty());
    }
}
