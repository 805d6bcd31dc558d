//! The deny lists: names the guest may not resolve at all.
//!
//! `deny_domains` match one name exactly; `deny_domain_suffixes` match a zone on label
//! boundaries, its apex included (`.example.com` denies `example.com` and `a.example.com`,
//! never `badexample.com`). Both compare case-insensitively and ignore a trailing dot, as DNS
//! itself does.

use std::collections::HashSet;

use hickory_proto::rr::Name;
use thiserror::Error;

/// The configuration field holding exact names.
const DOMAINS_FIELD: &str = "deny_domains";
/// The configuration field holding zones.
const SUFFIXES_FIELD: &str = "deny_domain_suffixes";

/// Why a configured deny entry was rejected; each variant names the field and the entry as
/// it was given.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DenyListError {
    /// The entry is empty, or only dots.
    #[error("{field}: entry {entry:?} is empty")]
    Empty {
        /// `deny_domains` or `deny_domain_suffixes`.
        field: &'static str,
        /// The entry as configured.
        entry: String,
    },
    /// The entry is not a domain name (bad characters, a label over 63 bytes, over 255 bytes).
    #[error("{field}: entry {entry:?} is not a domain name: {reason}")]
    NotADomainName {
        /// `deny_domains` or `deny_domain_suffixes`.
        field: &'static str,
        /// The entry as configured.
        entry: String,
        /// What the name parser objected to.
        reason: String,
    },
}

/// The compiled deny lists, ready to answer "is this name denied?" per query.
#[derive(Debug, Clone, Default)]
pub struct DenyList {
    exact: HashSet<Name>,
    suffixes: HashSet<Name>,
}

impl DenyList {
    /// Compiles the configured lists. A suffix may be written with or without its leading dot.
    pub fn new(domains: &[String], suffixes: &[String]) -> Result<Self, DenyListError> {
        Ok(Self {
            exact: domains
                .iter()
                .map(|entry| normalized_name(DOMAINS_FIELD, entry, entry))
                .collect::<Result<_, _>>()?,
            suffixes: suffixes
                .iter()
                .map(|entry| {
                    let zone = entry.strip_prefix('.').unwrap_or(entry);
                    normalized_name(SUFFIXES_FIELD, entry, zone)
                })
                .collect::<Result<_, _>>()?,
        })
    }

    /// Whether a query for `name` must be answered NXDOMAIN.
    pub fn denies(&self, name: &Name) -> bool {
        let mut candidate = fully_qualified(name.clone());
        if self.exact.contains(&candidate) {
            return true;
        }
        // Walking the name's own ancestors makes the cost the name's label count (at most 127),
        // however many suffixes are configured, and keeps the match on label boundaries.
        loop {
            if self.suffixes.contains(&candidate) {
                return true;
            }
            if candidate.is_root() {
                return false;
            }
            candidate = candidate.base_name();
        }
    }
}

/// Parses `text`, the name part of the configured `entry`, into its comparable form
/// (IDNA-encoded if it is Unicode).
fn normalized_name(field: &'static str, entry: &str, text: &str) -> Result<Name, DenyListError> {
    if text.trim_end_matches('.').is_empty() {
        // The root would deny every name; that is `Network.none()`, not a deny list.
        return Err(DenyListError::Empty {
            field,
            entry: entry.to_owned(),
        });
    }
    let name = Name::from_utf8(text).map_err(|error| DenyListError::NotADomainName {
        field,
        entry: entry.to_owned(),
        reason: error.to_string(),
    })?;
    Ok(fully_qualified(name))
}

/// Names compare case-insensitively but also by their fully-qualified flag: set it so that
/// `example.com` and `example.com.` are the same entry.
fn fully_qualified(mut name: Name) -> Name {
    name.set_fqdn(true);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deny_list(domains: &[&str], suffixes: &[&str]) -> DenyList {
        let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        DenyList::new(&owned(domains), &owned(suffixes)).expect("valid deny lists")
    }

    fn denies(list: &DenyList, name: &str) -> bool {
        list.denies(&Name::from_ascii(name).expect("test name"))
    }

    #[test]
    fn exact_domains_match_case_insensitively_and_ignore_the_trailing_dot() {
        let list = deny_list(&["Blocked.Example.com."], &[]);
        for (name, expected) in [
            ("blocked.example.com", true),
            ("BLOCKED.EXAMPLE.COM.", true),
            ("a.blocked.example.com", false),
            ("example.com", false),
            ("blocked.example.co", false),
        ] {
            assert_eq!(denies(&list, name), expected, "{name}");
        }
    }

    #[test]
    fn suffixes_match_on_label_boundaries_with_the_apex_included() {
        let list = deny_list(&[], &[".example.com", "tracker.net."]);
        for (name, expected) in [
            ("example.com", true),
            ("a.example.com.", true),
            ("deep.a.EXAMPLE.com", true),
            ("badexample.com", false),
            ("example.com.evil.org", false),
            ("com", false),
            ("tracker.net", true),
            ("ads.tracker.net", true),
            ("nottracker.net", false),
        ] {
            assert_eq!(denies(&list, name), expected, "{name}");
        }
    }

    #[test]
    fn unicode_entries_are_compared_in_their_idna_form() {
        let list = deny_list(&["bücher.example"], &[]);
        assert!(denies(&list, "xn--bcher-kva.example"));
    }

    #[test]
    fn bad_entries_are_rejected_naming_the_entry() {
        let owned = |s: &str| vec![s.to_string()];
        for entry in ["", ".", ".."] {
            let empty = |field| DenyListError::Empty {
                field,
                entry: entry.into(),
            };
            assert_eq!(
                DenyList::new(&owned(entry), &[]).unwrap_err(),
                empty("deny_domains")
            );
            assert_eq!(
                DenyList::new(&[], &owned(entry)).unwrap_err(),
                empty("deny_domain_suffixes")
            );
        }
        let long_label = format!("{}.com", "a".repeat(64));
        for entry in [long_label.as_str(), "a..b", "sp ace.com"] {
            let error = DenyList::new(&[], &owned(entry)).unwrap_err();
            assert!(
                matches!(
                    &error,
                    DenyListError::NotADomainName { field: "deny_domain_suffixes", entry: named, .. }
                        if named == entry
                ),
                "{entry}: {error:?}"
            );
        }
    }
}
