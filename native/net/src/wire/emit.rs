//! Frames the gateway builds for the guest outside smoltcp: UDP datagrams it relays (fragmented
//! when they exceed the guest's MTU), echo replies it relays from the host's ping sockets,
//! ICMP errors for what it refuses, and the RST of a refused SYN (see `stack::reset`).
//!
//! Pure: every frame is built from values, so the event loop stays thin and every byte layout
//! is tested here.

use std::net::{Ipv4Addr, SocketAddrV4};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4DstUnreachable,
    Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
};

use super::framing::ETHERNET_HEADER_LEN;

/// An IPv4 header without options.
pub const IPV4_HEADER_LEN: usize = 20;
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
    let ip = Ipv4Repr {
        src_addr: route.src,
        dst_addr: route.dst,
        next_header: protocol,
        payload_len,
        hop_limit: HOP_LIMIT,
    };
    let mut frame = vec![0; ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + payload_len];
    let mut ethernet = EthernetFrame::new_unchecked(&mut frame[..]);
    ethernet_header(link).emit(&mut ethernet);
    let mut packet = Ipv4Packet::new_unchecked(ethernet.payload_mut());
    ip.emit(&mut packet, &ChecksumCapabilities::default());
    fill(packet.payload_mut());
    frame
}

/// The frames of one UDP datagram from `src` to `dst`, fragmented to fit `mtu` (the guest's
/// IP MTU) with the IPv4 identification `id`. Empty when the datagram cannot be an IPv4
/// datagram at all (over 65,507 bytes of payload).
pub fn udp_frames(
    link: LinkAddresses,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: &[u8],
    mtu: usize,
    id: u16,
) -> Vec<Vec<u8>> {
    let udp_len = UDP_HEADER_LEN + payload.len();
    if IPV4_HEADER_LEN + udp_len > usize::from(u16::MAX) {
        return Vec::new();
    }
    let mut datagram = vec![0; udp_len];
    UdpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
    }
    .emit(
        &mut UdpPacket::new_unchecked(&mut datagram[..]),
        &(*src.ip()).into(),
        &(*dst.ip()).into(),
        payload.len(),
        |buffer| buffer.copy_from_slice(payload),
        &ChecksumCapabilities::default(),
    );
    let route = Ipv4Route {
        src: *src.ip(),
        dst: *dst.ip(),
    };
    if IPV4_HEADER_LEN + udp_len <= mtu {
        let frame = ipv4_frame(link, route, IpProtocol::Udp, udp_len, |buffer| {
            buffer.copy_from_slice(&datagram)
        });
        return vec![frame];
    }
    fragments(link, route, IpProtocol::Udp, &datagram, mtu, id)
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

/// "Communication administratively prohibited" (type 3 code 13) from the gateway for the
/// guest packet `offending` (its IP header and payload): the guest's `ping` or UDP socket
/// fails at once with a reason instead of waiting for an answer that never comes.
pub fn prohibited(link: LinkAddresses, gateway: Ipv4Addr, offending: &[u8]) -> Option<Vec<u8>> {
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

fn icmp_frame(link: LinkAddresses, route: Ipv4Route, icmp: &Icmpv4Repr<'_>) -> Vec<u8> {
    ipv4_frame(link, route, IpProtocol::Icmp, icmp.buffer_len(), |buffer| {
        icmp.emit(
            &mut Icmpv4Packet::new_unchecked(buffer),
            &ChecksumCapabilities::default(),
        )
    })
}

fn ethernet_header(link: LinkAddresses) -> EthernetRepr {
    EthernetRepr {
        src_addr: link.gateway,
        dst_addr: link.guest,
        ethertype: EthernetProtocol::Ipv4,
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::Instant;

    use super::*;
    use crate::wire::classified::{Classified, Gateway};
    use crate::wire::classify::Classifier;
    use crate::wire::reassembly::{Reassembler, ReassemblyLimits};

    const GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 1);
    const GUEST: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 2);

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
            ipv6: None,
        })
    }

    #[test]
    fn small_udp_datagram_is_one_frame_with_valid_checksums() {
        let src = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 53), 53);
        let dst = SocketAddrV4::new(GUEST, 40000);
        let frames = udp_frames(link(), src, dst, b"answer", 1500, 7);
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
        let frames = udp_frames(link(), src, dst, &payload, 1500, 99);
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
        assert!(udp_frames(link(), src, dst, &vec![0; 65508], 1500, 1).is_empty());
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
            SocketAddrV4::new(GUEST, 5000),
            SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 10), 7),
            b"hello",
            1500,
            1,
        );
        let ip = &offending[0][ETHERNET_HEADER_LEN..];
        let frame = prohibited(link(), GATEWAY, ip).expect("an IPv4 packet");
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
        assert_eq!(prohibited(link(), GATEWAY, b"\x60 not v4"), None);
    }
}
