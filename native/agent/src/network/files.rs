//! The text of the guest's `/etc/resolv.conf` and `/etc/hosts`: plain functions of the
//! network and of the image's own file, so every rule here is tested on any host.

use msb_protocol::guest::GuestNetwork;
use std::net::Ipv4Addr;

/// The first line of both files. It also marks the line as ours in an `/etc/hosts` written at
/// an earlier boot, so a sandbox that boots again does not pile copies of it up.
pub const WRITTEN_BY: &str = "# Written by msb-agent from the sandbox's network settings.";

/// The names the loopback lines of `/etc/hosts` give.
const LOOPBACK_NAMES: [&str; 3] = ["localhost", "ip6-localhost", "ip6-loopback"];

/// The longest name a DNS resolver takes.
const MAX_NAME_LEN: usize = 253;

/// Only the gateway resolves names for the guest (it forwards them, filtered, to the host's
/// resolvers): the image's nameservers are unreachable from the sandbox anyway.
pub fn resolv_conf(gateway: Ipv4Addr) -> String {
    format!("{WRITTEN_BY}\nnameserver {gateway}\n")
}

/// The guest's `/etc/hosts`: loopback, the sandbox's own name and the gateway's alias, then
/// every line of the image's file (`image_hosts`) that names none of those. Applied to its
/// own output it gives the same text.
pub fn hosts(image_hosts: &str, network: &GuestNetwork) -> String {
    let ours = [
        format!("127.0.0.1 {}", LOOPBACK_NAMES[0]),
        format!("::1 {}", LOOPBACK_NAMES.join(" ")),
        format!("{} {}", network.address, network.hostname),
        format!("{} {}", network.gateway, network.host_alias),
    ];
    let our_names: Vec<&str> = LOOPBACK_NAMES
        .into_iter()
        .chain([network.hostname.as_str(), network.host_alias.as_str()])
        .collect();
    let kept = image_hosts
        .lines()
        .filter(|line| line.trim_end() != WRITTEN_BY)
        .filter(|line| !names_any(line, &our_names));
    let mut text = String::new();
    for line in [WRITTEN_BY]
        .into_iter()
        .chain(ours.iter().map(String::as_str))
        .chain(kept)
    {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// Whether a hosts line gives one of `names` (host names compare without case) to its
/// address.
fn names_any(line: &str, names: &[&str]) -> bool {
    let entry = line.split('#').next().unwrap_or_default();
    entry
        .split_ascii_whitespace()
        .skip(1)
        .any(|name| names.iter().any(|ours| name.eq_ignore_ascii_case(ours)))
}

/// Whether `name` can stand in a hosts line as one name: not empty, no blank, no `#` (which
/// would start a comment), nothing unprintable, and no longer than a resolver takes.
pub fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|byte| byte.is_ascii_graphic() && byte != b'#')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network() -> GuestNetwork {
        GuestNetwork {
            mac: [0x02, 0, 0, 0, 0, 1],
            address: Ipv4Addr::new(172, 16, 0, 2),
            prefix_len: 30,
            gateway: Ipv4Addr::new(172, 16, 0, 1),
            mtu: 1500,
            hostname: "web".into(),
            host_alias: "host.msb.internal".into(),
            ipv6: None,
        }
    }

    const OURS: &str = "# Written by msb-agent from the sandbox's network settings.\n\
                        127.0.0.1 localhost\n\
                        ::1 localhost ip6-localhost ip6-loopback\n\
                        172.16.0.2 web\n\
                        172.16.0.1 host.msb.internal\n";

    #[test]
    fn resolv_conf_names_the_gateway_alone() {
        assert_eq!(
            resolv_conf(Ipv4Addr::new(172, 16, 0, 1)),
            "# Written by msb-agent from the sandbox's network settings.\nnameserver 172.16.0.1\n"
        );
    }

    #[test]
    fn hosts_without_an_image_file_has_our_lines_only() {
        assert_eq!(hosts("", &network()), OURS);
    }

    #[test]
    fn hosts_keeps_the_image_lines_that_do_not_name_ours() {
        let debian = "127.0.0.1\tlocalhost\n\
                      127.0.1.1\tbuildhost.example\tbuildhost\n\
                      \n\
                      # The following lines are desirable for IPv6 capable hosts\n\
                      ::1     localhost ip6-localhost ip6-loopback\n\
                      ff02::1 ip6-allnodes\n\
                      10.1.2.3 WEB old-name # the sandbox's name, in capitals\n\
                      10.9.9.9 db # host.msb.internal only in a comment\n\
                      172.16.0.1 host.msb.internal\n";
        assert_eq!(
            hosts(debian, &network()),
            format!(
                "{OURS}127.0.1.1\tbuildhost.example\tbuildhost\n\
                 \n\
                 # The following lines are desirable for IPv6 capable hosts\n\
                 ff02::1 ip6-allnodes\n\
                 10.9.9.9 db # host.msb.internal only in a comment\n"
            )
        );
    }

    #[test]
    fn hosts_written_again_over_its_own_output_is_unchanged() {
        let first = hosts("10.0.0.7 cache\n", &network());
        assert_eq!(hosts(&first, &network()), first);
        // A sandbox that boots again on other addresses keeps none of the old ones.
        let moved = GuestNetwork {
            address: Ipv4Addr::new(172, 16, 0, 6),
            gateway: Ipv4Addr::new(172, 16, 0, 5),
            ..network()
        };
        assert_eq!(
            hosts(&first, &moved),
            "# Written by msb-agent from the sandbox's network settings.\n\
             127.0.0.1 localhost\n\
             ::1 localhost ip6-localhost ip6-loopback\n\
             172.16.0.6 web\n\
             172.16.0.5 host.msb.internal\n\
             10.0.0.7 cache\n"
        );
    }

    #[test]
    fn host_names_are_single_printable_words() {
        for good in ["web", "host.msb.internal", "a-b_c", &"x".repeat(253)] {
            assert!(is_host_name(good), "{good:?}");
        }
        for bad in [
            "",
            "two words",
            "tab\there",
            "hash#tag",
            "new\nline",
            "é",
            &"x".repeat(254),
        ] {
            assert!(!is_host_name(bad), "{bad:?}");
        }
    }
}
