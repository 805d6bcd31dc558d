//! From one Ethernet frame the guest sent to what the stack must do with it, without any of
//! smoltcp's interface state: the frame is parsed with smoltcp's `wire` types, checksums are
//! verified (failures are counted and the frame reported as malformed), and the result carries
//! just what the stack needs, borrowing payloads from the frame.
//!
//! The guest is hostile: any byte sequence gives some [`Classified`], never a panic.

use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet,
    Ipv6Packet,
};

use super::counters::ChecksumFailures;
use super::reassembly::{FragmentKey, Ipv4Fragment, Reassembled};
use super::transport;

pub use super::classified::{
    Classified, EchoRequest, FlowTuple, Gateway, Ignored, Malformed, TcpFlags, TcpSegment,
    UdpDatagram,
};

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
        if target_protocol_addr != self.gateway.ipv4 {
            return Classified::Ignored(Ignored::ArpNotForGateway);
        }
        match operation {
            ArpOperation::Request => Classified::ArpRequestForGateway {
                sender_mac: source_hardware_addr,
                sender_ip: source_protocol_addr,
            },
            ArpOperation::Reply => Classified::ArpReplyForGateway {
                sender_mac: source_hardware_addr,
                sender_ip: source_protocol_addr,
            },
            _ => Classified::Ignored(Ignored::ArpNotForGateway),
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

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, SocketAddr};

    use smoltcp::wire::{EthernetAddress, Icmpv6Repr, IpAddress, NdiscRepr, TcpControl};

    use super::*;
    use crate::wire::test_frames::*;

    fn classify(frame: &[u8]) -> Classified<'_> {
        Classifier::new(gateway()).classify(frame)
    }

    fn tuple(src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16) -> FlowTuple {
        FlowTuple {
            src: SocketAddr::new(src, src_port),
            dst: SocketAddr::new(dst, dst_port),
        }
    }

    fn segment(frame: &[u8]) -> TcpSegment {
        match classify(frame) {
            Classified::Tcp(segment) => segment,
            other => panic!("not TCP: {other:?}"),
        }
    }

    #[test]
    fn an_arp_request_for_the_gateway_is_answered() {
        assert_eq!(
            classify(&arp(ArpOperation::Request, GATEWAY_V4)),
            Classified::ArpRequestForGateway {
                sender_mac: GUEST_MAC,
                sender_ip: GUEST_V4
            }
        );
    }

    #[test]
    fn an_arp_reply_to_the_gateway_is_learnt_from() {
        assert_eq!(
            classify(&arp(ArpOperation::Reply, GATEWAY_V4)),
            Classified::ArpReplyForGateway {
                sender_mac: GUEST_MAC,
                sender_ip: GUEST_V4
            }
        );
    }

    #[test]
    fn other_arp_is_ignored() {
        for frame in [
            arp(ArpOperation::Request, PUBLIC_V4),
            arp(ArpOperation::Reply, PUBLIC_V4),
        ] {
            assert_eq!(
                classify(&frame),
                Classified::Ignored(Ignored::ArpNotForGateway)
            );
        }
    }

    #[test]
    fn a_syn_without_ack_opens_a_flow_with_its_tuple() {
        for dst in [IpAddress::Ipv4(PUBLIC_V4), IpAddress::Ipv6(PUBLIC_V6)] {
            let src = match dst {
                IpAddress::Ipv4(_) => IpAddr::V4(GUEST_V4),
                IpAddress::Ipv6(_) => IpAddr::V6(GUEST_V6),
            };
            let syn = segment(&tcp(dst, &tcp_repr(443, TcpControl::Syn, None, &[])));
            assert!(syn.opens_flow());
            assert_eq!(syn.tuple, tuple(src, 40000, IpAddr::from(dst), 443));
            assert_eq!(syn.seq_number, 1000);
            assert_eq!(syn.ack_number, None);
        }
    }

    #[test]
    fn tcp_flags_and_payload_are_carried() {
        let cases = [
            (
                TcpControl::Syn,
                Some(5),
                TcpFlags {
                    syn: true,
                    ack: true,
                    ..TcpFlags::default()
                },
                0,
            ),
            (
                TcpControl::None,
                Some(5),
                TcpFlags {
                    ack: true,
                    ..TcpFlags::default()
                },
                3,
            ),
            (
                TcpControl::Fin,
                Some(5),
                TcpFlags {
                    fin: true,
                    ack: true,
                    ..TcpFlags::default()
                },
                0,
            ),
            (
                TcpControl::Rst,
                None,
                TcpFlags {
                    rst: true,
                    ..TcpFlags::default()
                },
                0,
            ),
        ];
        for (control, ack, flags, payload_len) in cases {
            let payload = vec![7; payload_len];
            let segment = segment(&tcp(
                IpAddress::Ipv4(PUBLIC_V4),
                &tcp_repr(80, control, ack, &payload),
            ));
            assert_eq!(
                (segment.flags, segment.payload_len, segment.ack_number),
                (flags, payload_len, ack)
            );
            assert!(!segment.opens_flow(), "{control:?}");
        }
    }

    #[test]
    fn udp_carries_its_tuple_and_payload_and_tags_dns_to_the_gateway() {
        let cases = [
            (IpAddress::Ipv4(GATEWAY_V4), 53, true),
            (IpAddress::Ipv6(GATEWAY_V6), 53, true),
            (IpAddress::Ipv4(PUBLIC_V4), 53, false),
            (IpAddress::Ipv4(GATEWAY_V4), 5353, false),
            (IpAddress::Ipv6(PUBLIC_V6), 4000, false),
        ];
        for (dst, port, is_gateway_dns) in cases {
            let frame = udp(dst, port, b"query");
            let Classified::Udp(datagram) = classify(&frame) else {
                panic!("not UDP: {dst} {port}")
            };
            assert_eq!(datagram.is_gateway_dns, is_gateway_dns, "{dst}:{port}");
            assert_eq!(datagram.tuple.dst, SocketAddr::new(IpAddr::from(dst), port));
            assert_eq!(datagram.payload, b"query");
        }
    }

    #[test]
    fn echo_requests_carry_ident_sequence_and_payload() {
        let v4 = icmpv4_echo(PUBLIC_V4, &[1; 56]);
        let v6 = icmpv6_echo(PUBLIC_V6, &[2; 8]);
        let expected = [
            (
                &v4,
                IpAddr::V4(GUEST_V4),
                IpAddr::V4(PUBLIC_V4),
                0x1234,
                7,
                56,
            ),
            (
                &v6,
                IpAddr::V6(GUEST_V6),
                IpAddr::V6(PUBLIC_V6),
                0x4321,
                9,
                8,
            ),
        ];
        for (frame, src, dst, ident, seq_no, len) in expected {
            let Classified::EchoRequest(echo) = classify(frame) else {
                panic!("not an echo request")
            };
            assert_eq!(
                (
                    echo.src,
                    echo.dst,
                    echo.ident,
                    echo.seq_no,
                    echo.payload.len()
                ),
                (src, dst, ident, seq_no, len)
            );
        }
    }

    #[test]
    fn a_neighbour_solicitation_for_the_gateway_is_answered() {
        assert_eq!(
            classify(&neighbor_solicitation(GATEWAY_V6, 255)),
            Classified::NeighborSolicitationForGateway {
                sender_ip: GUEST_V6,
                sender_mac: Some(GUEST_MAC)
            }
        );
        assert_eq!(
            classify(&neighbor_solicitation(PUBLIC_V6, 255)),
            Classified::Ignored(Ignored::NeighborDiscoveryNotForGateway)
        );
        assert_eq!(
            classify(&neighbor_solicitation(GATEWAY_V6, 64)),
            Classified::Malformed(Malformed::NeighborDiscoveryHopLimit)
        );
    }

    #[test]
    fn a_neighbour_advertisement_to_the_gateway_is_learnt_from() {
        assert_eq!(
            classify(&neighbor_advertisement(GATEWAY_V6)),
            Classified::NeighborAdvertisementForGateway {
                target_ip: GUEST_V6,
                target_mac: Some(GUEST_MAC)
            }
        );
        assert_eq!(
            classify(&neighbor_advertisement(PUBLIC_V6)),
            Classified::Ignored(Ignored::NeighborDiscoveryNotForGateway)
        );
    }

    #[test]
    fn other_icmpv6_is_ignored() {
        let router_solicit = Icmpv6Repr::Ndisc(NdiscRepr::RouterSolicit { lladdr: None });
        let frame = icmpv6(GATEWAY_MAC, GATEWAY_V6, 255, &router_solicit);
        assert_eq!(
            classify(&frame),
            Classified::Ignored(Ignored::NeighborDiscoveryNotForGateway)
        );
    }

    #[test]
    fn an_ipv4_fragment_is_flagged_with_its_key_and_place() {
        let frame = ipv4_fragment(77, IpProtocol::Udp, 1480, true, &[3; 16]);
        let Classified::Ipv4Fragment(fragment) = classify(&frame) else {
            panic!("not a fragment")
        };
        assert_eq!(
            fragment.key,
            FragmentKey {
                src: GUEST_V4,
                dst: PUBLIC_V4,
                id: 77,
                protocol: 17
            }
        );
        assert_eq!(
            (fragment.offset, fragment.more_fragments, fragment.payload),
            (1480, true, &[3; 16][..])
        );
    }

    #[test]
    fn unicast_to_another_mac_is_not_for_the_gateway() {
        let mut frame = udp(IpAddress::Ipv4(PUBLIC_V4), 4000, b"x");
        frame[..6].copy_from_slice(&[0x02, 9, 9, 9, 9, 9]);
        assert_eq!(
            classify(&frame),
            Classified::NotForGateway {
                dst_mac: EthernetAddress([0x02, 9, 9, 9, 9, 9])
            }
        );
    }

    #[test]
    fn unknown_ethertypes_and_protocols_are_ignored() {
        let lldp = ethernet(GATEWAY_MAC, EthernetProtocol::Unknown(0x88cc), 30, |_| ());
        assert_eq!(
            classify(&lldp),
            Classified::Ignored(Ignored::EtherType(0x88cc))
        );
        let gre = ipv4(PUBLIC_V4, IpProtocol::Unknown(47), 4, |_| ());
        assert_eq!(classify(&gre), Classified::Ignored(Ignored::IpProtocol(47)));
        let hop_by_hop = ipv6(GATEWAY_MAC, PUBLIC_V6, IpProtocol::HopByHop, 1, 8, |_| ());
        assert_eq!(
            classify(&hop_by_hop),
            Classified::Ignored(Ignored::Ipv6ExtensionHeader(0))
        );
    }

    /// Flips one byte of a valid frame; the checksum that covers it must catch it.
    fn corrupted(mut frame: Vec<u8>, at: usize) -> Vec<u8> {
        frame[at] ^= 0x40;
        frame
    }

    #[test]
    fn checksum_failures_are_malformed_and_counted() {
        // Offsets: Ethernet 14 + IPv4 20 (or IPv6 40); 14 + 8 is the IPv4 TTL.
        let cases = [
            (
                corrupted(udp(IpAddress::Ipv4(PUBLIC_V4), 4000, b"x"), 14 + 8),
                Malformed::Ipv4HeaderChecksum,
            ),
            (
                corrupted(
                    tcp(
                        IpAddress::Ipv4(PUBLIC_V4),
                        &tcp_repr(80, TcpControl::Syn, None, &[]),
                    ),
                    34 + 4,
                ),
                Malformed::TcpChecksum,
            ),
            (
                corrupted(udp(IpAddress::Ipv4(PUBLIC_V4), 4000, b"payload"), 34 + 8),
                Malformed::UdpChecksum,
            ),
            (
                corrupted(udp(IpAddress::Ipv6(PUBLIC_V6), 4000, b"payload"), 54 + 8),
                Malformed::UdpChecksum,
            ),
            (
                corrupted(icmpv4_echo(PUBLIC_V4, &[1; 8]), 34 + 8),
                Malformed::IcmpChecksum,
            ),
            (
                corrupted(icmpv6_echo(PUBLIC_V6, &[1; 8]), 54 + 8),
                Malformed::Icmpv6Checksum,
            ),
        ];
        let mut classifier = Classifier::new(gateway());
        for (frame, reason) in &cases {
            assert_eq!(classifier.classify(frame), Classified::Malformed(*reason));
        }
        let failures = classifier.checksum_failures();
        assert_eq!(
            (
                failures.ipv4_header,
                failures.tcp,
                failures.udp,
                failures.icmp
            ),
            (1, 1, 2, 2)
        );
    }

    #[test]
    fn an_ipv4_udp_datagram_without_checksum_is_accepted() {
        let mut frame = udp(IpAddress::Ipv4(PUBLIC_V4), 4000, b"x");
        frame[34 + 6..34 + 8].fill(0);
        assert!(matches!(classify(&frame), Classified::Udp(_)));
    }

    #[test]
    fn truncated_headers_are_malformed() {
        let tcp_frame = tcp(
            IpAddress::Ipv4(PUBLIC_V4),
            &tcp_repr(80, TcpControl::Syn, None, &[]),
        );
        let cases = [
            (vec![0xff; 13], Malformed::Ethernet),
            (
                arp(ArpOperation::Request, GATEWAY_V4)[..20].to_vec(),
                Malformed::Arp,
            ),
            (tcp_frame[..14 + 19].to_vec(), Malformed::Ipv4Header),
            (
                icmpv6_echo(PUBLIC_V6, &[]).drain(..14 + 39).collect(),
                Malformed::Ipv6Header,
            ),
        ];
        for (frame, reason) in cases {
            assert_eq!(classify(&frame), Classified::Malformed(reason), "{reason}");
        }
    }

    #[test]
    fn a_syn_with_fin_is_malformed() {
        let mut frame = tcp(
            IpAddress::Ipv4(PUBLIC_V4),
            &tcp_repr(80, TcpControl::Syn, None, &[]),
        );
        // Set FIN too, then fix the checksum so only the flags are wrong.
        frame[34 + 13] |= 0x01;
        let mut packet = smoltcp::wire::TcpPacket::new_unchecked(&mut frame[34..]);
        packet.fill_checksum(&IpAddress::Ipv4(GUEST_V4), &IpAddress::Ipv4(PUBLIC_V4));
        assert_eq!(
            classify(&frame),
            Classified::Malformed(Malformed::TcpHeader)
        );
    }

    #[test]
    fn ethernet_padding_after_the_ip_packet_is_left_out() {
        let mut frame = udp(IpAddress::Ipv4(PUBLIC_V4), 4000, b"x");
        frame.extend_from_slice(&[0; 17]);
        let Classified::Udp(datagram) = classify(&frame) else {
            panic!("not UDP")
        };
        assert_eq!(datagram.payload, b"x");
    }

    #[test]
    fn a_reassembled_udp_datagram_classifies_as_udp() {
        use crate::wire::reassembly::{Reassembler, ReassemblyLimits};
        let body = pattern(2000);
        let datagram = udp_datagram(
            IpAddress::Ipv4(GUEST_V4),
            IpAddress::Ipv4(GATEWAY_V4),
            53,
            &body,
        );
        let mut classifier = Classifier::new(gateway());
        let mut reassembler = Reassembler::new(ReassemblyLimits::default());
        let now = std::time::Instant::now();
        let head = ipv4_fragment_to(GATEWAY_V4, 3, IpProtocol::Udp, 0, true, &datagram[..1480]);
        let tail = ipv4_fragment_to(
            GATEWAY_V4,
            3,
            IpProtocol::Udp,
            1480,
            false,
            &datagram[1480..],
        );
        for frame in [&tail, &head] {
            let Classified::Ipv4Fragment(fragment) = classifier.classify(frame) else {
                panic!("not a fragment")
            };
            if let Some(whole) = reassembler.insert(fragment, now).expect("kept") {
                let Classified::Udp(udp) = classifier.classify_reassembled(&whole) else {
                    panic!("not UDP")
                };
                assert!(udp.is_gateway_dns);
                assert_eq!(udp.payload, &body[..]);
                return;
            }
        }
        panic!("never completed");
    }
}
