//! The blocking HTTP agent shared by the registry and token requests, and the mapping of
//! its failures onto this crate's errors.

use crate::error::{Error, Result};
use std::io::Read;
use std::time::Duration;

/// Registries answer quickly; a stalled read means a dead connection, not a slow server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// Blob downloads are redirected to object storage, sometimes more than once.
const MAX_REDIRECTS: u32 = 8;
/// How much of an error body is read to explain a failure.
const ERROR_BODY_LIMIT: u64 = 16 * 1024;

pub(crate) fn agent() -> ureq::Agent {
    // ureq drops the Authorization header when following a redirect (its default), which is
    // what blob storage wants: it authenticates by signed URL and rejects other credentials.
    ureq::AgentBuilder::new()
        .timeout_connect(CONNECT_TIMEOUT)
        .timeout_read(READ_TIMEOUT)
        .redirects(MAX_REDIRECTS)
        .user_agent(concat!("microsandbox-tui/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Sends a request and returns the response whatever its status: callers decide what a 401
/// or 404 means. Only failures to get any response are errors here.
pub(crate) fn call(request: ureq::Request) -> Result<ureq::Response> {
    let url = request.url().to_string();
    match request.call() {
        Ok(response) => Ok(response),
        Err(ureq::Error::Status(_, response)) => Ok(response),
        Err(ureq::Error::Transport(transport)) => Err(Error::Transport {
            url,
            detail: transport.to_string(),
        }),
    }
}

pub(crate) fn is_success(response: &ureq::Response) -> bool {
    (200..300).contains(&response.status())
}

/// Turns a failed response into `Http`, explaining it with the registry's error body
/// (`{"errors":[{"code":..,"message":..}]}`) when there is one.
pub(crate) fn status_error(response: ureq::Response) -> Error {
    let url = response.get_url().to_string();
    let status = response.status();
    Error::Http {
        url,
        status,
        detail: error_detail(response),
    }
}

pub(crate) fn error_detail(response: ureq::Response) -> String {
    let status_text = response.status_text().to_string();
    let mut body = String::new();
    let _ = response
        .into_reader()
        .take(ERROR_BODY_LIMIT)
        .read_to_string(&mut body);
    #[derive(serde::Deserialize)]
    struct Body {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(parsed) = serde_json::from_str::<Body>(&body) {
        let messages: Vec<String> = parsed
            .errors
            .iter()
            .map(|entry| format!("{}: {}", entry.code, entry.message))
            .collect();
        if !messages.is_empty() {
            return messages.join("; ");
        }
    }
    let body = body.trim();
    if body.is_empty() {
        status_text
    } else {
        body.chars().take(300).collect()
    }
}

/// Reads a small response body whole, refusing more than `limit` bytes: manifests and
/// configs are small, and an endless body must not exhaust memory.
pub(crate) fn read_limited(response: ureq::Response, limit: u64) -> Result<Vec<u8>> {
    let url = response.get_url().to_string();
    let mut body = Vec::new();
    response
        .into_reader()
        .take(limit + 1)
        .read_to_end(&mut body)
        .map_err(|error| Error::Transport {
            url: url.clone(),
            detail: error.to_string(),
        })?;
    if body.len() as u64 > limit {
        return Err(Error::Http {
            url,
            status: 200,
            detail: format!("response larger than {limit} bytes"),
        });
    }
    Ok(body)
}
