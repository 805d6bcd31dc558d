//! The bypass list: server names whose TLS is never intercepted, so the guest talks to the
//! real server (and sees its real certificate). `api.example.com` is that name only;
//! `*.example.com` is every name below `example.com` at any depth, but not `example.com`
//! itself. Case and a trailing dot do not matter, on either side.

use std::collections::HashSet;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BypassError {
    #[error("an empty name in the TLS bypass list")]
    EmptyName,
    #[error("{0:?} in the TLS bypass list: a wildcard may only be a leading `*.` before a name")]
    MisplacedWildcard(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BypassList {
    exact: HashSet<String>,
    /// Each with its leading dot (`.example.com`), so a suffix match is a label boundary.
    suffixes: Vec<String>,
}

impl BypassList {
    pub fn new<I, S>(patterns: I) -> Result<Self, BypassError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list = Self::default();
        for pattern in patterns {
            let pattern = normalized(pattern.as_ref());
            let (wildcard, name) = match pattern.strip_prefix("*.") {
                Some(name) => (true, name),
                None => (false, pattern.as_str()),
            };
            if name.contains('*') {
                return Err(BypassError::MisplacedWildcard(pattern.clone()));
            }
            if name.is_empty() {
                return Err(BypassError::EmptyName);
            }
            if wildcard {
                list.suffixes.push(format!(".{name}"));
            } else {
                list.exact.insert(name.to_string());
            }
        }
        Ok(list)
    }

    /// Whether a flow to `server_name` (an SNI) passes untouched.
    pub fn matches(&self, server_name: &str) -> bool {
        let name = normalized(server_name);
        self.exact.contains(&name) || self.suffixes.iter().any(|suffix| name.ends_with(suffix))
    }
}

fn normalized(name: &str) -> String {
    let name = name.trim();
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exact_name_matches_itself_only_whatever_its_case_and_trailing_dot() {
        let list = BypassList::new(["API.example.com."]).unwrap();
        assert!(list.matches("api.example.com"));
        assert!(list.matches("Api.Example.Com."));
        assert!(!list.matches("example.com"));
        assert!(!list.matches("x.api.example.com"));
        assert!(!list.matches("notapi.example.com"));
    }

    #[test]
    fn a_wildcard_matches_subdomains_at_any_depth_but_not_the_name_itself() {
        let list = BypassList::new(["*.Example.com"]).unwrap();
        assert!(list.matches("a.example.com"));
        assert!(list.matches("a.b.EXAMPLE.com."));
        assert!(!list.matches("example.com"));
        assert!(!list.matches("badexample.com"));
        assert!(!list.matches("example.com.evil.test"));
    }

    #[test]
    fn an_empty_list_matches_nothing() {
        let list = BypassList::new(Vec::<String>::new()).unwrap();
        assert!(!list.matches("example.com"));
    }

    #[test]
    fn empty_names_and_misplaced_wildcards_are_refused() {
        assert_eq!(BypassList::new([""]), Err(BypassError::EmptyName));
        assert_eq!(BypassList::new(["."]), Err(BypassError::EmptyName));
        for pattern in ["*", "*.", "a.*.com", "*example.com", "*.*.com"] {
            assert!(
                matches!(
                    BypassList::new([pattern]),
                    Err(BypassError::MisplacedWildcard(_))
                ),
                "{pattern}"
            );
        }
    }
}
