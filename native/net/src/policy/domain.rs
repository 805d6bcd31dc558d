//! Domain names in rules: validated once when a rule is parsed, then compared with the
//! names the sandbox resolved, case-insensitively and ignoring a trailing dot.

use super::error::DomainProblem;
use std::fmt;

/// The longest name DNS can carry in text form, without the trailing dot (RFC 1035 2.3.4).
const MAX_NAME_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// A validated domain name, stored lowercase and without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DomainName(String);

impl DomainName {
    /// Validates `text` as letters, digits and hyphens in dot-separated labels.
    pub fn parse(text: &str) -> Result<Self, DomainProblem> {
        let name = without_trailing_dot(text);
        if name.is_empty() {
            return Err(DomainProblem::Empty);
        }
        if name.len() > MAX_NAME_LEN {
            return Err(DomainProblem::TooLong);
        }
        name.split('.').try_for_each(check_label)?;
        if name.rsplit('.').next().is_some_and(is_numeric) {
            return Err(DomainProblem::NumericTopLabel);
        }
        Ok(Self(name.to_ascii_lowercase()))
    }

    /// Whether `resolved` is this very name.
    pub fn is(&self, resolved: &str) -> bool {
        without_trailing_dot(resolved).eq_ignore_ascii_case(&self.0)
    }

    /// Whether `resolved` is this name or a name below it, on a label boundary: a suffix
    /// `example.com` covers `example.com` and `api.example.com`, never `badexample.com`.
    pub fn is_apex_or_parent_of(&self, resolved: &str) -> bool {
        let name = without_trailing_dot(resolved).as_bytes();
        let suffix = self.0.as_bytes();
        match name.len().checked_sub(suffix.len()) {
            Some(0) => name.eq_ignore_ascii_case(suffix),
            Some(cut) => name[cut - 1] == b'.' && name[cut..].eq_ignore_ascii_case(suffix),
            None => false,
        }
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn without_trailing_dot(text: &str) -> &str {
    text.strip_suffix('.').unwrap_or(text)
}

fn check_label(label: &str) -> Result<(), DomainProblem> {
    if label.is_empty() {
        return Err(DomainProblem::EmptyLabel);
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(DomainProblem::LabelTooLong);
    }
    if let Some(bad) = label
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && *c != '-')
    {
        return Err(DomainProblem::BadCharacter(bad));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(DomainProblem::HyphenAtLabelEdge);
    }
    Ok(())
}

fn is_numeric(label: &str) -> bool {
    label.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> DomainName {
        DomainName::parse(text).expect("a valid name")
    }

    #[test]
    fn parsing_lowercases_and_drops_the_trailing_dot() {
        assert_eq!(name("API.Example.COM.").to_string(), "api.example.com");
    }

    #[test]
    fn parsing_names_each_problem() {
        let long_label = "a".repeat(64);
        let long_name = ["a".repeat(63).as_str(); 4].join(".");
        let cases: &[(&str, DomainProblem)] = &[
            ("", DomainProblem::Empty),
            (".", DomainProblem::Empty),
            (&long_name, DomainProblem::TooLong),
            ("a..b", DomainProblem::EmptyLabel),
            ("example.com..", DomainProblem::EmptyLabel),
            (&long_label, DomainProblem::LabelTooLong),
            ("exa mple.com", DomainProblem::BadCharacter(' ')),
            ("*.example.com", DomainProblem::BadCharacter('*')),
            ("bücher.de", DomainProblem::BadCharacter('ü')),
            ("-a.com", DomainProblem::HyphenAtLabelEdge),
            ("a-.com", DomainProblem::HyphenAtLabelEdge),
            ("10.0.0.256", DomainProblem::NumericTopLabel),
        ];
        for (text, problem) in cases {
            assert_eq!(DomainName::parse(text), Err(*problem), "{text:?}");
        }
    }

    #[test]
    fn the_longest_legal_name_and_label_are_accepted() {
        let label = "a".repeat(63);
        let longest = [label.as_str(), &label, &label, &"b".repeat(61)].join(".");
        assert_eq!(longest.len(), 253);
        assert!(DomainName::parse(&longest).is_ok());
        assert!(DomainName::parse("a1-b.x9").is_ok());
    }

    #[test]
    fn an_exact_name_ignores_case_and_the_trailing_dot() {
        let rule = name("example.com");
        assert!(rule.is("EXAMPLE.com."));
        assert!(!rule.is("api.example.com"));
        assert!(!rule.is("example.co"));
    }

    #[test]
    fn a_suffix_covers_the_apex_and_names_below_it_on_label_boundaries() {
        let rule = name("example.com");
        let cases = [
            ("example.com", true),
            ("Example.Com.", true),
            ("api.example.com", true),
            ("a.b.example.com.", true),
            ("badexample.com", false),
            ("example.com.evil", false),
            ("xample.com", false),
            ("com", false),
            ("", false),
            ("ü.example.com", true),
            ("ü", false),
        ];
        for (resolved, expected) in cases {
            assert_eq!(
                rule.is_apex_or_parent_of(resolved),
                expected,
                "{resolved:?}"
            );
        }
    }
}
