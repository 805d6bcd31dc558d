//! The RST the gateway answers a refused SYN with, built from the SYN's facts alone: for a
//! denied, refused or over-the-cap flow no smoltcp socket ever exists, and the guest must learn
//! at once (`ECONNREFUSED`) rather than retransmit its SYN for a minute.

use std::net::{IpAddr, Ipv4Addr};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{IpProtocol, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber};

use crate::wire::classified::TcpSegment;
use crate::wire::emit::{ipv4_frame, Ipv4Route, LinkAddresses};

/// The Ethernet frame of a RST+ACK answering `syn`, or `None` for a non-IPv4 segment (the
/// gateway has no IPv6 address to answer from).
pub fn reset_for_syn(link: LinkAddresses, syn: &TcpSegment) -> Option<Vec<u8>> {
    let (IpAddr::V4(remote), IpAddr::V4(guest)) = (syn.tuple.dst.ip(), syn.tuple.src.ip()) else {
        return None;
    };
    // RFC 9293 3.10.7.1: a RST to a segment without ACK carries seq 0 and acknowledges
    // everything the segment occupied, the SYN flag included.
    let occupied = syn.payload_len as u32 + 1;
    let tcp = TcpRepr {
        src_port: syn.tuple.dst.port(),
        dst_port: syn.tuple.src.port(),
        control: TcpControl::Rst,
        seq_number: TcpSeqNumber(0),
        ack_number: Some(TcpSeqNumber(syn.seq_number.wrapping_add(occupied) as i32)),
        window_len: 0,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    Some(emit_ipv4_tcp(link, remote, guest, &tcp))
}

fn emit_ipv4_tcp(link: LinkAddresses, src: Ipv4Addr, dst: Ipv4Addr, tcp: &TcpRepr<'_>) -> Vec<u8> {
    let route = Ipv4Route { src, dst };
    ipv4_frame(link, route, IpProtocol::Tcp, tcp.buffer_len(), |buffer| {
        tcp.emit(
            &mut TcpPacket::new_unchecked(buffer),
            &src.into(),
            &dst.into(),
            &ChecksumCapabilities::default(),
        )
    })
}
