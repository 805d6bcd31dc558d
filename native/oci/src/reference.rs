//! Image references (`alpine`, `ghcr.io/org/app@sha256:...`) with Docker Hub's defaults.

use crate::digest::Digest;
use crate::error::{Error, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// The registry name users see for Docker Hub, and the host that actually serves its API.
pub const DOCKER_HUB: &str = "docker.io";
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
const DEFAULT_TAG: &str = "latest";
/// Docker's limit on the repository name, kept so that names we accept work everywhere.
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A parsed reference: always has a registry and a repository, and a tag or a digest
/// (or both: then the digest decides what is pulled and the tag is informational).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    pub fn parse(reference: &str) -> Result<Reference> {
        let invalid = |reason: String| Error::InvalidReference {
            reference: reference.to_string(),
            reason,
        };
        if reference.is_empty() {
            return Err(invalid("empty reference".into()));
        }
        let (name_and_tag, digest) = match reference.split_once('@') {
            Some((rest, digest)) => (
                rest,
                Some(Digest::parse(digest).map_err(|error| invalid(error.to_string()))?),
            ),
            None => (reference, None),
        };
        // A tag is a `:` after the last `/`; earlier colons belong to a registry port.
        let last_slash = name_and_tag.rfind('/').map_or(0, |index| index + 1);
        let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
            Some(colon) => {
                let colon = last_slash + colon;
                (
                    &name_and_tag[..colon],
                    Some(name_and_tag[colon + 1..].to_string()),
                )
            }
            None => (name_and_tag, None),
        };
        let (registry, repository) = split_registry(name);
        if !is_valid_registry(registry) {
            return Err(invalid(format!("invalid registry {registry:?}")));
        }
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_string()
        };
        if let Some(component) = repository
            .split('/')
            .find(|component| !is_valid_component(component))
        {
            return Err(invalid(format!(
                "invalid repository component {component:?} (lowercase letters, digits and \
                 single separators . _ __ - only)"
            )));
        }
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(invalid(format!(
                "name is longer than {MAX_NAME_LEN} characters"
            )));
        }
        if let Some(tag) = &tag {
            if !is_valid_tag(tag) {
                return Err(invalid(format!(
                    "invalid tag {tag:?} (letters, digits, _ . -, at most {MAX_TAG_LEN}, \
                     not starting with . or -)"
                )));
            }
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            _ => tag,
        };
        Ok(Reference {
            registry: registry.to_string(),
            repository,
            tag,
            digest,
        })
    }

    /// The registry as users write it (`docker.io`, `ghcr.io`, `localhost:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The `host[:port]` to send API requests to.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What goes after `/manifests/` in the API: the digest if there is one, else the tag.
    pub fn manifest_selector(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    /// The same repository pinned to `digest` (what a pull by tag resolved to).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }
}

/// The first path component names a registry only if it looks like a host: Docker's rule,
/// which keeps `user/app` on Docker Hub while `localhost/app` and `ghcr.io/app` are not.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first, rest)
        }
        _ => (DOCKER_HUB, name),
    }
}

fn is_valid_registry(registry: &str) -> bool {
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    let port_ok = port.is_none_or(|port| {
        !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
    });
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    port_ok && host_ok
}

/// `[a-z0-9]+` runs joined by a separator: `.`, `_`, `__` or one or more `-`.
fn is_valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut index = 0;
    while index < bytes.len() {
        if alnum(bytes[index]) {
            index += 1;
            continue;
        }
        let start = index;
        while index < bytes.len() && !alnum(bytes[index]) {
            index += 1;
        }
        let separator = &component[start..index];
        let allowed = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !allowed {
            return false;
        }
    }
    true
}

fn is_valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    !bytes.is_empty()
        && bytes.len() <= MAX_TAG_LEN
        && word(bytes[0])
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
}

impl fmt::Display for Reference {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(formatter, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(formatter, "@{digest}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Reference({self})")
    }
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(value: &str) -> Result<Reference> {
        Reference::parse(value)
    }
}

impl Serialize for Reference {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Reference {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Reference::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// (input, registry, api host, repository, tag, digest, canonical form)
    type Case<'a> = (
        String,
        &'a str,
        &'a str,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        String,
    );

    #[test]
    fn parses_good_references() {
        let digest = format!("sha256:{HEX}");
        let table: Vec<Case> = vec![
            (
                "alpine".into(),
                "docker.io",
                "registry-1.docker.io",
                "library/alpine",
                Some("latest"),
                None,
                "docker.io/library/alpine:latest".into(),
            ),
            (
                "python:3.12".into(),
                "docker.io",
                "registry-1.docker.io",
                "library/python",
                Some("3.12"),
                None,
                "docker.io/library/python:3.12".into(),
            ),
            (
                "user/app".into(),
                "docker.io",
                "registry-1.docker.io",
                "user/app",
                Some("latest"),
                None,
                "docker.io/user/app:latest".into(),
            ),
            (
                format!("ghcr.io/org/app@{digest}"),
                "ghcr.io",
                "ghcr.io",
                "org/app",
                None,
                Some(&digest),
                format!("ghcr.io/org/app@{digest}"),
            ),
            (
                "localhost:5000/x/y:tag".into(),
                "localhost:5000",
                "localhost:5000",
                "x/y",
                Some("tag"),
                None,
                "localhost:5000/x/y:tag".into(),
            ),
            (
                "127.0.0.1:5000/busybox".into(),
                "127.0.0.1:5000",
                "127.0.0.1:5000",
                "busybox",
                Some("latest"),
                None,
                "127.0.0.1:5000/busybox:latest".into(),
            ),
            (
                "localhost/app".into(),
                "localhost",
                "localhost",
                "app",
                Some("latest"),
                None,
                "localhost/app:latest".into(),
            ),
            (
                format!("docker.io/library/alpine:3.20@{digest}"),
                "docker.io",
                "registry-1.docker.io",
                "library/alpine",
                Some("3.20"),
                Some(&digest),
                format!("docker.io/library/alpine:3.20@{digest}"),
            ),
            (
                "index.docker.io/my-org/some_app__x.y--z:V1.0_rc-2".into(),
                "docker.io",
                "registry-1.docker.io",
                "my-org/some_app__x.y--z",
                Some("V1.0_rc-2"),
                None,
                "docker.io/my-org/some_app__x.y--z:V1.0_rc-2".into(),
            ),
        ];
        for (input, registry, api_host, repository, tag, digest, canonical) in table {
            let parsed = Reference::parse(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(parsed.registry(), registry, "{input}");
            assert_eq!(parsed.api_host(), api_host, "{input}");
            assert_eq!(parsed.repository(), repository, "{input}");
            assert_eq!(parsed.tag(), tag, "{input}");
            assert_eq!(parsed.digest().map(|d| d.to_string()).as_deref(), digest);
            assert_eq!(parsed.to_string(), canonical, "{input}");
            // The canonical form parses back to the same reference.
            assert_eq!(Reference::parse(&canonical).unwrap(), parsed);
        }
    }

    #[test]
    fn refuses_bad_references() {
        let long_tag = "t".repeat(129);
        let bad = [
            "",
            "Alpine",
            "alpine:",
            "alpine:-tag",
            "alpine:.tag",
            &format!("alpine:{long_tag}"),
            "alpine@sha256:1234",
            &format!("alpine@md5:{HEX}"),
            &format!("alpine@sha256:{}", HEX.to_uppercase()),
            "user//app",
            "user/app/",
            "/app",
            "user/-app",
            "user/app-",
            "user/a..b",
            "user/a___b",
            "user/a_.b",
            "my_host.io/app",
            "host.io:port/app",
            "a b",
        ];
        for input in bad {
            match Reference::parse(input) {
                Err(Error::InvalidReference { reference, reason }) => {
                    assert_eq!(reference, input);
                    assert!(!reason.is_empty());
                }
                other => panic!("{input:?} must be refused, got {other:?}"),
            }
        }
    }

    #[test]
    fn pins_to_a_digest_and_round_trips_as_json() {
        let reference = Reference::parse("python:3.12").unwrap();
        let digest = Digest::parse(&format!("sha256:{HEX}")).unwrap();
        let pinned = reference.with_digest(digest.clone());
        assert_eq!(pinned.manifest_selector(), digest.to_string());
        assert_eq!(reference.manifest_selector(), "3.12");
        let json = serde_json::to_string(&pinned).unwrap();
        assert_eq!(serde_json::from_str::<Reference>(&json).unwrap(), pinned);
    }
}
