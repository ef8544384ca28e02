//! Caller identity: turns the identity headers of an inbound INVITE, plus what the proxy knows
//! of its sender, into a canonical callerid, an anonymity decision and an assurance level.
//!
//! This module does no I/O. The proxy core collects the raw header values (every line of each
//! header, folded lines included) and the sender's trunk policy, and calls [`derive`].

use serde::Deserialize;

/// Raw values of the headers that identity derivation reads, as received.
#[derive(Debug, Default, Clone)]
pub struct IdentityInput<'a> {
    /// The From header value (full or compact name), if present.
    pub from: Option<&'a [u8]>,
    /// Every P-Asserted-Identity line, in order.
    pub pai: Vec<&'a [u8]>,
    /// Every Remote-Party-ID line, in order.
    pub rpid: Vec<&'a [u8]>,
    /// Every Privacy line, in order.
    pub privacy: Vec<&'a [u8]>,
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

/// The per-call identity. `callerid` is `None` whenever `anonymous` is true.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub callerid: Option<String>,
    pub anonymous: bool,
    pub anon_reason: AnonReason,
    pub source: IdentitySource,
    pub assurance: Assurance,
}

/// What the proxy knows of the sender: whether it is a trusted peer and its trunk settings.
#[derive(Debug, Clone, Default)]
pub struct TrunkPolicy {
    /// Stable, non-secret trunk label.
    pub id: String,
    /// True when the transport peer is on this trunk's trusted address list.
    pub trusted: bool,
}

/// Derives the identity of one INVITE.
///
/// NOTE: interim rule until the full identity rules land: callerid from P-Asserted-Identity of
/// a trusted peer, else From; anonymous when Privacy carries `id` or the From user is
/// `anonymous`. Numbers are taken as written, without E.164 normalisation.
pub fn derive(input: &IdentityInput<'_>, trunk: &TrunkPolicy) -> Identity {
    let withheld = input.privacy.iter().any(|line| {
        line.split(|b| *b == b';' || *b == b',')
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"id"))
    });
    let from_user = input.from.and_then(uri_user);
    let from_anonymous = from_user.is_some_and(|u| u.eq_ignore_ascii_case(b"anonymous"));
    if withheld || from_anonymous {
        return anonymous(AnonReason::Withheld);
    }
    if trunk.trusted {
        if let Some(user) = input.pai.first().and_then(|v| uri_user(v)) {
            return known(user, IdentitySource::PaiSip, Assurance::High);
        }
    }
    match from_user {
        Some(user) if !user.is_empty() => {
            let assurance = if trunk.trusted {
                Assurance::Medium
            } else {
                Assurance::Low
            };
            known(user, IdentitySource::From, assurance)
        }
        _ => anonymous(AnonReason::Unavailable),
    }
}

fn anonymous(reason: AnonReason) -> Identity {
    Identity {
        callerid: None,
        anonymous: true,
        anon_reason: reason,
        source: IdentitySource::None,
        assurance: Assurance::Low,
    }
}

fn known(user: &[u8], source: IdentitySource, assurance: Assurance) -> Identity {
    Identity {
        callerid: Some(String::from_utf8_lossy(user).into_owned()),
        anonymous: false,
        anon_reason: AnonReason::None,
        source,
        assurance,
    }
}

/// Returns the user part of the first `sip:`, `sips:` or `tel:` URI in a header value.
fn uri_user(value: &[u8]) -> Option<&[u8]> {
    let start = memchr::memmem::find(value, b"sip:")
        .map(|i| i + 4)
        .or_else(|| memchr::memmem::find(value, b"tel:").map(|i| i + 4))?;
    let rest = &value[start..];
    let end = rest
        .iter()
        .position(|b| matches!(b, b'@' | b';' | b'>' | b' ' | b'\r' | b'\n'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}
