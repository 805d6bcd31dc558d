//! Network interfaces: finding one by its MAC in sysfs, and setting it up with the classic
//! interface and routing ioctls (`SIOCSIFMTU`, `SIOCSIFADDR`, `SIOCSIFNETMASK`,
//! `SIOCSIFFLAGS`, `SIOCADDRT`) on a datagram socket, and their IPv6 forms (`SIOCSIFADDR` with
//! an `in6_ifreq`, `SIOCADDRT` with an `in6_rtmsg`) on an IPv6 one. One address and one route
//! per family need no more, and netlink would mean building and parsing its messages by hand.

use crate::sys;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// Where the kernel lists the network interfaces, one directory each.
pub const SYSFS_NET: &str = "/sys/class/net";

/// `52:54:00:12:34:56`, as sysfs and `ip link` write a MAC.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.map(|octet| format!("{octet:02x}")).join(":")
}

/// The name of the interface under `sysfs_net` whose `address` is `mac`.
pub fn with_mac(sysfs_net: &Path, mac: [u8; 6]) -> Option<String> {
    let wanted = format_mac(mac);
    std::fs::read_dir(sysfs_net)
        .ok()?
        .flatten()
        .find(|entry| {
            std::fs::read_to_string(entry.path().join("address"))
                .is_ok_and(|address| address.trim().eq_ignore_ascii_case(&wanted))
        })
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
}

/// The one interface under `sysfs_net` backed by a device (a `device` link, which loopback
/// and virtual interfaces lack), if there is exactly one.
pub fn only_device(sysfs_net: &Path) -> Option<String> {
    let mut devices = std::fs::read_dir(sysfs_net)
        .ok()?
        .flatten()
        .filter(|entry| entry.path().join("device").exists());
    let only = devices.next()?;
    devices
        .next()
        .is_none()
        .then(|| only.file_name().to_string_lossy().into_owned())
}

/// `ip link set NAME address MAC`. virtio-net changes it while the link is up.
pub fn set_mac(name: &str, mac: [u8; 6]) -> io::Result<()> {
    let mut request = interface_request(name)?;
    // SAFETY: ifreq is plain data; the hardware address is a sockaddr of family ARPHRD_ETHER.
    unsafe {
        request.ifr_ifru.ifru_hwaddr.sa_family = libc::ARPHRD_ETHER;
        for (slot, byte) in request.ifr_ifru.ifru_hwaddr.sa_data.iter_mut().zip(mac) {
            *slot = byte as libc::c_char;
        }
    }
    set(libc::SIOCSIFHWADDR, &request)
}

/// The names of the interfaces under `sysfs_net`, sorted, for an error message.
pub fn names(sysfs_net: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(sysfs_net)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Brings an interface up (`ip link set NAME up`).
pub fn bring_up(name: &str) -> io::Result<()> {
    let socket = control_socket()?;
    let mut request = interface_request(name)?;
    // SAFETY: SIOCGIFFLAGS fills the flags of a valid ifreq; reading them back is then sound.
    unsafe {
        sys::check(libc::ioctl(
            socket.as_raw_fd(),
            libc::SIOCGIFFLAGS,
            &mut request,
        ))?;
        request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS reads a valid ifreq.
    sys::check(unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) }).map(drop)
}

/// `ip link set NAME mtu MTU`.
pub fn set_mtu(name: &str, mtu: u16) -> io::Result<()> {
    let mut request = interface_request(name)?;
    request.ifr_ifru.ifru_mtu = libc::c_int::from(mtu);
    set(libc::SIOCSIFMTU, &request)
}

/// `ip addr add ADDRESS/PREFIX_LEN dev NAME` (replacing the interface's IPv4 address, if it
/// had one). The address alone would get its class's mask (/16 for 172.16/12), hence the
/// netmask right after it.
pub fn set_ipv4(name: &str, address: Ipv4Addr, prefix_len: u8) -> io::Result<()> {
    let netmask = netmask(prefix_len).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("prefix length {prefix_len} is over 32"),
        )
    })?;
    let mut request = interface_request(name)?;
    request.ifr_ifru.ifru_addr = ipv4_sockaddr(address);
    set(libc::SIOCSIFADDR, &request)?;
    request.ifr_ifru.ifru_netmask = ipv4_sockaddr(netmask);
    set(libc::SIOCSIFNETMASK, &request)
}

/// `ip route add default via GATEWAY dev NAME`. The interface must be up and the gateway on
/// its link.
pub fn add_default_route(name: &str, gateway: Ipv4Addr) -> io::Result<()> {
    let device = sys::cstring(name)?;
    // SAFETY: rtentry is plain data (the device pointer may be null).
    let mut route: libc::rtentry = unsafe { std::mem::zeroed() };
    route.rt_dst = ipv4_sockaddr(Ipv4Addr::UNSPECIFIED);
    route.rt_genmask = ipv4_sockaddr(Ipv4Addr::UNSPECIFIED);
    route.rt_gateway = ipv4_sockaddr(gateway);
    route.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
    // The kernel only reads the name (it copies it in).
    route.rt_dev = device.as_ptr().cast_mut();
    let socket = control_socket()?;
    // SAFETY: SIOCADDRT reads a valid rtentry whose device name outlives the call.
    sys::check(unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCADDRT, &route) }).map(drop)
}

/// Turns duplicate address detection off for the interface's IPv6 addresses: the link has
/// only the gateway and the guest, and a tentative address would be unusable for the second
/// DAD takes (the first connections would fail with `EADDRNOTAVAIL`).
pub fn disable_ipv6_dad(name: &str) -> io::Result<()> {
    if name.contains('/') || name.starts_with('.') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} cannot be an interface name"),
        ));
    }
    std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/accept_dad"), "0")
}

/// `ip -6 addr add ADDRESS/PREFIX_LEN dev NAME`.
pub fn add_ipv6(name: &str, address: Ipv6Addr, prefix_len: u8) -> io::Result<()> {
    if prefix_len > 128 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("prefix length {prefix_len} is over 128"),
        ));
    }
    let request = libc::in6_ifreq {
        ifr6_addr: in6_addr(address),
        ifr6_prefixlen: u32::from(prefix_len),
        ifr6_ifindex: interface_index(name)?,
    };
    let socket = control_socket_v6()?;
    // SAFETY: SIOCSIFADDR on an IPv6 socket reads a valid in6_ifreq.
    sys::check(unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFADDR, &request) }).map(drop)
}

/// The kernel's `struct in6_rtmsg` (linux/ipv6_route.h), which `libc` declares with private
/// fields.
#[repr(C)]
struct In6Rtmsg {
    dst: libc::in6_addr,
    src: libc::in6_addr,
    gateway: libc::in6_addr,
    route_type: u32,
    dst_len: u16,
    src_len: u16,
    metric: u32,
    info: libc::c_ulong,
    flags: u32,
    ifindex: libc::c_int,
}

/// The metric `ip -6 route add` gives a route without one (IP6_RT_PRIO_USER).
const IPV6_USER_ROUTE_METRIC: u32 = 1024;

/// `ip -6 route add default via GATEWAY dev NAME`. The gateway must be on a link the
/// interface has an address in.
pub fn add_ipv6_default_route(name: &str, gateway: Ipv6Addr) -> io::Result<()> {
    let route = In6Rtmsg {
        dst: in6_addr(Ipv6Addr::UNSPECIFIED),
        src: in6_addr(Ipv6Addr::UNSPECIFIED),
        gateway: in6_addr(gateway),
        route_type: 0,
        dst_len: 0,
        src_len: 0,
        metric: IPV6_USER_ROUTE_METRIC,
        info: 0,
        flags: (libc::RTF_UP | libc::RTF_GATEWAY) as u32,
        ifindex: interface_index(name)?,
    };
    let socket = control_socket_v6()?;
    // SAFETY: SIOCADDRT on an IPv6 socket reads a valid in6_rtmsg.
    sys::check(unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCADDRT, &route) }).map(drop)
}

fn in6_addr(address: Ipv6Addr) -> libc::in6_addr {
    libc::in6_addr {
        s6_addr: address.octets(),
    }
}

/// The kernel's index of the interface `name`.
fn interface_index(name: &str) -> io::Result<libc::c_int> {
    let c_name = sys::cstring(name)?;
    // SAFETY: if_nametoindex reads a NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    libc::c_int::try_from(index)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "interface index out of range"))
}

/// The mask of a prefix length: 30 → 255.255.255.252. `None` over 32.
pub fn netmask(prefix_len: u8) -> Option<Ipv4Addr> {
    let host_bits = 32u32.checked_sub(u32::from(prefix_len))?;
    Some(Ipv4Addr::from(u32::MAX.checked_shl(host_bits).unwrap_or(0)))
}

/// A `sockaddr_in` (port 0) in the shape of the `sockaddr` the ioctls take: the family, then
/// in the 14 data bytes the port (2) and the address (4).
fn ipv4_sockaddr(address: Ipv4Addr) -> libc::sockaddr {
    let mut data = [0 as libc::c_char; 14];
    for (slot, octet) in data[2..6].iter_mut().zip(address.octets()) {
        *slot = octet as libc::c_char;
    }
    libc::sockaddr {
        sa_family: libc::AF_INET as libc::sa_family_t,
        sa_data: data,
    }
}

/// An ifreq naming the interface, everything else zero.
fn interface_request(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain data.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    // The name must leave room for its NUL.
    if name.len() >= request.ifr_name.len() || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} cannot be an interface name"),
        ));
    }
    for (slot, byte) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *slot = byte as libc::c_char;
    }
    Ok(request)
}

/// Applies a setting ioctl that reads one ifreq.
fn set(command: libc::Ioctl, request: &libc::ifreq) -> io::Result<()> {
    let socket = control_socket()?;
    // SAFETY: `command` is one of the SIOCSIF* requests, which read a valid ifreq.
    sys::check(unsafe { libc::ioctl(socket.as_raw_fd(), command, request) }).map(drop)
}

/// A datagram socket used only to carry interface and route ioctls.
fn control_socket() -> io::Result<OwnedFd> {
    datagram_socket(libc::AF_INET)
}

/// The same for IPv6: the kernel routes SIOCSIFADDR and SIOCADDRT by the socket's family.
fn control_socket_v6() -> io::Result<OwnedFd> {
    datagram_socket(libc::AF_INET6)
}

fn datagram_socket(family: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) has no memory-safety preconditions.
    let socket =
        sys::check(unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: just created, owned here.
    Ok(unsafe { OwnedFd::from_raw_fd(socket) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use tempfile::TempDir;

    #[test]
    fn netmasks_of_prefix_lengths() {
        assert_eq!(netmask(30), Some(Ipv4Addr::new(255, 255, 255, 252)));
        assert_eq!(netmask(24), Some(Ipv4Addr::new(255, 255, 255, 0)));
        assert_eq!(netmask(32), Some(Ipv4Addr::BROADCAST));
        assert_eq!(netmask(0), Some(Ipv4Addr::UNSPECIFIED));
        assert_eq!(netmask(33), None);
    }

    #[test]
    fn an_interface_is_found_by_its_mac_in_any_case() {
        let sysfs = TempDir::new().unwrap();
        for (name, address) in [
            ("lo", "00:00:00:00:00:00\n"),
            ("eth0", "52:54:00:AB:cd:01\n"),
            ("eth1", "52:54:00:ab:cd:02\n"),
        ] {
            std::fs::create_dir(sysfs.path().join(name)).unwrap();
            std::fs::write(sysfs.path().join(name).join("address"), address).unwrap();
        }
        // An entry without an address file (sysfs has none) is passed over.
        std::fs::create_dir(sysfs.path().join("bonding_masters")).unwrap();
        let mac = [0x52, 0x54, 0x00, 0xab, 0xcd, 0x02];
        assert_eq!(with_mac(sysfs.path(), mac).as_deref(), Some("eth1"));
        assert_eq!(
            with_mac(sysfs.path(), [0x52, 0x54, 0x00, 0xab, 0xcd, 0x01]).as_deref(),
            Some("eth0")
        );
        assert_eq!(with_mac(sysfs.path(), [2, 0, 0, 0, 0, 9]), None);
        assert_eq!(
            names(sysfs.path()),
            ["bonding_masters", "eth0", "eth1", "lo"]
        );
    }

    #[test]
    fn the_only_interface_with_a_device_is_found_and_two_are_ambiguous() {
        let sysfs = TempDir::new().unwrap();
        for name in ["lo", "eth0"] {
            std::fs::create_dir(sysfs.path().join(name)).unwrap();
        }
        std::fs::create_dir(sysfs.path().join("eth0/device")).unwrap();
        assert_eq!(only_device(sysfs.path()).as_deref(), Some("eth0"));
        std::fs::create_dir_all(sysfs.path().join("eth1/device")).unwrap();
        assert_eq!(only_device(sysfs.path()), None);
    }

    #[test]
    fn macs_are_written_as_sysfs_writes_them() {
        assert_eq!(
            format_mac([0x02, 0x6d, 0x73, 0x62, 0x00, 0x0a]),
            "02:6d:73:62:00:0a"
        );
    }

    #[test]
    fn interface_names_that_do_not_fit_are_refused() {
        assert!(interface_request("eth0").is_ok());
        for bad in ["sixteen-chars-xx", "a\0b"] {
            let error = interface_request(bad).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    /// The network namespace of the calling thread, as `net:[INODE]`.
    fn thread_network_namespace() -> String {
        std::fs::read_link("/proc/thread-self/ns/net")
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    fn ip(args: &[&str]) -> String {
        let output = Command::new("ip").args(args).output().unwrap();
        assert!(output.status.success(), "ip {args:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    }

    /// The real ioctls on a veth interface, in a network namespace of this test's thread
    /// alone: it (and everything in it) vanishes when the thread ends, and no interface of
    /// the machine is ever touched. Needs root and `ip`; skipped without them.
    #[test]
    fn an_interface_gets_its_mtu_address_and_default_route() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 || Command::new("ip").arg("-V").output().is_err() {
            eprintln!("skipped: needs root and iproute2");
            return;
        }
        std::thread::spawn(|| {
            let machine = thread_network_namespace();
            // SAFETY: unshare has no memory-safety preconditions; it moves this thread only.
            sys::check(unsafe { libc::unshare(libc::CLONE_NEWNET) }).unwrap();
            // Never go on in the machine's namespace: the route below would be its own.
            assert_ne!(thread_network_namespace(), machine);
            // `ip` runs as a child of this thread, so in its namespace.
            ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
            ip(&["link", "set", "v1", "up"]);
            let address = Ipv4Addr::new(172, 16, 0, 2);
            set_mtu("v0", 1400).unwrap();
            set_ipv4("v0", address, 30).unwrap();
            bring_up("v0").unwrap();
            add_default_route("v0", Ipv4Addr::new(172, 16, 0, 1)).unwrap();

            let link = ip(&["-o", "link", "show", "v0"]);
            assert!(link.contains("mtu 1400"), "{link}");
            assert!(link.contains(",UP"), "{link}");
            let addresses = ip(&["-o", "-4", "addr", "show", "v0"]);
            assert!(
                addresses.contains("inet 172.16.0.2/30 brd 172.16.0.3"),
                "{addresses}"
            );
            let routes = ip(&["-4", "route", "show"]);
            assert!(routes.contains("default via 172.16.0.1 dev v0"), "{routes}");
            assert!(
                routes.contains("172.16.0.0/30 dev v0"),
                "the link's own route has the /30, not the class B mask: {routes}"
            );
            // Twice is the same (a second address replaces the first), and errors are errors.
            set_ipv4("v0", address, 30).unwrap();
            assert_eq!(ip(&["-o", "-4", "addr", "show", "v0"]).lines().count(), 1);
            assert!(set_ipv4("v0", address, 33).is_err());
            assert_eq!(
                set_mtu("nosuch0", 1500).unwrap_err().raw_os_error(),
                Some(libc::ENODEV)
            );

            disable_ipv6_dad("v0").unwrap();
            let v6: Ipv6Addr = "fd6d:7362:0:1::2".parse().unwrap();
            add_ipv6("v0", v6, 64).unwrap();
            add_ipv6_default_route("v0", "fd6d:7362:0:1::1".parse().unwrap()).unwrap();
            let addresses = ip(&["-o", "-6", "addr", "show", "v0", "scope", "global"]);
            assert!(
                addresses.contains("inet6 fd6d:7362:0:1::2/64"),
                "{addresses}"
            );
            assert!(
                !addresses.contains("tentative"),
                "usable at once, without DAD: {addresses}"
            );
            let routes = ip(&["-6", "route", "show"]);
            assert!(
                routes.contains("default via fd6d:7362:0:1::1 dev v0"),
                "{routes}"
            );
            assert!(add_ipv6("v0", v6, 129).is_err());
            assert!(disable_ipv6_dad("../all").is_err());
        })
        .join()
        .unwrap();
    }
}
