//! The RST the gateway answers a refused SYN with, built from the SYN's facts alone: for a
//! denied, refused or over-the-cap flow no smoltcp socket ever exists, and the guest must learn
//! at once (`ECONNREFUSED`) rather than retransmit its SYN for a minute.

use std::net::{IpAddr, Ipv4Addr};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpProtocol, Ipv4Packet,
    Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
};

use crate::wire::classified::TcpSegment;

/// The two MACs of a reply to the guest.
#[derive(Debug, Clone, Copy)]
pub struct LinkAddresses {
    pub gateway: EthernetAddress,
    pub guest: EthernetAddress,
}

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
    let ethernet = EthernetRepr {
        src_addr: link.gateway,
        dst_addr: link.guest,
        ethertype: EthernetProtocol::Ipv4,
    };
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    let checksums = ChecksumCapabilities::default();
    let mut frame = vec![0; ethernet.buffer_len() + ip.buffer_len() + tcp.buffer_len()];
    let mut ethernet_frame = EthernetFrame::new_unchecked(&mut frame[..]);
    ethernet.emit(&mut ethernet_frame);
    let mut ip_packet = Ipv4Packet::new_unchecked(ethernet_frame.payload_mut());
    ip.emit(&mut ip_packet, &checksums);
    let mut tcp_packet = TcpPacket::new_unchecked(ip_packet.payload_mut());
    tcp.emit(&mut tcp_packet, &src.into(), &dst.into(), &checksums);
    frame
}
