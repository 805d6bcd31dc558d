//! Table tests of the evaluator: presets, rule order, directions, ports, ICMP, domains, and
//! the JSON the SDK sends.

use super::*;
use crate::policy::types::Direction;
use crate::policy::{DestGroup, Destination};

const GATEWAY: &str = "172.16.0.1";
const HOST_OWN: &str = "10.20.30.40";
const HOST_OWN_V6: &str = "2001:db8:1::40";

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an IP address")
}

fn host() -> HostAddresses {
    HostAddresses::new([ip(GATEWAY), ip(HOST_OWN), ip(HOST_OWN_V6)])
}

fn egress(protocol: Protocol, peer: &str, port: Option<u16>) -> Flow<'static> {
    Flow {
        direction: FlowDirection::Egress,
        protocol,
        peer: ip(peer),
        port,
        resolved_domains: &[],
    }
}

fn tcp(peer: &str, port: u16) -> Flow<'static> {
    egress(Protocol::Tcp, peer, Some(port))
}

fn ingress(peer: &str, port: u16) -> Flow<'static> {
    Flow {
        direction: FlowDirection::Ingress,
        ..tcp(peer, port)
    }
}

fn ping(peer: &str) -> Flow<'static> {
    egress(Protocol::Icmpv4, peer, None)
}

fn policy(json: &str) -> Policy {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
}

fn action(policy: &Policy, flow: &Flow<'_>) -> Action {
    Evaluator::new(policy.clone(), host()).decide(flow).action
}

#[test]
fn presets_decide_each_group_as_documented() {
    use Action::{Allow, Deny};
    let flows = [
        ("public TCP", tcp("198.51.100.7", 80), Allow, Allow, Deny),
        ("public ICMP", ping("203.0.113.1"), Allow, Allow, Deny),
        (
            "public IPv6",
            tcp("2606:4700::1111", 443),
            Allow,
            Allow,
            Deny,
        ),
        ("private 10/8", tcp("10.0.0.1", 80), Deny, Allow, Deny),
        (
            "private 172.16/12",
            tcp("172.31.255.255", 80),
            Deny,
            Allow,
            Deny,
        ),
        (
            "mapped private",
            tcp("::ffff:10.0.0.1", 80),
            Deny,
            Allow,
            Deny,
        ),
        ("private fc00::/7", tcp("fd12::1", 80), Deny, Allow, Deny),
        ("loopback", tcp("127.0.0.1", 22), Deny, Allow, Deny),
        ("unspecified", tcp("0.0.0.0", 22), Deny, Allow, Deny),
        ("link-local", tcp("169.254.1.1", 80), Deny, Allow, Deny),
        ("metadata", tcp("169.254.169.254", 80), Deny, Allow, Deny),
        (
            "multicast",
            egress(Protocol::Udp, "224.0.0.251", Some(5353)),
            Deny,
            Allow,
            Deny,
        ),
        ("gateway service", tcp(GATEWAY, 8080), Deny, Allow, Deny),
        ("host's own address", tcp(HOST_OWN, 22), Deny, Allow, Deny),
        (
            "host's own IPv6 address",
            tcp(HOST_OWN_V6, 22),
            Deny,
            Allow,
            Deny,
        ),
        (
            "port 53 to a private peer",
            tcp("10.0.0.53", 53),
            Deny,
            Allow,
            Deny,
        ),
        (
            "ingress from host loopback",
            ingress("127.0.0.1", 40000),
            Allow,
            Allow,
            Deny,
        ),
    ];
    let (public_only, allow_all, none) =
        (Policy::public_only(), Policy::allow_all(), Policy::none());
    for (what, flow, under_public_only, under_allow_all, under_none) in flows {
        assert_eq!(
            action(&public_only, &flow),
            under_public_only,
            "public_only: {what}"
        );
        assert_eq!(
            action(&allow_all, &flow),
            under_allow_all,
            "allow_all: {what}"
        );
        assert_eq!(action(&none, &flow), under_none, "none: {what}");
    }
}

#[test]
fn a_verdict_names_the_rule_that_decided_or_the_default() {
    let evaluator = Evaluator::new(Policy::public_only(), host());
    let denies_private = |rule: &Rule| {
        rule.destination == Some(Destination::Group(DestGroup::Private))
            && rule.action == Action::Deny
    };
    let private_rule = evaluator.policy().rules.iter().position(denies_private);
    let private = evaluator.decide(&tcp("10.0.0.1", 80));
    assert_eq!(private_rule.map(DecidedBy::Rule), Some(private.decided_by));
    assert_eq!(private.action, Action::Deny);
    let host = evaluator.decide(&egress(Protocol::Udp, GATEWAY, Some(53)));
    assert_eq!(host.action, Action::Deny);
    assert!(matches!(host.decided_by, DecidedBy::Rule(_)));
    let public = evaluator.decide(&tcp("198.51.100.7", 443));
    assert_eq!(
        public,
        Verdict {
            action: Action::Allow,
            decided_by: DecidedBy::Default
        }
    );
}

#[test]
fn the_first_matching_rule_wins() {
    let narrow_first = policy(
        r#"{"default_egress": "allow", "rules": [
            {"action": "allow", "destination": "10.0.0.5"},
            {"action": "deny", "destination": "10.0.0.0/8"}]}"#,
    );
    let broad_first = policy(
        r#"{"default_egress": "allow", "rules": [
            {"action": "deny", "destination": "10.0.0.0/8"},
            {"action": "allow", "destination": "10.0.0.5"}]}"#,
    );
    let cases = [
        (&narrow_first, "10.0.0.5", Action::Allow),
        (&narrow_first, "10.0.0.6", Action::Deny),
        (&narrow_first, "11.0.0.5", Action::Allow),
        (&broad_first, "10.0.0.5", Action::Deny),
    ];
    for (policy, peer, expected) in cases {
        assert_eq!(action(policy, &tcp(peer, 80)), expected, "{peer}");
    }
    let public_minus_one = policy(
        r#"{"rules": [{"action": "deny", "destination": "198.51.100.0/24"},
                      {"action": "allow", "destination": "public"}]}"#,
    );
    assert_eq!(
        action(&public_minus_one, &tcp("198.51.100.7", 80)),
        Action::Deny
    );
    assert_eq!(
        action(&public_minus_one, &tcp("203.0.113.7", 80)),
        Action::Allow
    );
    assert_eq!(
        action(&public_minus_one, &tcp("10.0.0.1", 80)),
        Action::Deny
    );
}

#[test]
fn a_rule_applies_only_to_the_directions_it_names() {
    let rule = |direction: &str| {
        policy(&format!(
            r#"{{"default_egress": "allow", "default_ingress": "allow",
                 "rules": [{{"action": "deny", "direction": "{direction}"}}]}}"#
        ))
    };
    let cases = [
        ("egress", Action::Deny, Action::Allow),
        ("ingress", Action::Allow, Action::Deny),
        ("any", Action::Deny, Action::Deny),
    ];
    for (direction, on_egress, on_ingress) in cases {
        let policy = rule(direction);
        assert_eq!(
            action(&policy, &tcp("198.51.100.7", 80)),
            on_egress,
            "{direction} egress"
        );
        assert_eq!(
            action(&policy, &ingress("198.51.100.7", 80)),
            on_ingress,
            "{direction} ingress"
        );
    }
    let defaults = policy(r#"{"default_egress": "deny", "default_ingress": "allow"}"#);
    assert_eq!(action(&defaults, &tcp("198.51.100.7", 80)), Action::Deny);
    assert_eq!(
        action(&defaults, &ingress("198.51.100.7", 80)),
        Action::Allow
    );
}

#[test]
fn port_rules_match_their_range_and_their_protocol() {
    let policy = policy(
        r#"{"rules": [{"action": "allow", "protocol": "tcp", "port": "8000-9000"},
                      {"action": "allow", "protocol": "udp", "port": 443}]}"#,
    );
    let cases = [
        (tcp("198.51.100.7", 8500), Action::Allow),
        (tcp("198.51.100.7", 8000), Action::Allow),
        (tcp("198.51.100.7", 9000), Action::Allow),
        (tcp("198.51.100.7", 9001), Action::Deny),
        (tcp("198.51.100.7", 7999), Action::Deny),
        (
            egress(Protocol::Udp, "198.51.100.7", Some(8500)),
            Action::Deny,
        ),
        (
            egress(Protocol::Udp, "198.51.100.7", Some(443)),
            Action::Allow,
        ),
        (tcp("198.51.100.7", 443), Action::Deny),
        (egress(Protocol::Tcp, "198.51.100.7", None), Action::Deny),
    ];
    for (flow, expected) in cases {
        assert_eq!(action(&policy, &flow), expected, "{flow:?}");
    }
}

#[test]
fn a_rule_with_ports_never_matches_icmp_and_one_without_does() {
    let with_ports = policy(r#"{"rules": [{"action": "allow", "port": "1-65535"}]}"#);
    let icmp_only = policy(r#"{"rules": [{"action": "allow", "protocol": "icmpv4"}]}"#);
    let any = policy(r#"{"rules": [{"action": "allow"}]}"#);
    let ping6 = egress(Protocol::Icmpv6, "2606:4700::1111", None);
    let odd_icmp_with_port = egress(Protocol::Icmpv4, "198.51.100.7", Some(7));
    let cases = [
        (&with_ports, ping("198.51.100.7"), Action::Deny),
        (&with_ports, odd_icmp_with_port, Action::Deny),
        (&with_ports, tcp("198.51.100.7", 1), Action::Allow),
        (&icmp_only, ping("198.51.100.7"), Action::Allow),
        (&icmp_only, ping6, Action::Deny),
        (&icmp_only, tcp("198.51.100.7", 80), Action::Deny),
        (&any, ping6, Action::Allow),
    ];
    for (policy, flow, expected) in cases {
        assert_eq!(action(policy, &flow), expected, "{flow:?}");
    }
}

#[test]
fn domain_and_suffix_rules_match_only_through_resolved_domains() {
    let policy = policy(
        r#"{"rules": [{"action": "allow", "destination": "api.example.com", "port": 443},
                      {"action": "allow", "destination": ".mirror.test"}]}"#,
    );
    let flow = |domains: &'static [String]| Flow {
        resolved_domains: domains,
        ..tcp("198.51.100.7", 443)
    };
    let names = |list: &[&str]| -> &'static [String] {
        Vec::leak(list.iter().map(|name| (*name).to_owned()).collect())
    };
    let cases = [
        (names(&["api.example.com"]), Action::Allow),
        (names(&["API.EXAMPLE.COM."]), Action::Allow),
        (names(&["other.example.com"]), Action::Deny),
        (
            names(&["cdn.shared.test", "api.example.com"]),
            Action::Allow,
        ),
        (names(&[]), Action::Deny),
        (names(&["mirror.test"]), Action::Allow),
        (names(&["deb.mirror.test"]), Action::Allow),
        (names(&["evilmirror.test"]), Action::Deny),
    ];
    for (domains, expected) in cases {
        assert_eq!(action(&policy, &flow(domains)), expected, "{domains:?}");
    }
    let wrong_port = Flow {
        resolved_domains: names(&["api.example.com"]),
        ..tcp("198.51.100.7", 80)
    };
    assert_eq!(action(&policy, &wrong_port), Action::Deny);
}

#[test]
fn presets_and_a_documented_policy_round_trip_through_json() {
    for preset in [Policy::none(), Policy::public_only(), Policy::allow_all()] {
        let json = serde_json::to_string(&preset).expect("serialisable");
        assert_eq!(policy(&json), preset, "{json}");
    }
    let documented = policy(
        r#"{"default_egress": "deny", "default_ingress": "allow", "rules": [
            {"action": "allow", "direction": "egress", "destination": "host",
             "protocol": "udp", "port": 53},
            {"action": "deny", "direction": "any", "destination": "10.0.0.0/8"},
            {"action": "allow", "destination": ".example.com", "protocol": "tcp",
             "port": "443-444"}]}"#,
    );
    let json = serde_json::to_value(&documented).expect("serialisable");
    assert_eq!(json["rules"][0]["port"], serde_json::json!(53));
    assert_eq!(json["rules"][1]["direction"], serde_json::json!("any"));
    assert_eq!(json["rules"][2]["port"], serde_json::json!("443-444"));
    assert_eq!(json["rules"][2]["protocol"], serde_json::json!("tcp"));
    assert_eq!(policy(&json.to_string()), documented);
}

#[test]
fn json_fills_the_sdk_defaults_and_rejects_what_it_does_not_know() {
    let empty = policy("{}");
    assert_eq!(empty, Policy::default());
    assert_eq!(
        (empty.default_egress, empty.default_ingress),
        (Action::Deny, Action::Allow)
    );
    let rule =
        &policy(r#"{"rules": [{"action": "deny", "ports": 22, "destination": null}]}"#).rules[0];
    assert_eq!(rule.direction, Direction::Egress);
    assert_eq!((rule.destination.as_ref(), rule.protocol), (None, None));
    assert_eq!(rule.ports.map(|p| p.to_string()).as_deref(), Some("22"));
    let rejected = [
        (r#"{"rules": [{"action": "block"}]}"#, "block"),
        (
            r#"{"rules": [{"action": "allow", "protocol": "sctp"}]}"#,
            "sctp",
        ),
        (
            r#"{"rules": [{"action": "allow", "direction": "both"}]}"#,
            "both",
        ),
        (r#"{"rules": [{"action": "allow", "prot": "tcp"}]}"#, "prot"),
        (
            r#"{"rules": [{"action": "allow", "port": "8000-70000"}]}"#,
            "8000-70000",
        ),
        (
            r#"{"rules": [{"action": "allow", "destination": "10.0.0.0/99"}]}"#,
            "10.0.0.0/99",
        ),
        (r#"{"rules": [{"destination": "*"}]}"#, "action"),
        (r#"{"default": "allow"}"#, "default"),
    ];
    for (json, named) in rejected {
        let error = serde_json::from_str::<Policy>(json)
            .expect_err(json)
            .to_string();
        assert!(error.contains(named), "{json}: {error}");
    }
}

#[test]
fn presets_resolve_every_name_or_none() {
    for (preset, expected) in [
        (Policy::public_only(), Action::Allow),
        (Policy::allow_all(), Action::Allow),
        (Policy::none(), Action::Deny),
    ] {
        let evaluator = Evaluator::new(preset, host());
        assert_eq!(
            evaluator.decide_query("api.example.com"),
            Verdict {
                action: expected,
                decided_by: DecidedBy::Default
            }
        );
    }
}

#[test]
fn a_query_is_decided_by_the_first_rule_that_speaks_about_its_name() {
    let policy = policy(
        r#"{"default_egress": "deny", "rules": [
            {"action": "deny", "destination": "10.0.0.0/8"},
            {"action": "allow", "direction": "ingress", "destination": "*"},
            {"action": "deny", "destination": "blocked.example.com", "port": 443},
            {"action": "allow", "destination": "api.example.com", "protocol": "tcp", "port": 443},
            {"action": "deny", "destination": ".example.com"},
            {"action": "allow", "destination": ".mirror.test"},
            {"action": "allow", "destination": "private"}]}"#,
    );
    let evaluator = Evaluator::new(policy, host());
    let cases = [
        ("api.example.com", Action::Allow, DecidedBy::Rule(3)),
        ("API.Example.com.", Action::Allow, DecidedBy::Rule(3)),
        ("blocked.example.com", Action::Deny, DecidedBy::Rule(4)),
        ("other.example.com", Action::Deny, DecidedBy::Rule(4)),
        ("example.com", Action::Deny, DecidedBy::Rule(4)),
        ("mirror.test", Action::Allow, DecidedBy::Rule(5)),
        ("deb.mirror.test", Action::Allow, DecidedBy::Rule(5)),
        ("othermirror.test", Action::Deny, DecidedBy::Default),
    ];
    for (name, action, decided_by) in cases {
        assert_eq!(
            evaluator.decide_query(name),
            Verdict { action, decided_by },
            "{name}"
        );
    }
}

#[test]
fn an_allow_of_public_or_of_any_peer_lets_every_name_resolve() {
    for destination in ["public", "*"] {
        let policy = policy(&format!(
            r#"{{"rules": [{{"action": "allow", "destination": "{destination}", "port": 443}}]}}"#
        ));
        let verdict = Evaluator::new(policy, host()).decide_query("anything.test");
        assert_eq!(verdict.decided_by, DecidedBy::Rule(0), "{destination}");
    }
}

#[test]
fn a_connect_to_an_address_of_a_denied_and_an_allowed_name_waits_for_its_name() {
    let shared = policy(
        r#"{"default_egress": "deny", "rules": [
            {"action": "deny", "destination": "ads.cdn.test"},
            {"action": "allow", "destination": "api.cdn.test"}]}"#,
    );
    let evaluator = Evaluator::new(shared, host());
    let names = ["ads.cdn.test".to_owned(), "api.cdn.test".to_owned()];
    let flow = Flow {
        resolved_domains: &names,
        ..tcp("198.51.100.7", 443)
    };
    assert_eq!(evaluator.decide(&flow).action, Action::Deny);
    let connect = evaluator.decide_connect(&flow);
    assert!(connect.name_required);
    assert_eq!(connect.verdict.action, Action::Allow);
    assert_eq!(connect.verdict.decided_by, DecidedBy::Rule(1));

    // One name, or names that all deny, decide at once.
    let only_ads = Flow {
        resolved_domains: &names[..1],
        ..flow
    };
    let denied = evaluator.decide_connect(&only_ads);
    assert_eq!(
        (denied.verdict.action, denied.name_required),
        (Action::Deny, false)
    );
    let only_api = Flow {
        resolved_domains: &names[1..],
        ..flow
    };
    let allowed = evaluator.decide_connect(&only_api);
    assert_eq!(
        (allowed.verdict.action, allowed.name_required),
        (Action::Allow, false)
    );
}
