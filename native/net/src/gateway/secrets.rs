//! Secrets in a running gateway: [`SecretsHandle::set_secrets`] swaps the set the loop's
//! intercepted flows substitute (new flows use it, open ones from their next request), and
//! [`TerminateReason`] is what the supervisor is told when a `block_and_terminate` secret was
//! sent where it may not go.

use std::sync::Arc;

use mio::Waker;

use super::{Control, EventLoop, GatewayError};
use crate::secrets::Secrets;

/// A `block_and_terminate` secret headed for a host it may not go to; the sandbox is to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminateReason {
    /// The secret's environment variable.
    pub secret: String,
    /// The server name the request was for.
    pub host: String,
}

/// Replaces the secrets of a running gateway; a loop that has ended no longer takes them.
#[derive(Clone)]
pub struct SecretsHandle {
    waker: Arc<Waker>,
    control: Arc<Control>,
    /// Whether the gateway intercepts TLS at all: it decides that when it starts (the guest
    /// is given the CA then), so a gateway that started without secrets and without `tls`
    /// cannot take any later.
    intercepting: bool,
}

impl SecretsHandle {
    pub(super) fn new(waker: Arc<Waker>, control: Arc<Control>, intercepting: bool) -> Self {
        Self {
            waker,
            control,
            intercepting,
        }
    }

    /// Hands `secrets` to the loop and returns once it has taken them.
    pub fn set_secrets(&self, secrets: Secrets) -> Result<(), GatewayError> {
        if !self.intercepting && !secrets.is_empty() {
            return Err(GatewayError::SecretsNeedRestart);
        }
        self.control.hand_over(&self.waker, "secrets", |requests| {
            requests.secrets = Some(secrets);
        })
    }
}

impl EventLoop {
    pub(super) fn change_secrets(&mut self, secrets: Secrets) {
        let count = secrets.iter().count();
        self.secrets.replace(secrets);
        log::info!("secrets changed: {count} now");
    }
}
