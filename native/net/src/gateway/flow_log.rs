//! The flow log: one record for every decision the gateway makes (a TCP SYN, a UDP flow, a
//! ping, a published port's client, a DNS query) and one when an allowed TCP or UDP flow
//! closes, with its bytes each way. The supervisor's [`FlowLogSink`] writes each record as a
//! JSON line to the sandbox's `network.log`; this module builds the records and drops the
//! repeats of a denied flow (a guest retrying its SYN) within [`COALESCE_WINDOW`].
//!
//! The JSON, `kind` first and every field present (null when unknown):
//! `{"kind":"flow","time":"…","direction":"egress","protocol":"tcp","src":"172.16.0.2:40000",
//! "dst":"203.0.113.7:443","domain":"api.example.com","sni":null,"action":"allow","rule":2,
//! "rule_text":"allow@.example.com:tcp:443","reason":null}`; `close` records carry
//! `bytes_sent` (guest to peer), `bytes_received` and `duration_ms`; `dns` records `name`,
//! `qtype`, `rcode` and `answers`. A `flow` record about a secret (reason `secret_injected`
//! or `secret_violation`) adds `secret`, the secret's environment variable, never its value.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use serde::{Serialize, Serializer};

use crate::policy::{Action, DecidedBy, Destination, FlowDirection, Policy, Protocol, Verdict};

/// How long a denied flow's tuple is not logged again: a guest's connect retries its SYN
/// after 1 s, 3 s, 7 s…, and an application may loop on a refused port.
pub const COALESCE_WINDOW: Duration = Duration::from_secs(1);
/// The most denied tuples remembered for coalescing; past it the memory starts over.
const MAX_COALESCED: usize = 1024;

/// Short English reasons, as the flow log writes them.
pub mod reason {
    pub const DENIED: &str = "denied by the policy";
    pub const POLICY_CHANGED: &str = "policy changed";
    pub const SNI_MISMATCH: &str = "sni names a host not resolved to this address";
    pub const HOST_MISMATCH: &str = "http host names a host not resolved to this address";
    pub const NAME_REQUIRED: &str = "allowed only for the host the flow names";
    pub const NO_NAME: &str = "the flow names no host, and a name of its address is denied";
    pub const DENY_DOMAINS: &str = "deny_domains";
    pub const CONNECTION_LIMIT: &str = "connection limit";
    pub const CLOSED: &str = "closed";
    pub const RESET: &str = "reset";
    pub const IDLE: &str = "idle";
    pub const TLS_INTERCEPTED: &str = "tls intercepted";
    pub const QUIC_BLOCKED: &str = "udp to an intercepted tls port (block_quic)";
    pub const TLS_GUEST_HELLO: &str = "tls: the guest's hello is unreadable";
    pub const TLS_UPSTREAM_CERTIFICATE: &str = "tls: upstream certificate refused";
    pub const TLS_UPSTREAM_HANDSHAKE: &str = "tls: upstream handshake failed";
    pub const TLS_UPSTREAM: &str = "tls: upstream broke tls";
    pub const TLS_LEAF: &str = "tls: cannot mint a leaf certificate";
    pub const TLS_GUEST_HANDSHAKE: &str = "tls: guest handshake failed";
    pub const TLS_GUEST: &str = "tls: guest broke tls";
    /// A placeholder headed for a host its secret may not go to; the request was blocked.
    pub const SECRET_VIOLATION: &str = "secret_violation";
    /// A placeholder was replaced by its secret's value in a request.
    pub const SECRET_INJECTED: &str = "secret_injected";
}

/// Where the supervisor keeps the records.
pub trait FlowLogSink: Send {
    fn record(&mut self, record: &FlowRecord);
}

/// One line of the flow log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum FlowRecord {
    Flow(FlowDecision),
    Close(FlowClose),
    Dns(DnsDecision),
}

/// What a `flow` and a `close` record both say of the flow, their first fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowSeen {
    #[serde(serialize_with = "utc")]
    pub time: SystemTime,
    #[serde(serialize_with = "direction_word")]
    pub direction: FlowDirection,
    pub protocol: Protocol,
    pub src: String,
    pub dst: String,
    pub domain: Option<String>,
    pub sni: Option<String>,
}

/// A flow decided by the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowDecision {
    #[serde(flatten)]
    pub flow: FlowSeen,
    pub action: Action,
    pub rule: Option<usize>,
    pub rule_text: String,
    pub reason: Option<&'static str>,
    /// The environment variable of the secret a `secret_*` record is about (never its value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// An allowed flow that ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowClose {
    #[serde(flatten)]
    pub flow: FlowSeen,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub duration_ms: u64,
    pub reason: &'static str,
}

/// A DNS query answered or refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsDecision {
    #[serde(serialize_with = "utc")]
    pub time: SystemTime,
    pub protocol: Protocol,
    pub src: String,
    pub name: String,
    pub qtype: String,
    pub action: Action,
    pub rule: Option<usize>,
    pub rule_text: String,
    pub rcode: String,
    pub answers: Vec<String>,
    pub reason: Option<&'static str>,
}

fn utc<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&crate::utc::utc_timestamp(*time))
}

fn direction_word<S: Serializer>(
    direction: &FlowDirection,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(match direction {
        FlowDirection::Egress => "egress",
        FlowDirection::Ingress => "ingress",
    })
}

/// `IP:PORT` (`[IPv6]:PORT`), or the bare IP of a flow without ports (ICMP).
pub fn endpoint(ip: IpAddr, port: Option<u16>) -> String {
    match port {
        Some(port) => SocketAddr::new(ip, port).to_string(),
        None => ip.to_string(),
    }
}

/// The index and text of what decided `verdict` under `policy`.
pub fn decided_by(policy: &Policy, verdict: Verdict) -> (Option<usize>, String) {
    match verdict.decided_by {
        DecidedBy::Rule(index) => (
            Some(index),
            policy
                .rules
                .get(index)
                .map_or_else(|| "default".to_owned(), ToString::to_string),
        ),
        DecidedBy::Default => (None, "default".to_owned()),
    }
}

/// The name a flow's destination is logged with: the pinned name the deciding rule matched,
/// else the first pinned one.
pub fn logged_domain(policy: &Policy, verdict: Verdict, pinned: &[String]) -> Option<String> {
    let rule = match verdict.decided_by {
        DecidedBy::Rule(index) => policy.rules.get(index),
        DecidedBy::Default => None,
    };
    let matched = rule
        .and_then(|rule| rule.destination.as_ref())
        .and_then(|destination| {
            pinned.iter().find(|name| match destination {
                Destination::Domain(domain) => domain.is(name),
                Destination::Suffix(suffix) => suffix.is_apex_or_parent_of(name),
                _ => false,
            })
        });
    matched.or_else(|| pinned.first()).cloned()
}

/// What the log keeps of an allowed flow until it closes.
#[derive(Debug, Clone)]
pub struct FlowFacts {
    pub direction: FlowDirection,
    pub protocol: Protocol,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub domain: Option<String>,
    pub sni: Option<String>,
    pub opened: Instant,
    /// Guest to peer.
    pub bytes_sent: u64,
    /// Peer to guest.
    pub bytes_received: u64,
}

impl FlowFacts {
    pub fn new(
        direction: FlowDirection,
        protocol: Protocol,
        src: SocketAddr,
        dst: SocketAddr,
    ) -> Self {
        Self {
            direction,
            protocol,
            src,
            dst,
            domain: None,
            sni: None,
            opened: Instant::now(),
            bytes_sent: 0,
            bytes_received: 0,
        }
    }

    /// The flow's `close` record.
    pub fn closed(&self, reason: &'static str) -> FlowRecord {
        let duration = self.opened.elapsed();
        FlowRecord::Close(FlowClose {
            flow: FlowSeen {
                time: SystemTime::now(),
                direction: self.direction,
                protocol: self.protocol,
                src: self.src.to_string(),
                dst: self.dst.to_string(),
                domain: self.domain.clone(),
                sni: self.sni.clone(),
            },
            bytes_sent: self.bytes_sent,
            bytes_received: self.bytes_received,
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            reason,
        })
    }
}

/// One decision to log, as the loop knows it.
#[derive(Debug, Clone)]
pub struct Decided<'a> {
    pub direction: FlowDirection,
    pub protocol: Protocol,
    pub src: String,
    pub dst: String,
    pub verdict: Verdict,
    pub names: &'a [String],
    pub sni: Option<String>,
    pub reason: Option<&'static str>,
}

impl Decided<'_> {
    /// The `flow` record of this decision under `policy`; a denial without a reason of its
    /// own is "denied by the policy".
    pub fn record(self, policy: &Policy) -> FlowRecord {
        let (rule, rule_text) = decided_by(policy, self.verdict);
        let reason = match (self.reason, self.verdict.action) {
            (None, Action::Deny) => Some(reason::DENIED),
            (reason, _) => reason,
        };
        FlowRecord::Flow(FlowDecision {
            flow: FlowSeen {
                time: SystemTime::now(),
                direction: self.direction,
                protocol: self.protocol,
                src: self.src,
                dst: self.dst,
                domain: logged_domain(policy, self.verdict, self.names),
                sni: self.sni,
            },
            action: self.verdict.action,
            rule,
            rule_text,
            reason,
            secret: None,
        })
    }
}

impl super::EventLoop {
    /// Logs one decision by the current policy.
    pub(super) fn log_decision(&mut self, decided: Decided<'_>) {
        if !self.flow_log.is_enabled() {
            return;
        }
        let record = decided.record(self.stack.evaluator().policy());
        self.flow_log.record(record, Instant::now());
    }

    /// Logs a flow refused before the policy was asked.
    pub(super) fn log_refusal(
        &mut self,
        protocol: Protocol,
        src: SocketAddr,
        dst: SocketAddr,
        reason: &'static str,
    ) {
        let record = FlowRecord::Flow(FlowDecision {
            flow: FlowSeen {
                time: SystemTime::now(),
                direction: FlowDirection::Egress,
                protocol,
                src: src.to_string(),
                dst: dst.to_string(),
                domain: None,
                sni: None,
            },
            action: Action::Deny,
            rule: None,
            rule_text: "default".to_owned(),
            reason: Some(reason),
            secret: None,
        });
        self.flow_log.record(record, Instant::now());
    }

    /// Logs the end of an allowed flow.
    pub(super) fn log_close(&mut self, facts: &FlowFacts, reason: &'static str) {
        if self.flow_log.is_enabled() {
            self.flow_log.record(facts.closed(reason), Instant::now());
        }
    }
}

/// The gateway's handle on the sink, with the memory of recently logged denials.
#[derive(Default)]
pub struct FlowLog {
    sink: Option<Box<dyn FlowLogSink>>,
    recent_denials: HashMap<(Protocol, String, String), Instant>,
}

impl FlowLog {
    pub fn new(sink: Option<Box<dyn FlowLogSink>>) -> Self {
        Self {
            sink,
            recent_denials: HashMap::new(),
        }
    }

    /// Whether records go anywhere; callers skip building them otherwise.
    pub fn is_enabled(&self) -> bool {
        self.sink.is_some()
    }

    pub fn record(&mut self, record: FlowRecord, now: Instant) {
        let Some(sink) = self.sink.as_mut() else {
            return;
        };
        if let FlowRecord::Flow(decision) = &record {
            if decision.action == Action::Deny {
                let seen = &decision.flow;
                let key = (seen.protocol, seen.src.clone(), seen.dst.clone());
                if is_repeat(&mut self.recent_denials, key, now) {
                    return;
                }
            }
        }
        sink.record(&record);
    }
}

/// Whether `key` was denied within the window; remembers it as denied now if not.
fn is_repeat<K: std::hash::Hash + Eq>(
    recent: &mut HashMap<K, Instant>,
    key: K,
    now: Instant,
) -> bool {
    if let Some(&at) = recent.get(&key) {
        if now.saturating_duration_since(at) < COALESCE_WINDOW {
            return true;
        }
    }
    if recent.len() >= MAX_COALESCED {
        recent.retain(|_, at| now.saturating_duration_since(*at) < COALESCE_WINDOW);
        if recent.len() >= MAX_COALESCED {
            recent.clear();
        }
    }
    recent.insert(key, now);
    false
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::UNIX_EPOCH;

    use super::*;

    struct Collect(Arc<Mutex<Vec<String>>>);

    impl FlowLogSink for Collect {
        fn record(&mut self, record: &FlowRecord) {
            let line = serde_json::to_string(record).expect("serialisable");
            self.0.lock().expect("not poisoned").push(line);
        }
    }

    fn decision(action: Action, dst: &str) -> FlowRecord {
        FlowRecord::Flow(FlowDecision {
            flow: FlowSeen {
                time: UNIX_EPOCH + Duration::from_millis(1_796_180_400_123),
                direction: FlowDirection::Egress,
                protocol: Protocol::Tcp,
                src: "172.16.0.2:40000".into(),
                dst: dst.into(),
                domain: Some("api.example.com".into()),
                sni: None,
            },
            action,
            rule: Some(2),
            rule_text: "allow@.example.com:tcp:443".into(),
            reason: None,
            secret: None,
        })
    }

    #[test]
    fn a_flow_record_is_the_documented_json_line_with_kind_first() {
        let line = serde_json::to_string(&decision(Action::Allow, "203.0.113.7:443")).unwrap();
        assert_eq!(
            line,
            r#"{"kind":"flow","time":"2026-12-02T03:00:00.123Z","direction":"egress","protocol":"tcp","src":"172.16.0.2:40000","dst":"203.0.113.7:443","domain":"api.example.com","sni":null,"action":"allow","rule":2,"rule_text":"allow@.example.com:tcp:443","reason":null}"#
        );
    }

    #[test]
    fn a_secret_record_names_the_secret_and_other_records_have_no_secret_field() {
        let FlowRecord::Flow(mut injected) = decision(Action::Allow, "203.0.113.7:443") else {
            unreachable!("decision builds a flow record");
        };
        injected.reason = Some(reason::SECRET_INJECTED);
        injected.secret = Some("OPENAI_API_KEY".into());
        let value = serde_json::to_value(FlowRecord::Flow(injected)).unwrap();
        assert_eq!(value["reason"], "secret_injected");
        assert_eq!(value["secret"], "OPENAI_API_KEY");
        let plain = serde_json::to_value(decision(Action::Allow, "203.0.113.7:443")).unwrap();
        assert!(plain.get("secret").is_none(), "{plain}");
    }

    #[test]
    fn close_and_dns_records_carry_their_own_fields() {
        let close = FlowRecord::Close(FlowClose {
            flow: FlowSeen {
                time: UNIX_EPOCH,
                direction: FlowDirection::Ingress,
                protocol: Protocol::Udp,
                src: "127.0.0.1:5000".into(),
                dst: "172.16.0.2:53".into(),
                domain: None,
                sni: None,
            },
            bytes_sent: 12,
            bytes_received: 34,
            duration_ms: 56,
            reason: reason::IDLE,
        });
        let value = serde_json::to_value(&close).unwrap();
        assert_eq!(value["kind"], "close");
        assert_eq!(value["direction"], "ingress");
        assert_eq!(
            (&value["bytes_sent"], &value["bytes_received"]),
            (&12.into(), &34.into())
        );
        assert_eq!(value["reason"], "idle");
        let dns = FlowRecord::Dns(DnsDecision {
            time: UNIX_EPOCH,
            protocol: Protocol::Udp,
            src: "172.16.0.2:41000".into(),
            name: "other.example".into(),
            qtype: "A".into(),
            action: Action::Deny,
            rule: None,
            rule_text: "default".into(),
            rcode: "NXDOMAIN".into(),
            answers: vec![],
            reason: Some(reason::DENIED),
        });
        let line = serde_json::to_string(&dns).unwrap();
        assert!(line.starts_with(r#"{"kind":"dns","time":"1970-01-01T00:00:00.000Z""#));
        assert!(line.contains(r#""answers":[],"reason":"denied by the policy"}"#));
    }

    #[test]
    fn repeats_of_a_denied_tuple_within_a_second_are_logged_once() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut log = FlowLog::new(Some(Box::new(Collect(lines.clone()))));
        let t0 = Instant::now();
        let denied = || decision(Action::Deny, "198.51.100.7:22");
        log.record(denied(), t0);
        log.record(denied(), t0 + Duration::from_millis(900));
        log.record(decision(Action::Deny, "198.51.100.7:23"), t0);
        log.record(decision(Action::Allow, "198.51.100.7:80"), t0);
        log.record(decision(Action::Allow, "198.51.100.7:80"), t0);
        log.record(denied(), t0 + Duration::from_millis(1001));
        assert_eq!(lines.lock().unwrap().len(), 5);
    }

    #[test]
    fn endpoints_put_ipv6_in_brackets_and_icmp_has_no_port() {
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        assert_eq!(endpoint(v6, Some(443)), "[2001:db8::7]:443");
        assert_eq!(endpoint(v6, None), "2001:db8::7");
    }

    #[test]
    fn the_logged_domain_is_the_pinned_name_the_rule_matched() {
        let policy: Policy = serde_json::from_str(
            r#"{"rules": [{"action": "allow", "destination": ".example.com"}]}"#,
        )
        .unwrap();
        let pinned = vec!["cdn.test".to_owned(), "api.example.com".to_owned()];
        let by_rule = Verdict {
            action: Action::Allow,
            decided_by: DecidedBy::Rule(0),
        };
        let by_default = Verdict {
            action: Action::Deny,
            decided_by: DecidedBy::Default,
        };
        assert_eq!(
            logged_domain(&policy, by_rule, &pinned).as_deref(),
            Some("api.example.com")
        );
        assert_eq!(
            logged_domain(&policy, by_default, &pinned).as_deref(),
            Some("cdn.test")
        );
        assert_eq!(
            decided_by(&policy, by_rule),
            (Some(0), "allow@.example.com".to_owned())
        );
        assert_eq!(
            decided_by(&policy, by_default),
            (None, "default".to_owned())
        );
    }
}
