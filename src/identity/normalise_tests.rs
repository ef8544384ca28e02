//! Normalisation rules N1 to N13, one test each, on single URIs and header values.

use super::header::{parse_name_addr, split_values, unfold};
use super::normalise::normalise_uri;
use super::tests::{bare_trunk, de_trunk, derive_headers, trunk_from_toml, us_trunk};
use super::uri::parse_uri;
use super::*;

/// Normalises a bare URI as a trusted peer on `trunk` would send it.
fn canonical(uri: &str, trunk: &TrunkPolicy) -> Option<String> {
    let uri = parse_uri(uri.as_bytes()).ok()?;
    normalise_uri(&uri, trunk).ok().map(|n| n.callerid)
}

#[test]
fn n1_header_names_and_folding() {
    assert_eq!(identity_header(b"f"), Some(IdentityHeader::From));
    assert_eq!(identity_header(b"FROM"), Some(IdentityHeader::From));
    assert_eq!(
        identity_header(b"P-asserted-IDENTITY"),
        Some(IdentityHeader::PAssertedIdentity)
    );
    assert_eq!(identity_header(b"Via"), None);

    let folded = unfold(b"<sip:a@b>,\r\n\t <tel:+4930123456>").unwrap();
    let values = split_values(&folded).unwrap();
    assert_eq!(values.len(), 2);
    assert!(unfold(b"a\r\nb").is_err());

    let quoted = split_values(b"\"Doe, Jane\" <sip:a@b>, <tel:+4930123456>").unwrap();
    assert_eq!(quoted.len(), 2);
}

#[test]
fn n2_name_addr_and_addr_spec() {
    let name_addr = parse_name_addr(b"\"Jane \\\"J\\\" Doe\" <sip:j@c>;tag=1").unwrap();
    assert_eq!(name_addr.uri, b"sip:j@c");
    assert_eq!(name_addr.params, b";tag=1");

    let addr_spec = parse_name_addr(b"sip:+4930123456@c;tag=1").unwrap();
    assert_eq!(addr_spec.uri, b"sip:+4930123456@c");
    assert!(addr_spec.display.is_none());

    let identity = derive_headers(&[("From", "sip:+4930123456@c;tag=1")], &de_trunk());
    assert_eq!(identity.callerid.as_deref(), Some("+4930123456"));
}

#[test]
fn n3_uri_classes() {
    let trunk = de_trunk();
    assert_eq!(
        canonical("tel:+4930123456", &trunk).as_deref(),
        Some("+4930123456")
    );
    assert_eq!(
        canonical("sips:+4930123456@c", &trunk).as_deref(),
        Some("+4930123456")
    );
    assert_eq!(canonical("sip:bob@c", &trunk).as_deref(), Some("sip:bob@c"));
    assert_eq!(canonical("sip:bob@c;user=phone", &trunk), None);
    assert_eq!(canonical("mailto:bob@c", &trunk), None);
    assert_eq!(canonical("tel:+49301234x", &trunk), None);
}

#[test]
fn n4_user_part_cleaning() {
    let trunk = de_trunk();
    for uri in [
        "sip:+4930123456;npdi;rn=+4930999@c;user=phone",
        "sip:+4930123456;isub=12;ext=7@c;user=phone",
        "sip:%2B4930123456@c",
        "tel:+4930123456;ext=12",
        "tel:+4930123456;isub=1;phone-context=+49",
    ] {
        assert_eq!(
            canonical(uri, &trunk).as_deref(),
            Some("+4930123456"),
            "{uri}"
        );
    }
    assert_eq!(
        canonical("sip:+49%3030123456@c", &trunk).as_deref(),
        Some("+49030123456")
    );
    assert_eq!(canonical("sip:%2@c", &trunk), None);
}

#[test]
fn n5_separators() {
    let trunk = de_trunk();
    for uri in [
        "tel:+49-30-123456",
        "tel:+49.30.123456",
        "tel:+49(30)123456",
        "sip:+49%2030%20123456@c;user=phone",
        "sip:+49 (30) 123-456@c;user=phone",
    ] {
        assert_eq!(
            canonical(uri, &trunk).as_deref(),
            Some("+4930123456"),
            "{uri}"
        );
    }
}

#[test]
fn n6_global_number_form() {
    let trunk = bare_trunk();
    assert_eq!(
        canonical("tel:+123456789012345", &trunk).as_deref(),
        Some("+123456789012345")
    );
    assert_eq!(canonical("tel:+1234567890123456", &trunk), None);
    assert_eq!(canonical("tel:+491234", &trunk), None);
    assert_eq!(canonical("tel:++4930123456", &trunk), None);
    assert_eq!(canonical("tel:+49+30123456", &trunk), None);
    assert_eq!(canonical("tel:+4930*123", &trunk), None);
    assert_eq!(canonical("tel:+4930#123", &trunk), None);
    assert_eq!(canonical("tel:+", &trunk), None);
    assert_eq!(canonical("tel:+04930123456", &trunk), None);
    // A 7-digit global number is accepted when the phonenumber library parses it unchanged.
    assert_eq!(
        canonical("tel:+1234567", &trunk).as_deref(),
        Some("+1234567")
    );
}

#[test]
fn n7_international_prefix() {
    assert_eq!(
        canonical("sip:004930123456@c", &de_trunk()).as_deref(),
        Some("+4930123456")
    );
    assert_eq!(
        canonical("sip:0114930123456@c", &us_trunk()).as_deref(),
        Some("+4930123456")
    );
    let australia = trunk_from_toml("[[trunks]]\nid = \"au\"\nregion = \"AU\"\n");
    assert_eq!(
        canonical("sip:00114930123456@c", &australia).as_deref(),
        Some("+4930123456")
    );
    let brazil = trunk_from_toml("[[trunks]]\nid = \"br\"\nregion = \"BR\"\n");
    assert_eq!(
        canonical("sip:00214930123456@c", &brazil).as_deref(),
        Some("+4930123456")
    );
    // The country code is never added on top of an international prefix.
    assert_eq!(
        canonical("sip:0044201234567@c", &de_trunk()).as_deref(),
        Some("+44201234567")
    );
}

#[test]
fn n8_national_format() {
    assert_eq!(
        canonical("sip:030123456@c", &de_trunk()).as_deref(),
        Some("+4930123456")
    );
    let explicit = trunk_from_toml(
        "[[trunks]]\nid = \"t\"\ncountry_code = 49\nnational_prefix = \"0\"\ninternational_prefix = \"00\"\n",
    );
    assert_eq!(
        canonical("sip:030123456@c", &explicit).as_deref(),
        Some("+4930123456")
    );
    assert_eq!(
        canonical("sip:2125550123@c", &us_trunk()).as_deref(),
        Some("+12125550123")
    );
    assert_eq!(
        canonical("sip:12125550123@c", &us_trunk()).as_deref(),
        Some("+12125550123")
    );
    // Digits without a national prefix are not globalised on a DE trunk: the area code is
    // unknown.
    assert_eq!(
        canonical("sip:30123456@c", &de_trunk()).as_deref(),
        Some("local:30123456@de")
    );
    // Without numbering settings no country is guessed.
    assert_eq!(
        canonical("sip:030123456@c", &bare_trunk()).as_deref(),
        Some("local:030123456@bare")
    );
}

#[test]
fn n9_phone_context() {
    let bare = bare_trunk();
    assert_eq!(
        canonical("tel:30123456;phone-context=+49", &bare).as_deref(),
        Some("+4930123456")
    );
    assert_eq!(
        canonical("tel:030123456;phone-context=+49", &bare).as_deref(),
        Some("+4930123456")
    );
    assert_eq!(
        canonical("tel:123456;phone-context=+49-30", &bare).as_deref(),
        Some("+4930123456")
    );
    assert_eq!(
        canonical("tel:030123456;phone-context=example.com", &de_trunk()).as_deref(),
        Some("+4930123456")
    );
    assert_eq!(
        canonical("tel:030123456;phone-context=example.com", &bare).as_deref(),
        Some("local:030123456@bare")
    );
    // A global number with a phone-context keeps the global number.
    assert_eq!(
        canonical("tel:+4930123456;phone-context=+49", &bare).as_deref(),
        Some("+4930123456")
    );
    assert_eq!(canonical("tel:123;phone-context=+", &bare), None);
}

#[test]
fn n10_local_form() {
    let trunk = bare_trunk();
    assert_eq!(
        canonical("sip:1001@pbx", &trunk).as_deref(),
        Some("local:1001@bare")
    );
    assert_eq!(
        canonical("sip:1001@pbx", &TrunkPolicy::default()).as_deref(),
        Some("local:1001@untrusted")
    );
    assert_eq!(canonical("sip:12345678901234567890@pbx", &trunk), None);
}

#[test]
fn n11_alphanumeric_ids() {
    let trunk = bare_trunk();
    assert_eq!(
        canonical("sip:Alice@Example.COM:5060;transport=tcp", &trunk).as_deref(),
        Some("sip:Alice@example.com")
    );
    assert_eq!(
        canonical("sips:alice:secret@example.com", &trunk).as_deref(),
        Some("sip:alice@example.com")
    );
    assert_eq!(
        canonical("sip:J%2eDoe@corp.example", &trunk).as_deref(),
        Some("sip:J.Doe@corp.example")
    );
    assert_eq!(
        canonical("sip:j%20doe@corp.example", &trunk).as_deref(),
        Some("sip:j%20doe@corp.example")
    );
    assert_eq!(
        canonical("sip:bob@[2001:DB8::1]:5060", &trunk).as_deref(),
        Some("sip:bob@[2001:db8::1]")
    );
}

#[test]
fn n12_anonymous_markers() {
    let trunk = de_trunk();
    for from in [
        "<sip:+4930123456@anonymous.invalid>",
        "\"ANONYMOUS\" <sip:+4930123456@c>",
        "Anonymous <sip:+4930123456@c>",
        "<sip:Restricted@c>",
        "<sip:%61nonymous@c>",
    ] {
        let identity = derive_headers(&[("From", from)], &trunk);
        assert!(identity.anonymous, "From shape #{}", from.len());
        assert_eq!(identity.anon_reason, AnonReason::Withheld);
    }
    for from in ["<sip:unavailable@c>", "<sip:@c>", "<sip:000@c>", "<tel:+>"] {
        let identity = derive_headers(&[("From", from)], &trunk);
        assert!(identity.anonymous, "From shape #{}", from.len());
        assert_eq!(identity.anon_reason, AnonReason::Unavailable);
    }
}

#[test]
fn n13_canonical_forms_are_typed() {
    let trunk = bare_trunk();
    let number = canonical("tel:+12345678", &trunk).unwrap();
    let alphanumeric = canonical("sip:abc12345678@h", &trunk).unwrap();
    let numeric_sip = canonical("sip:12345678@h", &trunk).unwrap();
    assert!(number.starts_with('+'));
    assert!(alphanumeric.starts_with("sip:"));
    assert!(numeric_sip.starts_with("local:"));
    for callerid in [number, alphanumeric, numeric_sip] {
        assert_eq!(callerid.trim(), callerid);
        assert!(callerid.is_ascii());
    }
}

#[test]
fn normalise_number_accepts_operator_input() {
    let trunk = de_trunk();
    for input in [
        "+49 30 123456",
        "030 123456",
        "0049-30-123456",
        "tel:+4930123456",
    ] {
        assert_eq!(
            normalise_number(input, &trunk).as_deref(),
            Ok("+4930123456"),
            "{input}"
        );
    }
    assert_eq!(
        normalise_number("not a number", &trunk),
        Err(NormaliseError::Invalid)
    );
}
