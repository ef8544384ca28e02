//! Header-value syntax shared by From, P-Asserted-Identity and Remote-Party-ID: line unfolding,
//! splitting a line into comma-separated values, and name-addr / addr-spec parsing
//! (RFC 3261 sections 7.3.1 and 20.10).

use std::borrow::Cow;

/// A header value that is not well formed. Carries no part of the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

/// Joins folded continuation lines: every CRLF (or bare LF) followed by spaces or tabs becomes
/// one space. A line break that is not followed by whitespace cannot occur inside a header value.
pub(crate) fn unfold(value: &[u8]) -> Result<Cow<'_, [u8]>, Malformed> {
    if !value.iter().any(|b| matches!(b, b'\r' | b'\n')) {
        return Ok(Cow::Borrowed(value));
    }

    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        let b = value[i];
        if b != b'\r' && b != b'\n' {
            out.push(b);
            i += 1;
            continue;
        }

        if b == b'\r' {
            i += 1;
            if value.get(i) != Some(&b'\n') {
                return Err(Malformed);
            }
        }
        i += 1;
        if !matches!(value.get(i), Some(b' ' | b'\t')) {
            return Err(Malformed);
        }
        while matches!(value.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        out.push(b' ');
    }
    Ok(Cow::Owned(out))
}

/// Splits one header line into its comma-separated values, ignoring commas inside quoted
/// strings and inside `<...>`. Empty values are dropped.
pub(crate) fn split_values(line: &[u8]) -> Result<Vec<&[u8]>, Malformed> {
    let mut values = Vec::with_capacity(2);
    let mut start = 0;
    let mut in_quotes = false;
    let mut in_angle = false;
    let mut i = 0;
    while i < line.len() {
        match line[i] {
            b'\\' if in_quotes => i += 1,
            b'"' if !in_angle => in_quotes = !in_quotes,
            b'<' if !in_quotes => {
                if in_angle {
                    return Err(Malformed);
                }
                in_angle = true;
            }
            b'>' if !in_quotes => {
                if !in_angle {
                    return Err(Malformed);
                }
                in_angle = false;
            }
            b',' if !in_quotes && !in_angle => {
                push_trimmed(&mut values, &line[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if in_quotes || in_angle {
        return Err(Malformed);
    }
    push_trimmed(&mut values, &line[start..]);
    Ok(values)
}

fn push_trimmed<'a>(values: &mut Vec<&'a [u8]>, value: &'a [u8]) {
    let value = value.trim_ascii();
    if !value.is_empty() {
        values.push(value);
    }
}

/// One parsed name-addr or addr-spec with its header parameters.
#[derive(Clone, Copy)]
pub(crate) struct NameAddr<'a> {
    /// The display name without its quotes; escapes are left as received.
    pub display: Option<&'a [u8]>,
    /// The URI, without the angle brackets.
    pub uri: &'a [u8],
    /// Header parameters after the URI, starting at the first `;` (empty when there are none).
    pub params: &'a [u8],
}

/// Parses `"Name" <uri>;params`, `Name <uri>;params`, `<uri>;params` or `uri;params`.
///
/// In the addr-spec form the URI ends at the first `;`, because RFC 3261 requires the angle
/// brackets whenever the URI itself contains a semicolon.
pub(crate) fn parse_name_addr(value: &[u8]) -> Result<NameAddr<'_>, Malformed> {
    let value = value.trim_ascii();
    if value.is_empty() {
        return Err(Malformed);
    }

    let (display, rest) = if value[0] == b'"' {
        let end = closing_quote(value).ok_or(Malformed)?;
        let after = value[end + 1..].trim_ascii_start();
        if after.first() != Some(&b'<') {
            return Err(Malformed);
        }
        (Some(&value[1..end]), after)
    } else if let Some(lt) = memchr::memchr(b'<', value) {
        let name = value[..lt].trim_ascii();
        (
            if name.is_empty() { None } else { Some(name) },
            &value[lt..],
        )
    } else {
        (None, value)
    };

    if rest.first() == Some(&b'<') {
        let gt = memchr::memchr(b'>', rest).ok_or(Malformed)?;
        let uri = rest[1..gt].trim_ascii();
        let params = rest[gt + 1..].trim_ascii();
        if !params.is_empty() && params[0] != b';' {
            return Err(Malformed);
        }
        return Ok(NameAddr {
            display,
            uri,
            params,
        });
    }

    let end = memchr::memchr(b';', rest).unwrap_or(rest.len());
    let uri = rest[..end].trim_ascii();
    if uri.iter().any(|b| b.is_ascii_whitespace() || *b == b'>') {
        return Err(Malformed);
    }
    Ok(NameAddr {
        display,
        uri,
        params: &rest[end..],
    })
}

/// Returns the index of the quote that closes the quoted string opening at index 0.
fn closing_quote(value: &[u8]) -> Option<usize> {
    let mut i = 1;
    while i < value.len() {
        match value[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Looks up a `;name=value` or `;name` parameter, ignoring the case of the name.
///
/// Returns `Some(value)` with surrounding quotes removed, `Some(b"")` for a parameter without a
/// value, and `None` when the parameter is absent.
pub(crate) fn param<'a>(params: &'a [u8], name: &str) -> Option<&'a [u8]> {
    params
        .split(|b| *b == b';')
        .map(|p| p.trim_ascii())
        .find_map(|p| {
            let (key, value) = match memchr::memchr(b'=', p) {
                Some(eq) => (p[..eq].trim_ascii(), p[eq + 1..].trim_ascii()),
                None => (p, &p[p.len()..]),
            };
            if !key.eq_ignore_ascii_case(name.as_bytes()) {
                return None;
            }
            let unquoted = value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value);
            Some(unquoted)
        })
}

/// The headers that identity derivation reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityHeader {
    From,
    PAssertedIdentity,
    PPreferredIdentity,
    RemotePartyId,
    Privacy,
}

/// Classifies a header name without regard to case, expanding the compact form `f` of From
/// (RFC 3261 section 7.3.3). PAI, PPI, RPID and Privacy have no compact forms.
pub fn identity_header(name: &[u8]) -> Option<IdentityHeader> {
    let name = name.trim_ascii();
    let known = [
        (&b"from"[..], IdentityHeader::From),
        (b"f", IdentityHeader::From),
        (b"p-asserted-identity", IdentityHeader::PAssertedIdentity),
        (b"p-preferred-identity", IdentityHeader::PPreferredIdentity),
        (b"remote-party-id", IdentityHeader::RemotePartyId),
        (b"privacy", IdentityHeader::Privacy),
    ];
    known
        .iter()
        .find(|(n, _)| name.eq_ignore_ascii_case(n))
        .map(|(_, h)| *h)
}
