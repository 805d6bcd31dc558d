//! Secrets in a running gateway: [`SecretsHandle::set_secrets`] swaps the set the loop's
//! intercepted flows substitute (new flows use it, open ones from their next request), and
//! [`TerminateReason`] is what the supervisor is told when a `block_and_terminate` secret was
//! sent where it may not go.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use mio::Waker;

use super::flow_log::{reason, FlowDecision, FlowFacts, FlowRecord, FlowSeen};
use super::{Control, EventLoop, GatewayError};
use crate::policy::Action;
use crate::secrets::{SecretEvent, Secrets, ViolationAction};

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
        self.warn_of_bypassed_secret_hosts();
    }

    /// A secret host on the TLS bypass list is never intercepted, so its secret is never put
    /// into its requests: said once, when the secrets are set.
    pub(super) fn warn_of_bypassed_secret_hosts(&self) {
        let Some(tls) = &self.tls else {
            return;
        };
        for (secret, host) in tls.bypassed_secret_hosts(&self.secrets.current()) {
            log::warn!(
                "secret {secret}: {host} is on network.tls.bypass, so requests to it are not \
                 intercepted and {secret} is never put into them"
            );
        }
    }

    /// Logs what a flow's rewriter did; what to tell the supervisor if the sandbox is to stop.
    pub(super) fn log_secret_event(
        &mut self,
        facts: &FlowFacts,
        event: SecretEvent,
    ) -> Option<TerminateReason> {
        let (secret, host, action, why, on_violation) = match event {
            SecretEvent::Injected { secret, host } => {
                (secret, host, Action::Allow, reason::SECRET_INJECTED, None)
            }
            SecretEvent::Blocked(violation) => {
                log::warn!(
                    "flow {} -> {}: a request holding the placeholder of secret {} was blocked: \
                     it may not be sent to {}",
                    facts.src,
                    facts.dst,
                    violation.secret,
                    violation.host
                );
                if violation.action == ViolationAction::Block {
                    return None;
                }
                let why = reason::SECRET_VIOLATION;
                let on_violation = Some(violation.action);
                (
                    violation.secret,
                    violation.host,
                    Action::Deny,
                    why,
                    on_violation,
                )
            }
        };
        let terminate =
            (on_violation == Some(ViolationAction::BlockAndTerminate)).then(|| TerminateReason {
                secret: secret.clone(),
                host: host.clone(),
            });
        let record = FlowRecord::Flow(FlowDecision {
            flow: FlowSeen {
                time: SystemTime::now(),
                direction: facts.direction,
                protocol: facts.protocol,
                src: facts.src.to_string(),
                dst: facts.dst.to_string(),
                domain: Some(host),
                sni: facts.sni.clone(),
            },
            action,
            rule: None,
            rule_text: format!("secret {secret}"),
            reason: Some(why),
            secret: Some(secret),
        });
        self.flow_log.record(record, Instant::now());
        terminate
    }

    /// Tells the supervisor the sandbox is to stop.
    pub(super) fn terminate(&self, reason: TerminateReason) {
        log::warn!(
            "secret {} was sent towards {}, which it may not go to (block_and_terminate): the \
             sandbox is stopped",
            reason.secret,
            reason.host
        );
        if let Some(on_terminate) = &self.on_terminate {
            on_terminate(reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use super::*;
    use crate::gateway::{CaPaths, Gateway, GatewayConfig, HostFacts, NetworkSpec};
    use crate::secrets::{Secret, SecretSpec, SecretValue};
    use crate::stack::NetConfig;

    fn secrets() -> Secrets {
        let spec: SecretSpec = serde_json::from_value(serde_json::json!({
            "env_var": "KEY", "placeholder": "$MSB_KEY", "allow_hosts": ["api.test"],
        }))
        .unwrap();
        let value = SecretValue::new("v".into());
        Secrets::new(vec![Secret { spec, value }]).unwrap()
    }

    /// A gateway on a socketpair whose other end stands for QEMU (no VM: nothing is sent).
    fn gateway(dir: &tempfile::TempDir, secrets: Secrets) -> (Gateway, UnixStream) {
        let link = NetConfig::for_slot(7).unwrap().without_ipv6();
        let (ours, qemus) = UnixStream::pair().unwrap();
        let config = GatewayConfig {
            link,
            guest_mac: link.guest_mac(),
            spec: NetworkSpec::default(),
            host: HostFacts {
                // Never asked: the guest sends nothing.
                nameservers: vec!["127.0.0.1:53".parse().unwrap()],
                addresses: vec![],
                has_ipv6_route: false,
            },
            random_seed: 7,
            flow_log: None,
            home_ca: CaPaths {
                cert: dir.path().join("ca.pem"),
                key: dir.path().join("ca.key"),
            },
            secrets,
            on_terminate: None,
        };
        (Gateway::start(config, ours).unwrap(), qemus)
    }

    #[test]
    fn a_gateway_with_secrets_intercepts_without_tls_and_takes_a_new_set() {
        let dir = tempfile::tempdir().unwrap();
        let (gateway, _qemu) = gateway(&dir, secrets());
        assert!(
            gateway.tls_ca_pem().is_some(),
            "the guest is to trust the home's CA"
        );
        let handle = gateway.secrets_handle();
        handle.set_secrets(Secrets::default()).unwrap();
        handle.set_secrets(secrets()).unwrap();
        gateway.stop();
    }

    #[test]
    fn secrets_given_later_to_a_gateway_that_intercepts_nothing_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (gateway, _qemu) = gateway(&dir, Secrets::default());
        assert!(gateway.tls_ca_pem().is_none());
        assert!(
            !dir.path().join("ca.pem").exists(),
            "no CA made for nothing"
        );
        let handle = gateway.secrets_handle();
        assert!(matches!(
            handle.set_secrets(secrets()),
            Err(GatewayError::SecretsNeedRestart)
        ));
        handle.set_secrets(Secrets::default()).unwrap();
        gateway.stop();
    }
}
