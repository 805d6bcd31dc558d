//! The RST the gateway answers a refused SYN with, built from the SYN's facts alone: for a
//! denied, refused or over-the-cap flow no smoltcp socket ever exists, and the guest must learn
//! at once (`ECONNREFUSED`) rather than retransmit its SYN for a minute.

use std::net::IpAddr;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{IpAddress, IpProtocol, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber};

use crate::wire::classified::TcpSegment;
use crate::wire::emit::{ip_frame, LinkAddresses};

/// The Ethernet frame of a RST+ACK answering `syn`, from the address the guest dialled, or
/// `None` for a segment whose addresses mix IPv4 and IPv6 (no guest sends one).
pub fn reset_for_syn(link: LinkAddresses, syn: &TcpSegment) -> Option<Vec<u8>> {
    let (remote, guest) = (syn.tuple.dst.ip(), syn.tuple.src.ip());
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
    emit_tcp(link, remote, guest, &tcp)
}

fn emit_tcp(link: LinkAddresses, src: IpAddr, dst: IpAddr, tcp: &TcpRepr<'_>) -> Option<Vec<u8>> {
    ip_frame(
        link,
        src,
        dst,
        IpProtocol::Tcp,
        tcp.buffer_len(),
        |buffer| {
            tcp.emit(
                &mut TcpPacket::new_unchecked(buffer),
                &IpAddress::from(src),
                &IpAddress::from(dst),
                &ChecksumCapabilities::default(),
            )
        },
    )
}
