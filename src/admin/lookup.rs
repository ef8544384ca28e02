//! The lookup of a caller's sessionids against the running proxy's keys and trunks, behind
//! `POST /v1/sessions/lookup`.

use std::sync::Arc;

use super::{LookupError, SessionLookup};
use crate::identity::{normalise_number, TrunkPolicy};
use crate::proxy::Core;

/// Computes sessionids with the keys and trunks of the core's current settings, so a reload
/// applies to the next lookup.
pub struct CoreLookup {
    core: Arc<Core>,
}

impl CoreLookup {
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }
}

impl SessionLookup for CoreLookup {
    fn sessionids(
        &self,
        instance: &str,
        trunk: Option<&str>,
        callerid: &str,
    ) -> Result<Vec<String>, LookupError> {
        let keys = self.core.keys();
        let release = keys
            .release_by_id(instance)
            .ok_or(LookupError::UnknownInstance)?;
        let policy = match trunk {
            Some(id) => self
                .core
                .trunk_policy(id)
                .ok_or(LookupError::UnknownTrunk)?,
            None => TrunkPolicy::default(),
        };
        let canonical = canonical_callerid(callerid, &policy)?;
        Ok(release.sessionids_all_keys(&canonical))
    }
}

/// Canonicalises a callerid given to the lookup API. Canonical `sip:` and `local:` forms pass
/// as they are. Other numbers are normalised as the From header of a trusted peer on the trunk
/// of `policy` would be, the same way as `sipstamp session-id --trunk`. Without a trunk,
/// `policy` is the untrusted default, which globalises only `+<digits>` numbers.
fn canonical_callerid(callerid: &str, policy: &TrunkPolicy) -> Result<String, LookupError> {
    let trimmed = callerid.trim();
    if trimmed.starts_with("sip:") || trimmed.starts_with("local:") {
        return Ok(trimmed.to_owned());
    }
    normalise_number(trimmed, policy).map_err(|_| LookupError::InvalidCallerid)
}
