//! Just enough of the sip, sips and tel URI grammars (RFC 3261 section 19.1, RFC 3966) to take
//! out the parts that make up a caller identity.

use super::header::{param, Malformed};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// `sip:` or `sips:`, which identify the same user.
    Sip,
    Tel,
}

/// The identity-relevant parts of one URI, borrowed from the header value.
#[derive(Clone, Copy)]
pub(crate) struct Uri<'a> {
    pub scheme: Scheme,
    /// The user part before its first `;`, still percent-encoded. For tel, the number.
    pub user: &'a [u8],
    /// User-part parameters from the first `;` on (sip), or the tel URI parameters.
    pub user_params: &'a [u8],
    /// The host without port, as received. Empty for tel.
    pub host: &'a [u8],
    /// URI parameters after the host (sip only), from the first `;` on.
    pub uri_params: &'a [u8],
}

impl<'a> Uri<'a> {
    /// True when the URI declares its user part a telephone number: any tel URI, or a sip URI
    /// with `user=phone`.
    pub fn is_phone(&self) -> bool {
        match self.scheme {
            Scheme::Tel => true,
            Scheme::Sip => {
                param(self.uri_params, "user").is_some_and(|v| v.eq_ignore_ascii_case(b"phone"))
            }
        }
    }

    /// Returns the `phone-context` parameter, which RFC 3966 places among the tel parameters and
    /// which appears among the user-part parameters of sip URIs with `user=phone`.
    pub fn phone_context(&self) -> Option<&'a [u8]> {
        param(self.user_params, "phone-context")
    }

    /// Returns the `verstat` parameter, through which a verifying network reports the STIR/SHAKEN
    /// result (3GPP TS 24.229).
    pub fn verstat(&self) -> Option<&'a [u8]> {
        param(self.user_params, "verstat")
    }
}

/// Parses a sip, sips or tel URI. Other schemes are malformed for identity purposes.
pub(crate) fn parse_uri(uri: &[u8]) -> Result<Uri<'_>, Malformed> {
    let colon = memchr::memchr(b':', uri).ok_or(Malformed)?;
    let scheme = &uri[..colon];
    let rest = &uri[colon + 1..];
    if scheme.eq_ignore_ascii_case(b"tel") {
        parse_tel(rest)
    } else if scheme.eq_ignore_ascii_case(b"sip") || scheme.eq_ignore_ascii_case(b"sips") {
        parse_sip(rest)
    } else {
        Err(Malformed)
    }
}

fn parse_tel(rest: &[u8]) -> Result<Uri<'_>, Malformed> {
    let end = memchr::memchr(b';', rest).unwrap_or(rest.len());
    Ok(Uri {
        scheme: Scheme::Tel,
        user: &rest[..end],
        user_params: &rest[end..],
        host: &rest[rest.len()..],
        uri_params: &rest[rest.len()..],
    })
}

fn parse_sip(rest: &[u8]) -> Result<Uri<'_>, Malformed> {
    // URI headers (`?...`) never belong to the identity.
    let rest = match memchr::memchr(b'?', rest) {
        Some(q) if memchr::memchr(b'@', &rest[q..]).is_none() => &rest[..q],
        _ => rest,
    };

    // The host cannot contain `@`, so the last `@` ends the userinfo.
    let (userinfo, hostpart) = match memchr::memrchr(b'@', rest) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (&rest[..0], rest),
    };

    // A password after `:` is dropped; it is never part of the identity.
    let userinfo = match memchr::memchr(b':', userinfo) {
        Some(c) => &userinfo[..c],
        None => userinfo,
    };
    let user_end = memchr::memchr(b';', userinfo).unwrap_or(userinfo.len());

    let params_start = memchr::memchr(b';', hostpart).unwrap_or(hostpart.len());
    let hostport = &hostpart[..params_start];
    let host = strip_port(hostport)?;
    if host.is_empty() {
        return Err(Malformed);
    }

    Ok(Uri {
        scheme: Scheme::Sip,
        user: &userinfo[..user_end],
        user_params: &userinfo[user_end..],
        host,
        uri_params: &hostpart[params_start..],
    })
}

/// Removes `:port` from a host, keeping an IPv6 reference in its brackets.
fn strip_port(hostport: &[u8]) -> Result<&[u8], Malformed> {
    if hostport.first() == Some(&b'[') {
        let close = memchr::memchr(b']', hostport).ok_or(Malformed)?;
        return Ok(&hostport[..=close]);
    }
    let host = match memchr::memchr(b':', hostport) {
        Some(c) => &hostport[..c],
        None => hostport,
    };
    let valid = host
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if valid {
        Ok(host)
    } else {
        Err(Malformed)
    }
}

/// Decodes `%XX` escapes once. Fails on a truncated or non-hex escape.
pub(crate) fn percent_decode(input: &[u8]) -> Result<Vec<u8>, Malformed> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] != b'%' {
            out.push(input[i]);
            i += 1;
            continue;
        }
        let hi = input.get(i + 1).and_then(|b| hex_value(*b));
        let lo = input.get(i + 2).and_then(|b| hex_value(*b));
        match (hi, lo) {
            (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
            _ => return Err(Malformed),
        }
        i += 3;
    }
    Ok(out)
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Percent-encodes a decoded sip user part, leaving raw exactly the characters that the RFC 3261
/// `user` rule allows: unreserved characters and `& = + $ , ; ? /`.
pub(crate) fn encode_user(user: &[u8], out: &mut String) {
    for &b in user {
        let raw = b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b);
        if raw {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 0xf)]));
        }
    }
}
