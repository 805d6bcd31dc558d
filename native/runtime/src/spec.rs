//! The sandbox configuration as the runtime reads it. The SDK validates and serialises it
//! (pydantic `SandboxConfig`); this reads the part the runtime acts on (exec defaults such as
//! `env` and `workdir` are applied by the SDK).

use crate::error::{Result, RuntimeError};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ImageSource {
    /// A host directory shared live as the root filesystem.
    Bind { path: String },
    /// An image from the local store.
    Local { name: String },
    /// An OCI image, pulled into the local store (by the SDK, as its pull policy says) under
    /// its canonical reference before the sandbox is created.
    Oci { reference: String },
}

#[derive(Debug, Clone, Deserialize)]
pub struct SandboxSpec {
    pub name: String,
    pub image: ImageSource,
    pub cpus: u8,
    pub memory_mib: u32,
}

impl SandboxSpec {
    pub fn from_json(json: &str) -> Result<Self> {
        serde_json::from_str(json)
            .map_err(|error| RuntimeError::InvalidConfig(format!("sandbox config: {error}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_sdk_config_shape() {
        let spec = SandboxSpec::from_json(
            r#"{"name":"a","image":{"kind":"local","name":"msb-base"},"cpus":2,"memory_mib":256,"env":{},"workdir":null}"#,
        )
        .unwrap();
        assert_eq!((spec.cpus, spec.memory_mib), (2, 256));
        assert!(matches!(spec.image, ImageSource::Local { ref name } if name == "msb-base"));
    }

    #[test]
    fn malformed_config_is_invalid_config() {
        assert!(matches!(
            SandboxSpec::from_json("{}"),
            Err(RuntimeError::InvalidConfig(_))
        ));
    }
}
