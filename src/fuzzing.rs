//! Fuzz target bodies with their invariants. The cargo-fuzz targets in `fuzz/` and the corpus
//! replay test in `tests/fuzz_corpus.rs` call the same functions, so every finding becomes an
//! ordinary test once its input is saved under `fuzz/corpus/<target>/`.
//!
//! Each function panics when an invariant fails; a panic is what the fuzzer reports.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::identity::{derive, IdentityInput, TrunkPolicy, TrustMap};
use crate::message::{scan, HeaderName, Message, ScanLimits, Scanned, StartLine, Transport};
use crate::proxy::{Core, Direction, Inbound, Outcome, Returning, Scratch};
use crate::pseudonym::{KeyRing, TenantKeys};
use crate::transport::framing::{next_frame, Frame, FrameLimits, FramingError};

/// Branch prefix of the Via the proxy adds to every request it forwards.
const OWN_BRANCH_PREFIX: &[u8] = b"z9hG4bKss";

/// Separates messages in a `core` input; each message starts with one selector byte.
pub const MESSAGE_SEPARATOR: &[u8] = b"\xff\xfe";

/// A fuzz target body: checks one input and panics when an invariant fails.
pub type Target = fn(&[u8]);

/// The corpus folder names under `fuzz/corpus/`, each with the function that checks one input.
pub const TARGETS: [(&str, Target); 4] = [
    ("scan", scan_message),
    ("framing", framing_splits),
    ("identity", identity_derive),
    ("core", core_messages),
];

fn scan_limits() -> ScanLimits {
    let limits = crate::config::Limits::default();
    ScanLimits {
        max_message_bytes: limits.max_message_bytes,
        max_body_bytes: limits.max_body_bytes,
        max_headers: limits.max_headers,
        max_header_bytes: limits.max_header_bytes,
    }
}

/// Limits that accept anything the proxy can write, for re-scanning its output.
const UNLIMITED: ScanLimits = ScanLimits {
    max_message_bytes: usize::MAX,
    max_body_bytes: usize::MAX,
    max_headers: usize::MAX,
    max_header_bytes: usize::MAX,
};

/// Scans arbitrary bytes and checks that every range the scanner returns lies inside the
/// buffer, in order, and that the header views built on it do not panic.
pub fn scan_message(data: &[u8]) {
    let mut headers = Vec::new();
    let Ok(scanned) = scan(data, &scan_limits(), &mut headers) else {
        return;
    };
    check_ranges(data, &scanned, &headers);

    let msg = Message {
        buf: data,
        scanned: &scanned,
        headers: &headers,
    };
    let _ = msg.top_via();
    let _ = msg.cseq();
    let _ = msg.via_count();
    let _ = msg.tag(HeaderName::From);
    let _ = msg.tag(HeaderName::To);

    // Scanning is a pure function of the bytes.
    let mut again = Vec::new();
    let rescanned = scan(data, &scan_limits(), &mut again).expect("second scan fails");
    assert_eq!(rescanned, scanned, "second scan differs");
    assert_eq!(again, headers, "second scan found other headers");
}

fn check_ranges(data: &[u8], scanned: &Scanned, headers: &[crate::message::Header]) {
    assert!(
        scanned.start_line.end <= scanned.head_end,
        "start line past head"
    );
    assert!(scanned.head_end <= scanned.body.start, "head overlaps body");
    assert!(
        scanned.body.start <= scanned.body.end,
        "body range reversed"
    );
    assert!(scanned.body.end <= data.len(), "body past the buffer");
    if let Some(declared) = scanned.content_length {
        assert_eq!(
            scanned.body.len(),
            declared,
            "body not cut to Content-Length"
        );
    }
    if let StartLine::Request {
        uri, method_range, ..
    } = &scanned.start
    {
        assert!(
            method_range.end <= scanned.start_line.end,
            "method past line"
        );
        assert!(uri.end <= scanned.start_line.end, "URI past line");
    }
    let mut previous_end = scanned.start_line.end;
    for header in headers {
        assert_eq!(header.line.start, previous_end, "gap between header lines");
        assert!(header.line.end <= scanned.head_end, "header past head");
        assert!(header.name_range.end <= header.line.end, "name past line");
        assert!(
            header.value.start <= header.value.end,
            "value range reversed"
        );
        assert!(header.value.end <= header.line.end, "value past line");
        previous_end = header.line.end;
    }
    assert_eq!(
        previous_end, scanned.head_end,
        "headers do not reach the empty line"
    );
}

/// Small stream limits, so the fuzzer reaches every framing error with short inputs.
const FRAME_LIMITS: FrameLimits = FrameLimits {
    max_head_bytes: 512,
    max_body_bytes: 256,
    max_message_bytes: 640,
};

/// What a TCP reader takes from a stream, in order.
#[derive(Debug, PartialEq, Eq)]
enum StreamEvent {
    Message(Vec<u8>),
    KeepAlive { len: usize, ping: bool },
    Invalid(FramingError),
}

/// Frames a stream fed in chunks the way the TCP reader does: append, take frames until
/// `Incomplete` or `Invalid`, read more. Returns the events and the bytes left unread.
fn frame_stream<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> (Vec<StreamEvent>, Vec<u8>) {
    let mut buf = Vec::new();
    let mut events = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match next_frame(&buf, &FRAME_LIMITS) {
                Frame::Incomplete => break,
                Frame::KeepAlive { len, ping } => {
                    assert!(
                        len > 0 && len <= buf.len(),
                        "keep-alive length out of range"
                    );
                    events.push(StreamEvent::KeepAlive { len, ping });
                    buf.drain(..len);
                }
                Frame::Message { len } => {
                    assert!(len > 0 && len <= buf.len(), "frame length out of range");
                    assert!(len <= FRAME_LIMITS.max_message_bytes, "frame above limit");
                    events.push(StreamEvent::Message(buf.drain(..len).collect()));
                }
                Frame::Invalid { reason, head_len } => {
                    if let Some(head_len) = head_len {
                        assert!(head_len <= buf.len(), "head length out of range");
                    }
                    events.push(StreamEvent::Invalid(reason));
                    return (events, buf);
                }
            }
        }
    }
    (events, buf)
}

/// Feeds a stream whole and split at fuzzer-chosen points and checks both give the same frames.
///
/// The first byte gives the number of split points (up to 15); the next bytes give the chunk
/// lengths; the rest is the stream.
pub fn framing_splits(data: &[u8]) {
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let count = usize::from(count % 16).min(rest.len());
    let (lengths, stream) = rest.split_at(count);

    let (whole, whole_left) = frame_stream(std::iter::once(stream));

    let mut chunks = Vec::new();
    let mut at = 0;
    for &length in lengths {
        let end = (at + usize::from(length)).min(stream.len());
        chunks.push(&stream[at..end]);
        at = end;
    }
    chunks.push(&stream[at..]);
    let (split, split_left) = frame_stream(chunks.into_iter());

    assert_eq!(whole, split, "split feeding changed the frames");
    if !matches!(whole.last(), Some(StreamEvent::Invalid(_))) {
        assert_eq!(whole_left, split_left, "split feeding left other bytes");
    }
}

/// Derives an identity from arbitrary header values and checks its basic promises.
///
/// The first byte picks the trust policy; the rest is split at `\n\0` into values, each
/// starting with one byte that picks the header it goes to.
pub fn identity_derive(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut input = IdentityInput::default();
    for value in rest.split(|b| *b == 0) {
        let Some((&kind, value)) = value.split_first() else {
            continue;
        };
        match kind % 5 {
            0 => input.from = Some(value),
            1 => input.pai.push(value),
            2 => input.rpid.push(value),
            3 => input.privacy.push(value),
            _ => input.ppi.push(value),
        }
    }

    let mut policy = TrunkPolicy::default();
    if selector & 1 == 1 {
        policy.trusted = true;
        policy.numbering.country_code = Some(49);
    }
    policy.trusted_identity_headers = selector & 2 == 2;

    let identity = derive(&input, &policy);
    assert_eq!(
        derive(&input, &policy),
        identity,
        "derive is not deterministic"
    );
    if identity.anonymous {
        assert!(
            identity.callerid.is_none(),
            "anonymous call keeps a callerid"
        );
    }
    if let Some(callerid) = &identity.callerid {
        assert!(!callerid.is_empty(), "empty callerid");
        assert!(
            !callerid.bytes().any(|b| b.is_ascii_control()),
            "callerid contains a control character"
        );
    }
    if !input.ppi.is_empty() {
        assert!(identity.strip_ppi, "P-Preferred-Identity kept");
    }
    if !policy.honours_identity_headers() {
        assert!(
            !matches!(
                identity.source,
                crate::identity::IdentitySource::PaiTel
                    | crate::identity::IdentitySource::PaiSip
                    | crate::identity::IdentitySource::Rpid
            ),
            "untrusted identity header used"
        );
    }
}

/// Source addresses a `core` message can come from, picked by the selector byte.
const SOURCES: [&str; 4] = [
    "198.51.100.7:5060",
    "192.0.2.10:5070",
    "127.0.0.1:5090",
    "[2001:db8::7]:5062",
];

/// Builds the core the `core` target and the torture tests use: UDP and TCP on
/// 127.0.0.1:5060, upstream 127.0.0.1:5090, a trusted trunk at 192.0.2.0/24 and a fixed key.
pub fn test_core(extra_config: &str) -> Core {
    let text = format!(
        "[sip]\nudp = [\"127.0.0.1:5060\"]\ntcp = [\"127.0.0.1:5060\"]\n\
         upstream = \"127.0.0.1:5090\"\n{extra_config}\n\
         [[trunks]]\nid = \"carrier\"\ntrusted_cidrs = [\"192.0.2.0/24\"]\ncountry_code = 49\n"
    );
    let config = Config::parse(&text, "fuzzing").expect("fuzzing config is valid");
    let mut keys = HashMap::new();
    keys.insert(
        "default".to_owned(),
        TenantKeys {
            current: zeroize::Zeroizing::new(vec![7u8; 32]),
            previous: Vec::new(),
        },
    );
    let ring = KeyRing::from_tenant_keys(&config, &keys).expect("fuzzing keys load");
    Core::new(&config, ring, TrustMap::from_config(&config))
}

/// Runs up to eight messages through a fresh core and checks every decision.
///
/// The input is split at [`MESSAGE_SEPARATOR`]. Each message starts with a selector byte:
/// bits 0-1 pick the source from [`SOURCES`], bit 2 picks TCP over UDP, bits 3-4 pick the
/// returning-caller answer and bits 5-7 advance the clock by that many seconds.
pub fn core_messages(data: &[u8]) {
    let core = test_core("");
    let mut scratch = Scratch::default();
    let mut now = Instant::now();
    let mut rest = data;
    for _ in 0..8 {
        let (message, next) = match memchr::memmem::find(rest, MESSAGE_SEPARATOR) {
            Some(at) => (&rest[..at], Some(&rest[at + MESSAGE_SEPARATOR.len()..])),
            None => (rest, None),
        };
        if let Some((&selector, bytes)) = message.split_first() {
            now += Duration::from_secs(u64::from(selector >> 5));
            check_one_message(&core, &mut scratch, selector, now, bytes);
        }
        match next {
            Some(next) => rest = next,
            None => break,
        }
    }
}

fn check_one_message(core: &Core, scratch: &mut Scratch, selector: u8, now: Instant, bytes: &[u8]) {
    let source: SocketAddr = SOURCES[usize::from(selector & 3)]
        .parse()
        .expect("valid source");
    let transport = if selector & 4 == 4 {
        Transport::Tcp
    } else {
        Transport::Udp
    };
    let inbound = Inbound {
        now,
        source,
        transport,
        bytes,
    };
    let outcome = core.handle(inbound, scratch);
    match &outcome {
        Outcome::Forward {
            direction,
            new_call,
            ..
        } => {
            if let Some(new_call) = new_call {
                let returning = match (selector >> 3) & 3 {
                    0 => Returning::Yes,
                    1 => Returning::No,
                    _ => Returning::Unknown,
                };
                core.finish_new_call(new_call, &mut scratch.out, returning);
            }
            check_forwarded(bytes, &scratch.out, *direction);
        }
        Outcome::Reply { status, .. } => check_reply(&scratch.out, *status),
        Outcome::Drop { .. } => {}
    }
}

/// Returns the Via values of a message in order.
fn via_values<'a>(msg: &Message<'a>) -> Vec<&'a [u8]> {
    msg.all(HeaderName::Via)
        .flat_map(|h| {
            let value = msg.bytes(h);
            crate::message::value::elements(value).map(move |r| &value[r])
        })
        .collect()
}

/// Checks that a Via value has at most one `received` and one `rport` parameter, which the
/// proxy sets for the sender (RFC 3581).
fn check_received_rport_once(value: &[u8], label: &str) {
    for name in [&b"received"[..], b"rport"] {
        let count = value
            .split(|b| *b == b';')
            .skip(1)
            .filter(|param| {
                let key = param.split(|b| *b == b'=').next().unwrap_or_default();
                crate::message::value::trim_slice(key).eq_ignore_ascii_case(name)
            })
            .count();
        assert!(
            count <= 1,
            "{label} has {count} {} parameters",
            String::from_utf8_lossy(name)
        );
    }
}

fn is_own_via(value: &[u8]) -> bool {
    crate::message::Via::parse(value)
        .and_then(|via| via.branch())
        .is_some_and(|branch| branch.starts_with(OWN_BRANCH_PREFIX))
}

/// Checks a forwarded message against its input. Panics on the first broken invariant.
pub fn check_forwarded(input: &[u8], out: &[u8], direction: Direction) {
    let mut in_headers = Vec::new();
    let in_scanned = scan(input, &scan_limits(), &mut in_headers)
        .expect("the core forwarded a message that does not scan");
    let mut out_headers = Vec::new();
    let out_scanned = match scan(out, &UNLIMITED, &mut out_headers) {
        Ok(scanned) => scanned,
        Err(error) => panic!("forwarded message does not re-scan: {error}"),
    };
    check_ranges(out, &out_scanned, &out_headers);
    assert_eq!(
        &out[out_scanned.body.clone()],
        &input[in_scanned.body.clone()],
        "forwarded body differs from the received body"
    );

    let in_msg = Message {
        buf: input,
        scanned: &in_scanned,
        headers: &in_headers,
    };
    let out_msg = Message {
        buf: out,
        scanned: &out_scanned,
        headers: &out_headers,
    };
    let in_vias = via_values(&in_msg);
    let out_vias = via_values(&out_msg);
    let own = |vias: &[&[u8]]| vias.iter().filter(|v| is_own_via(v)).count();
    match in_scanned.start {
        StartLine::Request { .. } => {
            assert!(
                out_vias.first().is_some_and(|v| is_own_via(v)),
                "forwarded request does not carry the proxy's Via on top"
            );
            assert_eq!(out_vias.len(), in_vias.len() + 1, "Via count not one more");
            assert_eq!(
                own(&out_vias),
                own(&in_vias) + 1,
                "not exactly one Via added"
            );
            // The received top Via gains `received` and an `rport` value (RFC 3581); every
            // other Via is forwarded as it arrived.
            let sent_by = |value: &[u8]| {
                crate::message::Via::parse(value).map(|via| {
                    (
                        via.host.to_vec(),
                        via.port,
                        via.branch().map(<[u8]>::to_vec),
                    )
                })
            };
            assert_eq!(
                sent_by(out_vias[1]),
                sent_by(in_vias[0]),
                "received top Via changed"
            );
            assert_eq!(&out_vias[2..], &in_vias[1..], "received Vias changed");
            check_received_rport_once(out_vias[1], "forwarded request's received top Via");
        }
        StartLine::Response { .. } => {
            assert!(
                in_vias.first().is_some_and(|v| is_own_via(v)),
                "relayed a response whose top Via is not the proxy's"
            );
            assert_eq!(
                &out_vias[..],
                &in_vias[1..],
                "response Vias not popped once"
            );
        }
    }

    let names = crate::config::HeaderNames::default();
    let stamped = names.all();
    for name in stamped {
        let count = out_msg
            .headers
            .iter()
            .filter(|h| out[h.name_range.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .count();
        if direction == Direction::ToEdge {
            assert_eq!(count, 0, "stamped header {name} sent to the edge");
        }
        assert!(count <= 1, "stamped header {name} appears {count} times");
    }
    // Generated identifiers must be fresh, never a value the sender supplied.
    for name in [&names.callid, &names.sessionid, &names.conversationid] {
        for header in out_msg
            .headers
            .iter()
            .filter(|h| out[h.name_range.clone()].eq_ignore_ascii_case(name.as_bytes()))
        {
            let value = &out[header.value.clone()];
            assert!(
                memchr::memmem::find(input, value).is_none(),
                "stamped {name} value came from the input"
            );
        }
    }
}

/// Checks a proxy-generated response: it scans, has the status and a Via to route it by.
pub fn check_reply(out: &[u8], status: u16) {
    let mut headers = Vec::new();
    let scanned = match scan(out, &UNLIMITED, &mut headers) {
        Ok(scanned) => scanned,
        Err(error) => panic!("generated response does not scan: {error}"),
    };
    assert_eq!(
        scanned.start,
        StartLine::Response { status },
        "generated response has another status"
    );
    let top_via = headers.iter().find(|h| h.name == HeaderName::Via);
    let Some(top_via) = top_via else {
        panic!("generated response has no Via");
    };
    let value = &out[top_via.value.clone()];
    let first = &value[..crate::message::value::first_element_end(value)];
    // A top Via that does not parse is copied unchanged, since the proxy cannot tell its
    // parameters apart, and the response goes to the source address.
    if crate::message::Via::parse(first).is_some() {
        check_received_rport_once(first, "generated response's top Via");
    }
}
