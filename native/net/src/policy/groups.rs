//! Destination groups: every IP address belongs to exactly one, so a rule naming a group
//! never opens an address that a more specific group covers (an `allow link-local` rule does
//! not open the metadata service; an `allow private` rule does not open the host).
//!
//! The groups are decided in this order, the first that contains the address wins:
//! - `metadata`: 169.254.169.254 and fd00:ec2::254 (the cloud instance metadata services);
//! - `loopback`: 127.0.0.0/8, ::1, and the unspecified 0.0.0.0/8 and :: (a host that dials
//!   0.0.0.0 reaches itself on Linux, so treating it as public would open the host's
//!   loopback services to a `public_only` sandbox);
//! - `host`: the gateway addresses and the host's own addresses ([`HostAddresses`]);
//! - `link-local`: 169.254.0.0/16, fe80::/10;
//! - `private`: 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, fc00::/7;
//! - `multicast`: 224.0.0.0/4, ff00::/8;
//! - `public`: everything else, documentation (TEST-NET) ranges included.
//!
//! An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is classified as its IPv4 address.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A named set of destinations, as rules write them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DestGroup {
    Loopback,
    Private,
    LinkLocal,
    Metadata,
    Multicast,
    Host,
    Public,
}

impl DestGroup {
    pub const ALL: [DestGroup; 7] = [
        DestGroup::Loopback,
        DestGroup::Private,
        DestGroup::LinkLocal,
        DestGroup::Metadata,
        DestGroup::Multicast,
        DestGroup::Host,
        DestGroup::Public,
    ];

    /// The name rules and the SDK use for this group.
    pub fn name(self) -> &'static str {
        match self {
            DestGroup::Loopback => "loopback",
            DestGroup::Private => "private",
            DestGroup::LinkLocal => "link-local",
            DestGroup::Metadata => "metadata",
            DestGroup::Multicast => "multicast",
            DestGroup::Host => "host",
            DestGroup::Public => "public",
        }
    }

    /// The group named `name`, ignoring ASCII case.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|group| group.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for DestGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> IpNet {
    IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), prefix))
}

const fn v6(segments: [u16; 8], prefix: u8) -> IpNet {
    let [a, b, c, d, e, f, g, h] = segments;
    IpNet::V6(Ipv6Net::new_assert(
        Ipv6Addr::new(a, b, c, d, e, f, g, h),
        prefix,
    ))
}

const METADATA: &[IpNet] = &[
    v4(169, 254, 169, 254, 32),
    v6([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254], 128),
];
const LOOPBACK: &[IpNet] = &[
    v4(127, 0, 0, 0, 8),
    v4(0, 0, 0, 0, 8),
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128),
    v6([0; 8], 128),
];
const LINK_LOCAL: &[IpNet] = &[
    v4(169, 254, 0, 0, 16),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
];
const PRIVATE: &[IpNet] = &[
    v4(10, 0, 0, 0, 8),
    v4(172, 16, 0, 0, 12),
    v4(192, 168, 0, 0, 16),
    v4(100, 64, 0, 0, 10),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
];
const MULTICAST: &[IpNet] = &[v4(224, 0, 0, 0, 4), v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8)];

/// The address an IPv4-mapped IPv6 address stands for; any other address unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The addresses that reach the machine the sandbox runs on: the gateway as the guest sees
/// it and the host's own interface addresses. Given once, when the evaluator is built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostAddresses(BTreeSet<IpAddr>);

impl HostAddresses {
    pub fn new(addresses: impl IntoIterator<Item = IpAddr>) -> Self {
        Self(addresses.into_iter().map(canonical).collect())
    }

    /// The group `ip` belongs to (see the module doc for the order).
    pub fn classify(&self, ip: IpAddr) -> DestGroup {
        let ip = canonical(ip);
        let within = |nets: &[IpNet]| nets.iter().any(|net| net.contains(&ip));
        if within(METADATA) {
            DestGroup::Metadata
        } else if within(LOOPBACK) {
            DestGroup::Loopback
        } else if self.0.contains(&ip) {
            DestGroup::Host
        } else if within(LINK_LOCAL) {
            DestGroup::LinkLocal
        } else if within(PRIVATE) {
            DestGroup::Private
        } else if within(MULTICAST) {
            DestGroup::Multicast
        } else {
            DestGroup::Public
        }
    }
}

impl FromIterator<IpAddr> for HostAddresses {
    fn from_iter<I: IntoIterator<Item = IpAddr>>(addresses: I) -> Self {
        Self::new(addresses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an IP address")
    }

    fn group(text: &str) -> DestGroup {
        HostAddresses::default().classify(ip(text))
    }

    #[test]
    fn every_group_boundary_falls_on_the_right_side() {
        use DestGroup::*;
        let cases = [
            ("126.255.255.255", Public),
            ("127.0.0.0", Loopback),
            ("127.255.255.255", Loopback),
            ("128.0.0.0", Public),
            ("0.0.0.0", Loopback),
            ("0.255.255.255", Loopback),
            ("1.0.0.0", Public),
            ("9.255.255.255", Public),
            ("10.0.0.0", Private),
            ("10.255.255.255", Private),
            ("11.0.0.0", Public),
            ("172.15.255.255", Public),
            ("172.16.0.0", Private),
            ("172.31.255.255", Private),
            ("172.32.0.0", Public),
            ("192.167.255.255", Public),
            ("192.168.0.0", Private),
            ("192.168.255.255", Private),
            ("192.169.0.0", Public),
            ("100.63.255.255", Public),
            ("100.64.0.0", Private),
            ("100.127.255.255", Private),
            ("100.128.0.0", Public),
            ("169.253.255.255", Public),
            ("169.254.0.0", LinkLocal),
            ("169.254.1.1", LinkLocal),
            ("169.254.169.253", LinkLocal),
            ("169.254.169.254", Metadata),
            ("169.254.169.255", LinkLocal),
            ("169.254.255.255", LinkLocal),
            ("169.255.0.0", Public),
            ("223.255.255.255", Public),
            ("224.0.0.0", Multicast),
            ("239.255.255.255", Multicast),
            ("240.0.0.0", Public),
            ("198.51.100.7", Public),
            ("203.0.113.9", Public),
            ("8.8.8.8", Public),
            ("::1", Loopback),
            ("::", Loopback),
            ("::2", Public),
            ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Public),
            ("fc00::", Private),
            ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Private),
            ("fe00::", Public),
            ("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Public),
            ("fe80::", LinkLocal),
            ("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", LinkLocal),
            ("fec0::", Public),
            ("fd00:ec2::254", Metadata),
            ("fd00:ec2::253", Private),
            ("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Public),
            ("ff00::", Multicast),
            ("ff02::1", Multicast),
            ("2001:db8::1", Public),
            ("2606:4700::1111", Public),
        ];
        for (text, expected) in cases {
            assert_eq!(group(text), expected, "{text}");
        }
    }

    #[test]
    fn an_ipv4_mapped_address_is_classified_as_its_ipv4_address() {
        use DestGroup::*;
        let cases = [
            ("::ffff:10.0.0.1", Private),
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:169.254.169.254", Metadata),
            ("::ffff:172.32.0.0", Public),
            ("::ffff:224.0.0.1", Multicast),
        ];
        for (text, expected) in cases {
            assert_eq!(group(text), expected, "{text}");
        }
    }

    #[test]
    fn host_addresses_win_over_private_and_link_local_but_not_over_metadata_or_loopback() {
        let host = HostAddresses::new([
            ip("172.16.0.1"),
            ip("::ffff:10.1.2.3"),
            ip("fe80::1"),
            ip("198.51.100.5"),
            ip("169.254.169.254"),
            ip("127.0.0.1"),
        ]);
        let cases = [
            ("172.16.0.1", DestGroup::Host),
            ("172.16.0.2", DestGroup::Private),
            ("10.1.2.3", DestGroup::Host),
            ("::ffff:172.16.0.1", DestGroup::Host),
            ("fe80::1", DestGroup::Host),
            ("fe80::2", DestGroup::LinkLocal),
            ("198.51.100.5", DestGroup::Host),
            ("169.254.169.254", DestGroup::Metadata),
            ("127.0.0.1", DestGroup::Loopback),
        ];
        for (text, expected) in cases {
            assert_eq!(host.classify(ip(text)), expected, "{text}");
        }
    }

    #[test]
    fn group_names_are_the_sdk_strings_in_any_case() {
        let names = [
            "loopback",
            "private",
            "link-local",
            "metadata",
            "multicast",
            "host",
            "public",
        ];
        for (group, name) in DestGroup::ALL.into_iter().zip(names) {
            assert_eq!(group.to_string(), name);
            assert_eq!(DestGroup::from_name(name), Some(group));
            assert_eq!(DestGroup::from_name(&name.to_uppercase()), Some(group));
        }
        assert_eq!(DestGroup::from_name("link_local"), None);
        assert_eq!(DestGroup::from_name("publics"), None);
    }
}
