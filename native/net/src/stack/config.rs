//! The gateway's addressing and the stack's limits, checked once when the stack is built.
//!
//! Addressing: the guest is `172.16.0.2/30` and the gateway `172.16.0.1`. A /30 holds exactly
//! those two hosts, so every other destination is off-link and the guest sends it to the
//! gateway's MAC, where the stack terminates it. `172.16.0.0/30` sits in a private range that
//! home and VPN networks rarely use for their first subnet (unlike `10.0.0.0/24` or
//! `192.168.x`), and off `100.64.0.0/10`, which Tailscale takes.
//!
//! IPv6, where the host has it: slot `n` gets the /64 `fd6d:7362:0:n::/64` (the unique local
//! prefix `fd6d:7362::/48` spells "msb"; a fixed one rather than a random RFC 4193 one, so
//! addresses stay deterministic per sandbox), the gateway `::1` and the guest `::2` in it. A
//! /64 is the only prefix length on which every guest kernel accepts a static address without
//! complaint, and 16,384 slots fit the 16-bit subnet id.

use std::net::{Ipv4Addr, Ipv6Addr};

use smoltcp::wire::EthernetAddress;
use thiserror::Error;

use crate::wire::framing::{ETHERNET_HEADER_LEN, MAX_GUEST_MTU};

/// Smallest IPv4 MTU every host must accept (RFC 791).
const MIN_MTU: usize = 576;
/// Smallest MTU of a link that carries IPv6 (RFC 8200 5); Linux turns IPv6 off below it.
const MIN_IPV6_MTU: usize = 1280;
/// The prefix length of every sandbox's IPv6 link.
pub const IPV6_PREFIX: u8 = 64;
/// The first three groups of every sandbox's IPv6 link; the fourth is the slot.
const IPV6_SLOT_BASE: [u16; 3] = [0xfd6d, 0x7362, 0];

/// The MTU of a sandbox's link: the largest virtio-net takes. A `-netdev stream` link has no
/// segmentation offload, so every packet costs the guest a full trip through its stack and,
/// under TCG, through emulation: `./dev bench net` (256 MiB) measured 64 KiB packets 1.2x
/// faster for downloads, 2.1x for uploads and 1.3x through a published port than 1500-byte
/// ones.
pub const SANDBOX_MTU: usize = 65520;

/// How many sandboxes' links `172.16.0.0/16` holds: one /30 each, slot `n` at `4n`.
pub const MAX_SLOTS: u32 = 16384;
const SLOT_BASE: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 0);
/// Every guest MAC starts with this locally administered unicast prefix; the last two bytes
/// are those of the guest's address.
const GUEST_MAC_PREFIX: [u8; 4] = [0x02, 0x6d, 0x73, 0x67];

/// The guest link as the gateway sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetConfig {
    pub gateway_v4: Ipv4Addr,
    pub guest_v4: Ipv4Addr,
    /// Prefix length of the link both addresses are on.
    pub prefix: u8,
    /// IP MTU of the guest's interface (Ethernet header excluded).
    pub mtu: usize,
    pub gateway_mac: EthernetAddress,
    /// The IPv6 link, or `None` for an IPv4-only sandbox.
    pub ipv6: Option<Ipv6Link>,
}

/// The two IPv6 addresses of a sandbox's link, on one /[`IPV6_PREFIX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Link {
    pub gateway: Ipv6Addr,
    pub guest: Ipv6Addr,
}

impl Ipv6Link {
    fn for_slot(slot: u32) -> Self {
        let [a, b, c] = IPV6_SLOT_BASE;
        // `slot < MAX_SLOTS`, which fits the subnet id.
        let subnet = slot as u16;
        Self {
            gateway: Ipv6Addr::new(a, b, c, subnet, 0, 0, 0, 1),
            guest: Ipv6Addr::new(a, b, c, subnet, 0, 0, 0, 2),
        }
    }

    fn validate(&self, mtu: usize) -> Result<(), ConfigError> {
        if self.gateway == self.guest {
            return Err(ConfigError::SameIpv6Address(self.guest));
        }
        let network = |address: Ipv6Addr| u128::from(address) >> (128 - IPV6_PREFIX);
        if network(self.gateway) != network(self.guest) {
            return Err(ConfigError::Ipv6NotOnOneLink {
                gateway: self.gateway,
                guest: self.guest,
            });
        }
        if mtu < MIN_IPV6_MTU {
            return Err(ConfigError::Ipv6Mtu(mtu));
        }
        Ok(())
    }
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            gateway_v4: Ipv4Addr::new(172, 16, 0, 1),
            guest_v4: Ipv4Addr::new(172, 16, 0, 2),
            prefix: 30,
            mtu: 1500,
            // Locally administered (bit 1 of the first octet), unicast.
            gateway_mac: EthernetAddress([0x02, 0x6d, 0x73, 0x62, 0x00, 0x01]),
            ipv6: None,
        }
    }
}

impl NetConfig {
    /// The link of the sandbox holding network slot `slot` (the database hands slots out, one
    /// per sandbox): every sandbox's addresses differ, so no two ever collide in logs, flow
    /// records or a future link between sandboxes. The link has IPv6; see [`Self::without_ipv6`].
    pub fn for_slot(slot: u32) -> Result<Self, ConfigError> {
        if slot >= MAX_SLOTS {
            return Err(ConfigError::Slot(slot));
        }
        let base = u32::from(SLOT_BASE) + 4 * slot;
        Ok(Self {
            gateway_v4: Ipv4Addr::from(base + 1),
            guest_v4: Ipv4Addr::from(base + 2),
            ipv6: Some(Ipv6Link::for_slot(slot)),
            mtu: SANDBOX_MTU,
            ..Self::default()
        })
    }

    /// The same link with IPv4 only, for a host without an IPv6 route: the guest then never
    /// gets an address it cannot reach anything from.
    pub fn without_ipv6(self) -> Self {
        Self { ipv6: None, ..self }
    }

    /// The MAC the guest's interface is given, which follows from its address.
    pub fn guest_mac(&self) -> EthernetAddress {
        let [.., third, fourth] = self.guest_v4.octets();
        let [a, b, c, d] = GUEST_MAC_PREFIX;
        EthernetAddress([a, b, c, d, third, fourth])
    }
}

/// A configuration the stack refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("network slot {0} is beyond the {MAX_SLOTS} sandbox links")]
    Slot(u32),
    #[error("prefix /{0} leaves no room for a gateway and a guest (at most /30)")]
    Prefix(u8),
    #[error("gateway {gateway} and guest {guest} are not on one /{prefix}")]
    NotOnOneLink {
        gateway: Ipv4Addr,
        guest: Ipv4Addr,
        prefix: u8,
    },
    #[error("gateway and guest share the address {0}")]
    SameAddress(Ipv4Addr),
    #[error("gateway and guest share the IPv6 address {0}")]
    SameIpv6Address(Ipv6Addr),
    #[error("IPv6 gateway {gateway} and guest {guest} are not on one /{IPV6_PREFIX}")]
    Ipv6NotOnOneLink { gateway: Ipv6Addr, guest: Ipv6Addr },
    #[error("MTU {0} is below IPv6's minimum of {MIN_IPV6_MTU}")]
    Ipv6Mtu(usize),
    #[error("MTU {0} outside {MIN_MTU}..={MAX_GUEST_MTU}")]
    Mtu(usize),
    #[error("gateway MAC {0} is not a unicast address")]
    GatewayMac(EthernetAddress),
    #[error("max_connections must be at least 1")]
    NoConnections,
    #[error("socket buffers of {0} bytes cannot hold one segment of the MTU")]
    SocketBuffer(usize),
}

impl NetConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.prefix > 30 {
            return Err(ConfigError::Prefix(self.prefix));
        }
        if self.gateway_v4 == self.guest_v4 {
            return Err(ConfigError::SameAddress(self.guest_v4));
        }
        // A /0 shifts by 32, which `checked_shl` refuses: no network bits at all.
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0);
        if u32::from(self.gateway_v4) & mask != u32::from(self.guest_v4) & mask {
            return Err(ConfigError::NotOnOneLink {
                gateway: self.gateway_v4,
                guest: self.guest_v4,
                prefix: self.prefix,
            });
        }
        if !(MIN_MTU..=MAX_GUEST_MTU).contains(&self.mtu) {
            return Err(ConfigError::Mtu(self.mtu));
        }
        if !self.gateway_mac.is_unicast() {
            return Err(ConfigError::GatewayMac(self.gateway_mac));
        }
        if let Some(ipv6) = &self.ipv6 {
            ipv6.validate(self.mtu)?;
        }
        Ok(())
    }

    /// The largest Ethernet frame the link carries (what smoltcp calls the device MTU).
    pub fn frame_mtu(&self) -> usize {
        self.mtu + ETHERNET_HEADER_LEN
    }
}

/// How much the stack may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackOptions {
    /// TCP flows at once, pending dials and TIME-WAIT included; beyond it a SYN gets a RST.
    pub max_connections: usize,
    /// Bytes of each flow's receive and of its send buffer. 256 KiB keeps a 1 Gbit/s flow busy
    /// over a 2 ms host round trip; the memory bound is `2 * this * max_connections`.
    pub socket_buffer_len: usize,
    /// Bytes of encoded frames waiting for QEMU to take them.
    pub outbound_queue_len: usize,
    /// Seeds smoltcp's initial sequence numbers and ports; the supervisor passes a random one.
    pub random_seed: u64,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            max_connections: 256,
            socket_buffer_len: 256 * 1024,
            outbound_queue_len: 1024 * 1024,
            random_seed: 0x6d73_622d_6e65_7431,
        }
    }
}

impl StackOptions {
    pub fn validate(&self, config: &NetConfig) -> Result<(), ConfigError> {
        if self.max_connections == 0 {
            return Err(ConfigError::NoConnections);
        }
        if self.socket_buffer_len < config.mtu {
            return Err(ConfigError::SocketBuffer(self.socket_buffer_len));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_zero_without_ipv6_is_the_default_link_at_the_sandbox_mtu() {
        let link = NetConfig::for_slot(0).unwrap();
        assert_eq!(link.mtu, SANDBOX_MTU);
        let default = NetConfig::default();
        assert_eq!(
            link.without_ipv6(),
            NetConfig {
                mtu: SANDBOX_MTU,
                ..default
            }
        );
    }

    #[test]
    fn slots_give_ipv6_links_in_their_own_64() {
        let link = NetConfig::for_slot(0x2a).unwrap().ipv6.unwrap();
        assert_eq!(
            link.gateway,
            "fd6d:7362:0:2a::1".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(link.guest, "fd6d:7362:0:2a::2".parse::<Ipv6Addr>().unwrap());
        let last = NetConfig::for_slot(MAX_SLOTS - 1).unwrap().ipv6.unwrap();
        assert_eq!(
            last.guest,
            "fd6d:7362:0:3fff::2".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn ipv6_links_that_cannot_work_are_refused() {
        let link = NetConfig::for_slot(1).unwrap();
        let v6 = link.ipv6.unwrap();
        let same = NetConfig {
            ipv6: Some(Ipv6Link {
                guest: v6.gateway,
                ..v6
            }),
            ..link
        };
        assert_eq!(
            same.validate(),
            Err(ConfigError::SameIpv6Address(v6.gateway))
        );
        let apart = Ipv6Link {
            guest: "fd6d:7362:0:2::2".parse().unwrap(),
            ..v6
        };
        let apart_link = NetConfig {
            ipv6: Some(apart),
            ..link
        };
        assert_eq!(
            apart_link.validate(),
            Err(ConfigError::Ipv6NotOnOneLink {
                gateway: apart.gateway,
                guest: apart.guest
            })
        );
        let small = NetConfig { mtu: 1000, ..link };
        assert_eq!(small.validate(), Err(ConfigError::Ipv6Mtu(1000)));
        assert_eq!(small.without_ipv6().validate(), Ok(()));
    }

    #[test]
    fn slots_give_disjoint_valid_links_with_distinct_macs() {
        let last = NetConfig::for_slot(MAX_SLOTS - 1).unwrap();
        assert_eq!(last.gateway_v4, Ipv4Addr::new(172, 16, 255, 253));
        assert_eq!(last.guest_v4, Ipv4Addr::new(172, 16, 255, 254));
        for slot in [0, 1, 63, 64, 1000, MAX_SLOTS - 1] {
            let link = NetConfig::for_slot(slot).unwrap();
            assert_eq!(link.validate(), Ok(()), "slot {slot}");
            assert!(link.guest_mac().is_unicast());
        }
        assert_ne!(
            NetConfig::for_slot(1).unwrap().guest_mac(),
            NetConfig::for_slot(2).unwrap().guest_mac()
        );
    }

    #[test]
    fn slot_beyond_the_range_is_refused() {
        assert_eq!(
            NetConfig::for_slot(MAX_SLOTS),
            Err(ConfigError::Slot(MAX_SLOTS))
        );
    }
}
