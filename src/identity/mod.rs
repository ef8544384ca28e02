//! Caller identity: turns the identity headers of an inbound INVITE, plus what the proxy knows
//! of its sender, into a canonical callerid, an anonymity decision and an assurance level.
//!
//! This module does no I/O. The proxy core collects the raw header values (every line of each
//! header, folded lines included) and the sender's trunk policy, and calls [`derive`].
//!
//! Nothing here prints a callerid, a header value or a display name: the types that hold them
//! implement `Debug` by hand with a redaction.

mod decide;
mod header;
mod markers;
mod normalise;
mod privacy;
mod trust;
mod uri;

use serde::Deserialize;

pub use decide::derive;
pub use header::{identity_header, IdentityHeader};
pub use normalise::{normalise_number, warm_up, NormaliseError, NORMALISER_VERSION};
pub use trust::{Numbering, TrunkPolicy, TrustMap, DEFAULT_ANONYMOUS_USERS, UNTRUSTED_TRUNK_ID};

/// Raw values of the headers that identity derivation reads, as received.
///
/// Each value is the bytes after the colon of one header line, and may contain folded
/// continuation lines (CRLF followed by spaces or tabs).
#[derive(Default, Clone)]
pub struct IdentityInput<'a> {
    /// The From header value (full or compact name), if present.
    pub from: Option<&'a [u8]>,
    /// Every P-Asserted-Identity line, in order.
    pub pai: Vec<&'a [u8]>,
    /// Every Remote-Party-ID line, in order.
    pub rpid: Vec<&'a [u8]>,
    /// Every Privacy line, in order.
    pub privacy: Vec<&'a [u8]>,
    /// Every P-Preferred-Identity line, in order. Never a callerid source; only its presence
    /// is reported so the proxy can remove it.
    pub ppi: Vec<&'a [u8]>,
}

impl std::fmt::Debug for IdentityInput<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityInput")
            .field("from", &self.from.map(|_| "<redacted>"))
            .field("pai_lines", &self.pai.len())
            .field("rpid_lines", &self.rpid.len())
            .field("privacy_lines", &self.privacy.len())
            .field("ppi_lines", &self.ppi.len())
            .finish()
    }
}

impl<'a> IdentityInput<'a> {
    /// Adds one header line if it is an identity header; returns whether it was one.
    ///
    /// A second From line is ignored: RFC 3261 allows one, and the first is the one the proxy
    /// forwards.
    pub fn add_header(&mut self, name: &[u8], value: &'a [u8]) -> bool {
        match identity_header(name) {
            Some(IdentityHeader::From) => {
                self.from.get_or_insert(value);
            }
            Some(IdentityHeader::PAssertedIdentity) => self.pai.push(value),
            Some(IdentityHeader::PPreferredIdentity) => self.ppi.push(value),
            Some(IdentityHeader::RemotePartyId) => self.rpid.push(value),
            Some(IdentityHeader::Privacy) => self.privacy.push(value),
            None => return false,
        }
        true
    }
}

/// Where the callerid came from. Safe to log and to use as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentitySource {
    PaiTel,
    PaiSip,
    Rpid,
    From,
    None,
}

impl IdentitySource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PaiTel => "pai-tel",
            Self::PaiSip => "pai-sip",
            Self::Rpid => "rpid",
            Self::From => "from",
            Self::None => "none",
        }
    }
}

/// How far the callerid can be relied on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Assurance {
    Low,
    Medium,
    High,
}

impl Assurance {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

/// Why a call counts as anonymous. Safe to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnonReason {
    None,
    Withheld,
    Unavailable,
    Invalid,
}

impl AnonReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Withheld => "withheld",
            Self::Unavailable => "unavailable",
            Self::Invalid => "invalid",
        }
    }
}

/// Events seen while deriving one identity, for the metrics module to count. None of them
/// carries a header value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdentityFlags {
    /// An untrusted peer sent P-Asserted-Identity; it was ignored.
    pub pai_untrusted_ignored: bool,
    /// An untrusted peer sent Remote-Party-ID; it was ignored.
    pub rpid_untrusted_ignored: bool,
    /// Two trusted P-Asserted-Identity values name different numbers; the tel value won.
    pub pai_value_mismatch: bool,
    /// A trusted P-Asserted-Identity was present but no value of it was usable.
    pub pai_invalid: bool,
    /// The callerid is a trunk-scoped `local:` form because the number could not be globalised.
    pub callerid_local_form: bool,
    /// A Privacy line could not be parsed, so the call was treated as anonymous.
    pub privacy_unparsable: bool,
    /// A Privacy line carried a token that is not defined by RFC 3323 or RFC 3325.
    pub privacy_unknown_token: bool,
    /// A trusted peer reported a passed STIR/SHAKEN verification through `verstat`.
    pub verstat_passed: bool,
    /// A Remote-Party-ID value could not be parsed; only its privacy was read.
    pub rpid_unparsable: bool,
}

/// The per-call identity. `callerid` is `None` whenever `anonymous` is true.
///
/// `assurance` is `Low` on anonymous calls, where the identity rules assign no level.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    pub callerid: Option<String>,
    pub anonymous: bool,
    pub anon_reason: AnonReason,
    pub source: IdentitySource,
    pub assurance: Assurance,
    /// Remove every P-Asserted-Identity line before forwarding.
    pub strip_pai: bool,
    /// Remove every Remote-Party-ID line before forwarding.
    pub strip_rpid: bool,
    /// Remove every P-Preferred-Identity line before forwarding. True whenever one is present:
    /// PPI is a hint from the user agent to the first proxy and has no meaning past it.
    pub strip_ppi: bool,
    pub flags: IdentityFlags,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("callerid", &self.callerid.as_ref().map(|_| "<redacted>"))
            .field("anonymous", &self.anonymous)
            .field("anon_reason", &self.anon_reason)
            .field("source", &self.source)
            .field("assurance", &self.assurance)
            .field("strip_pai", &self.strip_pai)
            .field("strip_rpid", &self.strip_rpid)
            .field("strip_ppi", &self.strip_ppi)
            .field("flags", &self.flags)
            .finish()
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod normalise_tests;

#[cfg(test)]
mod proptests;
