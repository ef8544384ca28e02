//! Golden vectors: one case per row of the identity decision table (some rows have several
//! variants). A change to any expected value here changes sessionids and needs a new
//! normaliser version.

use super::*;
use crate::config::Config;

use AnonReason as R;
use Assurance as A;
use IdentitySource as S;

/// Builds the policy of the first trunk of a configuration snippet.
pub(super) fn trunk_from_toml(toml: &str) -> TrunkPolicy {
    let config = Config::parse(toml, "test").expect("test trunk config is valid");
    TrunkPolicy::from_config(&config.trunks[0])
}

/// Builds a trusted German trunk: region DE gives country code 49, national prefix 0 and
/// international prefix 00.
pub(super) fn de_trunk() -> TrunkPolicy {
    trunk_from_toml(
        "[[trunks]]\nid = \"de\"\nregion = \"DE\"\ntrusted_cidrs = [\"192.0.2.0/24\"]\n",
    )
}

/// Builds a trusted trunk without numbering settings.
pub(super) fn bare_trunk() -> TrunkPolicy {
    trunk_from_toml("[[trunks]]\nid = \"bare\"\n")
}

pub(super) fn us_trunk() -> TrunkPolicy {
    trunk_from_toml("[[trunks]]\nid = \"us\"\nregion = \"US\"\n")
}

#[derive(Clone, Copy)]
enum Peer {
    /// The trusted German trunk.
    De,
    /// A trusted trunk without numbering settings.
    Bare,
    Us,
    Untrusted,
}

struct Row {
    label: &'static str,
    peer: Peer,
    /// Header lines as (name, value), in order.
    headers: &'static [(&'static str, &'static str)],
    callerid: Option<&'static str>,
    reason: AnonReason,
    source: IdentitySource,
    assurance: Assurance,
}

const PAI_TEL: (&str, &str) = ("P-Asserted-Identity", "<tel:+4930123456>");
const FROM_OTHER: (&str, &str) = ("From", "<sip:+4930999999@x.example>;tag=1");
const FROM_NUMBER: (&str, &str) = ("From", "<sip:+4930123456@c.example>;tag=1");

#[rustfmt::skip]
const ROWS: &[Row] = &[
    Row { label: "1 trusted tel PAI", peer: Peer::De, headers: &[PAI_TEL, FROM_OTHER],
          callerid: Some("+4930123456"), reason: R::None, source: S::PaiTel, assurance: A::High },
    Row { label: "2 sip PAI user=phone", peer: Peer::De,
          headers: &[("P-Asserted-Identity", "<sip:+4930123456@gw.carrier;user=phone>"), FROM_OTHER],
          callerid: Some("+4930123456"), reason: R::None, source: S::PaiSip, assurance: A::High },
    Row { label: "3a sip and tel PAI on one line", peer: Peer::De,
          headers: &[("P-Asserted-Identity", "<sip:+4930123456@c;user=phone>, <tel:+4930123456>"), FROM_OTHER],
          callerid: Some("+4930123456"), reason: R::None, source: S::PaiTel, assurance: A::High },
    Row { label: "3b sip and tel PAI on two lines", peer: Peer::De,
          headers: &[("P-Asserted-Identity", "<sip:+4930123456@c;user=phone>"), PAI_TEL, FROM_OTHER],
          callerid: Some("+4930123456"), reason: R::None, source: S::PaiTel, assurance: A::High },
    Row { label: "4 PAI values differ, tel wins", peer: Peer::De,
          headers: &[("P-Asserted-Identity", "<sip:+4930111111@c;user=phone>"), PAI_TEL],
          callerid: Some("+4930123456"), reason: R::None, source: S::PaiTel, assurance: A::High },
    Row { label: "5 display name and escapes", peer: Peer::De,
          headers: &[("P-Asserted-Identity", "\"Jane Doe\" <sip:+49%20(30)%20123-456@c;user=phone>")],
          callerid: Some("+4930123456"), reason: R::None, source: S::PaiSip, assurance: A::High },
    Row { label: "6 tel parameters dropped", peer: Peer::De,
          headers: &[("P-Asserted-Identity", "<tel:+4930123456;cpc=ordinary;verstat=TN-Validation-Passed>")],
          callerid: Some("+4930123456"), reason: R::None, source: S::PaiTel, assurance: A::High },
    Row { label: "7 global phone-context", peer: Peer::De,
          headers: &[("P-Asserted-Identity", "<tel:30123456;phone-context=+49>")],
          callerid: Some("+4930123456"), reason: R::None, source: S::PaiTel, assurance: A::High },
    Row { label: "8a domain context, DE trunk", peer: Peer::De,
          headers: &[("P-Asserted-Identity", "<tel:0301234;phone-context=ims.mnc001.mcc262.3gppnetwork.org>")],
          callerid: Some("+49301234"), reason: R::None, source: S::PaiTel, assurance: A::High },
    Row { label: "8b domain context, bare trunk", peer: Peer::Bare,
          headers: &[("P-Asserted-Identity", "<tel:0301234;phone-context=ims.mnc001.mcc262.3gppnetwork.org>")],
          callerid: Some("local:0301234@bare"), reason: R::None, source: S::PaiTel, assurance: A::High },
    Row { label: "9 Privacy id", peer: Peer::De, headers: &[PAI_TEL, FROM_NUMBER, ("Privacy", "id")],
          callerid: None, reason: R::Withheld, source: S::None, assurance: A::Low },
    Row { label: "10a Privacy header;id", peer: Peer::De, headers: &[PAI_TEL, ("Privacy", "header;id")],
          callerid: None, reason: R::Withheld, source: S::None, assurance: A::Low },
    Row { label: "10b Privacy id;critical", peer: Peer::De, headers: &[PAI_TEL, ("Privacy", "id;critical")],
          callerid: None, reason: R::Withheld, source: S::None, assurance: A::Low },
    Row { label: "10c Privacy upper case", peer: Peer::De, headers: &[PAI_TEL, ("Privacy", "ID")],
          callerid: None, reason: R::Withheld, source: S::None, assurance: A::Low },
    Row { label: "10d Privacy on two lines", peer: Peer::De,
          headers: &[PAI_TEL, ("Privacy", "none"), ("privacy", "id")],
          callerid: None, reason: R::Withheld, source: S::None, assurance: A::Low },
    Row { label: "10e Privacy comma list", peer: Peer::De, headers: &[PAI_TEL, ("Privacy", "header, id")],
          callerid: None, reason: R::Withheld, source: S::None, assurance: A::Low },
    Row { label: "10f Privacy user", peer: Peer::De, headers: &[PAI_TEL, ("Privacy", "user")],
          callerid: None, reason: R::Withheld, source: S::None, assurance: A::Low },
    Row { label: "11a Privacy none", peer: Peer::De, headers: &[PAI_TEL, ("Privacy", "none")],
          callerid: Some("+4930123456"), reason: R::None, source: S::PaiTel, assurance: A::High },
    Row { label: "11b Privacy off", peer: Peer::De, headers: &[PAI_TEL, ("Privacy", "off")],
          callerid: Some("+4930123456"), reason: R::None, source: S::PaiTel, assurance: A::High },
    Row { label: "12 Privacy session", peer: Peer::De, headers: &[PAI_TEL, ("Privacy", "session")],
          callerid: Some("+4930123456"), reason: R::None, source: S::PaiTel, assurance: A::High },
    Row { label: "13 anonymous From and Privacy id", peer: Peer::De,
          headers: &[("From", "\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=1"), PAI_TEL, ("Privacy", "id")],
          callerid: None, reason: R::Withheld, source: S::None, assurance: A::Low },
    Row { label: "14 anonymous From without Privacy", peer: Peer::De,
          headers: &[("From", "\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=1"), PAI_TEL],
          callerid: None, reason: R::Withheld, source: S::None, assurance: A::Low },
    Row { label: "15a From restricted", peer: Peer::De, headers: &[("From", "<sip:restricted@c>;tag=1")],
          callerid: None, reason: R::Withheld, source: S::None, assurance: A::Low },
    Row { label: "15b From unavailable", peer: Peer::De, headers: &[("From", "<sip:unavailable@c>;tag=1")],
          callerid: None, reason: R::Unavailable, source: S::None, assurance: A::Low },
    Row { label: "15c From unknown", peer: Peer::De, headers: &[("From", "<sip:UNKNOWN@c>;tag=1")],
          callerid: None, reason: R::Unavailable, source: S::None, assurance: A::Low },
    Row { label: "15d From private", peer: Peer::De, headers: &[("From", "<sip:Private@c>;tag=1")],
          callerid: None, reason: R::Withheld, source: S::None, assurance: A::Low },
    Row { label: "15e From withheld", peer: Peer::De, headers: &[("From", "<sip:withheld@c>;tag=1")],
          callerid: None, reason: R::Withheld, source: S::None, assurance: A::Low },
    Row { label: "15f From Anonymous user", peer: Peer::De, headers: &[("From", "<sip:Anonymous@c>;tag=1")],
          callerid: None, reason: R::Withheld, source: S::None, assurance: A::Low },
    Row { label: "16a From without user", peer: Peer::De, headers: &[("From", "<sip:c.example>;tag=1")],
          callerid: None, reason: R::Unavailable, source: S::None, assurance: A::Low },
    Row { label: "16b From user 0", peer: Peer::De, headers: &[("From", "<sip:0@c>;tag=1")],
          callerid: None, reason: R::Unavailable, source: S::None, assurance: A::Low },
    Row { label: "16c From all zeros", peer: Peer::De, headers: &[("From", "<sip:0000@c>;tag=1")],
          callerid: None, reason: R::Unavailable, source: S::None, assurance: A::Low },
    Row { label: "16d From plus only", peer: Peer::De, headers: &[("From", "<sip:+@c>;tag=1")],
          callerid: None, reason: R::Unavailable, source: S::None, assurance: A::Low },
    Row { label: "17 From global number", peer: Peer::De, headers: &[FROM_NUMBER],
          callerid: Some("+4930123456"), reason: R::None, source: S::From, assurance: A::Medium },
    Row { label: "18a From national, DE trunk", peer: Peer::De, headers: &[("From", "<sip:030123456@c>;tag=1")],
          callerid: Some("+4930123456"), reason: R::None, source: S::From, assurance: A::Medium },
    Row { label: "18b From national, bare trunk", peer: Peer::Bare, headers: &[("From", "<sip:030123456@c>;tag=1")],
          callerid: Some("local:030123456@bare"), reason: R::None, source: S::From, assurance: A::Medium },
    Row { label: "19a From 00 prefix", peer: Peer::De, headers: &[("From", "<sip:004930123456@c>;tag=1")],
          callerid: Some("+4930123456"), reason: R::None, source: S::From, assurance: A::Medium },
    Row { label: "19b From 011 prefix, US trunk", peer: Peer::Us, headers: &[("From", "<sip:0114930123456@c>;tag=1")],
          callerid: Some("+4930123456"), reason: R::None, source: S::From, assurance: A::Medium },
    Row { label: "20a From tel, trusted", peer: Peer::De, headers: &[("From", "<tel:+1-212-555-0123>;tag=1")],
          callerid: Some("+12125550123"), reason: R::None, source: S::From, assurance: A::Medium },
    Row { label: "20b From tel, untrusted", peer: Peer::Untrusted, headers: &[("From", "<tel:+1-212-555-0123>;tag=1")],
          callerid: Some("+12125550123"), reason: R::None, source: S::From, assurance: A::Low },
    Row { label: "21a screened RPID", peer: Peer::De,
          headers: &[("Remote-Party-ID", "<sip:+4930123456@c>;party=calling;screen=yes;privacy=off"), FROM_OTHER],
          callerid: Some("+4930123456"), reason: R::None, source: S::Rpid, assurance: A::High },
    Row { label: "21b unscreened RPID", peer: Peer::De,
          headers: &[("Remote-Party-ID", "<sip:+4930123456@c>;party=calling;screen=no"), FROM_OTHER],
          callerid: Some("+4930123456"), reason: R::None, source: S::Rpid, assurance: A::Medium },
    Row { label: "22a RPID privacy=full", peer: Peer::De,
          headers: &[("Remote-Party-ID", "<sip:+4930123456@c>;party=calling;privacy=full"), FROM_NUMBER],
          callerid: None, reason: R::Withheld, source: S::None, assurance: A::Low },
    Row { label: "22b RPID privacy=uri, untrusted", peer: Peer::Untrusted,
          headers: &[("Remote-Party-ID", "<sip:+4930123456@c>;privacy=uri"), FROM_NUMBER],
          callerid: None, reason: R::Withheld, source: S::None, assurance: A::Low },
    Row { label: "23 RPID privacy=name", peer: Peer::De,
          headers: &[("Remote-Party-ID", "\"Jane\" <sip:+4930123456@c>;party=calling;screen=yes;privacy=name"), FROM_OTHER],
          callerid: Some("+4930123456"), reason: R::None, source: S::Rpid, assurance: A::High },
    Row { label: "24 untrusted PAI ignored", peer: Peer::Untrusted, headers: &[PAI_TEL, FROM_OTHER],
          callerid: Some("+4930999999"), reason: R::None, source: S::From, assurance: A::Low },
    Row { label: "25a PPI untrusted", peer: Peer::Untrusted,
          headers: &[("P-Preferred-Identity", "<sip:+4930123456@x>"), FROM_OTHER],
          callerid: Some("+4930999999"), reason: R::None, source: S::From, assurance: A::Low },
    Row { label: "25b PPI trusted", peer: Peer::De,
          headers: &[("P-Preferred-Identity", "<sip:+4930123456@x>"), FROM_OTHER],
          callerid: Some("+4930999999"), reason: R::None, source: S::From, assurance: A::Medium },
    Row { label: "26 alphanumeric From", peer: Peer::Untrusted,
          headers: &[("From", "<sip:Alice@Example.COM:5060;transport=tcp>;tag=1")],
          callerid: Some("sip:Alice@example.com"), reason: R::None, source: S::From, assurance: A::Low },
    Row { label: "27 alphanumeric PAI", peer: Peer::De,
          headers: &[("P-Asserted-Identity", "<sip:j.doe@corp.example>"), FROM_OTHER],
          callerid: Some("sip:j.doe@corp.example"), reason: R::None, source: S::PaiSip, assurance: A::High },
    Row { label: "28a PAI sip plus only", peer: Peer::De,
          headers: &[("P-Asserted-Identity", "<sip:+@c>"), FROM_NUMBER],
          callerid: Some("+4930123456"), reason: R::None, source: S::From, assurance: A::Medium },
    Row { label: "28b PAI tel plus only", peer: Peer::De,
          headers: &[("P-Asserted-Identity", "<tel:+>"), FROM_NUMBER],
          callerid: Some("+4930123456"), reason: R::None, source: S::From, assurance: A::Medium },
    Row { label: "28c PAI unparsable", peer: Peer::De,
          headers: &[("P-Asserted-Identity", "<sip:+4930111111@c"), FROM_NUMBER],
          callerid: Some("+4930123456"), reason: R::None, source: S::From, assurance: A::Medium },
    Row { label: "29a compact From", peer: Peer::De, headers: &[("f", "<sip:+4930123456@c>;tag=x")],
          callerid: Some("+4930123456"), reason: R::None, source: S::From, assurance: A::Medium },
    Row { label: "29b lower-case PAI name", peer: Peer::De,
          headers: &[("p-asserted-identity", "<tel:+4930123456>"), ("FROM", "<sip:+4930999999@c>;tag=x")],
          callerid: Some("+4930123456"), reason: R::None, source: S::PaiTel, assurance: A::High },
    Row { label: "30a PAI user parameters", peer: Peer::De,
          headers: &[("P-Asserted-Identity", "<sip:+4930123456;npdi;rn=+4930999@c;user=phone>")],
          callerid: Some("+4930123456"), reason: R::None, source: S::PaiSip, assurance: A::High },
    Row { label: "30b From user parameters", peer: Peer::De,
          headers: &[("From", "<sip:+4930123456;cpc=ordinary@c;user=phone>;tag=1")],
          callerid: Some("+4930123456"), reason: R::None, source: S::From, assurance: A::Medium },
    // SHAKEN is modelled as a trusted peer's verstat=TN-Validation-Passed on the From URI.
    Row { label: "31a verified SHAKEN From", peer: Peer::De,
          headers: &[("From", "<tel:+4930123456;verstat=TN-Validation-Passed>;tag=1")],
          callerid: Some("+4930123456"), reason: R::None, source: S::From, assurance: A::High },
    Row { label: "31b verstat from untrusted", peer: Peer::Untrusted,
          headers: &[("From", "<tel:+4930123456;verstat=TN-Validation-Passed>;tag=1")],
          callerid: Some("+4930123456"), reason: R::None, source: S::From, assurance: A::Low },
    Row { label: "32a From not a URI", peer: Peer::De, headers: &[("From", "garbage")],
          callerid: None, reason: R::Invalid, source: S::None, assurance: A::Low },
    Row { label: "32b From other scheme", peer: Peer::Untrusted, headers: &[("From", "<http://c.example/x>;tag=1")],
          callerid: None, reason: R::Invalid, source: S::None, assurance: A::Low },
    Row { label: "32c From double plus", peer: Peer::De, headers: &[("From", "<sip:++4930123456@c>;tag=1")],
          callerid: None, reason: R::Invalid, source: S::None, assurance: A::Low },
    Row { label: "32d From unclosed bracket", peer: Peer::De, headers: &[("From", "<sip:+4930123456@c;tag=1")],
          callerid: None, reason: R::Invalid, source: S::None, assurance: A::Low },
];

fn policy(peer: Peer) -> TrunkPolicy {
    match peer {
        Peer::De => de_trunk(),
        Peer::Bare => bare_trunk(),
        Peer::Us => us_trunk(),
        Peer::Untrusted => TrunkPolicy::default(),
    }
}

pub(super) fn derive_headers(headers: &[(&str, &str)], trunk: &TrunkPolicy) -> Identity {
    let mut input = IdentityInput::default();
    for (name, value) in headers {
        assert!(
            input.add_header(name.as_bytes(), value.as_bytes()),
            "{name} is an identity header"
        );
    }
    derive(&input, trunk)
}

#[test]
fn decision_table_rows() {
    for row in ROWS {
        let identity = derive_headers(row.headers, &policy(row.peer));
        let label = row.label;
        assert_eq!(
            identity.callerid.as_deref(),
            row.callerid,
            "row {label}: callerid"
        );
        assert_eq!(
            identity.anonymous,
            row.callerid.is_none(),
            "row {label}: anonymous"
        );
        assert_eq!(identity.anon_reason, row.reason, "row {label}: anon_reason");
        assert_eq!(identity.source, row.source, "row {label}: source");
        assert_eq!(identity.assurance, row.assurance, "row {label}: assurance");
    }
}

#[test]
fn decision_table_covers_every_row() {
    for n in 1..=32 {
        let covered = ROWS.iter().any(|row| {
            let number: String = row.label.chars().take_while(char::is_ascii_digit).collect();
            number == n.to_string()
        });
        assert!(covered, "row {n} has no case");
    }
}

#[test]
fn mismatching_pai_values_are_flagged() {
    let row = &ROWS[4];
    let identity = derive_headers(row.headers, &de_trunk());
    assert!(identity.flags.pai_value_mismatch);

    let matching = derive_headers(ROWS[3].headers, &de_trunk());
    assert!(!matching.flags.pai_value_mismatch);
}

#[test]
fn untrusted_pai_and_rpid_are_stripped() {
    let headers = [
        PAI_TEL,
        ("Remote-Party-ID", "<sip:+4930123456@c>;party=calling"),
        FROM_OTHER,
    ];
    let identity = derive_headers(&headers, &TrunkPolicy::default());
    assert!(identity.strip_pai);
    assert!(identity.strip_rpid);
    assert!(identity.flags.pai_untrusted_ignored);
    assert!(identity.flags.rpid_untrusted_ignored);

    let trusted = derive_headers(&headers, &de_trunk());
    assert!(!trusted.strip_pai);
    assert!(!trusted.strip_rpid);
    assert!(!trusted.flags.pai_untrusted_ignored);
}

#[test]
fn anonymous_call_strips_pai_by_default() {
    let headers = [PAI_TEL, ("Privacy", "id")];
    let identity = derive_headers(&headers, &de_trunk());
    assert!(identity.strip_pai);

    let mut keep = de_trunk();
    keep.strip_identity_when_anonymous = false;
    let kept = derive_headers(&headers, &keep);
    assert!(kept.anonymous);
    assert!(!kept.strip_pai);
}

#[test]
fn ppi_is_always_stripped() {
    let headers = [("P-Preferred-Identity", "<sip:+4930123456@x>"), FROM_OTHER];
    assert!(derive_headers(&headers, &de_trunk()).strip_ppi);
    assert!(derive_headers(&headers, &TrunkPolicy::default()).strip_ppi);
    assert!(!derive_headers(&[FROM_OTHER], &de_trunk()).strip_ppi);
}

#[test]
fn trunk_can_refuse_identity_headers() {
    let trunk = trunk_from_toml("[[trunks]]\nid = \"t\"\ntrusted_identity_headers = false\n");
    let identity = derive_headers(&[PAI_TEL, FROM_OTHER], &trunk);
    assert_eq!(identity.callerid.as_deref(), Some("+4930999999"));
    assert_eq!(identity.source, S::From);
    assert_eq!(identity.assurance, A::Medium);
    assert!(identity.strip_pai);
    assert!(identity.flags.pai_untrusted_ignored);
}

#[test]
fn unparsable_privacy_fails_closed() {
    for privacy in ["\"id\"", "", "id=1", "i d\r\nx"] {
        let identity = derive_headers(&[PAI_TEL, ("Privacy", privacy)], &de_trunk());
        assert!(identity.anonymous, "Privacy value #{}", privacy.len());
        assert_eq!(identity.anon_reason, R::Withheld);
        assert!(identity.flags.privacy_unparsable);
    }
}

#[test]
fn unknown_privacy_token_is_flagged_only() {
    let identity = derive_headers(&[PAI_TEL, ("Privacy", "history")], &de_trunk());
    assert!(!identity.anonymous);
    assert!(identity.flags.privacy_unknown_token);
}

#[test]
fn display_name_check_is_switchable() {
    let headers = [("From", "\"anonymous\" <sip:+4930123456@c>;tag=1")];
    assert!(derive_headers(&headers, &de_trunk()).anonymous);

    let trunk = trunk_from_toml(
        "[[trunks]]\nid = \"t\"\nregion = \"DE\"\nanonymous_display_name = false\n",
    );
    let identity = derive_headers(&headers, &trunk);
    assert_eq!(identity.callerid.as_deref(), Some("+4930123456"));
}

#[test]
fn anonymous_users_are_configurable() {
    let trunk = trunk_from_toml("[[trunks]]\nid = \"t\"\nanonymous_users = [\"Nobody\"]\n");
    let nobody = derive_headers(&[("From", "<sip:NOBODY@c>;tag=1")], &trunk);
    assert!(nobody.anonymous);
    assert_eq!(nobody.anon_reason, R::Withheld);

    let restricted = derive_headers(&[("From", "<sip:restricted@c>;tag=1")], &trunk);
    assert_eq!(restricted.callerid.as_deref(), Some("sip:restricted@c"));
}

#[test]
fn trusted_pai_marker_is_anonymous() {
    let headers = [
        ("P-Asserted-Identity", "<sip:anonymous@anonymous.invalid>"),
        FROM_NUMBER,
    ];
    let identity = derive_headers(&headers, &de_trunk());
    assert!(identity.anonymous);
    assert_eq!(identity.anon_reason, R::Withheld);
}

#[test]
fn folded_pai_line_is_read() {
    let headers = [(
        "P-Asserted-Identity",
        "<sip:+4930123456@c;user=phone>,\r\n <tel:+4930123456>",
    )];
    let identity = derive_headers(&headers, &de_trunk());
    assert_eq!(identity.callerid.as_deref(), Some("+4930123456"));
    assert_eq!(identity.source, S::PaiTel);
}

#[test]
fn invalid_pai_is_flagged() {
    let identity = derive_headers(
        &[("P-Asserted-Identity", "<tel:+>"), FROM_NUMBER],
        &de_trunk(),
    );
    assert!(identity.flags.pai_invalid);
}

#[test]
fn local_form_is_flagged() {
    let identity = derive_headers(&[("From", "<sip:030123456@c>;tag=1")], &bare_trunk());
    assert!(identity.flags.callerid_local_form);
}

#[test]
fn any_caller_rpid_can_withhold() {
    let headers = [
        (
            "Remote-Party-ID",
            "<sip:+4930123456@c>;party=calling;screen=yes;privacy=off",
        ),
        ("Remote-Party-ID", "<sip:+4930123456@c>;privacy=uri"),
        FROM_NUMBER,
    ];
    let identity = derive_headers(&headers, &de_trunk());
    assert!(identity.anonymous);
    assert_eq!(identity.anon_reason, R::Withheld);
}

/// Malformed Remote-Party-ID values, each with whether it must withhold the caller's number.
const MALFORMED_RPID: [(&str, bool); 8] = [
    // Unclosed angle bracket, so the value is not a name-addr.
    ("<sip:+4930555555@c;party=calling;privacy=full", true),
    ("<sip:+4930555555@c;privacy = URI", true),
    // Unclosed quote: the whole line fails to split into values.
    ("\"Jane <sip:+4930555555@c>;privacy=full", true),
    // A privacy parameter without a value fails closed.
    ("<sip:+4930555555@c;privacy", true),
    ("<sip:+4930555555@c;privacy=unknown-value", true),
    ("<sip:+4930555555@c;privacy=off", false),
    ("<sip:+4930555555@c;privacy=name", false),
    ("<sip:+4930555555@c;party=calling", false),
];

#[test]
fn malformed_rpid_privacy_fails_closed() {
    for (rpid, withheld) in MALFORMED_RPID {
        for trunk in [de_trunk(), TrunkPolicy::default()] {
            let headers = [("Remote-Party-ID", rpid), FROM_NUMBER];
            let identity = derive_headers(&headers, &trunk);
            assert!(identity.flags.rpid_unparsable, "{rpid}: flag");
            assert_eq!(identity.anonymous, withheld, "{rpid}: anonymous");
            if withheld {
                assert_eq!(identity.anon_reason, R::Withheld, "{rpid}: reason");
                assert_eq!(identity.callerid, None, "{rpid}: callerid");
            } else {
                assert_eq!(
                    identity.callerid.as_deref(),
                    Some("+4930123456"),
                    "{rpid}: the From number is used"
                );
            }
        }
    }
}

#[test]
fn well_formed_rpid_is_not_flagged_unparsable() {
    let headers = [
        (
            "Remote-Party-ID",
            "<sip:+4930555555@c>;party=calling;privacy=off",
        ),
        FROM_NUMBER,
    ];
    let identity = derive_headers(&headers, &de_trunk());
    assert!(!identity.flags.rpid_unparsable);
}

#[test]
fn called_party_rpid_is_ignored() {
    let headers = [
        (
            "Remote-Party-ID",
            "<sip:+4930555555@c>;party=called;privacy=full",
        ),
        FROM_NUMBER,
    ];
    let identity = derive_headers(&headers, &de_trunk());
    assert_eq!(identity.callerid.as_deref(), Some("+4930123456"));
    assert_eq!(identity.source, S::From);
}

#[test]
fn debug_output_hides_callerid_and_headers() {
    let mut input = IdentityInput::default();
    input.add_header(b"From", b"\"Jane\" <sip:+4930123456@c>");
    let identity = derive(&input, &de_trunk());
    let printed = format!("{input:?} {identity:?}");
    assert!(!printed.contains("30123456"), "{printed}");
    assert!(!printed.contains("Jane"), "{printed}");
}

#[test]
fn trust_map_classifies_by_address() {
    let config = Config::parse(
        r#"
[[trunks]]
id = "first"
trusted_cidrs = ["192.0.2.0/24", "2001:db8::/32"]

[[trunks]]
id = "second"
trusted_cidrs = ["192.0.2.128/25", "198.51.100.7/32"]
"#,
        "test",
    )
    .unwrap();
    let map = TrustMap::from_config(&config);
    let classify = |ip: &str| map.classify(ip.parse().unwrap());

    assert_eq!(classify("192.0.2.200").id, "first");
    assert!(classify("192.0.2.200").trusted);
    assert_eq!(classify("198.51.100.7").id, "second");
    assert_eq!(classify("::ffff:198.51.100.7").id, "second");
    assert_eq!(classify("2001:db8::1").id, "first");

    let outsider = classify("203.0.113.9");
    assert_eq!(outsider.id, UNTRUSTED_TRUNK_ID);
    assert!(!outsider.trusted);
    assert!(std::ptr::eq(outsider, map.untrusted()));
    assert_eq!(map.by_id("second").map(|t| t.id.as_str()), Some("second"));
    assert!(map.by_id("third").is_none());
}

#[test]
fn region_fills_numbering_defaults() {
    let de = de_trunk();
    assert_eq!(de.numbering.country_code, Some(49));
    assert_eq!(de.numbering.national_prefix.as_deref(), Some("0"));
    assert_eq!(de.numbering.international_prefix.as_deref(), Some("00"));

    let us = us_trunk();
    assert_eq!(us.numbering.country_code, Some(1));
    assert_eq!(us.numbering.national_prefix.as_deref(), Some("1"));
    assert_eq!(us.numbering.international_prefix.as_deref(), Some("011"));

    let bare = bare_trunk();
    assert_eq!(bare.numbering, Numbering::default());
}
