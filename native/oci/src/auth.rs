//! Registry credentials: where they come from (the caller, `~/.docker/config.json`) and how
//! they become an `Authorization` header (Basic, or a bearer token from the registry's
//! token service as its `WWW-Authenticate` challenge directs).

use crate::error::{Error, Result};
use crate::http;
use crate::reference::DOCKER_HUB;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Token responses are tiny JSON documents.
const TOKEN_BODY_LIMIT: u64 = 1 << 20;

#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic {
        username: String,
        password: String,
    },
    /// A bearer token obtained elsewhere, sent as is.
    Token(String),
}

impl Credentials {
    /// The `Authorization` header value these credentials give without any token exchange.
    pub fn authorization(&self) -> String {
        match self {
            Credentials::Basic { username, password } => {
                format!("Basic {}", BASE64.encode(format!("{username}:{password}")))
            }
            Credentials::Token(token) => format!("Bearer {token}"),
        }
    }
}

// Secrets must not end up in logs through `{:?}`.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => {
                write!(
                    formatter,
                    "Basic {{ username: {username:?}, password: <hidden> }}"
                )
            }
            Credentials::Token(_) => write!(formatter, "Token(<hidden>)"),
        }
    }
}

/// Where Docker keeps its client config: `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`.
pub fn default_docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json"))
}

/// The credentials a Docker config file holds for `registry`; a missing file holds none.
pub fn credentials_from_docker_config(path: &Path, registry: &str) -> Result<Option<Credentials>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(Error::DockerConfig {
                path: path.display().to_string(),
                detail: error.to_string(),
            })
        }
    };
    parse_docker_config(&text, registry).map_err(|detail| Error::DockerConfig {
        path: path.display().to_string(),
        detail,
    })
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    registrytoken: Option<String>,
}

/// Finds `registry`'s entry in a Docker config document. Credential helpers
/// (`credsStore`, `credHelpers`) are not consulted.
pub fn parse_docker_config(
    text: &str,
    registry: &str,
) -> std::result::Result<Option<Credentials>, String> {
    let config: DockerConfig = serde_json::from_str(text).map_err(|error| error.to_string())?;
    let wanted = normalize_registry_key(registry);
    let Some(entry) = config
        .auths
        .iter()
        .find(|(key, _)| normalize_registry_key(key) == wanted)
        .map(|(_, entry)| entry)
    else {
        return Ok(None);
    };
    if let Some(auth) = entry.auth.as_deref().filter(|auth| !auth.is_empty()) {
        let decoded = BASE64
            .decode(auth.trim())
            .map_err(|error| format!("auths.{registry}.auth is not base64: {error}"))?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| format!("auths.{registry}.auth is not UTF-8"))?;
        // Passwords may contain `:`, user names may not.
        let (username, password) = decoded
            .split_once(':')
            .ok_or_else(|| format!("auths.{registry}.auth is not user:password"))?;
        return Ok(Some(Credentials::Basic {
            username: username.to_string(),
            password: password.to_string(),
        }));
    }
    if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
        return Ok(Some(Credentials::Basic {
            username: username.clone(),
            password: password.clone(),
        }));
    }
    Ok(entry.registrytoken.clone().map(Credentials::Token))
}

/// Docker config keys are written in several ways for one registry: Docker Hub as
/// `https://index.docker.io/v1/`, others as `host:port` or a URL. Compare hosts only.
fn normalize_registry_key(key: &str) -> String {
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = without_scheme
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        _ => host,
    }
}

/// What a registry asks for in `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Basic {
        realm: Option<String>,
    },
}

/// Parses `Bearer realm="...",service="...",scope="..."` or `Basic realm="..."`.
/// Quoted values may hold commas (`scope="repository:a:pull,push"`) and `\"` escapes.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header
        .split_once(char::is_whitespace)
        .unwrap_or((header, ""));
    let params = parse_params(rest);
    let get = |name: &str| {
        params
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
    };
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
        })
    } else if scheme.eq_ignore_ascii_case("basic") {
        Some(Challenge::Basic {
            realm: get("realm"),
        })
    } else {
        None
    }
}

fn parse_params(text: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ','))
            .collect::<String>()
            .trim()
            .to_string();
        if key.is_empty() {
            break;
        }
        if chars.next_if_eq(&'=').is_none() {
            continue;
        }
        while chars.next_if(|c| *c == ' ').is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    other => value.push(other),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ','))
                .collect::<String>()
                .trim()
                .to_string();
        }
        params.push((key, value));
    }
    params
}

/// Gets a bearer token for pulling `repository` from the token service a challenge names,
/// presenting Basic credentials when there are any (anonymous tokens otherwise).
pub(crate) fn fetch_bearer_token(
    agent: &ureq::Agent,
    registry: &str,
    realm: &str,
    service: Option<&str>,
    scope: &str,
    credentials: Option<&Credentials>,
    insecure: bool,
) -> Result<String> {
    if realm.starts_with("http://") && !insecure {
        return Err(Error::Unauthorized {
            registry: registry.to_string(),
            detail: format!("token service {realm} is plain HTTP; allow it with insecure"),
        });
    }
    let mut request = agent.get(realm).query("scope", scope);
    if let Some(service) = service {
        request = request.query("service", service);
    }
    if let Some(credentials @ Credentials::Basic { .. }) = credentials {
        request = request.set("Authorization", &credentials.authorization());
    }
    let response = http::call(request)?;
    match response.status() {
        200..=299 => {}
        401 | 403 => {
            return Err(Error::Unauthorized {
                registry: registry.to_string(),
                detail: format!("token service refused: {}", http::error_detail(response)),
            })
        }
        _ => return Err(http::status_error(response)),
    }
    let body = http::read_limited(response, TOKEN_BODY_LIMIT)?;
    parse_token_response(&body).ok_or_else(|| Error::Unauthorized {
        registry: registry.to_string(),
        detail: format!("token service {realm} answered without a token"),
    })
}

/// Token services answer `{"token": ...}` (Docker) or `{"access_token": ...}` (OAuth2).
fn parse_token_response(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct TokenResponse {
        token: Option<String>,
        access_token: Option<String>,
    }
    let parsed: TokenResponse = serde_json::from_slice(body).ok()?;
    parsed
        .token
        .filter(|token| !token.is_empty())
        .or(parsed.access_token)
        .filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic_challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull".into()),
            })
        );
        assert_eq!(
            parse_challenge(
                r#"bearer  realm="https://ghcr.io/token", scope="repository:a/b:pull,push",service=ghcr.io"#
            ),
            Some(Challenge::Bearer {
                realm: "https://ghcr.io/token".into(),
                service: Some("ghcr.io".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry \"Realm\"""#),
            Some(Challenge::Basic {
                realm: Some("Registry \"Realm\"".into())
            })
        );
        assert_eq!(
            parse_challenge("Basic realm=local"),
            Some(Challenge::Basic {
                realm: Some("local".into())
            })
        );
        assert_eq!(
            parse_challenge("Basic"),
            Some(Challenge::Basic { realm: None })
        );
        // A bearer challenge without a realm cannot be answered.
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None);
        assert_eq!(parse_challenge("Negotiate abc"), None);
    }

    #[test]
    fn reads_docker_config_entries() {
        let hub_auth = BASE64.encode("hubuser:pa:ss");
        let config = format!(
            r#"{{
                "auths": {{
                    "https://index.docker.io/v1/": {{"auth": "{hub_auth}"}},
                    "localhost:5000": {{"username": "local", "password": "secret"}},
                    "https://ghcr.io": {{"auth": "{}"}},
                    "token.example.com": {{"registrytoken": "tok"}}
                }},
                "credsStore": "desktop"
            }}"#,
            BASE64.encode("gh:pat")
        );
        let basic = |username: &str, password: &str| {
            Some(Credentials::Basic {
                username: username.into(),
                password: password.into(),
            })
        };
        assert_eq!(
            parse_docker_config(&config, "docker.io").unwrap(),
            basic("hubuser", "pa:ss")
        );
        assert_eq!(
            parse_docker_config(&config, "localhost:5000").unwrap(),
            basic("local", "secret")
        );
        assert_eq!(
            parse_docker_config(&config, "ghcr.io").unwrap(),
            basic("gh", "pat")
        );
        assert_eq!(
            parse_docker_config(&config, "token.example.com").unwrap(),
            Some(Credentials::Token("tok".into()))
        );
        assert_eq!(parse_docker_config(&config, "quay.io").unwrap(), None);
        assert_eq!(
            parse_docker_config(&config, "localhost:5001").unwrap(),
            None
        );
        assert!(parse_docker_config("{not json", "docker.io").is_err());
        assert!(
            parse_docker_config(r#"{"auths":{"docker.io":{"auth":"!!"}}}"#, "docker.io").is_err()
        );
    }

    #[test]
    fn docker_config_file_missing_or_broken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        assert_eq!(
            credentials_from_docker_config(&path, "docker.io").unwrap(),
            None
        );
        std::fs::write(&path, "[").unwrap();
        assert!(matches!(
            credentials_from_docker_config(&path, "docker.io"),
            Err(Error::DockerConfig { .. })
        ));
    }

    #[test]
    fn authorization_headers_and_token_responses() {
        let basic = Credentials::Basic {
            username: "u".into(),
            password: "p".into(),
        };
        assert_eq!(basic.authorization(), "Basic dTpw");
        assert_eq!(Credentials::Token("t".into()).authorization(), "Bearer t");
        assert!(!format!("{basic:?}").contains("\"p\""));
        assert_eq!(parse_token_response(br#"{"token":"a"}"#), Some("a".into()));
        assert_eq!(
            parse_token_response(br#"{"access_token":"b","expires_in":300}"#),
            Some("b".into())
        );
        assert_eq!(parse_token_response(br#"{"token":""}"#), None);
        assert_eq!(parse_token_response(b"nope"), None);
    }
}
