//! Loading tenant keys from a hex file or environment variable, and creating the generated key
//! file of a tenant that configures neither.
//!
//! Key material stays in zeroizing containers, and no error message contains any of it: a hex
//! error names the tenant and where the key came from, never the offending character.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::RngCore;
use zeroize::Zeroizing;

use super::MIN_KEY_BYTES;
use crate::config::TenantConfig;

/// Length of a generated tenant key in bytes (256 bits).
const GENERATED_KEY_BYTES: usize = 32;

/// Errors loading or creating a tenant key. Messages name the tenant, file or variable, never
/// the key.
#[derive(Debug, thiserror::Error)]
pub enum KeyLoadError {
    #[error("cannot read key file {path} of tenant {tenant}: {source}")]
    Read {
        tenant: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "environment variable {variable} with the key of tenant {tenant} is not set or not UTF-8"
    )]
    MissingVariable { tenant: String, variable: String },
    #[error(
        "key of tenant {tenant} from {origin} is not valid hex; write the key as hex digits only"
    )]
    NotHex { tenant: String, origin: String },
    #[error("key of tenant {tenant} from {origin} is {bytes} bytes long; at least {MIN_KEY_BYTES} bytes (64 hex digits) are required")]
    TooShort {
        tenant: String,
        origin: String,
        bytes: usize,
    },
    #[error("tenant {tenant} has no key_file or key_env and no generated key at {path}; set key_file or key_env, or start `sipstamp run` once to create the key")]
    Missing { tenant: String, path: PathBuf },
    #[error("cannot create key file {path} of tenant {tenant}: {source}")]
    Create {
        tenant: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid key settings of tenant {tenant}: {source}")]
    Derive {
        tenant: String,
        source: super::KeyError,
    },
    #[error("tenant {tenant} named by a release is not in [[tenants]]")]
    UnknownTenant { tenant: String },
    #[error("no release is configured; add a [[releases]] entry")]
    NoRelease,
}

/// Returns the path of the key file generated for a tenant without key_file or key_env.
pub fn generated_key_path(tenant: &TenantConfig, data_dir: &Path) -> PathBuf {
    data_dir.join(format!("secret-{}.key", tenant.name))
}

/// Loads a tenant's current key from key_file, key_env, or the generated key file.
/// Fails with [`KeyLoadError::Missing`] when the tenant has no key yet.
pub fn load_key(
    tenant: &TenantConfig,
    data_dir: &Path,
) -> Result<Zeroizing<Vec<u8>>, KeyLoadError> {
    if let Some(key) = configured_key(
        &tenant.name,
        tenant.key_file.as_deref(),
        tenant.key_env.as_deref(),
    )? {
        return Ok(key);
    }
    let path = generated_key_path(tenant, data_dir);
    if !path.exists() {
        return Err(KeyLoadError::Missing {
            tenant: tenant.name.clone(),
            path,
        });
    }
    read_key_file(&tenant.name, &path)
}

/// Loads a tenant's current key, creating `data_dir/secret-<tenant>.key` with 256 random bits
/// and mode 0600 when the tenant configures no key and the file does not exist yet.
///
/// Returns the key and whether it was created now.
pub fn load_or_create_key(
    tenant: &TenantConfig,
    data_dir: &Path,
) -> Result<(Zeroizing<Vec<u8>>, bool), KeyLoadError> {
    match load_key(tenant, data_dir) {
        Err(KeyLoadError::Missing { path, .. }) => create_key_file(&tenant.name, data_dir, &path),
        other => other.map(|key| (key, false)),
    }
}

/// Loads a key given as key_file or key_env; `None` when neither is set.
pub(crate) fn configured_key(
    tenant: &str,
    key_file: Option<&Path>,
    key_env: Option<&str>,
) -> Result<Option<Zeroizing<Vec<u8>>>, KeyLoadError> {
    if let Some(path) = key_file {
        return read_key_file(tenant, path).map(Some);
    }
    let Some(variable) = key_env else {
        return Ok(None);
    };
    let text =
        std::env::var(variable)
            .map(Zeroizing::new)
            .map_err(|_| KeyLoadError::MissingVariable {
                tenant: tenant.to_owned(),
                variable: variable.to_owned(),
            })?;
    decode_key(tenant, &format!("environment variable {variable}"), &text).map(Some)
}

fn read_key_file(tenant: &str, path: &Path) -> Result<Zeroizing<Vec<u8>>, KeyLoadError> {
    let text = std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|source| KeyLoadError::Read {
            tenant: tenant.to_owned(),
            path: path.to_owned(),
            source,
        })?;
    decode_key(tenant, &format!("file {}", path.display()), &text)
}

/// Decodes a hex key, ignoring surrounding whitespace and the case of the digits.
fn decode_key(tenant: &str, origin: &str, text: &str) -> Result<Zeroizing<Vec<u8>>, KeyLoadError> {
    // The hex crate's error names the offending character, which is part of the key, so it is
    // dropped here.
    let key = hex::decode(text.trim())
        .map(Zeroizing::new)
        .map_err(|_| KeyLoadError::NotHex {
            tenant: tenant.to_owned(),
            origin: origin.to_owned(),
        })?;
    if key.len() < MIN_KEY_BYTES {
        return Err(KeyLoadError::TooShort {
            tenant: tenant.to_owned(),
            origin: origin.to_owned(),
            bytes: key.len(),
        });
    }
    Ok(key)
}

/// Writes a new random key as hex. The file is created exclusively, so when another process
/// created it first, that key is read and used instead.
fn create_key_file(
    tenant: &str,
    data_dir: &Path,
    path: &Path,
) -> Result<(Zeroizing<Vec<u8>>, bool), KeyLoadError> {
    let create_error = |source| KeyLoadError::Create {
        tenant: tenant.to_owned(),
        path: path.to_owned(),
        source,
    };
    // A folder created here is private to the service user; an existing one keeps its mode.
    let mut folder = std::fs::DirBuilder::new();
    folder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        folder.mode(0o700);
    }
    folder.create(data_dir).map_err(create_error)?;

    let mut key = Zeroizing::new(vec![0u8; GENERATED_KEY_BYTES]);
    rand::rng().fill_bytes(&mut key);
    let mut text = Zeroizing::new(hex::encode(key.as_slice()));
    text.push('\n');

    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return read_key_file(tenant, path).map(|key| (key, false));
        }
        Err(e) => return Err(create_error(e)),
    };
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(create_error)?;
    Ok((key, true))
}
