//! The interception CA in the guest's trust stores: when the host intercepts the sandbox's
//! TLS, its CA is appended to the system bundle (which OpenSSL, GnuTLS and most language
//! runtimes read) and written on its own where `update-ca-certificates` looks, and every
//! exec's environment points the runtimes that ignore the system bundle (Python's requests,
//! Node) at them.
//!
//! Appending is idempotent: a sandbox started again finds its CA already in the bundle of its
//! upper disk and does not add it twice. A live host root is never written (see
//! `placement`): the files are bind-mounted over the existing ones, and one the host
//! directory lacks is skipped.

use super::placement;
use super::{NetworkError, Root};
use std::path::Path;
use std::sync::OnceLock;

/// The system bundle, Debian's path, which is also where Alpine, Arch and Ubuntu keep it.
pub const SYSTEM_BUNDLE: &str = "etc/ssl/certs/ca-certificates.crt";
/// The CA on its own, where `update-ca-certificates` collects local CAs from.
pub const INTERCEPTION_CERT: &str = "usr/local/share/ca-certificates/msb-interception.crt";

/// The trust set up by the first hello that carried a CA.
#[derive(Default)]
pub struct GuestTrust {
    installed: OnceLock<()>,
}

impl GuestTrust {
    /// Installs `ca_pem` under `/`, once; every failure goes to the console.
    pub fn install(&self, ca_pem: &str, root: Root) {
        if self.installed.get().is_some() {
            return;
        }
        for failure in install(Path::new("/"), ca_pem, root) {
            log!("tls: {failure}");
        }
        let _ = self.installed.set(());
    }

    /// The variables every exec gets before its own (which replace them), when a CA was
    /// installed.
    pub fn environment(&self) -> Vec<(String, String)> {
        if self.installed.get().is_none() {
            return Vec::new();
        }
        let bundle = format!("/{SYSTEM_BUNDLE}");
        [
            ("SSL_CERT_FILE", bundle.clone()),
            ("REQUESTS_CA_BUNDLE", bundle),
            ("NODE_EXTRA_CA_CERTS", format!("/{INTERCEPTION_CERT}")),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect()
    }
}

/// Adds `ca_pem` to the trust stores of the root at `prefix` (`/` in the guest); each file
/// is attempted whatever became of the other.
pub fn install(prefix: &Path, ca_pem: &str, root: Root) -> Vec<NetworkError> {
    let bundle_path = prefix.join(SYSTEM_BUNDLE);
    let bundle_path = bundle_path.to_string_lossy();
    let existing = std::fs::read_to_string(&*bundle_path).unwrap_or_default();
    let cert_path = prefix.join(INTERCEPTION_CERT);
    [
        placement::place(&bundle_path, &bundle_with(&existing, ca_pem), root),
        placement::place(&cert_path.to_string_lossy(), &pem_line_ended(ca_pem), root),
    ]
    .into_iter()
    .filter_map(Result::err)
    .collect()
}

/// `bundle` with `ca_pem` appended, unless it already holds it.
pub fn bundle_with(bundle: &str, ca_pem: &str) -> String {
    let ca_pem = pem_line_ended(ca_pem);
    if bundle.contains(ca_pem.trim()) {
        return bundle.to_string();
    }
    let mut combined = bundle.to_string();
    if !combined.is_empty() && !combined.ends_with('\n') {
        combined.push('\n');
    }
    combined.push_str(&ca_pem);
    combined
}

fn pem_line_ended(pem: &str) -> String {
    format!("{}\n", pem.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
    const OTHER: &str = "-----BEGIN CERTIFICATE-----\nOTHER\n-----END CERTIFICATE-----\n";

    #[test]
    fn the_ca_is_appended_once_after_the_existing_certificates() {
        let once = bundle_with(OTHER.trim_end(), CA);
        assert_eq!(once, format!("{OTHER}{CA}\n"));
        assert_eq!(bundle_with(&once, CA), once);
        assert_eq!(bundle_with("", CA), format!("{CA}\n"));
    }

    #[test]
    fn install_creates_the_bundle_and_the_local_cert_where_missing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(install(dir.path(), CA, Root::Ours).is_empty());
        let bundle = std::fs::read_to_string(dir.path().join(SYSTEM_BUNDLE)).unwrap();
        assert_eq!(bundle, format!("{CA}\n"));
        let cert = std::fs::read_to_string(dir.path().join(INTERCEPTION_CERT)).unwrap();
        assert_eq!(cert, format!("{CA}\n"));
    }

    #[test]
    fn install_keeps_the_system_bundle_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let bundle_path = dir.path().join(SYSTEM_BUNDLE);
        std::fs::create_dir_all(bundle_path.parent().unwrap()).unwrap();
        std::fs::write(&bundle_path, OTHER).unwrap();
        assert!(install(dir.path(), CA, Root::Ours).is_empty());
        assert!(install(dir.path(), CA, Root::Ours).is_empty());
        let bundle = std::fs::read_to_string(&bundle_path).unwrap();
        assert_eq!(bundle, format!("{OTHER}{CA}\n"));
    }

    #[test]
    fn the_environment_names_the_files_only_once_a_ca_was_installed() {
        let trust = GuestTrust::default();
        assert!(trust.environment().is_empty());
        let _ = trust.installed.set(());
        let environment = trust.environment();
        assert!(environment.contains(&(
            "SSL_CERT_FILE".into(),
            "/etc/ssl/certs/ca-certificates.crt".into()
        )));
        assert!(environment.contains(&(
            "REQUESTS_CA_BUNDLE".into(),
            "/etc/ssl/certs/ca-certificates.crt".into()
        )));
        assert!(environment.contains(&(
            "NODE_EXTRA_CA_CERTS".into(),
            "/usr/local/share/ca-certificates/msb-interception.crt".into()
        )));
    }
}
