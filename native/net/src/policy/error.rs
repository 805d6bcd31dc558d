//! What can be wrong in a policy the SDK sends: each variant names the problem and carries
//! the offending text, so the SDK can map it to an `InvalidConfigError` naming the field.

/// A policy value that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("the destination is empty")]
    EmptyDestination,
    #[error("destination {text:?} is not a valid CIDR: {reason}")]
    InvalidCidr { text: String, reason: String },
    #[error("destination {text:?} is not a valid domain: {problem}")]
    InvalidDomain {
        text: String,
        problem: DomainProblem,
    },
    #[error("port {text:?} is neither a number nor a lo-hi range")]
    PortSyntax { text: String },
    #[error("port {text:?}: 0 is not a port")]
    PortZero { text: String },
    #[error("port {text:?} is above 65535")]
    PortTooLarge { text: String },
    #[error("port range {text:?} is reversed (its low end is above its high end)")]
    ReversedPortRange { text: String },
}

/// Why a text is not a domain name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DomainProblem {
    #[error("it has no labels")]
    Empty,
    #[error("it is longer than 253 characters")]
    TooLong,
    #[error("it has an empty label")]
    EmptyLabel,
    #[error("a label is longer than 63 characters")]
    LabelTooLong,
    #[error("{0:?} is not a letter, digit or hyphen")]
    BadCharacter(char),
    #[error("a label starts or ends with a hyphen")]
    HyphenAtLabelEdge,
    // A mistyped address such as "10.0.0.256" would otherwise become a domain that never
    // matches, the very silent failure bare IPs had upstream; no top-level domain is numeric.
    #[error("its last label is numeric, so it looks like a mistyped IP address")]
    NumericTopLabel,
}
