//! Pseudonyms and random identifiers.
//!
//! A sessionid is a keyed one-way pseudonym of the canonical callerid:
//!
//! ```text
//! K_release = HKDF-SHA256(ikm = K_tenant, salt = none, info = "sessionid/v1/" || instance_id)
//! sessionid = key_id || "_" || base32(HMAC-SHA256(K_release, SHA-256(callerid)))
//! ```
//!
//! The tenant key is a secret of at least 256 bits, so a sessionid cannot be reversed by hashing
//! every phone number. The instance id is mixed in as HKDF info, never used as the key. Callids
//! and the sessionids of anonymous calls are 128 random bits. Conversation ids are 80 random
//! bits after a millisecond timestamp, so that they sort by start time.

mod keyfile;
mod keyring;
mod lookup;

pub use keyfile::{generated_key_path, load_key, load_or_create_key, KeyLoadError};
pub use keyring::{sessionids_all_keys, KeyRing, Release, TenantKeys};
pub use lookup::{session_id_command, SessionIdError};

use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// Minimum tenant key length in bytes (256 bits).
pub const MIN_KEY_BYTES: usize = 32;

/// HKDF info label that separates sessionid keys from any other use of the tenant key.
const SESSIONID_LABEL: &[u8] = b"sessionid/v1/";

/// Lowercase RFC 4648 base32 without padding: URL-safe and case-insensitive to read aloud.
const BASE32_LOWER: data_encoding::Encoding = data_encoding::BASE32_NOPAD;

/// The sessionid key of one release, derived once at start-up and cloned per call.
#[derive(Clone)]
pub struct ReleaseKey {
    key_id: String,
    mac: HmacSha256,
}

impl std::fmt::Debug for ReleaseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReleaseKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Errors building a release key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("key is {0} bytes long, at least {MIN_KEY_BYTES} are required")]
    TooShort(usize),
    #[error("key id must be 1 to 16 ASCII letters or digits")]
    InvalidKeyId,
}

impl ReleaseKey {
    /// Derives the sessionid key of release `instance_id` from the tenant key.
    pub fn derive(tenant_key: &[u8], key_id: &str, instance_id: &str) -> Result<Self, KeyError> {
        if tenant_key.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort(tenant_key.len()));
        }
        if !valid_key_id(key_id) {
            return Err(KeyError::InvalidKeyId);
        }
        let hkdf = hkdf::Hkdf::<Sha256>::new(None, tenant_key);
        let mut info = Vec::with_capacity(SESSIONID_LABEL.len() + instance_id.len());
        info.extend_from_slice(SESSIONID_LABEL);
        info.extend_from_slice(instance_id.as_bytes());
        let mut release_key = Zeroizing::new([0u8; 32]);
        hkdf.expand(&info, release_key.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        let mac = <HmacSha256 as KeyInit>::new_from_slice(release_key.as_ref())
            .expect("HMAC accepts keys of any length");
        Ok(Self {
            key_id: key_id.to_owned(),
            mac,
        })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Computes the sessionid of a canonical callerid.
    pub fn sessionid(&self, callerid: &str) -> String {
        let digest = Sha256::digest(callerid.as_bytes());
        let mut mac = self.mac.clone();
        mac.update(&digest);
        let tag = mac.finalize().into_bytes();
        let mut out = String::with_capacity(self.key_id.len() + 1 + 52);
        out.push_str(&self.key_id);
        out.push('_');
        out.push_str(&BASE32_LOWER.encode(&tag).to_ascii_lowercase());
        out
    }
}

fn valid_key_id(key_id: &str) -> bool {
    (1..=16).contains(&key_id.len()) && key_id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Kinds of random identifier, each with its own two-letter prefix so ids cannot be confused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Call,
    Conversation,
    AnonymousSession,
}

impl IdKind {
    fn prefix(self) -> &'static str {
        match self {
            Self::Call => "ca",
            Self::Conversation => "cv",
            Self::AnonymousSession => "an",
        }
    }
}

/// Returns a fresh identifier: the kind's prefix and 128 random bits as 32 lowercase hex digits.
/// Conversation ids use [`time_ordered_id`] instead.
pub fn random_id(kind: IdKind) -> String {
    let mut bits = [0u8; 16];
    rand::rng().fill_bytes(&mut bits);
    let mut out = String::with_capacity(34);
    out.push_str(kind.prefix());
    out.push_str(&hex::encode(bits));
    out
}

/// Returns a fresh identifier that sorts by creation time: the kind's prefix, the Unix time in
/// milliseconds as 12 hex digits, then 80 random bits as 20 hex digits (34 characters in all).
///
/// The store keys conversations by this id, so new records land at the end of its B-trees
/// instead of on a random page each. The start time it reveals is in the record anyway.
pub fn time_ordered_id(kind: IdKind, unix_ms: u64) -> String {
    let mut bits = [0u8; 10];
    rand::rng().fill_bytes(&mut bits);
    let mut out = String::with_capacity(34);
    out.push_str(kind.prefix());
    // 48 bits of milliseconds last until the year 10889.
    let stamp = (unix_ms & 0xffff_ffff_ffff).to_be_bytes();
    out.push_str(&hex::encode(&stamp[2..]));
    out.push_str(&hex::encode(bits));
    out
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod keyring_tests;
