//! Hand-built frames for the tests, emitted with smoltcp's `wire` APIs (with real checksums).

use std::net::{Ipv4Addr, Ipv6Addr};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpAddress, IpProtocol,
    Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, NdiscNeighborFlags, NdiscRepr, RawHardwareAddress,
    TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, UdpPacket, UdpRepr,
};

use super::classify::Gateway;

pub const GATEWAY_MAC: EthernetAddress = EthernetAddress([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);
pub const GUEST_MAC: EthernetAddress = EthernetAddress([0x02, 0x00, 0x00, 0x00, 0x00, 0x02]);
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 1);
pub const GUEST_V4: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 2);
pub const PUBLIC_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
pub const GUEST_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
pub const PUBLIC_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);

pub fn gateway() -> Gateway {
    Gateway {
        mac: GATEWAY_MAC,
        ipv4: GATEWAY_V4,
        ipv6: Some(GATEWAY_V6),
    }
}

fn caps() -> ChecksumCapabilities {
    ChecksumCapabilities::default()
}

/// An Ethernet frame from the guest to `dst_mac` whose payload `emit` writes.
pub fn ethernet(
    dst_mac: EthernetAddress,
    ethertype: EthernetProtocol,
    payload_len: usize,
    emit: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let repr = EthernetRepr {
        src_addr: GUEST_MAC,
        dst_addr: dst_mac,
        ethertype,
    };
    let mut frame = vec![0; repr.buffer_len() + payload_len];
    let mut ethernet = EthernetFrame::new_unchecked(&mut frame[..]);
    repr.emit(&mut ethernet);
    emit(ethernet.payload_mut());
    frame
}

pub fn arp(operation: ArpOperation, target: Ipv4Addr) -> Vec<u8> {
    let repr = ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr: GUEST_MAC,
        source_protocol_addr: GUEST_V4,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    ethernet(
        EthernetAddress::BROADCAST,
        EthernetProtocol::Arp,
        repr.buffer_len(),
        |buffer| repr.emit(&mut ArpPacket::new_unchecked(buffer)),
    )
}

/// An IPv4 packet (unfragmented) in a frame to the gateway.
pub fn ipv4(
    dst: Ipv4Addr,
    protocol: IpProtocol,
    payload_len: usize,
    emit: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let repr = Ipv4Repr {
        src_addr: GUEST_V4,
        dst_addr: dst,
        next_header: protocol,
        payload_len,
        hop_limit: 64,
    };
    ethernet(
        GATEWAY_MAC,
        EthernetProtocol::Ipv4,
        repr.buffer_len() + payload_len,
        |buffer| {
            let mut packet = Ipv4Packet::new_unchecked(buffer);
            repr.emit(&mut packet, &caps());
            emit(packet.payload_mut());
        },
    )
}

/// An IPv6 packet in a frame to `dst_mac`.
pub fn ipv6(
    dst_mac: EthernetAddress,
    dst: Ipv6Addr,
    protocol: IpProtocol,
    hop_limit: u8,
    payload_len: usize,
    emit: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let repr = Ipv6Repr {
        src_addr: GUEST_V6,
        dst_addr: dst,
        next_header: protocol,
        payload_len,
        hop_limit,
    };
    ethernet(
        dst_mac,
        EthernetProtocol::Ipv6,
        repr.buffer_len() + payload_len,
        |buffer| {
            let mut packet = Ipv6Packet::new_unchecked(buffer);
            repr.emit(&mut packet);
            emit(packet.payload_mut());
        },
    )
}

pub fn tcp_repr(
    dst_port: u16,
    control: TcpControl,
    ack: Option<u32>,
    payload: &[u8],
) -> TcpRepr<'_> {
    TcpRepr {
        src_port: 40000,
        dst_port,
        control,
        seq_number: TcpSeqNumber(1000),
        ack_number: ack.map(|number| TcpSeqNumber(number as i32)),
        window_len: 64240,
        window_scale: None,
        max_seg_size: Some(1460),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload,
    }
}

/// A TCP segment from the guest to `dst` (IPv4 or IPv6 by the address).
pub fn tcp(dst: IpAddress, repr: &TcpRepr<'_>) -> Vec<u8> {
    let emit = |buffer: &mut [u8], src: IpAddress| {
        repr.emit(&mut TcpPacket::new_unchecked(buffer), &src, &dst, &caps())
    };
    match dst {
        IpAddress::Ipv4(v4) => ipv4(v4, IpProtocol::Tcp, repr.buffer_len(), |b| {
            emit(b, GUEST_V4.into())
        }),
        IpAddress::Ipv6(v6) => ipv6(
            GATEWAY_MAC,
            v6,
            IpProtocol::Tcp,
            64,
            repr.buffer_len(),
            |b| emit(b, GUEST_V6.into()),
        ),
    }
}

/// A UDP datagram (header and payload) from the guest, checksummed for `src` to `dst`.
pub fn udp_datagram(src: IpAddress, dst: IpAddress, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let repr = UdpRepr {
        src_port: 50000,
        dst_port,
    };
    let mut datagram = vec![0; repr.header_len() + payload.len()];
    repr.emit(
        &mut UdpPacket::new_unchecked(&mut datagram[..]),
        &src,
        &dst,
        payload.len(),
        |buffer| buffer.copy_from_slice(payload),
        &caps(),
    );
    datagram
}

pub fn udp(dst: IpAddress, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    match dst {
        IpAddress::Ipv4(v4) => {
            let datagram = udp_datagram(GUEST_V4.into(), dst, dst_port, payload);
            ipv4(v4, IpProtocol::Udp, datagram.len(), |b| {
                b.copy_from_slice(&datagram)
            })
        }
        IpAddress::Ipv6(v6) => {
            let datagram = udp_datagram(GUEST_V6.into(), dst, dst_port, payload);
            ipv6(GATEWAY_MAC, v6, IpProtocol::Udp, 64, datagram.len(), |b| {
                b.copy_from_slice(&datagram)
            })
        }
    }
}

pub fn icmpv4_echo(dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let repr = Icmpv4Repr::EchoRequest {
        ident: 0x1234,
        seq_no: 7,
        data: payload,
    };
    ipv4(dst, IpProtocol::Icmp, repr.buffer_len(), |buffer| {
        repr.emit(&mut Icmpv4Packet::new_unchecked(buffer), &caps())
    })
}

/// An ICMPv6 message from the guest in a frame to `dst_mac`.
pub fn icmpv6(
    dst_mac: EthernetAddress,
    dst: Ipv6Addr,
    hop_limit: u8,
    repr: &Icmpv6Repr<'_>,
) -> Vec<u8> {
    ipv6(
        dst_mac,
        dst,
        IpProtocol::Icmpv6,
        hop_limit,
        repr.buffer_len(),
        |buffer| {
            repr.emit(
                &GUEST_V6,
                &dst,
                &mut Icmpv6Packet::new_unchecked(buffer),
                &caps(),
            )
        },
    )
}

pub fn icmpv6_echo(dst: Ipv6Addr, payload: &[u8]) -> Vec<u8> {
    icmpv6(
        GATEWAY_MAC,
        dst,
        64,
        &Icmpv6Repr::EchoRequest {
            ident: 0x4321,
            seq_no: 9,
            data: payload,
        },
    )
}

/// A neighbour solicitation for `target`, sent to its solicited-node multicast group.
pub fn neighbor_solicitation(target: Ipv6Addr, hop_limit: u8) -> Vec<u8> {
    let octets = target.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(octets[13]),
        u16::from_be_bytes([octets[14], octets[15]]),
    );
    let group_mac = EthernetAddress([0x33, 0x33, 0xff, octets[13], octets[14], octets[15]]);
    let repr = Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
        target_addr: target,
        lladdr: Some(RawHardwareAddress::from_bytes(GUEST_MAC.as_bytes())),
    });
    icmpv6(group_mac, group, hop_limit, &repr)
}

/// The guest's neighbour advertisement of its own address, answering a solicitation from `to`.
pub fn neighbor_advertisement(to: Ipv6Addr) -> Vec<u8> {
    let repr = Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
        flags: NdiscNeighborFlags::SOLICITED | NdiscNeighborFlags::OVERRIDE,
        target_addr: GUEST_V6,
        lladdr: Some(RawHardwareAddress::from_bytes(GUEST_MAC.as_bytes())),
    });
    icmpv6(GATEWAY_MAC, to, 255, &repr)
}

/// One IPv4 fragment (to a public address) carrying `piece` at byte `offset` of datagram `id`.
pub fn ipv4_fragment(
    id: u16,
    protocol: IpProtocol,
    offset: usize,
    more: bool,
    piece: &[u8],
) -> Vec<u8> {
    ipv4_fragment_to(PUBLIC_V4, id, protocol, offset, more, piece)
}

pub fn ipv4_fragment_to(
    dst: Ipv4Addr,
    id: u16,
    protocol: IpProtocol,
    offset: usize,
    more: bool,
    piece: &[u8],
) -> Vec<u8> {
    let repr = Ipv4Repr {
        src_addr: GUEST_V4,
        dst_addr: dst,
        next_header: protocol,
        payload_len: piece.len(),
        hop_limit: 64,
    };
    ethernet(
        GATEWAY_MAC,
        EthernetProtocol::Ipv4,
        repr.buffer_len() + piece.len(),
        |buffer| {
            let mut packet = Ipv4Packet::new_unchecked(buffer);
            repr.emit(&mut packet, &caps());
            packet.set_ident(id);
            packet.set_dont_frag(false);
            packet.set_more_frags(more);
            packet.set_frag_offset(offset as u16);
            packet.payload_mut().copy_from_slice(piece);
            packet.fill_checksum();
        },
    )
}

/// Bytes that differ at every position (so a misplaced piece shows).
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|index| (index * 7 + index / 251) as u8)
        .collect()
}
