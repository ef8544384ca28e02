//! The `session-id` command: computes the sessionid an operator needs to find or erase the
//! data of one caller, without storing the number anywhere.

use crate::config::Config;
use crate::identity::{normalise_number, TrunkPolicy, TrustMap};

use super::keyfile::KeyLoadError;
use super::keyring::KeyRing;

/// Errors of the `session-id` command. None contains the number.
#[derive(Debug, thiserror::Error)]
pub enum SessionIdError {
    #[error("release {0:?} is not in [[releases]]; pass one of the configured instance ids")]
    UnknownRelease(String),
    #[error("trunk {0:?} is not in [[trunks]]; pass one of the configured trunk ids")]
    UnknownTrunk(String),
    #[error("the number is not a valid phone number or SIP address; write it as +<digits>, as a tel: or sip: URI, or in national format together with a trunk")]
    InvalidNumber,
    #[error(transparent)]
    Key(#[from] KeyLoadError),
}

/// Computes the sessionid that release `instance` gives the caller `number`, under the
/// release's current key.
///
/// The number is normalised as the From header of a trusted peer on `trunk` would be. Without a
/// trunk it is read as from a peer outside every trunk, so only `+<digits>` numbers and URIs are
/// globalised, and national numbers get the `local:...@untrusted` form.
pub fn session_id_command(
    config: &Config,
    instance: &str,
    number: &str,
    trunk: Option<&str>,
) -> Result<String, SessionIdError> {
    let trust = TrustMap::from_config(config);
    let default_policy = TrunkPolicy::default();
    let policy = match trunk {
        Some(id) => trust
            .by_id(id)
            .ok_or_else(|| SessionIdError::UnknownTrunk(id.to_owned()))?,
        None => &default_policy,
    };
    let callerid = normalise_number(number, policy).map_err(|_| SessionIdError::InvalidNumber)?;

    let release = KeyRing::load_release(config, instance)?
        .ok_or_else(|| SessionIdError::UnknownRelease(instance.to_owned()))?;
    Ok(release.sessionid(&callerid))
}
