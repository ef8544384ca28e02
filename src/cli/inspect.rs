//! `sipstamp inspect`: runs messages from a file through the proxy core and prints each
//! decision as JSON.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use serde_json::json;

use super::TransportArg;
use crate::config::{Config, TrunkConfig};
use crate::identity::TrustMap;
use crate::message::{scan, ScanLimits, Transport};
use crate::proxy::{Core, Direction, Inbound, Outcome, Returning, Scratch};
use crate::pseudonym::{KeyRing, TenantKeys};

pub fn run(
    config_path: Option<&Path>,
    source: SocketAddr,
    trusted: bool,
    transport: TransportArg,
    file: &Path,
) -> ExitCode {
    let mut config = match Config::load(config_path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(error) => {
            eprintln!("cannot read {}: {error}", file.display());
            return ExitCode::FAILURE;
        }
    };
    if trusted {
        // Trunks match in order, so a trunk that already covers the source keeps its settings.
        let prefix = if source.is_ipv4() { 32 } else { 128 };
        let trunk: TrunkConfig = toml::from_str(&format!(
            "id = \"inspect-trusted\"\ntrusted_cidrs = [\"{}/{prefix}\"]",
            source.ip()
        ))
        .expect("a generated trunk parses");
        config.trunks.push(trunk);
    }
    crate::identity::warm_up();
    let keys = match KeyRing::load(&config) {
        Ok(keys) => keys,
        Err(error) => {
            eprintln!(
                "note: {error}; using a temporary key, so sessionids differ from the deployment's"
            );
            temporary_keys(&config)
        }
    };
    let core = Core::new(&config, keys, TrustMap::from_config(&config));
    let transport = match transport {
        TransportArg::Udp => Transport::Udp,
        TransportArg::Tcp => Transport::Tcp,
    };
    let limits = ScanLimits {
        max_message_bytes: usize::MAX,
        max_body_bytes: usize::MAX,
        max_headers: config.limits.max_headers,
        max_header_bytes: config.limits.max_header_bytes,
    };

    let mut scratch = Scratch::default();
    let mut headers = Vec::new();
    let mut rest = &bytes[..];
    while let Some(message) = next_message(&mut rest, &limits, &mut headers) {
        let inbound = Inbound {
            now: Instant::now(),
            source,
            transport,
            bytes: message,
        };
        let identity = core.inspect_identity(inbound);
        let outcome = core.handle(inbound, &mut scratch);
        let line = describe(&core, &outcome, identity.as_ref(), &mut scratch.out);
        println!("{line}");
    }
    ExitCode::SUCCESS
}

/// Takes the next message off `rest`: leading blank lines skipped, framed by Content-Length
/// when present, else the remainder of the file. A message that fails to scan, and so has no
/// trusted length, runs up to the next start line that follows an empty line (see
/// [`next_start_line`]), so the messages after it are still inspected.
fn next_message<'a>(
    rest: &mut &'a [u8],
    limits: &ScanLimits,
    headers: &mut Vec<crate::message::Header>,
) -> Option<&'a [u8]> {
    let start = rest.iter().position(|b| !matches!(b, b'\r' | b'\n'))?;
    let buf = &rest[start..];
    let len = match scan(buf, limits, headers) {
        Ok(scanned) if scanned.content_length.is_some() => scanned.body.end,
        Ok(_) => buf.len(),
        Err(_) => next_start_line(buf).unwrap_or(buf.len()),
    };
    *rest = &buf[len..];
    Some(&buf[..len])
}

/// Returns the offset of the next line after the first line of `buf` that follows an empty
/// line and looks like a start line (`SIP/...` or `METHOD URI SIP/...`).
fn next_start_line(buf: &[u8]) -> Option<usize> {
    let mut pos = memchr::memchr(b'\n', buf)? + 1;
    let mut after_empty = false;
    while pos < buf.len() {
        let end = memchr::memchr(b'\n', &buf[pos..]).map_or(buf.len(), |i| pos + i);
        let line = buf[pos..end].strip_suffix(b"\r").unwrap_or(&buf[pos..end]);
        if line.is_empty() {
            after_empty = true;
        } else if after_empty && looks_like_start_line(line) {
            return Some(pos);
        } else {
            after_empty = false;
        }
        pos = end + 1;
    }
    None
}

fn looks_like_start_line(line: &[u8]) -> bool {
    if line.starts_with(b"SIP/") {
        return true;
    }
    let mut parts = line.split(|b| *b == b' ');
    let method = parts.next().unwrap_or_default();
    let version = parts.next_back().unwrap_or_default();
    !method.is_empty()
        && method
            .iter()
            .all(|b| crate::message::scan::is_token_byte(*b))
        && version.starts_with(b"SIP/")
}

fn describe(
    core: &Core,
    outcome: &Outcome,
    identity: Option<&crate::identity::Identity>,
    out: &mut Vec<u8>,
) -> serde_json::Value {
    let mut sessionid = None;
    let (verdict, status, reason) = match outcome {
        Outcome::Forward {
            direction,
            new_call,
            kind,
            ..
        } => {
            if let Some(new_call) = new_call {
                core.finish_new_call(new_call, out, Returning::Unknown);
                sessionid = Some(new_call.ids.sessionid.to_string());
            }
            let verdict = match (direction, kind) {
                (Direction::ToUpstream, crate::proxy::MessageKind::Request(_)) => "forward",
                _ => "relay",
            };
            (verdict, None, None)
        }
        Outcome::Reply { status, reason, .. } => {
            let verdict = if *status < 300 { "reply" } else { "reject" };
            (verdict, Some(*status), Some(*reason))
        }
        Outcome::Drop { reason } => ("drop", None, Some(reason.as_str())),
    };
    let forwarded = matches!(outcome, Outcome::Forward { .. } | Outcome::Reply { .. })
        .then(|| String::from_utf8_lossy(out).into_owned());
    json!({
        "verdict": verdict,
        "status": status,
        "reason": reason,
        "callerid": identity.and_then(|i| i.callerid.clone()),
        "anonymous": identity.map(|i| i.anonymous),
        "anon_reason": identity.map(|i| i.anon_reason.as_str()),
        "identity_source": identity.map(|i| i.source.as_str()),
        "assurance": identity.map(|i| i.assurance.as_str()),
        "sessionid": sessionid,
        "forwarded": forwarded,
    })
}

fn temporary_keys(config: &Config) -> KeyRing {
    let mut keys = HashMap::new();
    for tenant in &config.tenants {
        let mut key = vec![0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
        keys.insert(
            tenant.name.clone(),
            TenantKeys {
                current: zeroize::Zeroizing::new(key),
                previous: Vec::new(),
            },
        );
    }
    KeyRing::from_tenant_keys(config, &keys).expect("every release names a configured tenant")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ScanLimits = ScanLimits {
        max_message_bytes: usize::MAX,
        max_body_bytes: usize::MAX,
        max_headers: 64,
        max_header_bytes: 4_096,
    };

    const GOOD: &str = "INVITE sip:bob@192.0.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK2\r\nCall-ID: good\r\nContent-Length: 4\r\n\r\nbody";

    fn messages(file: &str) -> Vec<String> {
        let mut rest = file.as_bytes();
        let mut headers = Vec::new();
        let mut out = Vec::new();
        while let Some(message) = next_message(&mut rest, &LIMITS, &mut headers) {
            out.push(String::from_utf8(message.to_vec()).unwrap());
        }
        out
    }

    #[test]
    fn next_message_after_scan_failure() {
        let bad = "INVITE sip:bob@192.0.2.2 SIP/3.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nCall-ID: bad\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(messages(&format!("{bad}{GOOD}")), vec![bad, GOOD]);
        // Empty lines before the next start line stay with the message that failed.
        let padded = format!("{bad}\r\n\r\n");
        assert_eq!(
            messages(&format!("{padded}{GOOD}")),
            vec![padded.as_str(), GOOD]
        );
    }

    #[test]
    fn next_message_skips_body_of_failed_message() {
        // The first message repeats Call-ID, so it does not scan. Its body has an empty line
        // and text that is not a start line, and stays with it.
        let bad = "INVITE sip:bob@192.0.2.2 SIP/2.0\r\nCall-ID: a\r\ni: b\r\n\r\nv=0\r\n\r\nnot a start line\r\n\r\n";
        let response = "SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            messages(&format!("{bad}{GOOD}{response}")),
            vec![bad, GOOD, response]
        );
    }

    #[test]
    fn next_message_failed_last_takes_rest() {
        let bad = "INVITE sip:bob@192.0.2.2 SIP/3.0\r\nCall-ID: bad\r\n\r\ntrailing bytes";
        assert_eq!(messages(&format!("{GOOD}\r\n{bad}")), vec![GOOD, bad]);
    }
}
