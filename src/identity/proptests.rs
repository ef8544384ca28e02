//! Property tests: normalisation is idempotent, every written form of one German number yields
//! the same callerid and sessionid, different inputs yield different sessionids, and derivation
//! accepts arbitrary header bytes.

use proptest::prelude::*;

use super::normalise::normalise_uri;
use super::tests::{bare_trunk, de_trunk};
use super::uri::parse_uri;
use super::*;
use crate::pseudonym::ReleaseKey;

fn canonical(uri: &str, trunk: &TrunkPolicy) -> Option<String> {
    let uri = parse_uri(uri.as_bytes()).ok()?;
    normalise_uri(&uri, trunk).ok().map(|n| n.callerid)
}

/// Generates a German number as area code (without the 0) and subscriber number.
fn german_number() -> impl Strategy<Value = (String, String)> {
    ("[2-9][0-9]{1,3}", "[1-9][0-9]{3,6}")
}

/// Inserts separators from a fixed set between the digits.
fn with_separators(digits: &str, pattern: &[u8]) -> String {
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        out.push(c);
        match pattern.get(i % pattern.len().max(1)) {
            Some(1) => out.push('-'),
            Some(2) => out.push('.'),
            Some(3) => out.push_str("%20"),
            _ => {}
        }
    }
    out
}

proptest! {
    #[test]
    fn every_written_form_gives_one_sessionid(
        (area, subscriber) in german_number(),
        pattern in proptest::collection::vec(0u8..4, 1..6),
    ) {
        let trunk = de_trunk();
        let national = format!("{area}{subscriber}");
        let expected = format!("+49{national}");
        let separated = with_separators(&national, &pattern);
        let forms = [
            format!("tel:+49{national}"),
            format!("tel:+49-{}", with_separators(&national, &[1])),
            format!("sip:+49{national}@gw.example;user=phone"),
            format!("sip:+49{separated}@gw.example;user=phone"),
            format!("sip:0049{national}@gw.example"),
            format!("sip:0{national}@gw.example"),
            format!("sip:0{separated}@gw.example;user=phone"),
            format!("sip:+49{national};npdi;cpc=ordinary@gw.example;user=phone"),
            format!("tel:0{national};phone-context=+49"),
            format!("tel:{national};phone-context=+49"),
        ];
        let key = ReleaseKey::derive(&[3u8; 32], "k1", "default").unwrap();
        for form in &forms {
            let callerid = canonical(form, &trunk);
            prop_assert_eq!(callerid.as_deref(), Some(expected.as_str()), "form {}", form);
        }
        let sessionids: Vec<String> = forms
            .iter()
            .filter_map(|f| canonical(f, &trunk))
            .map(|c| key.sessionid(&c))
            .collect();
        prop_assert!(sessionids.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn normalisation_is_idempotent(user in "[+]?[0-9]{1,17}|[a-zA-Z][a-zA-Z0-9.]{0,12}") {
        for trunk in [de_trunk(), bare_trunk(), TrunkPolicy::default()] {
            let Some(first) = canonical(&format!("sip:{user}@Host.Example"), &trunk) else {
                continue;
            };
            let again = if let Some(local) = first.strip_prefix("local:") {
                let digits = local.split('@').next().unwrap_or_default();
                canonical(&format!("sip:{digits}@h"), &trunk)
            } else if first.starts_with('+') {
                canonical(&format!("tel:{first}"), &trunk)
            } else {
                canonical(&first, &trunk)
            };
            prop_assert_eq!(again.as_deref(), Some(first.as_str()));
        }
    }

    #[test]
    fn different_inputs_give_different_sessionids(
        a in "[1-9][0-9]{7,14}",
        b in "[1-9][0-9]{7,14}",
        release_a in "[a-z]{1,8}",
        release_b in "[a-z]{1,8}",
        key_byte in 1u8..=255,
    ) {
        let key = ReleaseKey::derive(&[0u8; 32], "k1", &release_a).unwrap();
        let number_a = format!("+{a}");
        let number_b = format!("+{b}");
        if a != b {
            prop_assert_ne!(key.sessionid(&number_a), key.sessionid(&number_b));
        }
        if release_a != release_b {
            let other = ReleaseKey::derive(&[0u8; 32], "k1", &release_b).unwrap();
            prop_assert_ne!(key.sessionid(&number_a), other.sessionid(&number_a));
        }
        let other_key = ReleaseKey::derive(&[key_byte; 32], "k1", &release_a).unwrap();
        prop_assert_ne!(key.sessionid(&number_a), other_key.sessionid(&number_a));
    }

    #[test]
    fn derive_accepts_any_bytes(
        from in proptest::collection::vec(any::<u8>(), 0..64),
        pai in proptest::collection::vec(any::<u8>(), 0..64),
        rpid in "[<>\"; ,=a-z:+0-9@%]{0,40}",
        privacy in "[; ,a-zA-Z\r\n\t\"]{0,20}",
    ) {
        let input = IdentityInput {
            from: Some(&from),
            pai: vec![&pai, b"<tel:+4930123456>"],
            rpid: vec![rpid.as_bytes()],
            privacy: vec![privacy.as_bytes()],
            ppi: Vec::new(),
        };
        for trunk in [de_trunk(), TrunkPolicy::default()] {
            let identity = derive(&input, &trunk);
            prop_assert_eq!(identity.anonymous, identity.callerid.is_none());
        }
    }
}
