//! The bearer token of the admin API.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// File name of the generated token inside the data folder.
pub const TOKEN_FILE_NAME: &str = "admin.token";

/// Shortest token accepted from a file, in characters.
const MIN_TOKEN_CHARS: usize = 32;

/// An admin bearer token. Its `Debug` output hides the value.
#[derive(Clone)]
pub struct AdminToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

/// Errors loading or creating a token file. Messages name the file, never the token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read admin token file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create admin token file {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("admin token file {path} is readable by group or others; run chmod 600 on it")]
    Permissions { path: PathBuf },
    #[error("admin token in {path} is shorter than {MIN_TOKEN_CHARS} characters")]
    TooShort { path: PathBuf },
}

impl AdminToken {
    pub fn new(token: &str) -> Self {
        Self {
            digest: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// Reads a token from the first line of `path`, which must not be readable by group or
    /// others.
    pub fn read_file(path: &Path) -> Result<Self, TokenError> {
        let read_error = |source| TokenError::Read {
            path: path.to_owned(),
            source,
        };
        let mode = std::fs::metadata(path)
            .map_err(read_error)?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(TokenError::Permissions {
                path: path.to_owned(),
            });
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(read_error)?);
        let token = text.lines().next().unwrap_or("").trim();
        if token.chars().count() < MIN_TOKEN_CHARS {
            return Err(TokenError::TooShort {
                path: path.to_owned(),
            });
        }
        Ok(Self::new(token))
    }

    /// Compares a presented token in constant time. Both sides are hashed first, so neither
    /// the content nor the length of the stored token leaks through timing.
    pub fn matches(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let difference = self
            .digest
            .iter()
            .zip(presented.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(difference) == 0
    }
}

/// Loads `data_dir/admin.token`, creating it with a random 256-bit token and mode 0600 when it
/// does not exist. Returns the token and the file's path; log the path, never the token.
pub fn load_or_create_admin_token(data_dir: &Path) -> Result<(AdminToken, PathBuf), TokenError> {
    let path = data_dir.join(TOKEN_FILE_NAME);
    if path.exists() {
        return AdminToken::read_file(&path).map(|token| (token, path));
    }
    let create_error = |source| TokenError::Create {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(create_error)?;

    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::rng().fill_bytes(bytes.as_mut());
    let token = Zeroizing::new(hex::encode(bytes.as_ref()));
    // create_new: two processes starting at once cannot overwrite each other's token.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(create_error)?;
    file.write_all(token.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(create_error)?;
    Ok((AdminToken::new(&token), path))
}
