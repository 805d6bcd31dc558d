//! The network policy: which flows a sandbox may open (egress) and receive through its
//! published ports (ingress). Pure code, for the supervisor's event loop.

pub mod domain;
pub mod error;
pub mod groups;
pub mod ports;

pub use domain::DomainName;
pub use error::{DomainProblem, PolicyError};
pub use groups::{DestGroup, HostAddresses};
pub use ports::PortRange;
