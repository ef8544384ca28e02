//! Helpers for header values: comma-separated lists and `;name=value` parameters, with quoted
//! strings and `<...>` treated as opaque.

use std::ops::Range;

/// Returns the end offset (relative to `value`) of the first element of a comma-separated
/// list. Commas inside quoted strings or angle brackets do not count.
pub fn first_element_end(value: &[u8]) -> usize {
    let mut in_quotes = false;
    let mut in_angle = false;
    let mut i = 0;
    while i < value.len() {
        match value[i] {
            b'\\' if in_quotes => i += 1,
            b'"' => in_quotes = !in_quotes,
            b'<' if !in_quotes => in_angle = true,
            b'>' if !in_quotes => in_angle = false,
            b',' if !in_quotes && !in_angle => return i,
            _ => {}
        }
        i += 1;
    }
    value.len()
}

/// Returns the ranges of every element of a comma-separated list, trimmed of whitespace.
pub fn elements(value: &[u8]) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut offset = 0;
    std::iter::from_fn(move || {
        while offset < value.len() {
            let rest = &value[offset..];
            let end = first_element_end(rest);
            let range = trim(value, offset..offset + end);
            offset += end + 1;
            if !range.is_empty() {
                return Some(range);
            }
        }
        None
    })
}

/// Trims spaces, tabs and line breaks (of folded lines) from both ends of a range.
pub fn trim(bytes: &[u8], mut range: Range<usize>) -> Range<usize> {
    while range.start < range.end && is_lws(bytes[range.start]) {
        range.start += 1;
    }
    while range.end > range.start && is_lws(bytes[range.end - 1]) {
        range.end -= 1;
    }
    range
}

fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Looks up a header parameter of a name-addr or addr-spec value (From, To, Route entries).
///
/// Returns `Some(value)` when the parameter is present, with an empty slice for a parameter
/// without `=`. Parameters inside `<...>` belong to the URI and are not searched.
pub fn header_param<'a>(value: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let params_start = match memchr::memchr(b'>', value) {
        Some(gt) => gt + 1,
        None => memchr::memchr(b';', value)?,
    };
    find_param(&value[params_start..], name)
}

/// Finds `;name` or `;name=value` in a `;`-separated parameter list.
pub fn find_param<'a>(params: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    params.split(|b| *b == b';').skip(1).find_map(|param| {
        let param = trim_slice(param);
        let (key, value) = match memchr::memchr(b'=', param) {
            Some(eq) => (trim_slice(&param[..eq]), trim_slice(&param[eq + 1..])),
            None => (param, &param[param.len()..]),
        };
        key.eq_ignore_ascii_case(name).then_some(value)
    })
}

/// Trims spaces, tabs and line breaks from both ends of a slice.
pub fn trim_slice(bytes: &[u8]) -> &[u8] {
    &bytes[trim(bytes, 0..bytes.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_element_skips_quoted_and_bracketed_commas() {
        let value = br#""Doe, Jane" <sip:a@b;x=1,2>;tag=1, <sip:c@d>"#;
        let end = first_element_end(value);
        assert_eq!(&value[..end], br#""Doe, Jane" <sip:a@b;x=1,2>;tag=1"#);
    }

    #[test]
    fn elements_split_and_trim() {
        let value = b"<sip:a@b;lr> ,\r\n <sip:c@d;lr>";
        let parts: Vec<&[u8]> = elements(value).map(|r| &value[r]).collect();
        assert_eq!(parts, vec![&b"<sip:a@b;lr>"[..], &b"<sip:c@d;lr>"[..]]);
    }

    #[test]
    fn header_param_outside_brackets_only() {
        let value = b"\"A\" <sip:a@b;tag=inner>;tag=outer";
        assert_eq!(header_param(value, b"tag"), Some(&b"outer"[..]));
        assert_eq!(header_param(b"sip:a@b;TAG=x", b"tag"), Some(&b"x"[..]));
        assert_eq!(header_param(b"<sip:a@b>", b"tag"), None);
        assert_eq!(header_param(b"<sip:a@b>;lr", b"lr"), Some(&b""[..]));
    }
}
