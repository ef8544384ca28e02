use super::*;

const KEY: [u8; 32] = [7u8; 32];

#[test]
fn sessionid_known_answer() {
    let key = ReleaseKey::derive(&KEY, "k1", "default").unwrap();
    // Computed independently with Python's hmac/hashlib/base64 modules:
    //   k = HKDF-Expand(HKDF-Extract(b"\0"*32, b"\x07"*32), b"sessionid/v1/default", 32)
    //   base32(HMAC(k, sha256(b"+4930123456"))).lower().rstrip("=")
    assert_eq!(key.sessionid("+4930123456"), EXPECTED_K1_DEFAULT);
}

const EXPECTED_K1_DEFAULT: &str = "k1_r5kmcjojjnfg2ybjk53pfucli73zf4rzx7w24ryhgzesqor7ewha";

#[test]
fn sessionid_is_stable_and_keyed() {
    let a = ReleaseKey::derive(&KEY, "k1", "default").unwrap();
    let b = ReleaseKey::derive(&KEY, "k1", "default").unwrap();
    assert_eq!(a.sessionid("+4930123456"), b.sessionid("+4930123456"));
    assert_ne!(a.sessionid("+4930123456"), a.sessionid("+4930123457"));

    let other_release = ReleaseKey::derive(&KEY, "k1", "other").unwrap();
    assert_ne!(
        a.sessionid("+4930123456"),
        other_release.sessionid("+4930123456")
    );

    let other_key = ReleaseKey::derive(&[8u8; 32], "k1", "default").unwrap();
    assert_ne!(
        a.sessionid("+4930123456"),
        other_key.sessionid("+4930123456")
    );
}

#[test]
fn sessionid_has_key_id_prefix_and_safe_alphabet() {
    let key = ReleaseKey::derive(&KEY, "k7", "default").unwrap();
    let id = key.sessionid("sip:alice@example.com");
    assert!(id.starts_with("k7_"), "{id}");
    assert_eq!(id.len(), 3 + 52);
    assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
}

#[test]
fn short_key_and_bad_key_id_rejected() {
    assert_eq!(
        ReleaseKey::derive(&[1u8; 31], "k1", "x").unwrap_err(),
        KeyError::TooShort(31)
    );
    assert_eq!(
        ReleaseKey::derive(&KEY, "k-1", "x").unwrap_err(),
        KeyError::InvalidKeyId
    );
    assert_eq!(
        ReleaseKey::derive(&KEY, "", "x").unwrap_err(),
        KeyError::InvalidKeyId
    );
}

#[test]
fn random_ids_are_typed_and_distinct() {
    let a = random_id(IdKind::Call);
    let b = random_id(IdKind::Call);
    assert_ne!(a, b);
    assert!(a.starts_with("ca"));
    assert_eq!(a.len(), 34);
    assert!(random_id(IdKind::Conversation).starts_with("cv"));
    assert!(random_id(IdKind::AnonymousSession).starts_with("an"));
}

#[test]
fn time_ordered_ids_sort_and_differ() {
    let at = 1_796_000_000_123; // 2026-11-30, Unix milliseconds
    let first = time_ordered_id(IdKind::Conversation, at);
    let same_ms = time_ordered_id(IdKind::Conversation, at);
    let later = time_ordered_id(IdKind::Conversation, at + 1);
    assert_eq!(first.len(), 34);
    assert!(first.starts_with("cv"));
    assert!(first[2..]
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_eq!(u64::from_str_radix(&first[2..14], 16).unwrap(), at);
    assert_ne!(first, same_ms);
    assert!(later > first);
    assert!(later > same_ms);
}
