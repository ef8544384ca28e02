//! The binary record encoding: round trips, fixed version-1 bytes, and damaged input.

use crate::store::codec::*;
use crate::store::{Conversation, Lifetime, Session, StoreError, Variable};

fn session() -> Session {
    Session {
        sessionid: "k1_abc".into(),
        tenant: "acme".into(),
        instance: "prod".into(),
        key_id: "k1".into(),
        first_seen_ms: 1,
        last_seen_ms: 2,
        call_count: 3,
    }
}

fn conversation() -> Conversation {
    Conversation {
        conversationid: "cv01".into(),
        sessionid: "k1_abc".into(),
        tenant: "acme".into(),
        callid: "ca01".into(),
        release: "prod".into(),
        started_at_ms: 10,
        answered_at_ms: Some(11),
        ended_at_ms: None,
        final_status: Some(486),
        anonymous: true,
        identity_source: "pai".into(),
    }
}

#[test]
fn records_round_trip() {
    assert_eq!(
        decode_session(&encode_session(&session())).unwrap(),
        session()
    );
    assert_eq!(
        decode_conversation(&encode_conversation(&conversation())).unwrap(),
        conversation()
    );
    let variable = Variable {
        name: "lang".into(),
        value: "de".into(),
        lifetime: Lifetime::User,
        updated_at_ms: 42,
    };
    assert_eq!(
        decode_variable(&encode_variable(&variable)).unwrap(),
        variable
    );
}

/// A variable as version 1 writes it. This fixture must keep decoding in every later version.
const VARIABLE_V1: &[u8] = &[
    1, b'V', // version 1, variable
    1, 4, 0, 0, 0, b'l', b'a', b'n', b'g', // name
    2, 2, 0, 0, 0, b'd', b'e', // value
    3, 1, 0, 0, 0, b'U', // lifetime: user
    4, 8, 0, 0, 0, 42, 0, 0, 0, 0, 0, 0, 0, // updated at 42 ms
];

#[test]
fn version_1_variable_decodes() {
    let variable = decode_variable(VARIABLE_V1).unwrap();
    assert_eq!(variable.name, "lang");
    assert_eq!(variable.value, "de");
    assert_eq!(variable.lifetime, Lifetime::User);
    assert_eq!(variable.updated_at_ms, 42);
    assert_eq!(encode_variable(&variable), VARIABLE_V1, "encoding changed");
}

/// A version-1 conversation without the optional fields and with a field tag (15) that this
/// version does not know, as a later writer might add.
const CONVERSATION_V1_EXTENDED: &[u8] = &[
    1, b'C', //
    1, 2, 0, 0, 0, b'c', b'v', //
    2, 2, 0, 0, 0, b's', b'1', //
    3, 1, 0, 0, 0, b't', //
    4, 2, 0, 0, 0, b'c', b'a', //
    5, 1, 0, 0, 0, b'r', //
    6, 8, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, //
    10, 1, 0, 0, 0, 0, //
    11, 3, 0, 0, 0, b'p', b'a', b'i', //
    15, 3, 0, 0, 0, 9, 9, 9, //
];

#[test]
fn unknown_fields_skipped() {
    let c = decode_conversation(CONVERSATION_V1_EXTENDED).unwrap();
    assert_eq!(c.conversationid, "cv");
    assert_eq!(c.started_at_ms, 7);
    assert_eq!(c.answered_at_ms, None);
    assert_eq!(c.final_status, None);
    assert!(!c.anonymous);
    assert_eq!(c.identity_source, "pai");
}

#[test]
fn damaged_records_rejected() {
    let cases: [(&str, Vec<u8>); 5] = [
        ("empty", vec![]),
        ("future version", vec![2, b'V']),
        ("wrong kind", encode_session(&session())),
        ("truncated", VARIABLE_V1[..VARIABLE_V1.len() - 3].to_vec()),
        ("missing name", vec![1, b'V', 2, 0, 0, 0, 0]),
    ];
    for (case, bytes) in cases {
        let result = decode_variable(&bytes);
        assert!(
            matches!(result, Err(StoreError::Corrupt(_))),
            "{case}: {result:?}"
        );
    }
}
