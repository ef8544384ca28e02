//! The identity decision for one INVITE: anonymity first (fail closed), then the first usable
//! source in the order trusted PAI, trusted RPID, From.

use std::borrow::Cow;

use super::header::{param, parse_name_addr, split_values, unfold, NameAddr};
use super::markers::{is_empty_number, marker_reason};
use super::normalise::{normalise_uri, Normalised};
use super::privacy::{raw_rpid_privacy, read_privacy, rpid_privacy, RpidPrivacy};
use super::trust::TrunkPolicy;
use super::uri::{parse_uri, percent_decode, Scheme, Uri};
use super::{AnonReason, Assurance, Identity, IdentityFlags, IdentityInput, IdentitySource};

/// Derives the identity of one INVITE.
///
/// The call is anonymous when any Privacy line requests `id`, `user` or `header` or cannot be
/// parsed, when the caller's RPID has `privacy=full` or `privacy=uri` (or a malformed RPID
/// value has any `privacy` other than `off` or `name`), when From or the chosen
/// source is an anonymous marker, or when no source yields a valid identity. PAI and RPID count
/// only from a trusted peer of a trunk that honours them. PPI never counts.
pub fn derive(input: &IdentityInput<'_>, trunk: &TrunkPolicy) -> Identity {
    let mut flags = IdentityFlags::default();
    let honoured = trunk.honours_identity_headers();
    flags.pai_untrusted_ignored = !honoured && !input.pai.is_empty();
    flags.rpid_untrusted_ignored = !honoured && !input.rpid.is_empty();

    let privacy = read_privacy(&input.privacy);
    flags.privacy_unparsable = privacy.unparsable;
    flags.privacy_unknown_token = privacy.unknown_token;

    let from_line = input.from.map(unfold).transpose().ok().flatten();
    let from = from_line.as_deref().and_then(|v| parse_name_addr(v).ok());
    let from_uri = from.as_ref().and_then(|f| parse_uri(f.uri).ok());

    let rpid_lines = unfold_all(&input.rpid);
    let rpid = calling_rpid(&rpid_lines);
    let rpid_uri = rpid.as_ref().and_then(|r| parse_uri(r.uri).ok());

    // Anonymity rules that hold whichever source is chosen, and whichever peer sent them. Every
    // caller RPID counts for privacy, not only the first.
    let mut reason = privacy.withheld.then_some(AnonReason::Withheld);
    let rpid_withheld = addresses(&rpid_lines)
        .filter(is_calling)
        .any(|r| rpid_privacy(param(r.params, "privacy")) == RpidPrivacy::Withheld);
    flags.rpid_unparsable = malformed_values(&rpid_lines).next().is_some();
    let malformed_withheld =
        malformed_values(&rpid_lines).any(|raw| raw_rpid_privacy(raw) == RpidPrivacy::Withheld);
    if rpid_withheld || malformed_withheld {
        reason = reason.or(Some(AnonReason::Withheld));
    }
    if let Some(r) = &rpid {
        reason = reason.or_else(|| marker_reason(r, rpid_uri.as_ref(), trunk, false));
    }
    if let Some(f) = &from {
        reason = reason.or_else(|| marker_reason(f, from_uri.as_ref(), trunk, false));
    }
    if let Some(reason) = reason {
        return anonymous(input, trunk, reason, flags);
    }

    let chosen = if honoured {
        let pai_lines = unfold_all(&input.pai);
        match choose_pai(&pai_lines, trunk, &mut flags) {
            PaiChoice::Chosen(chosen) => Some(chosen),
            PaiChoice::Marker(reason) => return anonymous(input, trunk, reason, flags),
            PaiChoice::None => rpid
                .as_ref()
                .zip(rpid_uri.as_ref())
                .and_then(|(r, uri)| rpid_source(r, uri, trunk)),
        }
    } else {
        None
    };

    let chosen = match chosen {
        Some(chosen) => chosen,
        None => match from_source(from.as_ref(), from_uri.as_ref(), trunk) {
            Ok(chosen) => chosen,
            Err(reason) => return anonymous(input, trunk, reason, flags),
        },
    };

    flags.callerid_local_form = chosen.normalised.local_form;
    flags.verstat_passed = chosen.verstat_passed;
    let assurance = if chosen.verstat_passed {
        Assurance::High
    } else {
        chosen.assurance
    };
    Identity {
        callerid: Some(chosen.normalised.callerid),
        anonymous: false,
        anon_reason: AnonReason::None,
        source: chosen.source,
        assurance,
        strip_pai: !input.pai.is_empty() && !honoured,
        strip_rpid: !input.rpid.is_empty() && !honoured,
        strip_ppi: !input.ppi.is_empty(),
        flags,
    }
}

/// A usable source with its canonical callerid.
struct Chosen {
    normalised: Normalised,
    source: IdentitySource,
    assurance: Assurance,
    /// A trusted peer reported a passed STIR/SHAKEN verification on this URI.
    verstat_passed: bool,
}

enum PaiChoice {
    Chosen(Chosen),
    /// The trusted network asserted an anonymous identity.
    Marker(AnonReason),
    None,
}

fn unfold_all<'a>(lines: &[&'a [u8]]) -> Vec<Cow<'a, [u8]>> {
    lines.iter().filter_map(|line| unfold(line).ok()).collect()
}

/// Returns every well-formed name-addr of the given lines. Malformed lines and values are
/// skipped; for PAI the caller reports them through `pai_invalid`.
fn addresses<'a>(lines: &'a [Cow<'a, [u8]>]) -> impl Iterator<Item = NameAddr<'a>> {
    lines
        .iter()
        .filter_map(|line| split_values(line).ok())
        .flatten()
        .filter_map(|value| parse_name_addr(value).ok())
}

/// Returns the raw bytes of every value that [`addresses`] skips: whole lines that do not split
/// into values, and values that are not a name-addr.
fn malformed_values<'a>(lines: &'a [Cow<'a, [u8]>]) -> impl Iterator<Item = &'a [u8]> {
    lines.iter().flat_map(|line| match split_values(line) {
        Ok(values) => values
            .into_iter()
            .filter(|value| parse_name_addr(value).is_err())
            .collect::<Vec<_>>(),
        Err(_) => vec![line.as_ref()],
    })
}

/// Returns the first RPID value about the caller: `party=calling` or no `party` parameter.
/// Malformed values are skipped here; `derive` reads their privacy with `raw_rpid_privacy`.
fn calling_rpid<'a>(lines: &'a [Cow<'a, [u8]>]) -> Option<NameAddr<'a>> {
    addresses(lines).find(is_calling)
}

fn is_calling(rpid: &NameAddr<'_>) -> bool {
    param(rpid.params, "party").is_none_or(|p| p.eq_ignore_ascii_case(b"calling"))
}

/// Chooses among the trusted PAI values: a valid tel value first, then a sip value whose user is
/// a number, then a sip value with an alphanumeric user.
fn choose_pai(
    lines: &[Cow<'_, [u8]>],
    trunk: &TrunkPolicy,
    flags: &mut IdentityFlags,
) -> PaiChoice {
    if lines.is_empty() {
        return PaiChoice::None;
    }

    let mut tel: Option<Chosen> = None;
    let mut sip_number: Option<Chosen> = None;
    let mut sip_alphanumeric: Option<Chosen> = None;
    for address in addresses(lines) {
        let Ok(uri) = parse_uri(address.uri) else {
            continue;
        };
        if let Some(reason) = marker_reason(&address, Some(&uri), trunk, false) {
            return PaiChoice::Marker(reason);
        }
        let Ok(normalised) = normalise_uri(&uri, trunk) else {
            continue;
        };

        let is_alphanumeric = normalised.callerid.starts_with("sip:");
        let (source, slot) = match uri.scheme {
            Scheme::Tel => (IdentitySource::PaiTel, &mut tel),
            Scheme::Sip if is_alphanumeric => (IdentitySource::PaiSip, &mut sip_alphanumeric),
            Scheme::Sip => (IdentitySource::PaiSip, &mut sip_number),
        };
        if slot.is_none() {
            *slot = Some(Chosen {
                verstat_passed: verstat_passed(&uri, trunk),
                normalised,
                source,
                assurance: Assurance::High,
            });
        }
    }

    if let (Some(t), Some(s)) = (&tel, &sip_number) {
        flags.pai_value_mismatch = t.normalised.callerid != s.normalised.callerid;
    }
    match tel.or(sip_number).or(sip_alphanumeric) {
        Some(chosen) => PaiChoice::Chosen(chosen),
        None => {
            flags.pai_invalid = true;
            PaiChoice::None
        }
    }
}

/// Uses a trusted caller RPID: assurance is high when the network screened it (`screen=yes`)
/// and medium otherwise, because the draft's default for `screen` is `no`.
fn rpid_source(rpid: &NameAddr<'_>, uri: &Uri<'_>, trunk: &TrunkPolicy) -> Option<Chosen> {
    let normalised = normalise_uri(uri, trunk).ok()?;
    let screened = param(rpid.params, "screen").is_some_and(|s| s.eq_ignore_ascii_case(b"yes"));
    Some(Chosen {
        normalised,
        source: IdentitySource::Rpid,
        assurance: if screened {
            Assurance::High
        } else {
            Assurance::Medium
        },
        verstat_passed: verstat_passed(uri, trunk),
    })
}

/// Uses the From header, or returns why the call is anonymous: `unavailable` for an empty user,
/// a `+` with no digits or all zeros, `invalid` when From is absent or cannot be normalised.
fn from_source(
    from: Option<&NameAddr<'_>>,
    uri: Option<&Uri<'_>>,
    trunk: &TrunkPolicy,
) -> Result<Chosen, AnonReason> {
    let (Some(_), Some(uri)) = (from, uri) else {
        return Err(AnonReason::Invalid);
    };
    let user = percent_decode(uri.user).map_err(|_| AnonReason::Invalid)?;
    if is_empty_number(&user) {
        return Err(AnonReason::Unavailable);
    }
    let normalised = normalise_uri(uri, trunk).map_err(|_| AnonReason::Invalid)?;
    Ok(Chosen {
        normalised,
        source: IdentitySource::From,
        assurance: if trunk.trusted {
            Assurance::Medium
        } else {
            Assurance::Low
        },
        verstat_passed: verstat_passed(uri, trunk),
    })
}

/// True when a peer whose identity headers are honoured reports a passed verification:
/// `verstat=TN-Validation-Passed`, or the same with the attestation level A appended.
fn verstat_passed(uri: &Uri<'_>, trunk: &TrunkPolicy) -> bool {
    trunk.honours_identity_headers()
        && uri.verstat().is_some_and(|v| {
            v.eq_ignore_ascii_case(b"TN-Validation-Passed")
                || v.eq_ignore_ascii_case(b"TN-Validation-Passed-A")
        })
}

fn anonymous(
    input: &IdentityInput<'_>,
    trunk: &TrunkPolicy,
    reason: AnonReason,
    flags: IdentityFlags,
) -> Identity {
    let honoured = trunk.honours_identity_headers();
    let strip = trunk.strip_identity_when_anonymous;
    Identity {
        callerid: None,
        anonymous: true,
        anon_reason: reason,
        source: IdentitySource::None,
        assurance: Assurance::Low,
        strip_pai: !input.pai.is_empty() && (!honoured || strip),
        strip_rpid: !input.rpid.is_empty() && (!honoured || strip),
        strip_ppi: !input.ppi.is_empty(),
        flags,
    }
}
