//! Placeholders found and replaced in one part of a request, and the rule that decides
//! whether a value may be put there: the flow's SNI is allowed by the secret, the flow's
//! address was resolved for that SNI through the sandbox's DNS, and the request's own host
//! (`Host`, `:authority`) is that SNI, port aside. A placeholder in a part where its secret
//! is substituted, in a request that fails the rule, is a [`Violation`].

use std::collections::BTreeSet;

use memchr::memmem;
use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::{Injection, Secret, Secrets, ViolationAction};

/// Characters left as they are when a value goes into a query string: RFC 3986's unreserved.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A part of a request a secret may be substituted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Header,
    /// The decoded credentials of `Authorization: Basic`.
    BasicAuth,
    Query,
    Body,
}

impl Place {
    fn is_on(self, inject: &Injection) -> bool {
        match self {
            Place::Header => inject.headers,
            Place::BasicAuth => inject.basic_auth,
            Place::Query => inject.query,
            Place::Body => inject.body,
        }
    }
}

/// A placeholder in a request that may not carry its secret's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The secret's environment variable.
    pub secret: String,
    /// The server name the flow goes to.
    pub host: String,
    pub action: ViolationAction,
}

/// The server name a flow's TLS goes to and whether its address was resolved for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub sni: String,
    pub sni_pinned: bool,
}

/// One request's substitutions: the secrets as they were when it began, where it goes, and
/// which secrets were put into it so far.
#[derive(Debug)]
pub struct Substitution<'a> {
    secrets: &'a Secrets,
    route: &'a Route,
    /// The request's `Host` / `:authority`, without its port.
    host: Option<String>,
    injected: BTreeSet<String>,
}

impl<'a> Substitution<'a> {
    pub fn new(secrets: &'a Secrets, route: &'a Route, host: Option<&str>) -> Self {
        Self {
            secrets,
            route,
            host: host.map(|host| normalized_host(host).to_owned()),
            injected: BTreeSet::new(),
        }
    }

    /// The environment variables of the secrets put into the request.
    pub fn injected(&self) -> &BTreeSet<String> {
        &self.injected
    }

    /// Whether any secret is substituted in `place` (so it must be looked at).
    pub fn looks_at(&self, place: Place) -> bool {
        self.secrets
            .iter()
            .any(|secret| place.is_on(&secret.spec.inject))
    }

    /// The longest placeholder substituted in `place`, 0 if none.
    pub fn longest_placeholder(&self, place: Place) -> usize {
        self.secrets
            .iter()
            .filter(|secret| place.is_on(&secret.spec.inject))
            .map(|secret| secret.spec.placeholder.len())
            .max()
            .unwrap_or(0)
    }

    /// `text` with the placeholders of `place` replaced, `None` if it holds none.
    pub fn apply(&mut self, text: &[u8], place: Place) -> Result<Option<Vec<u8>>, Violation> {
        let found = self.find(text, place, 0)?;
        if found.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.replace(text, &found, place, text.len()).0))
    }

    /// Streams a body through: replaces the placeholders in `text` that start before its last
    /// `keep` bytes, and returns the rewritten front and where the untouched tail begins.
    pub fn apply_streaming(
        &mut self,
        text: &[u8],
        keep: usize,
    ) -> Result<(Vec<u8>, usize), Violation> {
        let safe = text.len().saturating_sub(keep);
        let found: Vec<Found> = self
            .find(text, Place::Body, 0)?
            .into_iter()
            .filter(|found| found.at < safe)
            .collect();
        Ok(self.replace(text, &found, Place::Body, safe))
    }

    /// Every placeholder of `place` in `text`, from the front, not overlapping.
    fn find(&self, text: &[u8], place: Place, from: usize) -> Result<Vec<Found>, Violation> {
        let mut found: Vec<Found> = Vec::new();
        for (index, secret) in self.secrets.iter().enumerate() {
            if !place.is_on(&secret.spec.inject) {
                continue;
            }
            for pattern in placeholder_forms(&secret.spec.placeholder, place) {
                for at in memmem::find_iter(&text[from..], pattern.as_bytes()) {
                    found.push(Found {
                        at: from + at,
                        len: pattern.len(),
                        secret: index,
                    });
                }
            }
        }
        found.sort_by_key(|found| found.at);
        let mut end = 0;
        found.retain(|found| {
            let keep = found.at >= end;
            if keep {
                end = found.at + found.len;
            }
            keep
        });
        if let Some(refused) = found
            .iter()
            .map(|found| self.secret(found.secret))
            .find(|secret| !self.may_carry(secret))
        {
            return Err(Violation {
                secret: refused.spec.env_var.clone(),
                host: self.route.sni.clone(),
                action: refused.spec.on_violation,
            });
        }
        Ok(found)
    }

    /// `text` up to at least `until` with `found` replaced, and where the copy stopped.
    fn replace(
        &mut self,
        text: &[u8],
        found: &[Found],
        place: Place,
        until: usize,
    ) -> (Vec<u8>, usize) {
        let mut out = Vec::with_capacity(text.len());
        let mut copied = 0;
        for found in found {
            out.extend_from_slice(&text[copied..found.at]);
            let secret = self.secret(found.secret);
            let value = secret.value.expose();
            if place == Place::Query {
                out.extend(percent_encode(value.as_bytes(), QUERY_VALUE).flat_map(str::bytes));
            } else {
                out.extend_from_slice(value.as_bytes());
            }
            self.injected.insert(secret.spec.env_var.clone());
            copied = found.at + found.len;
        }
        let until = until.max(copied);
        out.extend_from_slice(&text[copied..until]);
        (out, until)
    }

    fn secret(&self, index: usize) -> &'a Secret {
        self.secrets
            .iter()
            .nth(index)
            .expect("found indexes the secrets it was found with")
    }

    fn may_carry(&self, secret: &Secret) -> bool {
        let route = self.route;
        route.sni_pinned
            && secret.spec.allows(&route.sni)
            && self
                .host
                .as_deref()
                .is_some_and(|host| host.eq_ignore_ascii_case(&route.sni))
    }
}

#[derive(Debug, Clone, Copy)]
struct Found {
    at: usize,
    len: usize,
    secret: usize,
}

/// The spellings of a placeholder looked for in `place`: a client percent-encodes `$` in a
/// query string (`%24MSB_KEY`), so there both are.
fn placeholder_forms(placeholder: &str, place: Place) -> Vec<String> {
    let mut forms = vec![placeholder.to_owned()];
    if place == Place::Query {
        let encoded = percent_encode(placeholder.as_bytes(), QUERY_VALUE).to_string();
        if encoded != placeholder {
            forms.push(encoded);
        }
    }
    forms
}

/// `api.example.com:443` → `api.example.com`, `[2001:db8::1]:443` → `2001:db8::1`; a
/// trailing dot dropped.
pub fn normalized_host(host: &str) -> &str {
    let host = host.trim();
    let host = if let Some(bracketed) = host.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or(bracketed)
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    host.strip_suffix('.').unwrap_or(host)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::secrets::{SecretSpec, SecretValue};

    pub fn secret(env_var: &str, host: &str, value: &str, inject: Injection) -> Secret {
        Secret {
            spec: SecretSpec {
                env_var: env_var.into(),
                allow_hosts: vec![host.into()],
                allow_host_patterns: vec![],
                placeholder: format!("$MSB_{env_var}"),
                require_tls: true,
                on_violation: ViolationAction::BlockAndLog,
                inject,
            },
            value: SecretValue::new(value.into()),
        }
    }

    pub fn route(sni: &str) -> Route {
        Route {
            sni: sni.into(),
            sni_pinned: true,
        }
    }

    fn everywhere() -> Injection {
        Injection {
            headers: true,
            basic_auth: true,
            query: true,
            body: true,
        }
    }

    #[test]
    fn every_placeholder_of_every_secret_is_replaced_and_recorded() {
        let secrets = Secrets::new(vec![
            secret("A", "api.test", "one", everywhere()),
            secret("B", "api.test", "two", everywhere()),
        ])
        .unwrap();
        let route = route("api.test");
        let mut substitution = Substitution::new(&secrets, &route, Some("API.test:443"));
        let out = substitution
            .apply(b"x $MSB_A $MSB_B $MSB_A.", Place::Header)
            .unwrap();
        assert_eq!(out.unwrap(), b"x one two one.");
        assert_eq!(substitution.injected().len(), 2);
        assert_eq!(substitution.apply(b"nothing", Place::Header).unwrap(), None);
    }

    #[test]
    fn a_placeholder_is_a_violation_unless_sni_pin_and_host_all_agree() {
        let secrets = Secrets::new(vec![secret("A", "api.test", "one", everywhere())]).unwrap();
        let unpinned = Route {
            sni_pinned: false,
            ..route("api.test")
        };
        let cases = [
            (route("evil.test"), Some("evil.test")),
            (unpinned, Some("api.test")),
            (route("api.test"), Some("evil.test")),
            (route("api.test"), None),
        ];
        for (route, host) in cases {
            let mut substitution = Substitution::new(&secrets, &route, host);
            let violation = substitution.apply(b"$MSB_A", Place::Header).unwrap_err();
            assert_eq!(violation.secret, "A", "{route:?} {host:?}");
            assert_eq!(violation.host, route.sni);
        }
    }

    #[test]
    fn a_placeholder_where_its_secret_is_not_substituted_is_left_and_never_a_violation() {
        let secrets =
            Secrets::new(vec![secret("A", "api.test", "one", Injection::default())]).unwrap();
        let route = route("evil.test");
        let mut substitution = Substitution::new(&secrets, &route, Some("evil.test"));
        assert_eq!(substitution.apply(b"$MSB_A", Place::Body).unwrap(), None);
        assert!(!substitution.looks_at(Place::Body));
    }

    #[test]
    fn a_value_in_a_query_is_percent_encoded_and_an_encoded_placeholder_is_found() {
        let secrets = Secrets::new(vec![secret("A", "api.test", "a b&c", everywhere())]).unwrap();
        let route = route("api.test");
        let mut substitution = Substitution::new(&secrets, &route, Some("api.test"));
        let out = substitution
            .apply(b"k=$MSB_A&j=%24MSB_A", Place::Query)
            .unwrap();
        assert_eq!(out.unwrap(), b"k=a%20b%26c&j=a%20b%26c");
    }

    #[test]
    fn streaming_keeps_a_tail_that_may_hold_the_start_of_a_placeholder() {
        let secrets = Secrets::new(vec![secret("A", "api.test", "one", everywhere())]).unwrap();
        let route = route("api.test");
        let mut substitution = Substitution::new(&secrets, &route, Some("api.test"));
        let keep = substitution.longest_placeholder(Place::Body) - 1;
        let (front, tail) = substitution
            .apply_streaming(b"ab $MSB_A cd $MSB", keep)
            .unwrap();
        // The last 5 bytes (" $MSB") may start a placeholder: kept back.
        assert_eq!(front, b"ab one cd");
        assert_eq!(tail, b"ab $MSB_A cd".len());
    }
}
