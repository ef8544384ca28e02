//! The Privacy header (RFC 3323 section 4.2, RFC 3325 section 9.3), read so that it fails
//! closed: every line counts, `;` and `,` both separate tokens, case is ignored, and a line that
//! cannot be parsed counts as a request for privacy.

use super::header::unfold;

/// The privacy requested by all Privacy lines of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PrivacyRequest {
    /// `id`, `user` or `header` appeared, or a line was unparsable.
    pub withheld: bool,
    pub unparsable: bool,
    /// A token outside the registered values appeared. Only this fact is kept, never the token.
    pub unknown_token: bool,
}

/// Reads every Privacy line.
///
/// `none`, `off` (a synonym some carriers send), `session` and `critical` request no identity
/// privacy on their own. `critical` only makes the other tokens mandatory, which changes nothing
/// here because a withheld identity is never used anyway.
pub(crate) fn read_privacy(lines: &[&[u8]]) -> PrivacyRequest {
    let mut request = PrivacyRequest::default();
    for line in lines {
        let Ok(line) = unfold(line) else {
            request.unparsable = true;
            continue;
        };

        let mut tokens = 0;
        for token in line.split(|b| *b == b';' || *b == b',') {
            let token = token.trim_ascii();
            if token.is_empty() {
                continue;
            }
            tokens += 1;
            if !is_token(token) {
                request.unparsable = true;
            } else if ["id", "user", "header"]
                .iter()
                .any(|t| token.eq_ignore_ascii_case(t.as_bytes()))
            {
                request.withheld = true;
            } else if !["none", "off", "session", "critical"]
                .iter()
                .any(|t| token.eq_ignore_ascii_case(t.as_bytes()))
            {
                request.unknown_token = true;
            }
        }
        // A Privacy header needs at least one value (RFC 3323 section 4.2).
        if tokens == 0 {
            request.unparsable = true;
        }
    }
    request.withheld |= request.unparsable;
    request
}

/// True for an RFC 3261 `token`.
fn is_token(value: &[u8]) -> bool {
    value
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(b))
}

/// The `privacy` parameter of a Remote-Party-ID value (draft-ietf-sip-privacy-04).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RpidPrivacy {
    /// Absent or `off`.
    Off,
    /// `name`: only the display name is hidden; the number stays usable.
    Name,
    /// `full` or `uri`, or a value sipstamp does not know, which fails closed.
    Withheld,
}

pub(crate) fn rpid_privacy(value: Option<&[u8]>) -> RpidPrivacy {
    match value {
        None => RpidPrivacy::Off,
        Some(v) if v.eq_ignore_ascii_case(b"off") => RpidPrivacy::Off,
        Some(v) if v.eq_ignore_ascii_case(b"name") => RpidPrivacy::Name,
        Some(_) => RpidPrivacy::Withheld,
    }
}

/// Reads the privacy that a Remote-Party-ID value requests when the value cannot be parsed.
///
/// It fails closed. Every `privacy` in the raw bytes, compared without regard to case, must be
/// followed by `=` and `off` or `name`, and anything else withholds the number. A malformed
/// value cannot show whether it is about the caller, so `party` is not considered.
pub(crate) fn raw_rpid_privacy(raw: &[u8]) -> RpidPrivacy {
    const NAME: &[u8] = b"privacy";
    let mut result = RpidPrivacy::Off;
    let mut at = 0;
    while let Some(found) = find_ignore_case(&raw[at..], NAME) {
        let rest = trim_lws(&raw[at + found + NAME.len()..]);
        let value = match rest.strip_prefix(b"=") {
            Some(after) => {
                let after = trim_lws(after);
                let end = after
                    .iter()
                    .position(|b| matches!(b, b';' | b',' | b'>' | b' ' | b'\t' | b'\r' | b'\n'))
                    .unwrap_or(after.len());
                Some(&after[..end])
            }
            None => None,
        };
        match value.map(|v| rpid_privacy(Some(v))) {
            Some(RpidPrivacy::Off) => {}
            Some(RpidPrivacy::Name) => result = RpidPrivacy::Name,
            Some(RpidPrivacy::Withheld) | None => return RpidPrivacy::Withheld,
        }
        at += found + NAME.len();
    }
    result
}

fn find_ignore_case(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window.eq_ignore_ascii_case(needle))
}

fn trim_lws(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .unwrap_or(bytes.len());
    &bytes[start..]
}
