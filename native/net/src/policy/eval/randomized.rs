//! A fixed-budget randomized test: random policies and flows, decided by the evaluator and by
//! a deliberately naive reference written here from the documented semantics (std's address
//! predicates instead of the group tables, text matching instead of parsed destinations). The
//! seeds are constants, so a failure repeats; the two must agree on every decision, of flows
//! and of DNS queries by name.

use super::*;
use serde_json::{json, Value};
use std::net::{Ipv4Addr, Ipv6Addr};

const POLICIES: usize = 400;
const FLOWS_PER_POLICY: usize = 30;
const QUERIES_PER_POLICY: usize = 10;
const MAX_RULES: u64 = 8;

/// xorshift64*: small, fast, and enough to spread cases over the pools below.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

const DESTINATIONS: &[&str] = &[
    "*",
    "public",
    "private",
    "loopback",
    "link-local",
    "metadata",
    "multicast",
    "host",
    "10.0.0.0/8",
    "10.1.2.0/24",
    "172.16.0.0/12",
    "198.51.100.0/24",
    "198.51.100.7",
    "203.0.113.0/25",
    "0.0.0.0/0",
    "169.254.0.0/16",
    "::/0",
    "2001:db8::/32",
    "fe80::/10",
    "2001:db8::7",
    "::ffff:10.0.0.0/104",
    "::ffff:198.51.100.7",
    "api.example.com",
    "example.com",
    ".example.com",
    ".test",
    "mirror.test",
    ".Mirror.Test.",
];

const PEERS: &[&str] = &[
    "198.51.100.7",
    "198.51.100.200",
    "203.0.113.1",
    "203.0.113.200",
    "10.0.0.1",
    "10.1.2.3",
    "172.15.255.255",
    "172.16.0.0",
    "172.31.255.255",
    "172.32.0.0",
    "100.63.255.255",
    "100.64.0.0",
    "100.127.255.255",
    "100.128.0.0",
    "192.168.1.1",
    "127.0.0.1",
    "0.0.0.0",
    "169.254.169.254",
    "169.254.1.1",
    "224.0.0.251",
    "239.255.255.255",
    "240.0.0.1",
    "172.16.0.1",
    "198.51.100.99",
    "8.8.8.8",
    "::1",
    "::",
    "2001:db8::7",
    "2001:db8::8",
    "2606:4700::1111",
    "fe80::1",
    "fd00:ec2::254",
    "fc00::1",
    "ff02::1",
    "2001:db8:1::40",
];

const HOST: &[&str] = &[
    "172.16.0.1",
    "::ffff:198.51.100.99",
    "2001:db8:1::40",
    "fe80::1",
];

const NAMES: &[&str] = &[
    "api.example.com",
    "API.example.com.",
    "example.com",
    "www.example.com",
    "badexample.com",
    "mirror.test",
    "deb.mirror.test",
    "othermirror.test",
    "example.com.evil",
];

const PROTOCOLS: &[&str] = &["tcp", "udp", "icmpv4", "icmpv6"];

#[derive(Debug)]
struct SpecRule {
    allow: bool,
    direction: &'static str,
    destination: Option<&'static str>,
    protocol: Option<&'static str>,
    ports: Option<(u16, u16)>,
}

#[derive(Debug)]
struct SpecPolicy {
    default_egress_allows: bool,
    default_ingress_allows: bool,
    rules: Vec<SpecRule>,
}

fn random_rule(rng: &mut Xorshift) -> SpecRule {
    let first = 1 + rng.below(1024) as u16;
    let span = if rng.chance(50) {
        0
    } else {
        rng.below(200) as u16
    };
    SpecRule {
        allow: rng.chance(50),
        direction: rng.pick(&["egress", "ingress", "any"]),
        destination: rng.chance(85).then(|| rng.pick(DESTINATIONS)),
        protocol: rng.chance(50).then(|| rng.pick(PROTOCOLS)),
        ports: rng
            .chance(40)
            .then_some((first, first.saturating_add(span))),
    }
}

fn random_policy(rng: &mut Xorshift) -> SpecPolicy {
    let count = rng.below(MAX_RULES + 1);
    SpecPolicy {
        default_egress_allows: rng.chance(50),
        default_ingress_allows: rng.chance(50),
        rules: (0..count).map(|_| random_rule(rng)).collect(),
    }
}

fn action_text(allow: bool) -> &'static str {
    if allow {
        "allow"
    } else {
        "deny"
    }
}

/// The policy as the SDK would send it, so the JSON parsing is exercised too.
fn to_json(spec: &SpecPolicy) -> Value {
    let rules: Vec<Value> = spec
        .rules
        .iter()
        .map(|rule| {
            let port = rule.ports.map(|(first, last)| match first == last {
                true => json!(first),
                false => json!(format!("{first}-{last}")),
            });
            json!({"action": action_text(rule.allow), "direction": rule.direction,
                   "destination": rule.destination, "protocol": rule.protocol, "port": port})
        })
        .collect();
    json!({"default_egress": action_text(spec.default_egress_allows),
           "default_ingress": action_text(spec.default_ingress_allows), "rules": rules})
}

struct SpecFlow {
    ingress: bool,
    protocol: &'static str,
    peer: IpAddr,
    port: Option<u16>,
    resolved: Vec<String>,
}

fn random_peer(rng: &mut Xorshift) -> IpAddr {
    let peer: IpAddr = if rng.chance(20) {
        IpAddr::V4(Ipv4Addr::from(rng.next() as u32))
    } else {
        rng.pick(PEERS).parse().expect("a pool address")
    };
    match peer {
        IpAddr::V4(v4) if rng.chance(20) => IpAddr::V6(v4.to_ipv6_mapped()),
        _ => peer,
    }
}

fn random_flow(rng: &mut Xorshift) -> SpecFlow {
    let protocol = rng.pick(PROTOCOLS);
    let icmp = protocol.starts_with("icmp");
    let port = match rng.below(3) {
        0 => 1 + rng.below(1100) as u16,
        1 => rng.pick(&[1, 53, 80, 443, 1024, 65535]),
        _ => rng.below(65536) as u16,
    };
    SpecFlow {
        ingress: rng.chance(30),
        protocol,
        peer: random_peer(rng),
        port: (!icmp).then_some(port),
        resolved: (0..rng.below(3))
            .map(|_| (rng.pick(NAMES)).to_owned())
            .collect(),
    }
}

fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn reference_group(ip: IpAddr, host: &[IpAddr]) -> &'static str {
    let ip = unmapped(ip);
    let is_host = host.iter().any(|h| unmapped(*h) == ip);
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            if a == Ipv4Addr::new(169, 254, 169, 254) {
                "metadata"
            } else if a.is_loopback() || o[0] == 0 {
                "loopback"
            } else if is_host {
                "host"
            } else if a.is_link_local() {
                "link-local"
            } else if a.is_private() || (o[0] == 100 && (64..128).contains(&o[1])) {
                "private"
            } else if a.is_multicast() {
                "multicast"
            } else {
                "public"
            }
        }
        IpAddr::V6(a) => {
            if a == "fd00:ec2::254".parse::<Ipv6Addr>().expect("an address") {
                "metadata"
            } else if a.is_loopback() || a.is_unspecified() {
                "loopback"
            } else if is_host {
                "host"
            } else if a.is_unicast_link_local() {
                "link-local"
            } else if a.is_unique_local() {
                "private"
            } else if a.is_multicast() {
                "multicast"
            } else {
                "public"
            }
        }
    }
}

/// A CIDR holds addresses of its own family only; a rule written as an IPv4-mapped network
/// (prefix 96 or more) is the IPv4 network it stands for, as the peer is compared unmapped.
fn reference_in_cidr(ip: IpAddr, text: &str) -> bool {
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, prefix.parse::<u32>().expect("a pool prefix")),
        None => (text, if text.contains(':') { 128 } else { 32 }),
    };
    let network: IpAddr = address.parse().expect("a pool CIDR");
    let (network, prefix) = match network {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() && prefix >= 96 => {
            (unmapped(network), prefix - 96)
        }
        _ => (network, prefix),
    };
    match (unmapped(ip), network) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn normalised(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_lowercase()
}

fn reference_destination(text: &str, flow: &SpecFlow, host: &[IpAddr]) -> bool {
    let group = reference_group(flow.peer, host);
    let groups = [
        "public",
        "private",
        "loopback",
        "link-local",
        "metadata",
        "multicast",
        "host",
    ];
    if text == "*" {
        true
    } else if groups.contains(&text) {
        group == text
    } else if text.contains('/') || text.parse::<IpAddr>().is_ok() {
        reference_in_cidr(flow.peer, text)
    } else if let Some(suffix) = text.strip_prefix('.') {
        let suffix = normalised(suffix);
        flow.resolved
            .iter()
            .map(|n| normalised(n))
            .any(|name| name == suffix || name.ends_with(&format!(".{suffix}")))
    } else {
        flow.resolved
            .iter()
            .any(|name| normalised(name) == normalised(text))
    }
}

fn reference_rule_matches(rule: &SpecRule, flow: &SpecFlow, host: &[IpAddr]) -> bool {
    let direction = match rule.direction {
        "any" => true,
        "ingress" => flow.ingress,
        _ => !flow.ingress,
    };
    let protocol = rule.protocol.is_none() || rule.protocol == Some(flow.protocol);
    let ports = match (rule.ports, flow.port) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some((first, last)), Some(port)) => first <= port && port <= last,
    };
    let destination = rule
        .destination
        .is_none_or(|text| reference_destination(text, flow, host));
    direction && protocol && ports && destination
}

fn reference_decide(spec: &SpecPolicy, flow: &SpecFlow, host: &[IpAddr]) -> (bool, Option<usize>) {
    for (index, rule) in spec.rules.iter().enumerate() {
        if reference_rule_matches(rule, flow, host) {
            return (rule.allow, Some(index));
        }
    }
    match flow.ingress {
        true => (spec.default_ingress_allows, None),
        false => (spec.default_egress_allows, None),
    }
}

/// Whether a rule's destination text says anything about resolving `name`.
fn reference_speaks_about(destination: Option<&str>, name: &str) -> bool {
    let groups = [
        "private",
        "loopback",
        "link-local",
        "metadata",
        "multicast",
        "host",
    ];
    let name = normalised(name);
    match destination {
        None | Some("*") | Some("public") => true,
        Some(text) if groups.contains(&text) => false,
        Some(text) if text.contains('/') || text.parse::<IpAddr>().is_ok() => false,
        Some(text) => match text.strip_prefix('.') {
            Some(suffix) => {
                let suffix = normalised(suffix);
                name == suffix || name.ends_with(&format!(".{suffix}"))
            }
            None => name == normalised(text),
        },
    }
}

fn reference_decide_query(spec: &SpecPolicy, name: &str) -> (bool, Option<usize>) {
    for (index, rule) in spec.rules.iter().enumerate() {
        let egress = rule.direction != "ingress";
        let decides = rule.allow || (rule.protocol.is_none() && rule.ports.is_none());
        if egress && decides && reference_speaks_about(rule.destination, name) {
            return (rule.allow, Some(index));
        }
    }
    (spec.default_egress_allows, None)
}

fn check_queries(rng: &mut Xorshift, seed: u64, spec: &SpecPolicy, evaluator: &Evaluator) {
    for _ in 0..QUERIES_PER_POLICY {
        let name = rng.pick(NAMES);
        let verdict = evaluator.decide_query(name);
        let decided_by = match verdict.decided_by {
            DecidedBy::Rule(index) => Some(index),
            DecidedBy::Default => None,
        };
        assert_eq!(
            (verdict.action == Action::Allow, decided_by),
            reference_decide_query(spec, name),
            "seed {seed:#x}\npolicy {}\nquery {name}",
            to_json(spec)
        );
    }
}

fn protocol_of(text: &str) -> Protocol {
    serde_json::from_value(json!(text)).expect("a pool protocol")
}

fn run(seed: u64) {
    let mut rng = Xorshift(seed);
    let host: Vec<IpAddr> = HOST
        .iter()
        .map(|h| h.parse().expect("a host address"))
        .collect();
    for _ in 0..POLICIES {
        let spec = random_policy(&mut rng);
        let json = to_json(&spec);
        let policy: Policy = serde_json::from_value(json.clone()).expect("a valid policy");
        let evaluator = Evaluator::new(policy, HostAddresses::new(host.iter().copied()));
        check_queries(&mut rng, seed, &spec, &evaluator);
        for _ in 0..FLOWS_PER_POLICY {
            let spec_flow = random_flow(&mut rng);
            let flow = Flow {
                direction: if spec_flow.ingress {
                    FlowDirection::Ingress
                } else {
                    FlowDirection::Egress
                },
                protocol: protocol_of(spec_flow.protocol),
                peer: spec_flow.peer,
                port: spec_flow.port,
                resolved_domains: &spec_flow.resolved,
            };
            let verdict = evaluator.decide(&flow);
            let decided_by = match verdict.decided_by {
                DecidedBy::Rule(index) => Some(index),
                DecidedBy::Default => None,
            };
            let expected = reference_decide(&spec, &spec_flow, &host);
            assert_eq!(
                (verdict.action == Action::Allow, decided_by),
                expected,
                "seed {seed:#x}\npolicy {json}\nflow {flow:?}"
            );
        }
    }
}

#[test]
fn the_evaluator_agrees_with_a_naive_reference_on_random_policies_flows_and_queries() {
    for seed in [
        0x9e37_79b9_7f4a_7c15,
        0xd1b5_4a32_d192_ed03,
        0x0123_4567_89ab_cdef,
    ] {
        run(seed);
    }
}
