//! What the rewriter tells the gateway (a secret put into a request, a request blocked), and
//! the refusals the guest is answered with instead of the real server's response. No report
//! and no refusal holds a value: they name the secret by its environment variable.

use std::sync::{Arc, Mutex, PoisonError};

use super::substitute::Violation;

/// Something the gateway logs (and, for `block_and_terminate`, acts on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretEvent {
    /// A request carried the value of `secret` to `host`.
    Injected { secret: String, host: String },
    /// A request was refused because it held a placeholder for a host it may not go to.
    Blocked(Violation),
}

/// Where a flow's rewriter leaves its events until the gateway's loop takes them.
#[derive(Debug, Clone, Default)]
pub struct SecretReports(Arc<Mutex<Vec<SecretEvent>>>);

impl SecretReports {
    pub fn push(&self, event: SecretEvent) {
        self.lock().push(event);
    }

    pub fn take(&self) -> Vec<SecretEvent> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<SecretEvent>> {
        // Every change is one push or one take: a poisoned lock holds a whole list.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The body of the 403 a blocked request is answered with.
pub fn blocked_text(violation: &Violation) -> String {
    format!(
        "msb: request blocked: it holds the placeholder of secret {}, which may not be sent to \
         {}\n",
        violation.secret, violation.host
    )
}

/// An HTTP/1.1 response that ends the connection: `status`, `reason` and a text body.
pub fn http1_response(status: u16, reason: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
