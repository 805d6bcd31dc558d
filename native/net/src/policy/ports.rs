//! Port ranges in rules: one port (`443` or `"443"`) or an inclusive `"lo-hi"` range.
//!
//! Upstream 0.4.5 silently turned a range into "any port"; here a range means that range and
//! anything else (0, above 65535, reversed, stray characters) is an error.

use super::error::PolicyError;
use serde::de::{self, Deserializer, Visitor};
use serde::{Serialize, Serializer};
use std::fmt;
use std::num::NonZeroU16;

/// An inclusive range of ports, never containing 0, with `first <= last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    first: u16,
    last: u16,
}

impl PortRange {
    /// The range `first..=last`; 0 and reversed ranges are errors.
    pub fn new(first: u16, last: u16) -> Result<Self, PolicyError> {
        let text = || format!("{first}-{last}");
        if first == 0 {
            return Err(PolicyError::PortZero { text: text() });
        }
        if first > last {
            return Err(PolicyError::ReversedPortRange { text: text() });
        }
        Ok(Self { first, last })
    }

    pub const fn single(port: NonZeroU16) -> Self {
        Self {
            first: port.get(),
            last: port.get(),
        }
    }

    /// Parses `"443"` or `"8000-9000"` (no spaces, no signs).
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let (first, last) = match text.split_once('-') {
            Some((first, last)) => (parse_port(first, text)?, parse_port(last, text)?),
            None => {
                let port = parse_port(text, text)?;
                (port, port)
            }
        };
        if first > last {
            return Err(PolicyError::ReversedPortRange {
                text: text.to_owned(),
            });
        }
        Ok(Self { first, last })
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }

    fn from_number(number: u64) -> Result<Self, PolicyError> {
        let text = || number.to_string();
        match u16::try_from(number) {
            Ok(0) => Err(PolicyError::PortZero { text: text() }),
            Ok(port) => Ok(Self {
                first: port,
                last: port,
            }),
            Err(_) => Err(PolicyError::PortTooLarge { text: text() }),
        }
    }
}

/// One end of a range: ASCII digits only, since `u16::from_str` would also take `+80`.
fn parse_port(digits: &str, whole: &str) -> Result<u16, PolicyError> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PolicyError::PortSyntax {
            text: whole.to_owned(),
        });
    }
    // Every digit string is a number; one that does not fit in u64 is still just too large.
    let number = digits.parse::<u64>().unwrap_or(u64::MAX);
    match u16::try_from(number) {
        Ok(0) => Err(PolicyError::PortZero {
            text: whole.to_owned(),
        }),
        Ok(port) => Ok(port),
        Err(_) => Err(PolicyError::PortTooLarge {
            text: whole.to_owned(),
        }),
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// One port is written as a number, as the SDK sends it; a range as its `"lo-hi"` text.
impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.first == self.last {
            serializer.serialize_u16(self.first)
        } else {
            serializer.collect_str(self)
        }
    }
}

impl<'de> serde::Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PortRangeVisitor)
    }
}

struct PortRangeVisitor;

impl Visitor<'_> for PortRangeVisitor {
    type Value = PortRange;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a port number or a \"lo-hi\" range")
    }

    fn visit_u64<E: de::Error>(self, number: u64) -> Result<PortRange, E> {
        PortRange::from_number(number).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, number: i64) -> Result<PortRange, E> {
        match u64::try_from(number) {
            Ok(number) => self.visit_u64(number),
            Err(_) => Err(E::custom(PolicyError::PortSyntax {
                text: number.to_string(),
            })),
        }
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<PortRange, E> {
        PortRange::parse(text).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_accepts_one_port_or_an_inclusive_range() {
        let cases = [
            ("443", 443, 443),
            ("1", 1, 1),
            ("65535", 65535, 65535),
            ("8000-9000", 8000, 9000),
            ("80-80", 80, 80),
            ("0080", 80, 80),
        ];
        for (text, first, last) in cases {
            assert_eq!(
                PortRange::parse(text),
                PortRange::new(first, last),
                "{text:?}"
            );
        }
        let text = |range: &str| PortRange::parse(range).map(|r| r.to_string());
        assert_eq!(text("0080"), Ok("80".to_owned()));
        assert_eq!(text("80-80"), Ok("80".to_owned()));
        assert_eq!(text("8000-9000"), Ok("8000-9000".to_owned()));
    }

    #[test]
    fn parsing_names_each_problem() {
        let syntax = |t: &str| PolicyError::PortSyntax { text: t.to_owned() };
        let zero = |t: &str| PolicyError::PortZero { text: t.to_owned() };
        let large = |t: &str| PolicyError::PortTooLarge { text: t.to_owned() };
        let reversed = |t: &str| PolicyError::ReversedPortRange { text: t.to_owned() };
        let cases = [
            ("", syntax("")),
            ("http", syntax("http")),
            ("+80", syntax("+80")),
            (" 80", syntax(" 80")),
            ("80 - 90", syntax("80 - 90")),
            ("80-", syntax("80-")),
            ("-80", syntax("-80")),
            ("1-2-3", syntax("1-2-3")),
            ("0", zero("0")),
            ("0-80", zero("0-80")),
            ("65536", large("65536")),
            ("80-65536", large("80-65536")),
            ("99999999999999999999999", large("99999999999999999999999")),
            ("9000-8000", reversed("9000-8000")),
        ];
        for (text, error) in cases {
            assert_eq!(PortRange::parse(text), Err(error), "{text:?}");
        }
        assert_eq!(PortRange::new(0, 5), Err(zero("0-5")));
        assert_eq!(PortRange::new(9, 5), Err(reversed("9-5")));
    }

    #[test]
    fn a_range_contains_both_ends_and_nothing_outside() {
        let range = PortRange::parse("8000-9000").expect("a range");
        let cases = [
            (7999, false),
            (8000, true),
            (8500, true),
            (9000, true),
            (9001, false),
        ];
        for (port, expected) in cases {
            assert_eq!(range.contains(port), expected, "{port}");
        }
    }

    #[test]
    fn json_takes_a_number_or_a_string_and_writes_numbers_for_one_port() {
        let from = |json: &str| serde_json::from_str::<PortRange>(json).map_err(|e| e.to_string());
        assert_eq!(from("443"), Ok(PortRange::new(443, 443).expect("a port")));
        assert_eq!(
            from("\"443\""),
            Ok(PortRange::new(443, 443).expect("a port"))
        );
        assert_eq!(
            from("\"1-1024\""),
            Ok(PortRange::new(1, 1024).expect("a range"))
        );
        for bad in ["0", "65536", "-1", "1.5", "\"9-1\"", "null", "[80]"] {
            assert!(from(bad).is_err(), "{bad}");
        }
        assert!(from("65536").is_err_and(|e| e.contains("above 65535")));
        let one = PortRange::new(53, 53).expect("a port");
        let range = PortRange::new(8000, 9000).expect("a range");
        assert_eq!(serde_json::to_string(&one).ok().as_deref(), Some("53"));
        assert_eq!(
            serde_json::to_string(&range).ok().as_deref(),
            Some("\"8000-9000\"")
        );
    }
}
