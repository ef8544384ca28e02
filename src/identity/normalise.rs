//! Normalisation of an accepted URI into one canonical callerid, so that one caller gives the
//! same string however the number was written, and two callers never give the same string.
//!
//! The canonical forms are `+<digits>` (E.164), `local:<digits>@<trunk_id>` for numbers that
//! cannot be globalised without guessing a country, and `sip:<user>@<host>` for alphanumeric
//! users. The type prefix keeps a number apart from an alphanumeric id such as `sip:123@h`.
//! These exact bytes are hashed into the sessionid, so any change to the rules here changes
//! sessionids and needs a new [`NORMALISER_VERSION`] and a new release key.

use phonenumber::Mode;

use super::header::{Malformed, NameAddr};
use super::markers::{is_empty_number, marker_reason};
use super::trust::TrunkPolicy;
use super::uri::{encode_user, parse_uri, percent_decode, Scheme, Uri};

/// Version of the normalisation rules that produce the callerids hashed into sessionids.
pub const NORMALISER_VERSION: &str = "norm_v1";

/// E.164 allows at most 15 digits after the `+`.
const MAX_GLOBAL_DIGITS: usize = 15;

/// The shortest national numbering plans give 7-digit international numbers.
const MIN_GLOBAL_DIGITS: usize = 7;

/// Global numbers at least this long are taken as written, without the phonenumber library.
const FAST_PATH_MIN_DIGITS: usize = 8;

/// Maximum number of digits kept in `local:` form: 15 E.164 digits behind a 4-digit international
/// prefix such as `0011`.
const MAX_LOCAL_DIGITS: usize = 19;

/// A value that cannot be normalised into a callerid. Carries no part of the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NormaliseError {
    #[error("not a valid phone number or SIP address")]
    Invalid,
}

/// A canonical callerid and whether it is the trunk-scoped `local:` form.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Normalised {
    pub callerid: String,
    pub local_form: bool,
}

impl Normalised {
    /// Wraps a `+<digits>` or `sip:` callerid.
    fn new(callerid: String) -> Self {
        Self {
            callerid,
            local_form: false,
        }
    }
}

/// Loads the phonenumber metadata and compiles the regular expressions of a first parse, so the
/// first INVITE does not pay for them (about 90 ms).
pub fn warm_up() {
    let _ = phonenumber::parse(Some(phonenumber::country::Id::DE), "030123456");
    let _ = phonenumber::parse(None, "+1234567");
}

/// Normalises a number or URI given by an operator, as a From header of a trusted peer on
/// `trunk` would be: `+4930123456`, `030 123456`, `tel:...` or `sip:...`. Anonymous markers
/// are invalid here because they have no callerid.
pub fn normalise_number(value: &str, trunk: &TrunkPolicy) -> Result<String, NormaliseError> {
    let value = value.trim();
    let normalised = if value.contains(':') {
        let uri = parse_uri(value.as_bytes()).map_err(|_| NormaliseError::Invalid)?;
        let address = NameAddr {
            display: None,
            uri: value.as_bytes(),
            params: b"",
        };
        if marker_reason(&address, Some(&uri), trunk, true).is_some() {
            return Err(NormaliseError::Invalid);
        }
        normalise_uri(&uri, trunk)
    } else if is_empty_number(value.as_bytes()) {
        return Err(NormaliseError::Invalid);
    } else {
        percent_decode(value.as_bytes()).and_then(|user| number(&user, None, trunk))
    };
    normalised
        .map(|n| n.callerid)
        .map_err(|_| NormaliseError::Invalid)
}

/// Normalises one parsed URI.
///
/// A tel URI or a sip URI with `user=phone` is a number. Any other sip URI is a number when its
/// user part, with separators removed, holds only digits and `+`, and an alphanumeric id
/// otherwise.
pub(crate) fn normalise_uri(uri: &Uri<'_>, trunk: &TrunkPolicy) -> Result<Normalised, Malformed> {
    if let Some(fast) = fast_global(uri.user) {
        return Ok(Normalised::new(fast));
    }

    let user = percent_decode(uri.user)?;
    if uri.is_phone() || (uri.scheme == Scheme::Sip && looks_numeric(&user)) {
        return number(&user, uri.phone_context(), trunk);
    }
    alphanumeric(&user, uri.host)
}

/// Takes a user part that already is `+` and 8 to 15 digits as it is.
fn fast_global(user: &[u8]) -> Option<String> {
    let digits = user.strip_prefix(b"+")?;
    let valid = (FAST_PATH_MIN_DIGITS..=MAX_GLOBAL_DIGITS).contains(&digits.len())
        && digits[0] != b'0'
        && digits.iter().all(u8::is_ascii_digit);
    valid.then(|| String::from_utf8_lossy(user).into_owned())
}

fn is_separator(b: u8) -> bool {
    matches!(b, b'-' | b'.' | b'(' | b')' | b' ' | b'\t')
}

/// Removes visual separators: `-`, `.`, `(`, `)` and whitespace.
fn strip_separators(user: &[u8]) -> Vec<u8> {
    user.iter().copied().filter(|b| !is_separator(*b)).collect()
}

/// True when the user part, separators removed, holds only digits and `+`. A misplaced or
/// repeated `+` still counts as numeric here, so that [`number`] rejects it instead of letting
/// it pass as an alphanumeric id.
fn looks_numeric(user: &[u8]) -> bool {
    let cleaned = strip_separators(user);
    !cleaned.is_empty() && cleaned.iter().all(|b| b.is_ascii_digit() || *b == b'+')
}

/// Normalises a decoded number: a global number, a number with an international or national
/// prefix, a local number with a phone context, or a number kept in trunk-scoped form.
fn number(
    user: &[u8],
    phone_context: Option<&[u8]>,
    trunk: &TrunkPolicy,
) -> Result<Normalised, Malformed> {
    let cleaned = strip_separators(user);
    let (plus, digits) = match cleaned.strip_prefix(b"+") {
        Some(rest) => (true, rest),
        None => (false, cleaned.as_slice()),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(Malformed);
    }
    // Only ASCII digits remain, so this cannot fail.
    let digits = std::str::from_utf8(digits).map_err(|_| Malformed)?;

    // A global number ignores any phone-context: real SBCs send `+...;phone-context=+49`, which
    // the phonenumber library rejects, so the parameter is dropped before any parsing.
    if plus {
        return global(&format!("+{digits}")).map(Normalised::new);
    }

    match phone_context.map(|c| c.trim_ascii()) {
        Some(context) if context.first() == Some(&b'+') => with_global_context(digits, context),
        // A domain context cannot be globalised by itself; the trunk settings decide.
        _ => national(digits, trunk),
    }
}

/// Checks the global-number form: `+`, a first digit other than 0, 7 to 15 digits in total.
/// Numbers of 7 digits must also parse with the phonenumber library to an identical E.164 string.
fn global(candidate: &str) -> Result<String, Malformed> {
    let digits = &candidate.as_bytes()[1..];
    let valid = (MIN_GLOBAL_DIGITS..=MAX_GLOBAL_DIGITS).contains(&digits.len())
        && digits[0] != b'0'
        && digits.iter().all(u8::is_ascii_digit);
    if !valid {
        return Err(Malformed);
    }
    if digits.len() >= FAST_PATH_MIN_DIGITS {
        return Ok(candidate.to_owned());
    }

    let parsed = phonenumber::parse(None, candidate).map_err(|_| Malformed)?;
    let formatted = parsed.format().mode(Mode::E164).to_string();
    if formatted == candidate {
        Ok(formatted)
    } else {
        Err(Malformed)
    }
}

/// Joins a local number and a global phone-context (RFC 3966 section 5.1.5). The library removes
/// a national prefix that the local digits start with, as the context country's metadata
/// defines it. When it cannot parse the pair, the digits are joined as written.
fn with_global_context(digits: &str, context: &[u8]) -> Result<Normalised, Malformed> {
    let context = strip_separators(context);
    let context_digits = &context[1..];
    if context_digits.is_empty() || !context_digits.iter().all(u8::is_ascii_digit) {
        return Err(Malformed);
    }
    let context = std::str::from_utf8(&context).map_err(|_| Malformed)?;

    let tel = format!("tel:{digits};phone-context={context}");
    let joined = match phonenumber::parse(None, &tel) {
        Ok(parsed) => parsed.format().mode(Mode::E164).to_string(),
        Err(_) => format!("{context}{digits}"),
    };
    global(&joined).map(Normalised::new)
}

/// Globalises digits written without `+`, using only what the trunk configures. With no
/// configuration, or when no rule matches, the number stays trunk-scoped: a country is never
/// guessed.
fn national(digits: &str, trunk: &TrunkPolicy) -> Result<Normalised, Malformed> {
    let numbering = &trunk.numbering;

    // An international prefix is replaced by `+`. A country code is never added on top.
    if let Some(rest) = numbering
        .international_prefix
        .as_deref()
        .and_then(|p| digits.strip_prefix(p))
    {
        return global(&format!("+{rest}")).map(Normalised::new);
    }

    if let (Some(code), Some(rest)) = (
        numbering.country_code,
        numbering
            .national_prefix
            .as_deref()
            .and_then(|p| digits.strip_prefix(p)),
    ) {
        if let Ok(g) = global(&with_country_code(digits, rest, code, trunk)) {
            return Ok(Normalised::new(g));
        }
    }

    // NANP numbers are often written as 10 digits without the national prefix 1.
    let nanp_area = digits.len() == 10 && matches!(digits.as_bytes()[0], b'2'..=b'9');
    if numbering.country_code == Some(1) && nanp_area {
        if let Ok(g) = global(&format!("+1{digits}")) {
            return Ok(Normalised::new(g));
        }
    }

    // Closed numbering plans without a national prefix (Italy, for example) dial the full
    // national number; only the region's metadata can tell a valid one.
    if numbering.national_prefix.is_none() {
        if let Some(g) = closed_plan_number(digits, trunk) {
            return Ok(Normalised::new(g));
        }
    }

    local(digits, trunk)
}

/// Builds `+<code><rest>` for a number that started with the national prefix.
///
/// When the trunk names a region, the library's parse with that region wins, because some
/// regions change more than the prefix (carrier codes, mobile tokens). The library also
/// recognises international prefixes that only a pattern describes, such as Brazil's `00xx`
/// carrier selection, and such a number keeps its own country code.
fn with_country_code(digits: &str, rest: &str, code: u16, trunk: &TrunkPolicy) -> String {
    let parsed = trunk
        .numbering
        .region
        .and_then(|region| phonenumber::parse(Some(region), digits).ok());
    match parsed {
        Some(p) => p.format().mode(Mode::E164).to_string(),
        None => format!("+{code}{rest}"),
    }
}

fn closed_plan_number(digits: &str, trunk: &TrunkPolicy) -> Option<String> {
    let region = trunk.numbering.region?;
    let parsed = phonenumber::parse(Some(region), digits).ok()?;
    if !parsed.is_valid() {
        return None;
    }
    global(&parsed.format().mode(Mode::E164).to_string()).ok()
}

fn local(digits: &str, trunk: &TrunkPolicy) -> Result<Normalised, Malformed> {
    if digits.len() > MAX_LOCAL_DIGITS {
        return Err(Malformed);
    }
    Ok(Normalised {
        callerid: format!("local:{digits}@{}", trunk.id),
        local_form: true,
    })
}

/// Builds `sip:<user>@<host>`: the user keeps its case (RFC 3261 section 19.1.4) and is
/// re-encoded, the host is lowercased, and port and parameters are already gone.
fn alphanumeric(user: &[u8], host: &[u8]) -> Result<Normalised, Malformed> {
    if user.is_empty() || host.is_empty() {
        return Err(Malformed);
    }
    let mut callerid = String::with_capacity(5 + user.len() + host.len());
    callerid.push_str("sip:");
    encode_user(user, &mut callerid);
    callerid.push('@');
    for &b in host {
        callerid.push(char::from(b.to_ascii_lowercase()));
    }
    Ok(Normalised::new(callerid))
}
