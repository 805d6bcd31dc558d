//! The set of secrets the gateway's loop and its intercepted flows share: the loop replaces
//! it when the supervisor sends a new one, and each flow's rewriter takes the current set at
//! the start of every request, so a rotated value is used from the next request on; and
//! [`Flow`], what the HTTP/1.1 and HTTP/2 rewriters are given of the flow they rewrite.

use std::sync::{Arc, PoisonError, RwLock};

use super::substitute::Route;
use super::violation::SecretReports;
use super::Secrets;

/// What a request's rewriting needs of its flow.
#[derive(Debug)]
pub struct Flow<'a> {
    pub route: &'a Route,
    pub secrets: &'a SharedSecrets,
    pub reports: &'a SecretReports,
}

#[derive(Debug, Clone, Default)]
pub struct SharedSecrets(Arc<RwLock<Arc<Secrets>>>);

impl SharedSecrets {
    pub fn new(secrets: Secrets) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(secrets))))
    }

    /// The set as it is now.
    pub fn current(&self) -> Arc<Secrets> {
        // A writer replaces the whole `Arc` in one assignment: a poisoned lock holds a whole set.
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn replace(&self, secrets: Secrets) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(secrets);
    }
}
