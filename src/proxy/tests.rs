//! Drives the core with raw bytes and checks each decision and the forwarded bytes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use super::*;
use crate::config::Config;
use crate::identity::TrustMap;
use crate::message::{Method, Transport};
use crate::pseudonym::{KeyRing, TenantKeys};

const EDGE: &str = "192.0.2.10:5070";
const UPSTREAM: &str = "127.0.0.1:5090";

fn config(extra: &str) -> Config {
    let text = format!(
        "[sip]\nudp = [\"127.0.0.1:5060\"]\ntcp = [\"127.0.0.1:5060\"]\nupstream = \"{UPSTREAM}\"\n{extra}"
    );
    Config::parse(&text, "test").expect("test config is valid")
}

fn core_with(config: &Config) -> Core {
    let mut keys = HashMap::new();
    keys.insert(
        "default".to_owned(),
        TenantKeys {
            current: zeroize::Zeroizing::new(vec![7u8; 32]),
            previous: Vec::new(),
        },
    );
    let ring = KeyRing::from_tenant_keys(config, &keys).expect("keys load");
    Core::new(config, ring, TrustMap::from_config(config))
}

fn core() -> Core {
    core_with(&config(""))
}

struct Harness {
    core: Core,
    scratch: Scratch,
    now: Instant,
}

impl Harness {
    fn new(core: Core) -> Self {
        Self {
            core,
            scratch: Scratch::default(),
            now: Instant::now(),
        }
    }

    fn send(&mut self, from: &str, transport: Transport, bytes: &[u8]) -> Outcome {
        let inbound = Inbound {
            now: self.now,
            source: from.parse().unwrap(),
            transport,
            bytes,
        };
        self.core.handle(inbound, &mut self.scratch)
    }

    fn out(&self) -> String {
        String::from_utf8(self.scratch.out.clone()).unwrap()
    }

    /// Sends a message and completes a new call as the driver does, with the given store result.
    fn send_and_finish(&mut self, from: &str, bytes: &[u8], returning: Returning) -> Outcome {
        let outcome = self.send(from, Transport::Udp, bytes);
        if let Outcome::Forward {
            new_call: Some(new_call),
            ..
        } = &outcome
        {
            self.core
                .finish_new_call(new_call, &mut self.scratch.out, returning);
        }
        outcome
    }
}

const INVITE: &str = "INVITE sip:+4930555000@127.0.0.1:5090 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-inv1;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Max\" <sip:+4930555111@edge.example>;tag=f1\r\n\
To: <sip:+4930555000@127.0.0.1:5090>\r\n\
Call-ID: call-1@edge\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:caller@192.0.2.10:5070>\r\n\
X-Sessionid: forged-by-caller\r\n\
x-callid: forged-too\r\n\
Subject: folded\r\n   across lines\r\n\
X-Custom:   odd   spacing  \r\n\
Content-Type: application/sdp\r\n\
Content-Length: 8\r\n\
\r\n\
v=0\r\nx=1";

fn header_values<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.split("\r\n")
        .take_while(|l| !l.is_empty())
        .filter_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
        .collect()
}

fn forwarded_invite(h: &mut Harness) -> String {
    let outcome = h.send_and_finish(EDGE, INVITE.as_bytes(), Returning::No);
    match outcome {
        Outcome::Forward {
            transport,
            dest,
            kind,
            direction,
            ..
        } => {
            assert_eq!(transport, Transport::Udp);
            assert_eq!(dest, UPSTREAM.parse::<SocketAddr>().unwrap());
            assert_eq!(kind, MessageKind::Request(Method::Invite));
            assert_eq!(direction, Direction::ToUpstream);
        }
        other => panic!("expected a forward, got {other:?}"),
    }
    h.out()
}

#[test]
fn invite_gets_via_record_route_and_stamps() {
    let mut h = Harness::new(core());
    let out = forwarded_invite(&mut h);

    assert!(out.starts_with("INVITE sip:+4930555000@127.0.0.1:5090 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKss"));
    assert_eq!(
        header_values(&out, "Record-Route"),
        vec!["<sip:127.0.0.1:5060;lr>"]
    );
    assert_eq!(header_values(&out, "Max-Forwards"), vec!["69"]);
    let vias = header_values(&out, "Via");
    assert_eq!(vias.len(), 2);
    assert_eq!(
        vias[1],
        "SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-inv1;rport=5070;received=192.0.2.10"
    );

    let callid = header_values(&out, "X-Callid");
    assert_eq!(callid.len(), 1);
    assert!(callid[0].starts_with("ca"));
    assert_eq!(callid[0].len(), 34);
    let sessionid = header_values(&out, "X-Sessionid");
    assert_eq!(sessionid.len(), 1);
    assert!(sessionid[0].starts_with("k1_"), "{}", sessionid[0]);
    assert_eq!(header_values(&out, "X-Anonymous"), vec!["false"]);
    assert_eq!(header_values(&out, "X-Returning-Caller"), vec!["false"]);
    assert_eq!(header_values(&out, "X-Identity-Source"), vec!["from"]);
    assert_eq!(header_values(&out, "X-Identity-Assurance"), vec!["low"]);
    assert_eq!(header_values(&out, "X-Conversationid").len(), 1);
}

/// Returns the top Via of the received request as the proxy forwards it for `top_via`.
fn forwarded_top_via(top_via: &str) -> String {
    let mut h = Harness::new(core());
    let invite = INVITE.replace(
        "Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-inv1;rport\r\n",
        &format!("Via: {top_via}\r\n"),
    );
    assert_ne!(invite, INVITE);
    let outcome = h.send_and_finish(EDGE, invite.as_bytes(), Returning::No);
    assert!(matches!(outcome, Outcome::Forward { .. }), "{outcome:?}");
    header_values(&h.out(), "Via")[1].to_owned()
}

/// The proxy sets rport to the source port whatever value the client gave (RFC 3581 section
/// 4), and writes the source address into one received parameter (RFC 3261 section 18.2.1).
#[test]
fn received_and_rport_replace_client_values() {
    let cases = [
        (
            "SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-inv1;rport=1",
            "SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-inv1;rport=5070;received=192.0.2.10",
        ),
        (
            "SIP/2.0/UDP 192.0.2.10:5070;rport=1;branch=z9hG4bK-inv1",
            "SIP/2.0/UDP 192.0.2.10:5070;rport=5070;branch=z9hG4bK-inv1;received=192.0.2.10",
        ),
        (
            "SIP/2.0/UDP 192.0.2.10:5070;received=10.9.9.9;branch=z9hG4bK-inv1",
            "SIP/2.0/UDP 192.0.2.10:5070;received=192.0.2.10;branch=z9hG4bK-inv1",
        ),
        (
            "SIP/2.0/UDP edge.example:5070;branch=z9hG4bK-inv1;received=10.9.9.9;RPORT=1",
            "SIP/2.0/UDP edge.example:5070;branch=z9hG4bK-inv1;received=192.0.2.10;rport=5070",
        ),
        (
            "SIP/2.0/UDP 192.0.2.10:5070;rport;received=10.9.9.9;rport=2;received=10.8.8.8;branch=z9hG4bK-inv1",
            "SIP/2.0/UDP 192.0.2.10:5070;rport=5070;received=192.0.2.10;branch=z9hG4bK-inv1",
        ),
        (
            "SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-inv1",
            "SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-inv1",
        ),
    ];
    for (received, expected) in cases {
        let forwarded = forwarded_top_via(received);
        assert_eq!(forwarded, expected, "for {received}");
        assert!(forwarded.matches(";received=").count() <= 1, "{forwarded}");
        assert!(forwarded.matches(";rport").count() <= 1, "{forwarded}");
    }
}

/// RFC 3261 sections 8.2.6.2 and 18.2.1: the proxy's own responses carry the received and
/// rport parameters the forwarded request would carry, and still go to the source address.
#[test]
fn proxy_reply_sets_received_and_rport() {
    let mut h = Harness::new(core());
    let invite = INVITE
        .replace(";rport\r\n", ";rport=1;received=10.9.9.9\r\n")
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    match h.send("192.0.2.10:41000", Transport::Udp, invite.as_bytes()) {
        Outcome::Reply { status, dest, .. } => {
            assert_eq!(status, 483);
            assert_eq!(dest, "192.0.2.10:41000".parse::<SocketAddr>().unwrap());
        }
        other => panic!("expected a 483, got {other:?}"),
    }
    assert_eq!(
        header_values(&h.out(), "Via"),
        vec!["SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-inv1;rport=41000;received=192.0.2.10"]
    );

    // Without rport the response goes to the sent-by port, and received is added only when
    // the sent-by host is not the source address.
    let plain = invite.replace(";rport=1;received=10.9.9.9", "");
    match h.send("192.0.2.10:41000", Transport::Udp, plain.as_bytes()) {
        Outcome::Reply { dest, .. } => {
            assert_eq!(dest, "192.0.2.10:5070".parse::<SocketAddr>().unwrap());
        }
        other => panic!("expected a 483, got {other:?}"),
    }
    assert_eq!(
        header_values(&h.out(), "Via"),
        vec!["SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-inv1"]
    );
    let named = plain.replace("UDP 192.0.2.10:5070", "UDP edge.example:5070");
    h.send("192.0.2.10:41000", Transport::Udp, named.as_bytes());
    assert_eq!(
        header_values(&h.out(), "Via"),
        vec!["SIP/2.0/UDP edge.example:5070;branch=z9hG4bK-inv1;received=192.0.2.10"]
    );

    // A request that fails to scan gets the same parameters in its 505.
    let version = invite.replace(" SIP/2.0\r\nVia", " SIP/3.0\r\nVia");
    h.send("192.0.2.10:41000", Transport::Udp, version.as_bytes());
    assert!(h.out().starts_with("SIP/2.0 505 "), "{}", h.out());
    assert_eq!(
        header_values(&h.out(), "Via"),
        vec!["SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-inv1;rport=41000;received=192.0.2.10"]
    );
}

#[test]
fn unowned_headers_and_body_pass_byte_for_byte() {
    let mut h = Harness::new(core());
    let out = forwarded_invite(&mut h);
    assert!(out.contains("\r\nSubject: folded\r\n   across lines\r\n"));
    assert!(out.contains("\r\nX-Custom:   odd   spacing  \r\n"));
    assert!(out.contains("\r\nFrom: \"Max\" <sip:+4930555111@edge.example>;tag=f1\r\n"));
    assert!(out.ends_with("\r\n\r\nv=0\r\nx=1"));
    assert!(!out.contains("forged"));
}

#[test]
fn retransmission_waits_then_reuses_the_stamps() {
    let mut h = Harness::new(core());
    let first = h.send(EDGE, Transport::Udp, INVITE.as_bytes());
    let Outcome::Forward {
        new_call: Some(new_call),
        ..
    } = first
    else {
        panic!("expected a new call, got {first:?}");
    };
    let mut first_out = h.scratch.out.clone();

    let pending = h.send(EDGE, Transport::Udp, INVITE.as_bytes());
    assert!(matches!(
        pending,
        Outcome::Drop {
            reason: DropReason::Pending
        }
    ));

    h.core
        .finish_new_call(&new_call, &mut first_out, Returning::Yes);
    let again = h.send(EDGE, Transport::Udp, INVITE.as_bytes());
    assert!(matches!(again, Outcome::Forward { new_call: None, .. }));
    assert_eq!(String::from_utf8(first_out).unwrap(), h.out());
}

#[test]
fn sessionid_shared_by_parallel_calls_but_callid_fresh() {
    let mut h = Harness::new(core());
    let first = forwarded_invite(&mut h);
    let second_invite = INVITE.replace("call-1@edge", "call-2@edge");
    h.send_and_finish(EDGE, second_invite.as_bytes(), Returning::No);
    let second = h.out();
    assert_eq!(
        header_values(&first, "X-Sessionid"),
        header_values(&second, "X-Sessionid")
    );
    assert_ne!(
        header_values(&first, "X-Callid"),
        header_values(&second, "X-Callid")
    );
    assert_ne!(
        header_values(&first, "X-Conversationid"),
        header_values(&second, "X-Conversationid")
    );
    assert_eq!(h.core.active_calls(), 2);
}

#[test]
fn anonymous_call_gets_random_sessionid_and_no_callerid() {
    let mut h = Harness::new(core());
    let anonymous = INVITE.replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nPrivacy: id\r\n",
    );
    h.send_and_finish(EDGE, anonymous.as_bytes(), Returning::No);
    let first = h.out();
    let second_call = anonymous.replace("call-1@edge", "call-2@edge");
    h.send_and_finish(EDGE, second_call.as_bytes(), Returning::No);
    let second = h.out();
    assert_eq!(header_values(&first, "X-Anonymous"), vec!["true"]);
    assert!(header_values(&first, "X-Callerid").is_empty());
    let a = header_values(&first, "X-Sessionid")[0];
    let b = header_values(&second, "X-Sessionid")[0];
    assert!(a.starts_with("an"));
    assert_ne!(a, b);
}

/// Returns the upstream's 200 OK to the INVITE that the proxy forwarded as `invite_out`.
fn ok_to_invite(invite_out: &str) -> String {
    let own_via = header_values(invite_out, "Via")[0].to_owned();
    format!(
        "SIP/2.0 200 OK\r\nVia: {own_via}\r\nVia: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-inv1;rport=5070;received=192.0.2.10\r\n\
From: <sip:+4930555111@edge.example>;tag=f1\r\nTo: <sip:+4930555000@127.0.0.1:5090>;tag=u1\r\nCall-ID: call-1@edge\r\n\
CSeq: 1 INVITE\r\nX-Sessionid: leaked\r\nRecord-Route: <sip:127.0.0.1:5060;lr>\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn responses_pop_own_via_and_strip_stamps() {
    let mut h = Harness::new(core());
    let out = forwarded_invite(&mut h);
    let response = ok_to_invite(&out);
    let outcome = h.send(UPSTREAM, Transport::Udp, response.as_bytes());
    match outcome {
        Outcome::Forward {
            dest,
            direction,
            event,
            ..
        } => {
            assert_eq!(dest, EDGE.parse::<SocketAddr>().unwrap());
            assert_eq!(direction, Direction::ToEdge);
            assert_eq!(event.map(|e| e.kind), Some(CallEventKind::Answered));
        }
        other => panic!("expected a forward, got {other:?}"),
    }
    let relayed = h.out();
    assert_eq!(header_values(&relayed, "Via").len(), 1);
    assert!(!relayed.contains("X-Sessionid"));
    assert!(relayed.contains("Record-Route: <sip:127.0.0.1:5060;lr>\r\n"));
}

#[test]
fn response_with_foreign_via_is_dropped() {
    let mut h = Harness::new(core());
    let response = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.99:5060;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    let outcome = h.send(UPSTREAM, Transport::Udp, response.as_bytes());
    assert!(matches!(
        outcome,
        Outcome::Drop {
            reason: DropReason::ViaNotOurs
        }
    ));
}

#[test]
fn in_dialog_bye_keeps_stamps() {
    let mut h = Harness::new(core());
    let invite_out = forwarded_invite(&mut h);
    h.send(
        UPSTREAM,
        Transport::Udp,
        ok_to_invite(&invite_out).as_bytes(),
    );
    let bye = "BYE sip:callee@127.0.0.1:5090 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-bye1\r\n\
Route: <sip:127.0.0.1:5060;lr>, <sip:127.0.0.1:5090;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:+4930555111@edge.example>;tag=f1\r\n\
To: <sip:+4930555000@127.0.0.1:5090>;tag=u1\r\nCall-ID: call-1@edge\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
    let outcome = h.send(EDGE, Transport::Udp, bye.as_bytes());
    let Outcome::Forward { event, .. } = outcome else {
        panic!("expected a forward, got {outcome:?}");
    };
    assert_eq!(
        event.map(|e| e.kind),
        Some(CallEventKind::Ended { status: None })
    );
    let out = h.out();
    assert_eq!(
        header_values(&out, "Route"),
        vec!["<sip:127.0.0.1:5090;lr>"]
    );
    assert_eq!(
        header_values(&out, "X-Callid"),
        header_values(&invite_out, "X-Callid")
    );
    assert_eq!(header_values(&out, "X-Returning-Caller"), vec!["false"]);
    assert!(header_values(&out, "Record-Route").is_empty());
    assert_eq!(h.core.active_calls(), 0);
}

#[test]
fn cancel_matches_the_invite_branch() {
    let mut h = Harness::new(core());
    let invite_out = forwarded_invite(&mut h);
    let cancel = INVITE
        .replace("INVITE sip:", "CANCEL sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let outcome = h.send(EDGE, Transport::Udp, cancel.as_bytes());
    assert!(matches!(outcome, Outcome::Forward { .. }), "{outcome:?}");
    let out = h.out();
    assert_eq!(
        header_values(&out, "Via")[0],
        header_values(&invite_out, "Via")[0]
    );
    assert_eq!(
        header_values(&out, "X-Callid"),
        header_values(&invite_out, "X-Callid")
    );
}

fn assert_forwarded_to_edge(outcome: Outcome) {
    match outcome {
        Outcome::Forward {
            dest, direction, ..
        } => {
            assert_eq!(dest, EDGE.parse::<SocketAddr>().unwrap());
            assert_eq!(direction, Direction::ToEdge);
        }
        other => panic!("expected a forward to the edge, got {other:?}"),
    }
}

#[test]
fn upstream_bye_reaches_edge_flow() {
    let mut h = Harness::new(core());
    forwarded_invite(&mut h);
    let bye = "BYE sip:caller@192.0.2.10:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-ub1\r\n\
Route: <sip:127.0.0.1:5060;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:+4930555000@127.0.0.1:5090>;tag=u1\r\n\
To: <sip:+4930555111@edge.example>;tag=f1\r\nCall-ID: call-1@edge\r\nCSeq: 1 BYE\r\nX-Callid: not-for-edge\r\nContent-Length: 0\r\n\r\n";
    let outcome = h.send(UPSTREAM, Transport::Udp, bye.as_bytes());
    assert_forwarded_to_edge(outcome);
    let out = h.out();
    assert!(header_values(&out, "Route").is_empty());
    assert!(header_values(&out, "X-Callid").is_empty());
    assert_eq!(h.core.active_calls(), 0);
}

#[test]
fn tcp_requests_carry_the_flow_for_responses() {
    let mut h = Harness::new(core());
    let tcp_invite = INVITE.replace("SIP/2.0/UDP 192.0.2.10:5070", "SIP/2.0/TCP 192.0.2.10:5070");
    let outcome = h.send("192.0.2.10:41000", Transport::Tcp, tcp_invite.as_bytes());
    let Outcome::Forward {
        transport,
        new_call: Some(new_call),
        ..
    } = outcome
    else {
        panic!("expected a new call, got {outcome:?}");
    };
    assert_eq!(transport, Transport::Tcp);
    h.core
        .finish_new_call(&new_call, &mut h.scratch.out, Returning::Unknown);
    let out = h.out();
    let own_via = header_values(&out, "Via")[0].to_owned();
    assert!(own_via.starts_with("SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKss"));
    assert!(own_via.contains(";ssf="));
    assert_eq!(
        header_values(&out, "Record-Route"),
        vec!["<sip:127.0.0.1:5060;transport=tcp;lr>"]
    );

    let response = format!(
        "SIP/2.0 180 Ringing\r\nVia: {own_via}\r\nVia: SIP/2.0/TCP 192.0.2.10:5070;branch=z9hG4bK-inv1;rport=41000;received=192.0.2.10\r\n\
From: <sip:a@b>;tag=f1\r\nTo: <sip:c@d>;tag=u1\r\nCall-ID: call-1@edge\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    let outcome = h.send(UPSTREAM, Transport::Tcp, response.as_bytes());
    match outcome {
        Outcome::Forward {
            transport, dest, ..
        } => {
            assert_eq!(transport, Transport::Tcp);
            assert_eq!(dest, "192.0.2.10:41000".parse::<SocketAddr>().unwrap());
        }
        other => panic!("expected a forward, got {other:?}"),
    }
}

fn expect_reply(outcome: Outcome, status: u16) {
    match outcome {
        Outcome::Reply { status: got, .. } => assert_eq!(got, status),
        other => panic!("expected a {status} reply, got {other:?}"),
    }
}

#[test]
fn bad_requests_get_the_rfc_status() {
    let cases: Vec<(String, u16, &str)> = vec![
        (
            INVITE.replace("Max-Forwards: 70", "Max-Forwards: 0"),
            483,
            "Too Many Hops",
        ),
        (
            INVITE.replace("Max-Forwards: 70", "Max-Forwards: abc"),
            400,
            "Malformed Max-Forwards",
        ),
        (
            INVITE.replace("Call-ID: call-1@edge\r\n", ""),
            400,
            "Missing Call-ID",
        ),
        (
            INVITE.replace("CSeq: 1 INVITE", "CSeq: 1 BYE"),
            400,
            "CSeq Method Does Not Match",
        ),
        (
            INVITE.replace("CSeq: 1 INVITE", "CSeq: x INVITE"),
            400,
            "Malformed CSeq",
        ),
        (
            INVITE.replace(" SIP/2.0\r\nVia", " SIP/3.0\r\nVia"),
            505,
            "Version Not Supported",
        ),
        (
            INVITE.replace(
                "INVITE sip:+4930555000@127.0.0.1:5090",
                "INVITE http://example.com/",
            ),
            416,
            "Unsupported URI Scheme",
        ),
        (
            INVITE.replace(
                "INVITE sip:+4930555000@127.0.0.1:5090",
                "INVITE sip:bad@host:99999",
            ),
            400,
            "Malformed Request-URI",
        ),
        (
            INVITE.replace("Content-Length: 8", "Content-Length: 80"),
            400,
            "Content-Length Exceeds Message",
        ),
        (
            INVITE.replace(
                "Max-Forwards: 70\r\n",
                "Max-Forwards: 70\r\nProxy-Require: foo\r\n",
            ),
            420,
            "Bad Extension",
        ),
    ];
    for (message, status, phrase) in cases {
        let mut h = Harness::new(core());
        let outcome = h.send(EDGE, Transport::Udp, message.as_bytes());
        expect_reply(outcome, status);
        let out = h.out();
        assert!(
            out.starts_with(&format!("SIP/2.0 {status} {phrase}\r\n")),
            "{out}"
        );
        if message.contains("Call-ID: call-1@edge") {
            assert!(out.contains("\r\nCall-ID: call-1@edge\r\n"), "{out}");
        }
    }
}

/// RFC 3261 section 7.3 allows a header more than once only when its value is a list, and
/// RFC 4475 section 3.1.2.19 expects a request with repeated single-valued headers to get 400.
#[test]
fn repeated_single_valued_header_gets_400() {
    let cases = [
        (
            "From: \"Max\"",
            "f: <sip:+4930555999@edge.example>;tag=f2\r\nFrom: \"Max\"",
        ),
        ("To: <sip:", "To: <sip:+4930555001@127.0.0.1>\r\nTo: <sip:"),
        (
            "Call-ID: call-1@edge\r\n",
            "Call-ID: call-1@edge\r\ni: other@edge\r\n",
        ),
        ("CSeq: 1 INVITE\r\n", "CSeq: 1 INVITE\r\nCSeq: 2 INVITE\r\n"),
        (
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\nMax-Forwards: 69\r\n",
        ),
        ("Content-Length: 8\r\n", "l: 7\r\nContent-Length: 8\r\n"),
    ];
    for (from, to) in cases {
        let message = INVITE.replacen(from, to, 1);
        assert_ne!(message, INVITE, "{from}");
        let mut h = Harness::new(core());
        let outcome = h.send(EDGE, Transport::Udp, message.as_bytes());
        expect_reply(outcome, 400);
        let out = h.out();
        // The 400 response scans, so it carries each copied single-valued header once.
        crate::fuzzing::check_reply(out.as_bytes(), 400);
        for (name, compact) in [("From", "f"), ("To", "t"), ("Call-ID", "i"), ("CSeq", "")] {
            let count = header_values(&out, name).len() + header_values(&out, compact).len();
            assert_eq!(count, 1, "{name} in {out}");
        }
    }
}

#[test]
fn response_with_repeated_header_dropped() {
    let mut h = Harness::new(core());
    let out = forwarded_invite(&mut h);
    let own_via = header_values(&out, "Via")[0].to_owned();
    let response = format!(
        "SIP/2.0 200 OK\r\nVia: {own_via}\r\nVia: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-inv1;rport=5070;received=192.0.2.10\r\n\
From: <sip:+4930555111@edge.example>;tag=f1\r\nTo: <sip:+4930555000@127.0.0.1:5090>;tag=u1\r\nt: <sip:+4930555000@127.0.0.1:5090>;tag=u2\r\n\
Call-ID: call-1@edge\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    let outcome = h.send(UPSTREAM, Transport::Udp, response.as_bytes());
    assert!(
        matches!(
            outcome,
            Outcome::Drop {
                reason: DropReason::BadResponse
            }
        ),
        "{outcome:?}"
    );
}

#[test]
fn proxy_require_lists_unsupported() {
    let mut h = Harness::new(core());
    let message = INVITE.replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nProxy-Require: foo, bar\r\n",
    );
    expect_reply(h.send(EDGE, Transport::Udp, message.as_bytes()), 420);
    assert!(h.out().contains("\r\nUnsupported: foo, bar\r\n"));
}

#[test]
fn oversized_body_gets_413() {
    let mut h = Harness::new(core_with(&config("[limits]\nmax_body_bytes = 4\n")));
    expect_reply(h.send(EDGE, Transport::Udp, INVITE.as_bytes()), 413);
}

#[test]
fn options_probe_is_answered() {
    let mut h = Harness::new(core());
    let probe = "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-o1\r\nMax-Forwards: 70\r\n\
From: <sip:lb@192.0.2.10>;tag=o1\r\nTo: <sip:127.0.0.1:5060>\r\nCall-ID: probe-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    expect_reply(h.send(EDGE, Transport::Udp, probe.as_bytes()), 200);
    let zero_hops = probe
        .replace(
            "OPTIONS sip:127.0.0.1:5060",
            "OPTIONS sip:gw@127.0.0.1:5090",
        )
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    expect_reply(h.send(EDGE, Transport::Udp, zero_hops.as_bytes()), 200);
    let forwarded = probe.replace(
        "OPTIONS sip:127.0.0.1:5060",
        "OPTIONS sip:gw@127.0.0.1:5090",
    );
    assert!(matches!(
        h.send(EDGE, Transport::Udp, forwarded.as_bytes()),
        Outcome::Forward { .. }
    ));
}

#[test]
fn junk_and_bad_acks_are_dropped() {
    let mut h = Harness::new(core());
    for (bytes, reason) in [
        (&b"\r\n\r\n"[..], DropReason::KeepAlive),
        (&b"hello world"[..], DropReason::Unparsable),
        (
            &b"SIP/2.0 200 OK\r\nVia: broken\r\n\r\n"[..],
            DropReason::BadResponse,
        ),
        (
            &b"ACK sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nl: 9\r\n\r\n"[..],
            DropReason::BadAck,
        ),
        (
            &b"SIP/2.0 200 OK\r\nl: 5\r\n\r\n"[..],
            DropReason::BadResponse,
        ),
    ] {
        match h.send(EDGE, Transport::Udp, bytes) {
            Outcome::Drop { reason: got } => {
                assert_eq!(got, reason, "{}", String::from_utf8_lossy(bytes))
            }
            other => panic!("expected a drop, got {other:?}"),
        }
    }
}

#[test]
fn full_call_table_answers_503() {
    let mut h = Harness::new(core_with(&config("[calls]\nmax_active = 1\n")));
    forwarded_invite(&mut h);
    let second = INVITE.replace("call-1@edge", "call-2@edge");
    expect_reply(h.send(EDGE, Transport::Udp, second.as_bytes()), 503);
    assert!(h.out().contains("\r\nRetry-After: 5\r\n"));
}

#[test]
fn failed_final_response_ends_the_call() {
    let mut h = Harness::new(core());
    let out = forwarded_invite(&mut h);
    let own_via = header_values(&out, "Via")[0].to_owned();
    let response = format!(
        "SIP/2.0 486 Busy Here\r\nVia: {own_via}, SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-inv1;rport=5070;received=192.0.2.10\r\n\
From: <sip:a@b>;tag=f1\r\nTo: <sip:c@d>;tag=u1\r\nCall-ID: call-1@edge\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    let outcome = h.send(UPSTREAM, Transport::Udp, response.as_bytes());
    let Outcome::Forward { event, .. } = outcome else {
        panic!("expected a forward, got {outcome:?}");
    };
    assert_eq!(
        event.map(|e| e.kind),
        Some(CallEventKind::Ended { status: Some(486) })
    );
    let relayed = h.out();
    assert!(relayed.contains("\r\nVia: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-inv1;rport=5070;received=192.0.2.10\r\n"), "{relayed}");
    assert_eq!(h.core.active_calls(), 0);
    assert_eq!(
        h.core
            .tick(h.now + std::time::Duration::from_secs(33))
            .removed,
        1
    );
}

fn bye_from_edge() -> &'static str {
    "BYE sip:callee@127.0.0.1:5090 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-bye1\r\n\
Route: <sip:127.0.0.1:5060;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:+4930555111@edge.example>;tag=f1\r\n\
To: <sip:+4930555000@127.0.0.1:5090>;tag=u1\r\nCall-ID: call-1@edge\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
}

#[test]
fn draining_rejects_new_calls_only() {
    let mut h = Harness::new(core());
    let invite_out = forwarded_invite(&mut h);
    h.core.set_draining(true);

    let second = INVITE.replace("call-1@edge", "call-2@edge");
    let outcome = h.send(EDGE, Transport::Udp, second.as_bytes());
    match outcome {
        Outcome::Reply { status, reason, .. } => {
            assert_eq!(status, 503);
            assert_eq!(reason, "draining");
        }
        other => panic!("expected a 503 reply, got {other:?}"),
    }
    assert!(h.out().contains("\r\nRetry-After: 5\r\n"));

    let outcome = h.send(EDGE, Transport::Udp, bye_from_edge().as_bytes());
    assert!(matches!(outcome, Outcome::Forward { .. }), "{outcome:?}");
    assert_eq!(
        header_values(&h.out(), "X-Callid"),
        header_values(&invite_out, "X-Callid")
    );
    assert_eq!(h.core.active_calls(), 0);
}

#[test]
fn draining_proxy_fails_options_probe() {
    let mut h = Harness::new(core());
    let probe = "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-o2\r\nMax-Forwards: 70\r\n\
From: <sip:lb@192.0.2.10>;tag=o2\r\nTo: <sip:127.0.0.1:5060>\r\nCall-ID: probe-2\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    expect_reply(h.send(EDGE, Transport::Udp, probe.as_bytes()), 200);
    h.core.set_draining(true);
    expect_reply(h.send(EDGE, Transport::Udp, probe.as_bytes()), 503);
    assert!(h.out().contains("\r\nRetry-After: 5\r\n"));
}

#[test]
fn draining_off_accepts_new_calls_again() {
    let mut h = Harness::new(core());
    h.core.set_draining(true);
    h.core.set_draining(false);
    forwarded_invite(&mut h);
    assert_eq!(h.core.active_calls(), 1);
}

#[test]
fn reload_keeps_calls_and_applies_new_names() {
    let mut h = Harness::new(core());
    let invite_out = forwarded_invite(&mut h);
    reload(&h, &config("[headers]\nsessionid = \"X-Session-Id\"\n"));

    let outcome = h.send(EDGE, Transport::Udp, bye_from_edge().as_bytes());
    assert!(matches!(outcome, Outcome::Forward { .. }), "{outcome:?}");
    let bye_out = h.out();
    assert_eq!(
        header_values(&bye_out, "X-Callid"),
        header_values(&invite_out, "X-Callid"),
        "the call in progress keeps its ids"
    );

    let second = INVITE.replace("call-1@edge", "call-2@edge");
    h.send_and_finish(EDGE, second.as_bytes(), Returning::No);
    let out = h.out();
    let stamped = header_values(&out, "X-Session-Id");
    assert_eq!(stamped.len(), 1);
    assert!(stamped[0].starts_with("k1_"), "{stamped:?}");
    // The old name is no longer the proxy's, so the caller's copy passes unchanged.
    assert_eq!(header_values(&out, "X-Sessionid"), vec!["forged-by-caller"]);
}

/// Replaces the core's settings with those of `config`, as a SIGHUP reload does.
fn reload(h: &Harness, config: &Config) {
    let keys = KeyRing::clone(&core_with(config).keys());
    h.core.reload(CoreSettings::new(
        config,
        keys,
        TrustMap::from_config(config),
    ));
}

#[test]
fn reload_keeps_old_upstream_for_calls_in_progress() {
    const NEW_UPSTREAM: &str = "127.0.0.1:5099";
    let mut h = Harness::new(core());
    forwarded_invite(&mut h);
    let moved = Config::parse(
        &format!("[sip]\nudp = [\"127.0.0.1:5060\"]\ntcp = [\"127.0.0.1:5060\"]\nupstream = \"{NEW_UPSTREAM}\"\n"),
        "test",
    )
    .unwrap();
    reload(&h, &moved);

    let ack = "ACK sip:callee@127.0.0.1:5090 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-ack1\r\n\
Route: <sip:127.0.0.1:5060;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:+4930555111@edge.example>;tag=f1\r\n\
To: <sip:+4930555000@127.0.0.1:5090>;tag=u1\r\nCall-ID: call-1@edge\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n";
    match h.send(EDGE, Transport::Udp, ack.as_bytes()) {
        Outcome::Forward { dest, .. } => assert_eq!(dest, UPSTREAM.parse::<SocketAddr>().unwrap()),
        other => panic!("expected a forward, got {other:?}"),
    }

    let bye = "BYE sip:caller@192.0.2.10:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-ub2\r\n\
Route: <sip:127.0.0.1:5060;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:+4930555000@127.0.0.1:5090>;tag=u1\r\n\
To: <sip:+4930555111@edge.example>;tag=f1\r\nCall-ID: call-1@edge\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n";
    assert_forwarded_to_edge(h.send(UPSTREAM, Transport::Udp, bye.as_bytes()));
    assert_eq!(h.core.active_calls(), 0);

    let second = INVITE.replace("call-1@edge", "call-2@edge");
    match h.send_and_finish(EDGE, second.as_bytes(), Returning::No) {
        Outcome::Forward { dest, .. } => {
            assert_eq!(dest, NEW_UPSTREAM.parse::<SocketAddr>().unwrap())
        }
        other => panic!("expected a forward, got {other:?}"),
    }
}

/// A core whose tenant has one retired key, as after a key rotation.
fn core_with_retired_key() -> Core {
    let config = config("");
    let mut keys = HashMap::new();
    keys.insert(
        "default".to_owned(),
        TenantKeys {
            current: zeroize::Zeroizing::new(vec![7u8; 32]),
            previous: vec![("k0".to_owned(), zeroize::Zeroizing::new(vec![3u8; 32]))],
        },
    );
    let ring = KeyRing::from_tenant_keys(&config, &keys).expect("keys load");
    Core::new(&config, ring, TrustMap::from_config(&config))
}

/// Sends the first INVITE of a call and returns its pending new call, without finishing it.
fn pending_call(h: &mut Harness, invite: &str) -> Box<NewCall> {
    let outcome = h.send(EDGE, Transport::Udp, invite.as_bytes());
    match outcome {
        Outcome::Forward {
            new_call: Some(new_call),
            ..
        } => new_call,
        other => panic!("expected a new call, got {other:?}"),
    }
}

const ORIGINAL: &str = "k0_original0session";

#[test]
fn previous_sessionids_follow_retired_keys() {
    let mut h = Harness::new(core_with_retired_key());
    let new_call = pending_call(&mut h, INVITE);
    let out = h.out();
    let callerid = header_values(&out, "X-Callerid")[0].to_owned();
    let keys = h.core.keys();
    let release = &keys.releases()[0];

    let expected: Vec<std::sync::Arc<str>> = release
        .previous_sessionids(&callerid)
        .into_iter()
        .map(Into::into)
        .collect();
    assert_eq!(new_call.previous_sessionids, expected);
    assert_eq!(new_call.previous_sessionids.len(), 1);
    assert!(new_call.previous_sessionids[0].starts_with("k0_"));
    assert_ne!(new_call.previous_sessionids[0], new_call.ids.sessionid);
}

#[test]
fn previous_sessionids_empty_without_rotation() {
    let mut h = Harness::new(core());
    let new_call = pending_call(&mut h, INVITE);
    assert!(new_call.previous_sessionids.is_empty());
}

#[test]
fn previous_sessionids_empty_for_anonymous() {
    let mut h = Harness::new(core_with_retired_key());
    let anonymous = INVITE.replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nPrivacy: id\r\n",
    );
    let new_call = pending_call(&mut h, &anonymous);
    assert!(new_call.ids.anonymous);
    assert!(new_call.previous_sessionids.is_empty());
}

#[test]
fn rebind_stamps_invite_and_later_requests() {
    let mut h = Harness::new(core_with_retired_key());
    let new_call = pending_call(&mut h, INVITE);
    let mut invite_out = h.scratch.out.clone();
    let current = new_call.ids.sessionid.clone();

    assert!(h.core.rebind_session(&new_call, ORIGINAL.into()));
    h.core
        .finish_new_call(&new_call, &mut invite_out, Returning::Yes);
    let invite_out = String::from_utf8(invite_out).unwrap();
    assert_eq!(header_values(&invite_out, "X-Sessionid"), vec![ORIGINAL]);
    assert_eq!(
        header_values(&invite_out, "X-Returning-Caller"),
        vec!["true"]
    );
    assert_eq!(header_values(&invite_out, "X-Callerid").len(), 1);
    assert!(invite_out.ends_with("\r\n\r\nv=0\r\nx=1"), "{invite_out}");
    assert!(!invite_out.contains(&*current));

    // A retransmission of the INVITE is the same message.
    let again = h.send(EDGE, Transport::Udp, INVITE.as_bytes());
    assert!(matches!(again, Outcome::Forward { new_call: None, .. }));
    assert_eq!(h.out(), invite_out);

    let cancel = INVITE
        .replace("INVITE sip:", "CANCEL sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    h.send(EDGE, Transport::Udp, cancel.as_bytes());
    assert_eq!(header_values(&h.out(), "X-Sessionid"), vec![ORIGINAL]);

    let bye = "BYE sip:callee@127.0.0.1:5090 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-bye1\r\n\
Max-Forwards: 70\r\nFrom: <sip:+4930555111@edge.example>;tag=f1\r\n\
To: <sip:+4930555000@127.0.0.1:5090>;tag=u1\r\nCall-ID: call-1@edge\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(h.core.active_calls_in_session(ORIGINAL), 1);
    assert_eq!(h.core.active_calls_in_session(&current), 0);
    h.send(EDGE, Transport::Udp, bye.as_bytes());
    assert_eq!(header_values(&h.out(), "X-Sessionid"), vec![ORIGINAL]);
    assert_eq!(h.core.active_calls_in_session(ORIGINAL), 0);
    assert_eq!(h.core.active_calls(), 0);
}

#[test]
fn rebind_counts_parallel_calls_in_original() {
    let mut h = Harness::new(core_with_retired_key());
    let first = pending_call(&mut h, INVITE);
    let second_invite = INVITE.replace("call-1@edge", "call-2@edge");
    let second = pending_call(&mut h, &second_invite);
    assert_eq!(h.core.active_calls_in_session(&first.ids.sessionid), 2);

    assert!(h.core.rebind_session(&first, ORIGINAL.into()));
    assert_eq!(h.core.active_calls_in_session(ORIGINAL), 1);
    assert!(h.core.rebind_session(&second, ORIGINAL.into()));
    assert_eq!(h.core.active_calls_in_session(ORIGINAL), 2);
    assert_eq!(h.core.active_calls_in_session(&first.ids.sessionid), 0);
}

#[test]
fn rebind_only_once_and_before_finish() {
    let mut h = Harness::new(core_with_retired_key());
    let new_call = pending_call(&mut h, INVITE);
    assert!(h.core.rebind_session(&new_call, ORIGINAL.into()));
    assert!(!h.core.rebind_session(&new_call, "k0_other".into()));
    assert_eq!(h.core.active_calls_in_session(ORIGINAL), 1);
    assert_eq!(h.core.active_calls_in_session("k0_other"), 0);

    let second_invite = INVITE.replace("call-1@edge", "call-2@edge");
    let finished = pending_call(&mut h, &second_invite);
    let mut out = h.scratch.out.clone();
    h.core.finish_new_call(&finished, &mut out, Returning::No);
    assert!(!h.core.rebind_session(&finished, ORIGINAL.into()));
    assert_eq!(h.core.active_calls_in_session(ORIGINAL), 1);
}

#[test]
fn rebind_after_call_ended_keeps_counts() {
    let mut h = Harness::new(core_with_retired_key());
    let new_call = pending_call(&mut h, INVITE);
    let current = new_call.ids.sessionid.clone();
    let bye = "BYE sip:callee@127.0.0.1:5090 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-bye1\r\n\
Max-Forwards: 70\r\nFrom: <sip:+4930555111@edge.example>;tag=f1\r\n\
To: <sip:+4930555000@127.0.0.1:5090>;tag=u1\r\nCall-ID: call-1@edge\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
    h.send(EDGE, Transport::Udp, bye.as_bytes());
    assert_eq!(h.core.active_calls_in_session(&current), 0);

    assert!(h.core.rebind_session(&new_call, ORIGINAL.into()));
    assert_eq!(h.core.active_calls_in_session(ORIGINAL), 0);
    assert_eq!(h.core.active_calls_in_session(&current), 0);
    assert_eq!(h.core.active_calls(), 0);
}

const FLOODER: &str = "198.51.100.7:5060";

fn flood_core(action: &str, exempt_trusted: bool) -> Core {
    core_with(&config(&format!(
        "[flood]\nrequests_per_second = 1\nburst = 2\naction = \"{action}\"\n\
         exempt_trusted = {exempt_trusted}\n\
         [[trunks]]\nid = \"carrier\"\ntrusted_cidrs = [\"192.0.2.0/24\"]\n"
    )))
}

#[test]
fn flood_drop_after_burst() {
    let mut h = Harness::new(flood_core("drop", true));
    for i in 0..2 {
        let outcome = h.send_and_finish(FLOODER, INVITE.as_bytes(), Returning::No);
        assert!(
            matches!(outcome, Outcome::Forward { .. }),
            "request {i} within the burst: {outcome:?}"
        );
    }
    let outcome = h.send(FLOODER, Transport::Udp, INVITE.as_bytes());
    assert!(
        matches!(
            outcome,
            Outcome::Drop {
                reason: DropReason::RateLimited
            }
        ),
        "third request: {outcome:?}"
    );
    assert_eq!(h.core.rate_limited_sources(), 1);

    // One token per second: the next second lets one request through.
    h.now += std::time::Duration::from_secs(1);
    let outcome = h.send_and_finish(FLOODER, INVITE.as_bytes(), Returning::No);
    assert!(
        matches!(outcome, Outcome::Forward { .. }),
        "after refill: {outcome:?}"
    );
}

#[test]
fn flood_reply_503_with_retry_after() {
    let mut h = Harness::new(flood_core("reply-503", true));
    for _ in 0..2 {
        h.send(FLOODER, Transport::Udp, INVITE.as_bytes());
    }
    let outcome = h.send(FLOODER, Transport::Udp, INVITE.as_bytes());
    match outcome {
        Outcome::Reply { status, reason, .. } => {
            assert_eq!(status, 503);
            assert_eq!(reason, "rate_limited");
        }
        other => panic!("expected a 503, got {other:?}"),
    }
    let out = h.out();
    assert!(out.starts_with("SIP/2.0 503 "), "{out}");
    assert_eq!(header_values(&out, "Retry-After"), ["1"]);

    let ack = INVITE
        .replace("INVITE sip", "ACK sip")
        .replace("1 INVITE", "1 ACK");
    let outcome = h.send(FLOODER, Transport::Udp, ack.as_bytes());
    assert!(
        matches!(
            outcome,
            Outcome::Drop {
                reason: DropReason::RateLimited
            }
        ),
        "an ACK over the limit is dropped, never answered: {outcome:?}"
    );
}

#[test]
fn flood_exempts_trusted_and_upstream() {
    let mut h = Harness::new(flood_core("drop", true));
    for i in 0..10 {
        let outcome = h.send_and_finish(EDGE, INVITE.as_bytes(), Returning::No);
        assert!(
            matches!(outcome, Outcome::Forward { .. }),
            "trusted request {i} limited: {outcome:?}"
        );
        let outcome = h.send(UPSTREAM, Transport::Udp, INVITE.as_bytes());
        assert!(
            !matches!(
                outcome,
                Outcome::Drop {
                    reason: DropReason::RateLimited
                }
            ),
            "upstream request {i} limited"
        );
    }
    assert_eq!(h.core.rate_limited_sources(), 0);

    let mut h = Harness::new(flood_core("drop", false));
    let limited = (0..3)
        .map(|_| h.send_and_finish(EDGE, INVITE.as_bytes(), Returning::No))
        .filter(|o| {
            matches!(
                o,
                Outcome::Drop {
                    reason: DropReason::RateLimited
                }
            )
        })
        .count();
    assert_eq!(
        limited, 1,
        "trusted peer limited when exempt_trusted = false"
    );
}

#[test]
fn flood_never_limits_responses() {
    let mut h = Harness::new(flood_core("drop", true));
    let response = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.99:5060;branch=z9hG4bKx\r\n\
                    From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: r\r\n\
                    CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    for _ in 0..5 {
        let outcome = h.send(FLOODER, Transport::Udp, response.as_bytes());
        assert!(
            !matches!(
                outcome,
                Outcome::Drop {
                    reason: DropReason::RateLimited
                }
            ),
            "a response was rate-limited"
        );
    }
}

#[test]
fn edge_response_loses_forged_stamps() {
    let mut h = Harness::new(core());
    // The gateway's branch has no magic cookie, so the proxy cannot check its own branch
    // against it and relays the response like one to a request it forwarded.
    let response = "SIP/2.0 200 OK\r\n\
                    Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKss0123456789abcd\r\n\
                    Via: SIP/2.0/UDP 127.0.0.1:5090;branch=gw1\r\n\
                    From: <sip:gw@127.0.0.1>;tag=g1\r\nTo: <sip:caller@edge>;tag=e1\r\n\
                    Call-ID: gw-bye-1\r\nCSeq: 2 BYE\r\n\
                    X-Sessionid: forged-by-edge\r\nx-callerid: +4930555111\r\n\
                    Content-Length: 0\r\n\r\n";
    let outcome = h.send(FLOODER, Transport::Udp, response.as_bytes());
    match outcome {
        Outcome::Forward { direction, .. } => assert_eq!(direction, Direction::ToUpstream),
        other => panic!("expected a forward to the upstream, got {other:?}"),
    }
    let out = h.out();
    assert!(header_values(&out, "X-Sessionid").is_empty(), "{out}");
    assert!(header_values(&out, "X-Callerid").is_empty(), "{out}");
}

#[test]
fn early_bye_ends_with_487() {
    let mut h = Harness::new(core());
    forwarded_invite(&mut h);
    let outcome = h.send(EDGE, Transport::Udp, bye_from_edge().as_bytes());
    let Outcome::Forward { event, .. } = outcome else {
        panic!("expected a forward, got {outcome:?}");
    };
    assert_eq!(
        event.map(|e| e.kind),
        Some(CallEventKind::Ended { status: Some(487) })
    );
    assert_eq!(h.core.active_calls(), 0);
}
