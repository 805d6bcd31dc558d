//! The network policy: which flows a sandbox may open (egress) and receive through its
//! published ports (ingress), decided per flow before its first byte moves. Pure code: the
//! supervisor's event loop hands each flow's facts to [`Evaluator::decide`].
//!
//! The SDK sends a policy as JSON of this shape (every field but `action` may be left out;
//! the defaults are the SDK's `NetworkPolicy()` and `Rule()` defaults):
//!
//! ```json
//! {
//!   "default_egress": "deny",
//!   "default_ingress": "allow",
//!   "rules": [
//!     {"action": "allow", "direction": "egress", "destination": "host",
//!      "protocol": "tcp", "port": 8080},
//!     {"action": "deny", "direction": "any", "destination": "10.0.0.0/8"},
//!     {"action": "allow", "destination": ".example.com", "protocol": "tcp",
//!      "port": "443-444"}
//!   ]
//! }
//! ```
//!
//! - `action`: `"allow"` | `"deny"`; `direction`: `"egress"` (default) | `"ingress"` | `"any"`;
//! - `protocol`: `"tcp"` | `"udp"` | `"icmpv4"` | `"icmpv6"`, absent or null for any;
//! - `port` (`"ports"` is accepted too): a number or `"lo-hi"`, absent or null for any;
//! - `destination`: absent or null for any, else `"*"`, a group (`"loopback"`, `"private"`,
//!   `"link-local"`, `"metadata"`, `"multicast"`, `"host"`, `"public"`), a CIDR, a bare IP,
//!   a suffix `".example.com"` or a domain (see [`destination`] and [`groups`]).
//!
//! Unknown fields are errors, so a misspelt field cannot silently widen a rule.

pub mod destination;
pub mod domain;
pub mod error;
pub mod eval;
pub mod groups;
pub mod ports;
mod presets;
mod rule_text;
pub mod types;

pub use destination::Destination;
pub use domain::DomainName;
pub use error::{DomainProblem, PolicyError};
pub use eval::{ConnectVerdict, DecidedBy, Evaluator, Flow, Verdict};
pub use groups::{DestGroup, HostAddresses};
pub use ports::PortRange;
pub use types::{Action, Direction, FlowDirection, Policy, Protocol, Rule};
