//! Screening of the addresses in an upstream answer before the guest sees it.
//!
//! Rebinding protection: a public name that resolves to an internal address (loopback,
//! private, shared, link-local, unspecified, multicast) would let a page or a script in the
//! guest reach the host's or the LAN's services under a name the policy allowed. Such A/AAAA
//! records are dropped unless the caller's predicate allows that (name, address) — the
//! policy's rules decide, this module only classifies.
//!
//! IPv6 on an IPv4-only host: AAAA records are dropped too, so the guest never tries an
//! address family it cannot reach and waits out a connect timeout before falling back.

use std::net::IpAddr;

use crate::policy::groups::{DestGroup, HostAddresses};
use hickory_proto::op::Message;
use hickory_proto::rr::{Name, RData, Record};

/// How many CNAME links of an answer are followed from the query name; resolvers stop at
/// far fewer (BIND at 16), and the bound keeps a hostile answer from costing more.
const MAX_CHAIN: usize = 16;

/// One address of an answer, with the names it is known by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedAddress {
    /// The name the guest asked for.
    pub query_name: Name,
    /// The owner name of the address record: the query name, or the end of a CNAME chain.
    pub record_name: Name,
    /// The CNAME targets between the two, in chain order (the query name and the record's
    /// owner excluded); empty when the record does not sit on the query's chain.
    pub aliases: Vec<Name>,
    /// The address itself.
    pub address: IpAddr,
    /// Seconds the answer may be used: the least TTL of the record and the CNAMEs leading
    /// to it.
    pub ttl: u32,
}

impl ResolvedAddress {
    /// Every name this address is known by, lower case without the trailing dot: the query
    /// name first, then the chain, then the record's owner; each once.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::with_capacity(2 + self.aliases.len());
        let all = std::iter::once(&self.query_name)
            .chain(&self.aliases)
            .chain(std::iter::once(&self.record_name));
        for name in all {
            let text = plain_name(name);
            if !names.contains(&text) {
                names.push(text);
            }
        }
        names
    }
}

/// `name` as rules and logs write it: lower case, no trailing dot.
pub fn plain_name(name: &Name) -> String {
    let text = name.to_ascii().to_ascii_lowercase();
    match text.strip_suffix('.') {
        Some(stripped) if !stripped.is_empty() => stripped.to_owned(),
        _ => text,
    }
}

/// The CNAME chain of `answers` from `query_name`: each target with the least TTL of the
/// links up to it.
fn cname_chain(answers: &[Record], query_name: &Name) -> Vec<(Name, u32)> {
    let mut chain: Vec<(Name, u32)> = Vec::new();
    let mut current = query_name.clone();
    let mut ttl = u32::MAX;
    for _ in 0..MAX_CHAIN {
        let next = answers.iter().find_map(|record| match &record.data {
            RData::CNAME(target) if record.name == current => Some((target.0.clone(), record.ttl)),
            _ => None,
        });
        let Some((target, link_ttl)) = next else {
            break;
        };
        if target == *query_name || chain.iter().any(|(name, _)| *name == target) {
            break;
        }
        ttl = ttl.min(link_ttl);
        chain.push((target.clone(), ttl));
        current = target;
    }
    chain
}

/// What may stay in an answer.
pub(crate) struct AddressScreen<'a> {
    /// Drop internal addresses that `allow_internal` does not allow.
    pub rebind_protection: bool,
    /// Keep AAAA records; false when the host has no IPv6 route.
    pub host_has_ipv6: bool,
    /// Whether an internal address is allowed for that name (the policy's rules).
    pub allow_internal: &'a dyn Fn(&ResolvedAddress) -> bool,
}

impl AddressScreen<'_> {
    /// Drops the address records that may not reach the guest from every section, and
    /// returns the addresses kept in the answer section, in order.
    ///
    /// Everything else is untouched: a CNAME chain stays whole even when the address at its
    /// end is dropped, so the guest sees where the name led. When every address is dropped
    /// the answer stays NOERROR with no addresses rather than turning into NXDOMAIN: that is
    /// what filtering resolvers return, and NXDOMAIN would be cached as "the name does not
    /// exist" for every record type, breaking e.g. its MX or TXT lookups.
    pub(crate) fn apply(&self, answer: &mut Message, query_name: &Name) -> Vec<ResolvedAddress> {
        let mut kept = Vec::new();
        let chain = cname_chain(&answer.answers, query_name);
        answer
            .answers
            .retain(|record| match self.screen(record, query_name, &chain) {
                Screened::Kept(address) => {
                    kept.push(*address);
                    true
                }
                Screened::NotAnAddress => true,
                Screened::Dropped => false,
            });
        // Authority and additional records (glue) are filtered the same way: a resolver may
        // cache them, but they are not what the guest asked for, so they are not reported.
        for section in [&mut answer.authorities, &mut answer.additionals] {
            section.retain(|record| {
                !matches!(self.screen(record, query_name, &[]), Screened::Dropped)
            });
        }
        kept
    }

    fn screen(&self, record: &Record, query_name: &Name, chain: &[(Name, u32)]) -> Screened {
        let address = match &record.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(_) if !self.host_has_ipv6 => return Screened::Dropped,
            RData::AAAA(aaaa) => IpAddr::V6(aaaa.0),
            _ => return Screened::NotAnAddress,
        };
        let on_chain = chain.iter().position(|(name, _)| *name == record.name);
        let (aliases, chain_ttl) = match on_chain {
            Some(index) => (
                chain[..index]
                    .iter()
                    .map(|(name, _)| name.clone())
                    .collect(),
                chain[index].1,
            ),
            None => (Vec::new(), u32::MAX),
        };
        let resolved = ResolvedAddress {
            query_name: query_name.clone(),
            record_name: record.name.clone(),
            aliases,
            address,
            ttl: record.ttl.min(chain_ttl),
        };
        if self.rebind_protection && is_internal(address) && !(self.allow_internal)(&resolved) {
            Screened::Dropped
        } else {
            Screened::Kept(Box::new(resolved))
        }
    }
}

enum Screened {
    Kept(Box<ResolvedAddress>),
    NotAnAddress,
    Dropped,
}

/// Whether `address` is one a public name must not resolve to: any destination group but
/// public (loopback and unspecified, private, link-local and metadata, multicast), as the
/// policy classifies it, so that the two never disagree on a range.
pub fn is_internal(address: IpAddr) -> bool {
    HostAddresses::default().classify(address) != DestGroup::Public
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, OpCode};
    use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX};

    #[test]
    fn internal_addresses_are_classified_by_range() {
        for (address, internal) in [
            ("127.0.0.1", true),
            ("10.1.2.3", true),
            ("172.16.0.1", true),
            ("172.31.255.255", true),
            ("172.32.0.1", false),
            ("192.168.1.1", true),
            ("100.64.0.1", true),
            ("100.127.255.255", true),
            ("100.128.0.1", false),
            ("169.254.169.254", true),
            ("0.0.0.0", true),
            ("224.0.0.251", true),
            ("198.51.100.7", false),
            ("8.8.8.8", false),
            ("::1", true),
            ("::", true),
            ("fc00::1", true),
            ("fd12:3456::1", true),
            ("fe80::1", true),
            ("ff02::1", true),
            ("::ffff:10.0.0.1", true),
            ("::ffff:198.51.100.7", false),
            ("2001:db8::1", false),
        ] {
            let parsed: IpAddr = address.parse().expect("test address");
            assert_eq!(is_internal(parsed), internal, "{address}");
        }
    }

    fn name(text: &str) -> Name {
        Name::from_ascii(text).expect("test name")
    }

    fn answer_with(records: Vec<Record>) -> Message {
        let mut message = Message::response(1, OpCode::Query);
        message.add_answers(records);
        message
    }

    fn a(owner: &str, address: &str) -> Record {
        Record::from_rdata(name(owner), 60, RData::A(A(address.parse().expect("v4"))))
    }

    fn aaaa(owner: &str, address: &str) -> Record {
        Record::from_rdata(
            name(owner),
            60,
            RData::AAAA(AAAA(address.parse().expect("v6"))),
        )
    }

    fn cname(owner: &str, target: &str) -> Record {
        Record::from_rdata(name(owner), 60, RData::CNAME(CNAME(name(target))))
    }

    fn screen(allow: &dyn Fn(&ResolvedAddress) -> bool, ipv6: bool) -> AddressScreen<'_> {
        AddressScreen {
            rebind_protection: true,
            host_has_ipv6: ipv6,
            allow_internal: allow,
        }
    }

    fn addresses(kept: &[ResolvedAddress]) -> Vec<String> {
        kept.iter().map(|k| k.address.to_string()).collect()
    }

    #[test]
    fn private_answers_are_dropped_and_public_ones_kept_and_reported() {
        let mut answer = answer_with(vec![
            a("www.example.com.", "198.51.100.7"),
            a("www.example.com.", "10.0.0.5"),
            a("www.example.com.", "127.0.0.1"),
        ]);
        let kept = screen(&|_| false, true).apply(&mut answer, &name("www.example.com."));
        assert_eq!(addresses(&kept), ["198.51.100.7"]);
        assert_eq!(answer.answers.len(), 1);
        assert_eq!(kept[0].query_name, name("www.example.com."));
    }

    #[test]
    fn a_cname_chain_to_a_private_address_keeps_the_chain_and_drops_the_address() {
        let mut answer = answer_with(vec![
            cname("app.example.com.", "edge.example.net."),
            cname("edge.example.net.", "lan.example.org."),
            a("lan.example.org.", "192.168.1.20"),
        ]);
        let kept = screen(&|_| false, true).apply(&mut answer, &name("app.example.com."));
        assert!(kept.is_empty());
        let types: Vec<_> = answer.answers.iter().map(Record::record_type).collect();
        assert_eq!(
            types,
            [
                hickory_proto::rr::RecordType::CNAME,
                hickory_proto::rr::RecordType::CNAME
            ]
        );
    }

    #[test]
    fn the_predicate_sees_both_names_and_can_allow_an_internal_address() {
        let mut answer = answer_with(vec![
            cname("db.corp.example.", "db1.corp.example."),
            a("db1.corp.example.", "10.9.8.7"),
        ]);
        let allow = |resolved: &ResolvedAddress| {
            resolved.query_name == name("db.corp.example.")
                && resolved.record_name == name("db1.corp.example.")
        };
        let kept = screen(&allow, true).apply(&mut answer, &name("db.corp.example."));
        assert_eq!(addresses(&kept), ["10.9.8.7"]);
    }

    #[test]
    fn an_address_at_the_end_of_a_chain_is_known_by_every_name_and_the_least_ttl() {
        let link = |owner: &str, target: &str, ttl: u32| {
            Record::from_rdata(name(owner), ttl, RData::CNAME(CNAME(name(target))))
        };
        let mut answer = answer_with(vec![
            link("App.Example.com.", "edge.example.net.", 300),
            link("edge.example.net.", "cdn.example.org.", 20),
            Record::from_rdata(
                name("cdn.example.org."),
                120,
                RData::A(A("198.51.100.7".parse().expect("v4"))),
            ),
            a("stray.example.", "198.51.100.8"),
        ]);
        let kept = screen(&|_| false, true).apply(&mut answer, &name("app.example.com."));
        assert_eq!(
            kept[0].names(),
            ["app.example.com", "edge.example.net", "cdn.example.org"]
        );
        assert_eq!(kept[0].ttl, 20);
        assert_eq!(kept[1].names(), ["app.example.com", "stray.example"]);
        assert_eq!(kept[1].ttl, 60);
    }

    #[test]
    fn a_cname_loop_ends_the_chain() {
        let mut answer = answer_with(vec![
            cname("a.example.", "b.example."),
            cname("b.example.", "a.example."),
            a("b.example.", "198.51.100.9"),
        ]);
        let kept = screen(&|_| false, true).apply(&mut answer, &name("a.example."));
        assert_eq!(kept[0].names(), ["a.example", "b.example"]);
    }

    #[test]
    fn without_rebind_protection_internal_addresses_stay() {
        let mut answer = answer_with(vec![a("x.example.", "10.0.0.1")]);
        let screen = AddressScreen {
            rebind_protection: false,
            host_has_ipv6: true,
            allow_internal: &|_| false,
        };
        assert_eq!(
            addresses(&screen.apply(&mut answer, &name("x.example."))),
            ["10.0.0.1"]
        );
    }

    #[test]
    fn aaaa_records_are_stripped_on_an_ipv4_only_host_in_every_section() {
        let mut answer = answer_with(vec![
            a("dual.example.", "198.51.100.9"),
            aaaa("dual.example.", "2001:db8::9"),
        ]);
        answer.add_additional(aaaa("ns.example.", "2001:db8::53"));
        let kept = screen(&|_| false, false).apply(&mut answer, &name("dual.example."));
        assert_eq!(addresses(&kept), ["198.51.100.9"]);
        assert!(answer.additionals.is_empty());

        let mut answer = answer_with(vec![aaaa("dual.example.", "2001:db8::9")]);
        let kept = screen(&|_| false, true).apply(&mut answer, &name("dual.example."));
        assert_eq!(addresses(&kept), ["2001:db8::9"]);
    }

    #[test]
    fn records_that_are_not_addresses_are_untouched() {
        let mx = Record::from_rdata(
            name("example.com."),
            60,
            RData::MX(MX::new(10, name("mail.example.com."))),
        );
        let mut answer = answer_with(vec![mx.clone()]);
        let kept = screen(&|_| false, false).apply(&mut answer, &name("example.com."));
        assert!(kept.is_empty());
        assert_eq!(answer.answers, [mx]);
    }
}
