//! Rule destinations, parsed from the SDK's strings, and whether a flow's peer matches one.
//!
//! In the order they are recognised: `"*"` any peer; a group name (`"private"`, `"public"`,
//! any case); text with a `/` a CIDR; an IP address a single-address CIDR (upstream 0.4.5
//! parsed it as a domain that never matched); `".example.com"` a suffix (the apex and every
//! name below it); anything else a domain. A CIDR is stored truncated to its network, and an
//! IPv4-mapped IPv6 one as IPv4, so it meets the canonical peer address.

use super::domain::DomainName;
use super::error::PolicyError;
use super::groups::{canonical, DestGroup};
use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Any,
    Group(DestGroup),
    Cidr(IpNet),
    /// Matches only through a name the sandbox resolved the peer's address from.
    Domain(DomainName),
    /// Like `Domain`, for the apex and every name below it.
    Suffix(DomainName),
}

/// What the evaluator knows about a flow's peer.
#[derive(Debug, Clone, Copy)]
pub struct Peer<'a> {
    /// Canonical: an IPv4-mapped address already turned into IPv4.
    pub ip: IpAddr,
    pub group: DestGroup,
    pub resolved_domains: &'a [String],
}

impl Destination {
    pub fn matches(&self, peer: &Peer<'_>) -> bool {
        match self {
            Destination::Any => true,
            Destination::Group(group) => *group == peer.group,
            Destination::Cidr(net) => net.contains(&peer.ip),
            Destination::Domain(name) => peer.resolved_domains.iter().any(|d| name.is(d)),
            Destination::Suffix(name) => peer
                .resolved_domains
                .iter()
                .any(|d| name.is_apex_or_parent_of(d)),
        }
    }
}

impl FromStr for Destination {
    type Err = PolicyError;

    fn from_str(text: &str) -> Result<Self, PolicyError> {
        if text.is_empty() {
            return Err(PolicyError::EmptyDestination);
        }
        if text == "*" {
            return Ok(Destination::Any);
        }
        if let Some(group) = DestGroup::from_name(text) {
            return Ok(Destination::Group(group));
        }
        if text.contains('/') {
            return parse_cidr(text);
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Destination::Cidr(canonical_net(IpNet::from(ip))));
        }
        let domain_error = |problem| PolicyError::InvalidDomain {
            text: text.to_owned(),
            problem,
        };
        match text.strip_prefix('.') {
            Some(suffix) => DomainName::parse(suffix)
                .map(Destination::Suffix)
                .map_err(domain_error),
            None => DomainName::parse(text)
                .map(Destination::Domain)
                .map_err(domain_error),
        }
    }
}

fn parse_cidr(text: &str) -> Result<Destination, PolicyError> {
    match text.parse::<IpNet>() {
        Ok(net) => Ok(Destination::Cidr(canonical_net(net.trunc()))),
        Err(error) => Err(PolicyError::InvalidCidr {
            text: text.to_owned(),
            reason: error.to_string(),
        }),
    }
}

/// `::ffff:10.0.0.0/104` as `10.0.0.0/8`: peers are compared in their canonical form.
fn canonical_net(net: IpNet) -> IpNet {
    let IpNet::V6(v6) = net else { return net };
    let (IpAddr::V4(address), Some(prefix)) = (
        canonical(IpAddr::V6(v6.network())),
        v6.prefix_len().checked_sub(96),
    ) else {
        return net;
    };
    Ipv4Net::new(address, prefix).map_or(net, IpNet::V4)
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Any => f.write_str("*"),
            Destination::Group(group) => write!(f, "{group}"),
            Destination::Cidr(net) => write!(f, "{net}"),
            Destination::Domain(name) => write!(f, "{name}"),
            Destination::Suffix(name) => write!(f, ".{name}"),
        }
    }
}

impl Serialize for Destination {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Destination {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::error::DomainProblem;

    fn parse(text: &str) -> Destination {
        text.parse().unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn net(text: &str) -> Destination {
        Destination::Cidr(text.parse().expect("a CIDR"))
    }

    fn domain(text: &str) -> DomainName {
        DomainName::parse(text).expect("a domain")
    }

    #[test]
    fn each_kind_of_destination_is_recognised() {
        let cases = [
            ("*", Destination::Any),
            ("public", Destination::Group(DestGroup::Public)),
            ("link-local", Destination::Group(DestGroup::LinkLocal)),
            ("Private", Destination::Group(DestGroup::Private)),
            ("10.0.0.0/8", net("10.0.0.0/8")),
            ("10.1.2.3/8", net("10.0.0.0/8")),
            ("2001:db8::/32", net("2001:db8::/32")),
            ("::ffff:10.0.0.0/104", net("10.0.0.0/8")),
            ("198.51.100.7", net("198.51.100.7/32")),
            ("2001:db8::1", net("2001:db8::1/128")),
            ("::ffff:203.0.113.1", net("203.0.113.1/32")),
            (".example.com", Destination::Suffix(domain("example.com"))),
            (".Example.com.", Destination::Suffix(domain("example.com"))),
            (
                "api.example.com",
                Destination::Domain(domain("api.example.com")),
            ),
            ("localhost", Destination::Domain(domain("localhost"))),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), expected, "{text:?}");
        }
    }

    #[test]
    fn parse_errors_name_the_problem_and_the_text() {
        let cidr = |text: &str| match text.parse::<Destination>() {
            Err(PolicyError::InvalidCidr { text: bad, .. }) => bad == text,
            _ => false,
        };
        for text in [
            "10.0.0.0/33",
            "10.0.0/8",
            "::/129",
            "example.com/8",
            "/",
            "10.0.0.0/",
        ] {
            assert!(cidr(text), "{text:?}");
        }
        let domain_error = |text: &str, problem| {
            Err::<Destination, _>(PolicyError::InvalidDomain {
                text: text.to_owned(),
                problem,
            })
        };
        let cases = [
            (".", DomainProblem::Empty),
            ("..example.com", DomainProblem::EmptyLabel),
            ("fe80::1%eth0", DomainProblem::BadCharacter(':')),
            ("[::1]", DomainProblem::BadCharacter('[')),
            (" public", DomainProblem::BadCharacter(' ')),
            ("999.1.1.1", DomainProblem::NumericTopLabel),
            (".10.0.0.1", DomainProblem::NumericTopLabel),
        ];
        for (text, problem) in cases {
            assert_eq!(
                text.parse::<Destination>(),
                domain_error(text, problem),
                "{text:?}"
            );
        }
        assert_eq!(
            "".parse::<Destination>(),
            Err(PolicyError::EmptyDestination)
        );
    }

    #[test]
    fn display_is_canonical_text_that_parses_back_to_the_same_destination() {
        let texts = [
            "*",
            "host",
            ".example.com",
            "api.example.com",
            "10.0.0.0/8",
            "1.2.3.4",
            "::1",
        ];
        for text in texts {
            let destination = parse(text);
            assert_eq!(parse(&destination.to_string()), destination, "{text:?}");
        }
        assert_eq!(parse("1.2.3.4").to_string(), "1.2.3.4/32");
        assert_eq!(parse(".EXAMPLE.com").to_string(), ".example.com");
    }

    #[test]
    fn domains_and_suffixes_match_only_through_resolved_names() {
        let resolved = vec!["API.example.com.".to_owned()];
        let ip: IpAddr = "198.51.100.7".parse().expect("an IP");
        let peer = Peer {
            ip,
            group: DestGroup::Public,
            resolved_domains: &resolved,
        };
        let unresolved = Peer {
            resolved_domains: &[],
            ..peer
        };
        let cases = [
            ("api.example.com", true),
            ("example.com", false),
            (".example.com", true),
            (".api.example.com", true),
            (".i.example.com", false),
            ("198.51.100.7", true),
            ("198.51.100.0/24", true),
            ("198.51.101.0/24", false),
            ("public", true),
            ("private", false),
            ("*", true),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text).matches(&peer), expected, "{text:?}");
        }
        assert!(!parse("api.example.com").matches(&unresolved));
        assert!(!parse(".example.com").matches(&unresolved));
    }

    #[test]
    fn json_is_the_destination_string() {
        let destination: Destination = serde_json::from_str("\".example.com\"").expect("json");
        assert_eq!(destination, Destination::Suffix(domain("example.com")));
        assert_eq!(
            serde_json::to_string(&destination).ok().as_deref(),
            Some("\".example.com\"")
        );
        let error = serde_json::from_str::<Destination>("\"10.0.0.0/40\"").expect_err("bad");
        assert!(error.to_string().contains("10.0.0.0/40"), "{error}");
    }
}
