//! A blocking client for the OCI Distribution API: manifests (resolving an index to this
//! machine's platform), the image config and layer blobs, answering auth challenges.

use crate::auth::{self, Challenge, Credentials};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::http;
use crate::reference::Reference;
use serde::{Deserialize, Serialize};
use std::io::Read;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Manifests and configs are small documents; anything bigger is not one.
const MANIFEST_LIMIT: u64 = 4 << 20;
const CONFIG_LIMIT: u64 = 16 << 20;

/// The operating system and CPU an image variant is built for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of the guests this machine runs: Linux on the host's CPU, named the
    /// way OCI names architectures.
    pub fn current() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: None,
        }
    }

    fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && (self.variant.is_none() || self.variant == other.variant)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(formatter, "/{variant}")?;
        }
        Ok(())
    }
}

/// A pointer to content: its media type, digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
}

#[derive(Deserialize)]
struct ManifestDocument {
    #[serde(rename = "schemaVersion", default)]
    schema_version: u32,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
}

/// A single-platform image manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageManifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// What a reference resolved to. `digest` is the digest of the document the reference
/// names (an index for multi-platform images), i.e. what `name@digest` pulls again.
#[derive(Debug, Clone)]
pub struct ResolvedManifest {
    pub digest: Digest,
    pub manifest: ImageManifest,
}

/// The parts of the image config a sandbox needs to run the image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedConfig {
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub diff_ids: Vec<Digest>,
}

pub struct RegistryClient {
    agent: ureq::Agent,
    registry: String,
    base_url: String,
    repository: String,
    credentials: Option<Credentials>,
    /// The header that last worked (or the caller's token), reused so that a token is
    /// fetched once per pull rather than once per request.
    authorization: Option<String>,
    insecure: bool,
}

impl RegistryClient {
    /// A client for `reference`'s repository. Plain HTTP only with `insecure`.
    pub fn new(reference: &Reference, credentials: Option<Credentials>, insecure: bool) -> Self {
        let scheme = if insecure { "http" } else { "https" };
        let authorization = match &credentials {
            Some(token @ Credentials::Token(_)) => Some(token.authorization()),
            _ => None,
        };
        RegistryClient {
            agent: http::agent(),
            registry: reference.registry().to_string(),
            base_url: format!(
                "{scheme}://{}/v2/{}",
                reference.api_host(),
                reference.repository()
            ),
            repository: reference.repository().to_string(),
            credentials,
            authorization,
            insecure,
        }
    }

    /// A GET that answers one auth challenge and retries; 401/403 after that is final.
    fn get(&mut self, url: &str, accept: Option<&str>) -> Result<ureq::Response> {
        let mut challenged = false;
        loop {
            let mut request = self.agent.get(url);
            if let Some(accept) = accept {
                request = request.set("Accept", accept);
            }
            if let Some(authorization) = &self.authorization {
                request = request.set("Authorization", authorization);
            }
            let response = http::call(request)?;
            match response.status() {
                401 if !challenged => {
                    challenged = true;
                    let header = response
                        .header("WWW-Authenticate")
                        .unwrap_or("")
                        .to_string();
                    self.authorization = Some(self.answer(&header)?);
                }
                401 | 403 => {
                    return Err(Error::Unauthorized {
                        registry: self.registry.clone(),
                        detail: http::error_detail(response),
                    })
                }
                _ => return Ok(response),
            }
        }
    }

    fn answer(&self, header: &str) -> Result<String> {
        let unauthorized = |detail: String| Error::Unauthorized {
            registry: self.registry.clone(),
            detail,
        };
        match auth::parse_challenge(header) {
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let scope = scope.unwrap_or_else(|| format!("repository:{}:pull", self.repository));
                let token = auth::fetch_bearer_token(
                    &self.agent,
                    &self.registry,
                    &realm,
                    service.as_deref(),
                    &scope,
                    self.credentials.as_ref(),
                    self.insecure,
                )?;
                Ok(format!("Bearer {token}"))
            }
            Some(Challenge::Basic { .. }) => match &self.credentials {
                Some(credentials @ Credentials::Basic { .. }) => Ok(credentials.authorization()),
                _ => Err(unauthorized(
                    "registry wants a user name and password".into(),
                )),
            },
            None => Err(unauthorized(format!(
                "unsupported authentication challenge {header:?}"
            ))),
        }
    }

    /// Fetches the manifest `selector` (a tag or digest) names, with its digest and media type.
    fn fetch_manifest(&mut self, selector: &str, display: &str) -> Result<(Vec<u8>, String)> {
        let url = format!("{}/manifests/{selector}", self.base_url);
        let accept = [
            OCI_INDEX,
            OCI_MANIFEST,
            DOCKER_MANIFEST_LIST,
            DOCKER_MANIFEST,
        ]
        .join(", ");
        let response = self.get(&url, Some(&accept))?;
        if response.status() == 404 {
            return Err(Error::NotFound {
                reference: display.to_string(),
            });
        }
        if !http::is_success(&response) {
            return Err(http::status_error(response));
        }
        let content_type = response
            .header("Content-Type")
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let body = http::read_limited(response, MANIFEST_LIMIT)?;
        Ok((body, content_type))
    }

    /// Resolves `reference` to a single-platform manifest for `platform`, verifying every
    /// manifest fetched by digest.
    pub fn resolve(
        &mut self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<ResolvedManifest> {
        let display = reference.to_string();
        let (body, content_type) = self.fetch_manifest(&reference.manifest_selector(), &display)?;
        let digest = Digest::of(&body);
        if let Some(expected) = reference.digest() {
            expected.expect(&digest)?;
        }
        let manifest = match parse_manifest(&body, &content_type)? {
            Manifest::Image(manifest) => manifest,
            Manifest::Index(entries) => {
                let chosen = choose_platform(&entries, platform)?;
                let display = format!("{}@{}", display, chosen.digest);
                let (body, content_type) =
                    self.fetch_manifest(&chosen.digest.to_string(), &display)?;
                chosen.digest.expect(&Digest::of(&body))?;
                match parse_manifest(&body, &content_type)? {
                    Manifest::Image(manifest) => manifest,
                    Manifest::Index(_) => {
                        return Err(Error::InvalidManifest {
                            detail: format!("{} is an index inside an index", chosen.digest),
                        })
                    }
                }
            }
        };
        Ok(ResolvedManifest { digest, manifest })
    }

    /// Opens a blob for streaming; the caller verifies what it reads. Returns the reader
    /// and the length the server announced, if any.
    pub fn open_blob(&mut self, digest: &Digest) -> Result<(Box<dyn Read + Send>, Option<u64>)> {
        let url = format!("{}/blobs/{digest}", self.base_url);
        let response = self.get(&url, None)?;
        if response.status() == 404 {
            return Err(Error::NotFound {
                reference: format!("{}/{}@{digest}", self.registry, self.repository),
            });
        }
        if !http::is_success(&response) {
            return Err(http::status_error(response));
        }
        let length = response
            .header("Content-Length")
            .and_then(|value| value.parse().ok());
        Ok((response.into_reader(), length))
    }

    /// Fetches and verifies the image config blob and parses what sandboxes need.
    pub fn fetch_config(&mut self, descriptor: &Descriptor) -> Result<(Vec<u8>, ParsedConfig)> {
        if descriptor.size > CONFIG_LIMIT {
            return Err(Error::InvalidConfig {
                detail: format!("config of {} bytes is implausibly large", descriptor.size),
            });
        }
        let (reader, _) = self.open_blob(&descriptor.digest)?;
        let mut body = Vec::new();
        reader
            .take(CONFIG_LIMIT + 1)
            .read_to_end(&mut body)
            .map_err(|error| Error::Transport {
                url: format!("{}/blobs/{}", self.base_url, descriptor.digest),
                detail: error.to_string(),
            })?;
        descriptor.digest.expect(&Digest::of(&body))?;
        let parsed = parse_config(&body)?;
        Ok((body, parsed))
    }
}

enum Manifest {
    Image(ImageManifest),
    Index(Vec<Descriptor>),
}

/// Classifies a manifest by its Content-Type, else its own `mediaType`, else its shape
/// (some registries serve OCI documents as `application/json`).
fn parse_manifest(body: &[u8], content_type: &str) -> Result<Manifest> {
    let document: ManifestDocument =
        serde_json::from_slice(body).map_err(|error| Error::InvalidManifest {
            detail: error.to_string(),
        })?;
    if document.schema_version != 2 {
        return Err(Error::UnsupportedMediaType {
            media_type: format!(
                "manifest schema version {} ({content_type})",
                document.schema_version
            ),
        });
    }
    let declared = match content_type {
        OCI_INDEX | DOCKER_MANIFEST_LIST | OCI_MANIFEST | DOCKER_MANIFEST => content_type,
        _ => document.media_type.as_deref().unwrap_or(""),
    };
    let is_index = match declared {
        OCI_INDEX | DOCKER_MANIFEST_LIST => true,
        OCI_MANIFEST | DOCKER_MANIFEST => false,
        "" => document.manifests.is_some(),
        other => {
            return Err(Error::UnsupportedMediaType {
                media_type: other.to_string(),
            })
        }
    };
    if is_index {
        let manifests = document.manifests.ok_or_else(|| Error::InvalidManifest {
            detail: "index without manifests".into(),
        })?;
        return Ok(Manifest::Index(manifests));
    }
    match (document.config, document.layers) {
        (Some(config), Some(layers)) => Ok(Manifest::Image(ImageManifest { config, layers })),
        _ => Err(Error::InvalidManifest {
            detail: "image manifest without config or layers".into(),
        }),
    }
}

fn choose_platform<'a>(entries: &'a [Descriptor], wanted: &Platform) -> Result<&'a Descriptor> {
    entries
        .iter()
        .find(|entry| entry.platform.as_ref().is_some_and(|p| wanted.matches(p)))
        .ok_or_else(|| Error::PlatformNotFound {
            wanted: wanted.to_string(),
            available: entries
                .iter()
                .map(|entry| {
                    entry
                        .platform
                        .as_ref()
                        .map_or_else(|| "unknown".to_string(), Platform::to_string)
                })
                .collect(),
        })
}

/// Reads `config.{Env,Entrypoint,Cmd,WorkingDir,User}` and `rootfs.diff_ids`; every one of
/// them may be absent or null in real configs.
pub fn parse_config(body: &[u8]) -> Result<ParsedConfig> {
    #[derive(Deserialize)]
    struct Document {
        #[serde(default)]
        config: Option<Runtime>,
        rootfs: RootFs,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "PascalCase")]
    struct Runtime {
        env: Option<Vec<String>>,
        entrypoint: Option<Vec<String>>,
        cmd: Option<Vec<String>>,
        working_dir: Option<String>,
        user: Option<String>,
    }
    #[derive(Deserialize)]
    struct RootFs {
        #[serde(rename = "type")]
        kind: String,
        diff_ids: Vec<Digest>,
    }
    let document: Document =
        serde_json::from_slice(body).map_err(|error| Error::InvalidConfig {
            detail: error.to_string(),
        })?;
    if document.rootfs.kind != "layers" {
        return Err(Error::InvalidConfig {
            detail: format!("rootfs type {:?} is not \"layers\"", document.rootfs.kind),
        });
    }
    let runtime = document.config.unwrap_or_default();
    Ok(ParsedConfig {
        env: runtime.env.unwrap_or_default(),
        entrypoint: runtime.entrypoint.unwrap_or_default(),
        cmd: runtime.cmd.unwrap_or_default(),
        working_dir: runtime.working_dir.filter(|dir| !dir.is_empty()),
        user: runtime.user.filter(|user| !user.is_empty()),
        diff_ids: document.rootfs.diff_ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(byte: char) -> String {
        format!("sha256:{}", byte.to_string().repeat(64))
    }

    #[test]
    fn index_picks_the_platform_or_lists_what_exists() {
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
                {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}},
                {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":2,"platform":{{"os":"linux","architecture":"amd64"}}}},
                {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":3,"platform":{{"os":"unknown","architecture":"unknown"}}}}
            ]}}"#,
            digest('a'),
            digest('b'),
            digest('c')
        );
        let Manifest::Index(entries) =
            parse_manifest(index.as_bytes(), "application/json").unwrap()
        else {
            panic!("an index")
        };
        let amd64 = Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        };
        assert_eq!(choose_platform(&entries, &amd64).unwrap().size, 2);
        let riscv = Platform {
            architecture: "riscv64".into(),
            ..amd64
        };
        match choose_platform(&entries, &riscv) {
            Err(Error::PlatformNotFound { wanted, available }) => {
                assert_eq!(wanted, "linux/riscv64");
                assert_eq!(
                    available,
                    ["linux/arm64/v8", "linux/amd64", "unknown/unknown"]
                );
            }
            other => panic!("expected PlatformNotFound, got {other:?}"),
        }
    }

    #[test]
    fn image_manifest_and_config_are_parsed() {
        let manifest = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{}","size":7}},
               "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{}","size":9}}]}}"#,
            digest('c'),
            digest('d')
        );
        let Manifest::Image(parsed) = parse_manifest(manifest.as_bytes(), DOCKER_MANIFEST).unwrap()
        else {
            panic!("an image manifest")
        };
        assert_eq!(parsed.config.size, 7);
        assert_eq!(parsed.layers[0].digest.to_string(), digest('d'));
        assert!(matches!(
            parse_manifest(br#"{"schemaVersion":1,"fsLayers":[]}"#, ""),
            Err(Error::UnsupportedMediaType { .. })
        ));

        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Env":["PATH=/bin"],"Entrypoint":null,
               "Cmd":["/bin/sh"],"WorkingDir":"","User":"1000:1000"}},"rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
            digest('e')
        );
        let parsed = parse_config(config.as_bytes()).unwrap();
        assert_eq!(parsed.env, ["PATH=/bin"]);
        assert!(parsed.entrypoint.is_empty());
        assert_eq!(parsed.cmd, ["/bin/sh"]);
        assert_eq!(parsed.working_dir, None);
        assert_eq!(parsed.user.as_deref(), Some("1000:1000"));
        assert_eq!(parsed.diff_ids[0].to_string(), digest('e'));
    }
}

/// The auth handshake against a scripted local server: the registry test in `tests/` uses a
/// registry without auth, so challenges and tokens are exercised here.
#[cfg(test)]
mod auth_tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    /// Serves `answer(request line, authorization)` for each request, recording requests.
    fn serve(
        answer: impl Fn(&str, &str, u16) -> (u16, Vec<(&'static str, String)>, String) + Send + 'static,
    ) -> (u16, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap();
                let mut authorization = String::new();
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line.trim().is_empty() {
                        break;
                    }
                    if let Some(value) = line.strip_prefix("Authorization: ") {
                        authorization = value.trim().to_string();
                    }
                }
                let request_line = request_line.trim().to_string();
                log.lock()
                    .unwrap()
                    .push(format!("{request_line} [{authorization}]"));
                let (status, headers, body) = answer(&request_line, &authorization, port);
                let mut response = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                    body.len()
                );
                for (name, value) in headers {
                    response.push_str(&format!("{name}: {value}\r\n"));
                }
                response.push_str("\r\n");
                response.push_str(&body);
                let _ = stream.write_all(response.as_bytes());
            }
        });
        (port, seen)
    }

    fn manifest() -> String {
        let digest = |byte: char| format!("sha256:{}", byte.to_string().repeat(64));
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"x","digest":"{}","size":1}},"layers":[]}}"#,
            digest('a')
        )
    }

    fn basic() -> Credentials {
        Credentials::Basic {
            username: "u".into(),
            password: "p".into(),
        }
    }

    #[test]
    fn bearer_challenge_is_answered_with_a_token_fetched_with_basic_credentials() {
        let (port, seen) = serve(|request, authorization, port| {
            if request.starts_with("GET /token?") {
                return if authorization == "Basic dTpw" {
                    (200, vec![], r#"{"token":"tok"}"#.into())
                } else {
                    (401, vec![], "{}".into())
                };
            }
            if authorization == "Bearer tok" {
                return (200, vec![("Content-Type", OCI_MANIFEST.into())], manifest());
            }
            let challenge = format!(
                r#"Bearer realm="http://127.0.0.1:{port}/token",service="svc",scope="repository:org/app:pull""#
            );
            (401, vec![("WWW-Authenticate", challenge)], String::new())
        });
        let reference = Reference::parse(&format!("127.0.0.1:{port}/org/app")).unwrap();
        let mut client = RegistryClient::new(&reference, Some(basic()), true);
        let resolved = client.resolve(&reference, &Platform::current()).unwrap();
        assert_eq!(resolved.digest, Digest::of(manifest().as_bytes()));
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert!(seen[0].ends_with("[]"), "first try is anonymous: {seen:?}");
        assert!(
            seen[1].contains("scope=repository%3Aorg%2Fapp%3Apull"),
            "{seen:?}"
        );
        assert!(seen[1].contains("service=svc") && seen[1].ends_with("[Basic dTpw]"));
        assert!(seen[2].ends_with("[Bearer tok]"));

        // Wrong credentials: the token service refuses, and that is `Unauthorized`.
        let mut client = RegistryClient::new(
            &reference,
            Some(Credentials::Basic {
                username: "u".into(),
                password: "wrong".into(),
            }),
            true,
        );
        assert!(matches!(
            client.resolve(&reference, &Platform::current()),
            Err(Error::Unauthorized { registry, .. }) if registry == format!("127.0.0.1:{port}")
        ));
    }

    #[test]
    fn basic_challenge_needs_credentials_and_is_retried_once() {
        let (port, seen) = serve(|_, authorization, _| {
            if authorization == "Basic dTpw" {
                (200, vec![("Content-Type", OCI_MANIFEST.into())], manifest())
            } else {
                let challenge = r#"Basic realm="registry""#.to_string();
                (401, vec![("WWW-Authenticate", challenge)], String::new())
            }
        });
        let reference = Reference::parse(&format!("127.0.0.1:{port}/app:v1")).unwrap();
        let mut client = RegistryClient::new(&reference, Some(basic()), true);
        client.resolve(&reference, &Platform::current()).unwrap();
        assert_eq!(seen.lock().unwrap().len(), 2);

        let mut anonymous = RegistryClient::new(&reference, None, true);
        assert!(matches!(
            anonymous.resolve(&reference, &Platform::current()),
            Err(Error::Unauthorized { .. })
        ));
        let wrong = Credentials::Basic {
            username: "u".into(),
            password: "x".into(),
        };
        let mut client = RegistryClient::new(&reference, Some(wrong), true);
        assert!(matches!(
            client.resolve(&reference, &Platform::current()),
            Err(Error::Unauthorized { .. })
        ));
        // One challenge, one retry: never a loop.
        assert_eq!(seen.lock().unwrap().len(), 5);
    }

    #[test]
    fn a_manifest_not_matching_the_pinned_digest_is_refused() {
        let (port, _) =
            serve(|_, _, _| (200, vec![("Content-Type", OCI_MANIFEST.into())], manifest()));
        let pinned = Digest::of(b"something else");
        let reference = Reference::parse(&format!("127.0.0.1:{port}/app@{pinned}")).unwrap();
        let mut client = RegistryClient::new(&reference, None, true);
        match client.resolve(&reference, &Platform::current()) {
            Err(Error::DigestMismatch { digest, actual }) => {
                assert_eq!(digest, pinned.to_string());
                assert_eq!(actual, Digest::of(manifest().as_bytes()).to_string());
            }
            other => panic!("expected DigestMismatch, got {other:?}"),
        }
    }
}
