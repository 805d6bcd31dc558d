//! DNS at the gateway, sans-IO: the guest's queries are answered here (denied names,
//! AAAA on an IPv4-only host, malformed queries) or forwarded to the nameservers, and their
//! answers are screened (rebinding protection, AAAA stripping) before the guest sees them.
//!
//! [`Resolver`] is the one entry point; the supervisor's event loop feeds it bytes and the
//! time and carries out the [`Action`]s it returns. Parsing and building messages is
//! hickory-proto's; nothing here reads DNS bytes by hand.

mod config;
mod filter;
mod forward;
mod rebind;
mod reply;
mod resolver;
mod upstream_id;

#[cfg(test)]
mod tests;

pub use config::{DnsConfig, DnsConfigError, DEFAULT_QUERY_TIMEOUT};
pub use filter::{DenyList, DenyListError};
pub use forward::{Action, Transport};
pub use rebind::{is_internal, plain_name, ResolvedAddress};
pub use resolver::{
    question, HostDns, Question, Resolver, ResolverError, DEFAULT_MAX_PENDING, MAX_PENDING_LIMIT,
};
