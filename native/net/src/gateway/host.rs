//! What the gateway needs to know about the host, read once when a sandbox starts: its
//! resolvers, its own addresses (the `host` group) and whether it has IPv6.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

/// The host facts of one sandbox start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// From `/etc/resolv.conf`, for sandboxes that name no nameservers of their own.
    pub nameservers: Vec<SocketAddr>,
    /// Every address of the host's interfaces, loopback included.
    pub addresses: Vec<IpAddr>,
    pub has_ipv6_route: bool,
}

impl HostFacts {
    pub fn read() -> Self {
        let resolv_conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        Self {
            nameservers: nameservers(&resolv_conf),
            addresses: interface_addresses(),
            has_ipv6_route: has_route_to(IpAddr::V6(Ipv6Addr::new(
                0x2001, 0xdb8, 0, 0, 0, 0, 0, 1,
            ))),
        }
    }
}

/// The `nameserver` lines of a resolv.conf, port 53. A loopback resolver (systemd-resolved's
/// `127.0.0.53`) works from the host, where the gateway's queries are made, so it is kept.
pub fn nameservers(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next())?
        })
        // A scoped IPv6 address (`fe80::1%eth0`) cannot be parsed as an IpAddr: skipped.
        .filter_map(|word| word.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Whether the routing table has a route to `ip`. A connected UDP socket sends nothing: the
/// kernel only looks the route up.
fn has_route_to(ip: IpAddr) -> bool {
    let local: IpAddr = match ip {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    UdpSocket::bind((local, 0))
        .and_then(|socket| socket.connect((ip, 9)))
        .is_ok()
}

/// The addresses of every interface, from `getifaddrs`.
fn interface_addresses() -> Vec<IpAddr> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list we free below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Vec::new();
    }
    let mut addresses = Vec::new();
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: `entry` is a node of the list getifaddrs returned, not yet freed.
        let node = unsafe { &*entry };
        if let Some(address) = unsafe { sockaddr_ip(node.ifa_addr) } {
            addresses.push(address);
        }
        entry = node.ifa_next;
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    addresses
}

/// The IP address in a `sockaddr`, if it is an IPv4 or IPv6 one.
///
/// # Safety
/// `address` is null or points to a valid `sockaddr` of its family's size.
unsafe fn sockaddr_ip(address: *const libc::sockaddr) -> Option<IpAddr> {
    if address.is_null() {
        return None;
    }
    match i32::from((*address).sa_family) {
        libc::AF_INET => {
            let v4 = &*(address as *const libc::sockaddr_in);
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))))
        }
        libc::AF_INET6 => {
            let v6 = &*(address as *const libc::sockaddr_in6);
            Some(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameserver_lines_are_read_and_everything_else_ignored() {
        let text = "# generated\nsearch example\nnameserver 198.51.100.53\n\
                    nameserver  2001:db8::53 \nnameserver fe80::1%eth0\noptions ndots:1\n";
        assert_eq!(
            nameservers(text),
            vec![
                "198.51.100.53:53".parse::<SocketAddr>().unwrap(),
                "[2001:db8::53]:53".parse().unwrap()
            ]
        );
    }

    #[test]
    fn loopback_is_among_the_interface_addresses() {
        assert!(interface_addresses().contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }
}
