//! Anonymous markers: the ways a caller or network writes "no number here" into an address
//! (RFC 3323 section 4.1.1 and carrier practice). They are checked before numeric parsing.

use super::header::NameAddr;
use super::trust::TrunkPolicy;
use super::uri::{percent_decode, Uri};
use super::AnonReason;

/// Checks the display name, host and user of an address against the trunk's markers.
///
/// Returns the reason when the address is a marker. `structural` adds the shapes that only a
/// From header turns into anonymity: an empty user, digits that are all zeros, or a `+` with no
/// digits. In PAI and RPID those shapes are invalid values, which are skipped instead.
pub(crate) fn marker_reason(
    address: &NameAddr<'_>,
    uri: Option<&Uri<'_>>,
    trunk: &TrunkPolicy,
    structural: bool,
) -> Option<AnonReason> {
    if trunk.anonymous_display_name && address.display.is_some_and(is_anonymous_name) {
        return Some(AnonReason::Withheld);
    }

    let uri = uri?;
    if uri.host.eq_ignore_ascii_case(b"anonymous.invalid") {
        return Some(AnonReason::Withheld);
    }

    let user = percent_decode(uri.user).ok()?;
    let user = user.trim_ascii();
    if let Some(marker) = trunk
        .anonymous_users
        .iter()
        .find(|m| user.eq_ignore_ascii_case(m.as_bytes()))
    {
        return Some(reason_of(marker));
    }

    if structural && is_empty_number(user) {
        return Some(AnonReason::Unavailable);
    }
    None
}

/// Returns the reason a user-part marker stands for: the caller withheld the number, or the
/// network does not have one.
fn reason_of(marker: &str) -> AnonReason {
    if marker == "unavailable" || marker == "unknown" {
        AnonReason::Unavailable
    } else {
        AnonReason::Withheld
    }
}

/// True for a display name "Anonymous" in any case, quoted or not.
fn is_anonymous_name(display: &[u8]) -> bool {
    display.trim_ascii().eq_ignore_ascii_case(b"anonymous")
}

/// True for an empty user, a `+` with no digits, or digits that are all zeros, with separators
/// ignored.
pub(crate) fn is_empty_number(user: &[u8]) -> bool {
    let body = user.strip_prefix(b"+").unwrap_or(user);
    let mut significant = body
        .iter()
        .filter(|b| !matches!(b, b'-' | b'.' | b'(' | b')' | b' ' | b'\t'));
    significant.all(|b| *b == b'0')
}
