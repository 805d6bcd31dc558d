//! Secrets that never enter the VM: the guest holds a placeholder, and the gateway puts the
//! value into a request on its way out, only to the hosts the secret allows.
//!
//! [`SecretSpec`] is a secret as the sandbox's config stores it (the SDK's `SecretConfig`,
//! without the value); [`SecretValue`] is the value, which only the supervisor's memory holds:
//! it is zeroed when dropped and its `Debug` shows nothing of it. [`Secrets`] is a sandbox's
//! validated set, as the gateway gets it.

mod chunked;
mod filter;
mod http1;
mod http2;
mod shared;
mod substitute;
mod violation;

pub use filter::SecretsFilter;
pub use shared::SharedSecrets;
pub use substitute::Route;
pub use violation::{SecretEvent, SecretReports};

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use zeroize::Zeroizing;

/// What happens when a placeholder heads for a host its secret does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationAction {
    /// The request is answered with an HTTP 403 that says why.
    Block,
    /// As `Block`, and a flow-log record names the secret.
    #[default]
    BlockAndLog,
    /// As `BlockAndLog`, and the sandbox is stopped.
    BlockAndTerminate,
}

/// Where in a request the placeholder is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Injection {
    pub headers: bool,
    /// Inside `Authorization: Basic` credentials, decoded and encoded again.
    pub basic_auth: bool,
    pub query: bool,
    /// Uncompressed bodies, with `Content-Length` fixed.
    pub body: bool,
}

impl Default for Injection {
    fn default() -> Self {
        Self {
            headers: true,
            basic_auth: true,
            query: false,
            body: false,
        }
    }
}

/// A secret as stored: everything but the value. Unknown keys (the SDK's `source`, where the
/// SDK reads the value again) are the SDK's and ignored here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretSpec {
    /// The guest's environment variable holding the placeholder; names the secret in logs.
    pub env_var: String,
    /// Exact server names the value may be sent to (lower case, no trailing dot).
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// `*.example.com`: every name below `example.com` (not the apex).
    #[serde(default)]
    pub allow_host_patterns: Vec<String>,
    /// What the guest sees instead of the value (the SDK fills in `$MSB_<env_var>`).
    pub placeholder: String,
    /// Substitute only inside TLS.
    #[serde(default = "yes")]
    pub require_tls: bool,
    #[serde(default)]
    pub on_violation: ViolationAction,
    #[serde(default)]
    pub inject: Injection,
}

fn yes() -> bool {
    true
}

impl SecretSpec {
    /// Whether the value may be sent to `host`, a server name.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allow_hosts.contains(&host)
            || self
                .allow_host_patterns
                .iter()
                .filter_map(|pattern| pattern.strip_prefix('*'))
                .any(|suffix| host.len() > suffix.len() && host.ends_with(suffix))
    }
}

/// A secret's value. Zeroed when dropped; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The value, for the one place that writes it into a request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("SecretValue(<redacted>)")
    }
}

/// A secret and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    pub spec: SecretSpec,
    pub value: SecretValue,
}

/// A set the gateway refuses. No message holds a value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SecretError {
    #[error("secret {0} is given twice")]
    Duplicate(String),
    #[error("secret {0} allows no host")]
    NoHosts(String),
    #[error("secret {env_var}: {pattern:?} is not a pattern such as *.example.com")]
    BadPattern { env_var: String, pattern: String },
    #[error("secret {0}: the placeholder is empty")]
    EmptyPlaceholder(String),
    #[error("the placeholder of secret {inner} is part of the placeholder of {outer}")]
    OverlappingPlaceholders { inner: String, outer: String },
    #[error("secret {0}: the value is empty")]
    EmptyValue(String),
    #[error("secret {0}: the value holds a line break or NUL, which cannot go into a header")]
    UnsafeValue(String),
    #[error("secret {0}: the value contains its own placeholder")]
    ValueHoldsPlaceholder(String),
}

/// A sandbox's secrets, validated: distinct variables, placeholders that do not overlap,
/// values that can go into a header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Secrets(Vec<Secret>);

impl Secrets {
    pub fn new(secrets: Vec<Secret>) -> Result<Self, SecretError> {
        let mut names = BTreeSet::new();
        for secret in &secrets {
            check(secret)?;
            if !names.insert(secret.spec.env_var.as_str()) {
                return Err(SecretError::Duplicate(secret.spec.env_var.clone()));
            }
        }
        for inner in &secrets {
            for outer in &secrets {
                if !std::ptr::eq(inner, outer)
                    && outer.spec.placeholder.contains(&inner.spec.placeholder)
                {
                    return Err(SecretError::OverlappingPlaceholders {
                        inner: inner.spec.env_var.clone(),
                        outer: outer.spec.env_var.clone(),
                    });
                }
            }
        }
        Ok(Self(secrets))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Secret> {
        self.0.iter()
    }

    /// Whether any secret may be sent to `host`: such flows are intercepted even when the
    /// network's `tls` is not configured.
    pub fn any_allows(&self, host: &str) -> bool {
        self.0.iter().any(|secret| secret.spec.allows(host))
    }
}

fn check(secret: &Secret) -> Result<(), SecretError> {
    let spec = &secret.spec;
    let name = || spec.env_var.clone();
    if spec.allow_hosts.is_empty() && spec.allow_host_patterns.is_empty() {
        return Err(SecretError::NoHosts(name()));
    }
    if let Some(pattern) = spec
        .allow_host_patterns
        .iter()
        .find(|pattern| !pattern.starts_with("*.") || pattern.len() < 3)
    {
        return Err(SecretError::BadPattern {
            env_var: name(),
            pattern: pattern.clone(),
        });
    }
    if spec.placeholder.is_empty() {
        return Err(SecretError::EmptyPlaceholder(name()));
    }
    let value = secret.value.expose();
    if value.is_empty() {
        return Err(SecretError::EmptyValue(name()));
    }
    if value.contains(['\r', '\n', '\0']) {
        return Err(SecretError::UnsafeValue(name()));
    }
    if value.contains(&spec.placeholder) {
        return Err(SecretError::ValueHoldsPlaceholder(name()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(env_var: &str, placeholder: &str, value: &str) -> Secret {
        Secret {
            spec: SecretSpec {
                env_var: env_var.into(),
                allow_hosts: vec!["api.example.com".into()],
                allow_host_patterns: vec!["*.example.org".into()],
                placeholder: placeholder.into(),
                require_tls: true,
                on_violation: ViolationAction::default(),
                inject: Injection::default(),
            },
            value: SecretValue::new(value.into()),
        }
    }

    #[test]
    fn a_secret_allows_its_hosts_and_the_names_below_its_patterns_only() {
        let spec = secret("KEY", "$MSB_KEY", "v").spec;
        assert!(spec.allows("api.example.com"));
        assert!(spec.allows("API.Example.com."));
        assert!(spec.allows("a.b.example.org"));
        assert!(!spec.allows("example.org"));
        assert!(!spec.allows("evil-example.org"));
        assert!(!spec.allows("example.com"));
    }

    #[test]
    fn the_debug_of_a_value_shows_nothing_of_it() {
        let text = format!("{:?}", secret("KEY", "$MSB_KEY", "hunter2-value"));
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn overlapping_placeholders_and_duplicates_are_refused() {
        let overlapping = Secrets::new(vec![
            secret("A", "$MSB_KEY", "1"),
            secret("B", "$MSB_KEY_2", "2"),
        ]);
        assert!(matches!(
            overlapping,
            Err(SecretError::OverlappingPlaceholders { .. })
        ));
        let twice = Secrets::new(vec![
            secret("A", "$MSB_ONE", "1"),
            secret("A", "$MSB_TWO", "2"),
        ]);
        assert_eq!(twice, Err(SecretError::Duplicate("A".into())));
    }

    #[test]
    fn a_value_that_would_split_a_header_is_refused_without_being_shown() {
        let error = Secrets::new(vec![secret("A", "$MSB_A", "top\r\nsecret")]).unwrap_err();
        assert_eq!(error, SecretError::UnsafeValue("A".into()));
        assert!(!error.to_string().contains("secret\r"));
    }
}
