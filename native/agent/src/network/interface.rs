//! Network interfaces: finding one by its MAC in sysfs, and setting it up with the classic
//! interface and routing ioctls (`SIOCSIFMTU`, `SIOCSIFADDR`, `SIOCSIFNETMASK`,
//! `SIOCSIFFLAGS`, `SIOCADDRT`) on a datagram socket. One IPv4 address and one route need no
//! more, and netlink would mean building and parsing its messages by hand.

use crate::sys;
use std::io;
use std::net::Ipv4Addr;
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
    // SAFETY: socket(2) has no memory-safety preconditions.
    let socket = sys::check(unsafe {
        libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
    })?;
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
        })
        .join()
        .unwrap();
    }
}
