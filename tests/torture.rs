//! Torture messages in the categories of RFC 4475 and RFC 5118, each with its expected outcome
//! in `tests/torture/expected.toml`. One test runs every case through the proxy core. Two run
//! a subset through `sipstamp inspect`, one file per case and then several cases in one file.
//! One sends every case to the running proxy over UDP and TCP, with a raw UDP socket as the
//! upstream.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Deserialize;
use sipstamp::fuzzing::{check_forwarded, check_reply, test_core};
use sipstamp::message::Transport;
use sipstamp::proxy::{Direction, Inbound, Outcome, Returning, Scratch};
use support::{free_port, status_code, Proxy, RawTcp, RawUdp, TcpReply};

/// Where the messages claim to come from (their top Via) in the files.
const EDGE: &str = "192.0.2.10:5070";
/// The upstream address used in the files.
const UPSTREAM: &str = "127.0.0.1:5090";
/// The proxy's own address used in the files.
const PROXY: &str = "127.0.0.1:5060";

#[derive(Debug, Deserialize)]
struct Table {
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
struct Case {
    file: String,
    category: String,
    expect: String,
    status: Option<u16>,
}

fn torture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/torture")
}

fn cases() -> Vec<(Case, Vec<u8>)> {
    let text = std::fs::read_to_string(torture_dir().join("expected.toml"))
        .expect("read tests/torture/expected.toml");
    let table: Table = toml::from_str(&text).expect("expected.toml is valid");
    table
        .case
        .into_iter()
        .map(|case| {
            let bytes = std::fs::read(torture_dir().join(&case.file))
                .unwrap_or_else(|e| panic!("read {}: {e}", case.file));
            (case, bytes)
        })
        .collect()
}

/// Responses come from the upstream; requests from the edge.
fn source_of(bytes: &[u8]) -> &'static str {
    if bytes.starts_with(b"SIP/") {
        UPSTREAM
    } else {
        EDGE
    }
}

/// Describes an outcome as `expect` values of the table: forward, relay, reply or drop.
fn verdict(outcome: &Outcome) -> (String, Option<u16>) {
    match outcome {
        Outcome::Forward {
            direction: Direction::ToUpstream,
            ..
        } => ("forward".into(), None),
        Outcome::Forward {
            direction: Direction::ToEdge,
            ..
        } => ("relay".into(), None),
        Outcome::Reply { status, .. } => ("reply".into(), Some(*status)),
        Outcome::Drop { reason } => (format!("drop ({})", reason.as_str()), None),
    }
}

#[test]
fn torture_cases_through_core() {
    let core = test_core("");
    let mut scratch = Scratch::default();
    let mut failures = Vec::new();
    for (case, bytes) in cases() {
        let inbound = Inbound {
            now: Instant::now(),
            source: source_of(&bytes).parse().unwrap(),
            transport: Transport::Udp,
            bytes: &bytes,
        };
        let outcome = core.handle(inbound, &mut scratch);
        let (got, status) = verdict(&outcome);
        let matches = got.split(' ').next() == Some(case.expect.as_str()) && status == case.status;
        if !matches {
            failures.push(format!(
                "{} ({}): expected {} {:?}, got {got} {status:?}",
                case.file, case.category, case.expect, case.status
            ));
            continue;
        }
        match &outcome {
            Outcome::Forward {
                direction,
                new_call,
                ..
            } => {
                if let Some(new_call) = new_call {
                    core.finish_new_call(new_call, &mut scratch.out, Returning::No);
                }
                let checked = std::panic::catch_unwind(|| {
                    check_forwarded(&bytes, &scratch.out, *direction);
                });
                if checked.is_err() {
                    failures.push(format!("{}: forwarded copy fails its checks", case.file));
                }
            }
            Outcome::Reply { status, .. } => check_reply(&scratch.out, *status),
            Outcome::Drop { .. } => {}
        }
    }
    assert!(
        failures.is_empty(),
        "torture failures:\n{}",
        failures.join("\n")
    );
}

#[test]
fn torture_subset_through_inspect() {
    let subset = [
        ("valid-ws-folding.sip", "forward", None),
        ("valid-multipart-binary.sip", "forward", None),
        ("invalid-version.sip", "reject", Some(505u16)),
        ("invalid-zero-max-forwards.sip", "reject", Some(483)),
        ("ipv6-request-uri.sip", "forward", None),
        ("invalid-binary-garbage.sip", "drop", None),
    ];
    for (file, verdict, status) in subset {
        let output = Command::new(env!("CARGO_BIN_EXE_sipstamp"))
            .args(["inspect", "--source", EDGE])
            .arg(torture_dir().join(file))
            .output()
            .expect("run sipstamp inspect");
        assert!(output.status.success(), "inspect {file} failed");
        let stdout = String::from_utf8(output.stdout).expect("inspect prints UTF-8");
        let line = stdout
            .lines()
            .next()
            .unwrap_or_else(|| panic!("no output for {file}"));
        let json: serde_json::Value = serde_json::from_str(line).expect("inspect prints JSON");
        assert_eq!(json["verdict"], verdict, "{file}: {line}");
        assert_eq!(
            json["status"].as_u64(),
            status.map(u64::from),
            "{file}: {line}"
        );
    }
}

/// A message that fails to scan has no length to trust, and `inspect` must still reach the
/// messages after it in the same file.
#[test]
fn inspect_continues_after_failed_message() {
    let dir = tempfile::tempdir().expect("create a temporary folder");
    let file = dir.path().join("messages.sip");
    let mut bytes = Vec::new();
    for name in [
        "invalid-version.sip",
        "valid-ws-folding.sip",
        "invalid-multiple-from.sip",
        "invalid-zero-max-forwards.sip",
    ] {
        bytes.extend(std::fs::read(torture_dir().join(name)).expect("read a torture file"));
    }
    std::fs::write(&file, &bytes).expect("write the message file");

    let output = Command::new(env!("CARGO_BIN_EXE_sipstamp"))
        .args(["inspect", "--source", EDGE])
        .arg(&file)
        .output()
        .expect("run sipstamp inspect");
    assert!(output.status.success(), "inspect failed");
    let stdout = String::from_utf8(output.stdout).expect("inspect prints UTF-8");

    let verdicts: Vec<(String, Option<u64>)> = stdout
        .lines()
        .map(|line| {
            let json: serde_json::Value = serde_json::from_str(line).expect("inspect prints JSON");
            (
                json["verdict"].as_str().unwrap_or_default().to_owned(),
                json["status"].as_u64(),
            )
        })
        .collect();

    let expected = [
        ("reject", Some(505)),
        ("forward", None),
        ("reject", Some(400)),
        ("reject", Some(483)),
    ];
    let expected: Vec<(String, Option<u64>)> = expected
        .iter()
        .map(|(v, s)| ((*v).to_owned(), *s))
        .collect();
    assert_eq!(verdicts, expected, "{stdout}");
}

/// Replaces the file's addresses with the test's ports. Bodies hold none of these strings.
fn localise(bytes: &[u8], edge: &str, proxy_port: u16, upstream_port: u16) -> Vec<u8> {
    let mut text = bytes.to_vec();
    for (from, to) in [
        (EDGE.to_owned(), edge.to_owned()),
        (UPSTREAM.to_owned(), format!("127.0.0.1:{upstream_port}")),
        (PROXY.to_owned(), format!("127.0.0.1:{proxy_port}")),
    ] {
        text = replace_all(&text, from.as_bytes(), to.as_bytes());
    }
    text
}

fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while let Some(at) = memchr::memmem::find(rest, from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// Cases whose outcome on a stream differs from a datagram, so the TCP run skips them: bytes
/// after the body start the next message, a short body or a head without an empty line waits
/// for more bytes, and a double CRLF is a ping that the transport answers.
const UDP_ONLY: [&str; 5] = [
    "valid-udp-extra-bytes.sip",
    "invalid-content-length-over.sip",
    "invalid-unterminated-head.sip",
    "invalid-keepalive.sip",
    "invalid-binary-garbage.sip",
];

const WAIT: Duration = Duration::from_secs(3);
const QUIET: Duration = Duration::from_millis(300);

fn call_id_of(bytes: &[u8]) -> Option<String> {
    support::header_values(bytes, "Call-ID")
        .into_iter()
        .chain(support::header_values(bytes, "i"))
        .next()
}

/// Returns the first datagram at the upstream that contains `call_id`. The forwarded copy may
/// use the compact header name `i`, so the match is on the value alone.
fn recv_upstream_udp(upstream: &RawUdp, call_id: &str) -> Option<Vec<u8>> {
    let deadline = Instant::now() + WAIT;
    while let Some(remaining) = deadline.checked_duration_since(Instant::now()) {
        let datagram = upstream.recv(remaining)?;
        if memchr::memmem::find(&datagram, call_id.as_bytes()).is_some() {
            return Some(datagram);
        }
    }
    None
}

/// Reads one message the proxy forwards over TCP to the upstream listener, if any.
fn read_tcp_upstream(listener: &std::net::TcpListener) -> Option<Vec<u8>> {
    use std::io::Read;
    let deadline = Instant::now() + WAIT;
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let mut stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => return None,
        }
    };
    stream.set_nonblocking(false).expect("blocking stream");
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    let mut buf = vec![0u8; 70_000];
    let mut len = 0;
    while len < buf.len() {
        match stream.read(&mut buf[len..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
        if memchr::memmem::find(&buf[..len], b"\r\n\r\n").is_some() {
            // One read is enough for these small messages once the head has arrived.
            std::thread::sleep(Duration::from_millis(50));
            stream.set_nonblocking(true).ok();
            while let Ok(n) = stream.read(&mut buf[len..]) {
                if n == 0 {
                    break;
                }
                len += n;
            }
            break;
        }
    }
    buf.truncate(len);
    Some(buf)
}

/// Sends each request case over UDP and over TCP to the running proxy and checks the reply or
/// the copy that reaches the raw upstream. Responses need a transaction the proxy created, so
/// the core test covers them.
#[test]
fn torture_cases_through_running_proxy() {
    let upstream_port = free_port();
    let upstream_udp = RawUdp::bound(upstream_port, 9);
    let upstream_tcp =
        std::net::TcpListener::bind(("127.0.0.1", upstream_port)).expect("bind the TCP upstream");
    let mut proxy = Proxy::start(upstream_port);
    let mut failures = Vec::new();

    for (case, bytes) in cases() {
        if bytes.starts_with(b"SIP/") {
            continue;
        }
        for transport in [Transport::Udp, Transport::Tcp] {
            if transport == Transport::Tcp && UDP_ONLY.contains(&case.file.as_str()) {
                continue;
            }
            let label = format!("{} over {}", case.file, transport.as_str());
            let udp = RawUdp::new(proxy.sip_port);
            let mut tcp = (transport == Transport::Tcp).then(|| RawTcp::connect(proxy.sip_port));
            let edge = match &tcp {
                Some(tcp) => tcp.local_addr().to_string(),
                None => udp.local_addr().to_string(),
            };
            let mut message = localise(&bytes, &edge, proxy.sip_port, upstream_port);
            if transport == Transport::Tcp {
                message = replace_all(&message, b"@carrier.example\r", b"-tcp@carrier.example\r");
            }
            let call_id = call_id_of(&message);

            let reply = match tcp.as_mut() {
                Some(tcp) => {
                    let _ = tcp.send(&message);
                    match tcp.read_message(if case.expect == "reply" { WAIT } else { QUIET }) {
                        TcpReply::Message(reply) => Some(reply),
                        _ => None,
                    }
                }
                None => {
                    udp.send(&message);
                    udp.recv(if case.expect == "reply" { WAIT } else { QUIET })
                }
            };
            let forwarded = match (case.expect.as_str(), transport, &call_id) {
                ("forward", Transport::Udp, Some(id)) => recv_upstream_udp(&upstream_udp, id),
                ("forward", Transport::Tcp, _) => read_tcp_upstream(&upstream_tcp),
                _ => None,
            };

            match case.expect.as_str() {
                "reply" => {
                    let status = reply.as_deref().and_then(status_code);
                    if status != case.status {
                        failures.push(format!(
                            "{label}: expected {:?}, got {status:?}",
                            case.status
                        ));
                    }
                }
                "forward" => {
                    if let Some(reply) = &reply {
                        failures.push(format!(
                            "{label}: unexpected reply {:?}",
                            status_code(reply)
                        ));
                    }
                    match &forwarded {
                        None => failures.push(format!("{label}: nothing reached the upstream")),
                        Some(copy)
                            if call_id.as_ref().is_some_and(|id| {
                                memchr::memmem::find(copy, id.as_bytes()).is_none()
                            }) =>
                        {
                            failures.push(format!("{label}: upstream got another message"))
                        }
                        Some(_) => {}
                    }
                }
                _ => {
                    if let Some(reply) = &reply {
                        failures.push(format!(
                            "{label}: expected a drop, got {:?}",
                            status_code(reply)
                        ));
                    }
                }
            }
        }
    }
    assert!(
        proxy.is_running(),
        "proxy died during the torture run\n{}",
        proxy.log()
    );
    assert!(
        failures.is_empty(),
        "torture failures:\n{}\n{}",
        failures.join("\n"),
        proxy.log()
    );
}
