//! Metrics rendering, label sets, the log rate limiter and the log filter.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::logging::{build_filter, LogInitError};
use super::*;
use crate::config::LogFormat;
use crate::identity::{Assurance, IdentitySource};
use crate::message::{Method, Transport};
use crate::proxy::{CallIds, Direction, DropReason, MessageKind, Outcome};
use crate::store::{StoreBackend, StoreError};

fn peer() -> SocketAddr {
    ([127, 0, 0, 1], 5070).into()
}

fn call(source: IdentitySource, anonymous: bool) -> CallIds {
    CallIds {
        callid: "c-1".into(),
        sessionid: "s-1".into(),
        conversationid: "v-1".into(),
        anonymous,
        source,
        assurance: Assurance::High,
        instance_id: "default".into(),
        tenant: "default".into(),
        key_id: "k1".into(),
    }
}

/// Records one message of every outcome kind, plus calls and store operations.
fn record_samples(metrics: &Metrics) {
    let micros = Duration::from_micros(40);
    metrics.received(MessageKind::Request(Method::Invite), Transport::Udp);
    metrics.received(MessageKind::Request(Method::Other), Transport::Tcp);
    metrics.received(MessageKind::Response(180), Transport::Udp);
    metrics.received(MessageKind::Response(999), Transport::Udp);
    metrics.observe(
        &Outcome::Forward {
            transport: Transport::Tcp,
            dest: peer(),
            kind: MessageKind::Request(Method::Invite),
            direction: Direction::ToUpstream,
            new_call: None,
            event: None,
        },
        Transport::Udp,
        micros,
    );
    metrics.observe(
        &Outcome::Forward {
            transport: Transport::Udp,
            dest: peer(),
            kind: MessageKind::Response(200),
            direction: Direction::ToEdge,
            new_call: None,
            event: None,
        },
        Transport::Tcp,
        micros,
    );

    metrics.observe(
        &Outcome::Reply {
            transport: Transport::Udp,
            dest: peer(),
            method: Method::Invite,
            status: 483,
            reason: "max_forwards",
        },
        Transport::Udp,
        micros,
    );
    metrics.observe(
        &Outcome::Reply {
            transport: Transport::Udp,
            dest: peer(),
            method: Method::Options,
            status: 503,
            reason: "sip:+4930123456@example.com",
        },
        Transport::Udp,
        micros,
    );
    metrics.observe(
        &Outcome::Drop {
            reason: DropReason::ViaNotOurs,
        },
        Transport::Udp,
        micros,
    );

    metrics.call_started(&call(IdentitySource::PaiTel, false));
    metrics.call_started(&call(IdentitySource::None, true));
    metrics.returning(Returning::Yes);
    metrics.returning(Returning::Unknown);

    metrics.store_op(StoreOp::TouchSession, Duration::from_millis(2), &Ok(()));
    metrics.store_op::<()>(
        StoreOp::TouchSession,
        Duration::from_millis(50),
        &Err(StoreError::Timeout(50)),
    );
    metrics.store_op::<()>(
        StoreOp::Session,
        Duration::from_micros(80),
        &Err(StoreError::Invalid {
            field: "sessionid",
            message: "bad",
        }),
    );
}

/// One sample line: metric name, label pairs and value.
type Sample = (String, Vec<(String, String)>, f64);

/// A label set as written in a test table.
type Labels<'a> = &'a [(&'a str, &'a str)];

/// Parses the sample lines of a text exposition.
fn samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample line has a value");
        let value: f64 = value.parse().expect("sample value is a number");
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), Vec::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("label set ends with }");
                let labels = body
                    .split("\",")
                    .filter(|pair| !pair.is_empty())
                    .map(|pair| {
                        let (key, value) = pair.split_once("=\"").expect("label is key=\"value\"");
                        (key.to_owned(), value.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
        };
        out.push((name, labels, value));
    }
    out
}

/// Returns the value of the sample with exactly these labels, in any order.
fn value_of(text: &str, name: &str, labels: Labels) -> Option<f64> {
    let wanted: HashSet<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    samples(text)
        .into_iter()
        .find(|(n, l, _)| n == name && l.iter().cloned().collect::<HashSet<_>>() == wanted)
        .map(|(_, _, value)| value)
}

fn fresh() -> Metrics {
    Metrics::new(StoreBackend::Embedded, ScrapeSources::default()).unwrap()
}

#[test]
fn render_lists_every_metric() {
    let text = fresh().render();
    let expected = [
        ("sipstamp_requests_received_total", "counter"),
        ("sipstamp_requests_forwarded_total", "counter"),
        ("sipstamp_responses_received_total", "counter"),
        ("sipstamp_responses_relayed_total", "counter"),
        ("sipstamp_requests_rejected_total", "counter"),
        ("sipstamp_messages_dropped_total", "counter"),
        ("sipstamp_calls_started_total", "counter"),
        ("sipstamp_calls_returning_total", "counter"),
        ("sipstamp_store_operations_total", "counter"),
        ("sipstamp_store_errors_total", "counter"),
        ("sipstamp_store_operation_duration_seconds", "histogram"),
        ("sipstamp_message_duration_seconds", "histogram"),
        ("sipstamp_active_calls", "gauge"),
        ("sipstamp_tcp_connections", "gauge"),
        ("sipstamp_tcp_framing_errors_total", "counter"),
        ("sipstamp_start_time_seconds", "gauge"),
    ];
    for (name, kind) in expected {
        let type_line = format!("# TYPE {name} {kind}");
        assert!(text.contains(&type_line), "missing {type_line:?}");
    }
}

#[test]
fn observe_counts_each_outcome() {
    let metrics = fresh();
    record_samples(&metrics);
    let text = metrics.render();
    let checks: [(&str, Labels, f64); 14] = [
        (
            "sipstamp_requests_received_total",
            &[("method", "INVITE"), ("transport", "udp")],
            1.0,
        ),
        (
            "sipstamp_requests_received_total",
            &[("method", "other"), ("transport", "tcp")],
            1.0,
        ),
        (
            "sipstamp_responses_received_total",
            &[("status_class", "1xx"), ("transport", "udp")],
            1.0,
        ),
        (
            "sipstamp_responses_received_total",
            &[("status_class", "other"), ("transport", "udp")],
            1.0,
        ),
        (
            "sipstamp_requests_forwarded_total",
            &[("method", "INVITE"), ("transport", "tcp")],
            1.0,
        ),
        (
            "sipstamp_responses_relayed_total",
            &[("status_class", "2xx"), ("transport", "udp")],
            1.0,
        ),
        (
            "sipstamp_requests_rejected_total",
            &[("status_class", "4xx"), ("reason", "max_forwards")],
            1.0,
        ),
        (
            "sipstamp_requests_rejected_total",
            &[("status_class", "5xx"), ("reason", "other")],
            1.0,
        ),
        (
            "sipstamp_messages_dropped_total",
            &[("reason", "via_not_ours"), ("transport", "udp")],
            1.0,
        ),
        (
            "sipstamp_calls_started_total",
            &[("identity_source", "none"), ("anonymous", "true")],
            1.0,
        ),
        (
            "sipstamp_calls_returning_total",
            &[("returning", "unknown")],
            1.0,
        ),
        (
            "sipstamp_store_operations_total",
            &[("backend", "embedded"), ("operation", "touch_session")],
            2.0,
        ),
        (
            "sipstamp_store_errors_total",
            &[
                ("backend", "embedded"),
                ("operation", "touch_session"),
                ("error", "timeout"),
            ],
            1.0,
        ),
        (
            "sipstamp_message_duration_seconds_count",
            &[("kind", "reply")],
            2.0,
        ),
    ];
    for (name, labels, expected) in checks {
        assert_eq!(
            value_of(&text, name, labels),
            Some(expected),
            "{name} {labels:?}"
        );
    }
}

#[test]
fn invalid_input_is_no_store_error() {
    let metrics = fresh();
    record_samples(&metrics);
    let text = metrics.render();
    for error in STORE_ERRORS {
        let labels = [
            ("backend", "embedded"),
            ("operation", "session"),
            ("error", error),
        ];
        assert_eq!(
            value_of(&text, "sipstamp_store_errors_total", &labels),
            Some(0.0),
            "{error}"
        );
    }
    let labels = [("backend", "embedded"), ("operation", "session")];
    assert_eq!(
        value_of(&text, "sipstamp_store_operations_total", &labels),
        Some(1.0)
    );
}

#[test]
fn message_duration_lands_in_bucket() {
    let metrics = fresh();
    record_samples(&metrics);
    let text = metrics.render();
    let below = [("kind", "request"), ("le", "0.000025")];
    let above = [("kind", "request"), ("le", "0.00005")];
    let name = "sipstamp_message_duration_seconds_bucket";
    assert_eq!(value_of(&text, name, &below), Some(0.0));
    assert_eq!(value_of(&text, name, &above), Some(1.0));
}

#[test]
fn scrape_sources_read_at_render() {
    let calls = Arc::new(AtomicU64::new(7));
    let connections = Arc::new(AtomicU64::new(3));
    let framing = Arc::new(AtomicU64::new(5));
    let (c, n, f) = (calls.clone(), connections.clone(), framing.clone());
    let sources = ScrapeSources {
        active_calls: Box::new(move || c.load(Ordering::Relaxed)),
        tcp_connections: Box::new(move || n.load(Ordering::Relaxed)),
        tcp_framing_errors: Box::new(move || f.load(Ordering::Relaxed)),
        send_errors: Box::new(move || vec![("no_socket", 4), ("udp_io", 0)]),
    };
    let metrics = Metrics::new(StoreBackend::Redis, sources).unwrap();

    let text = metrics.render();
    assert_eq!(value_of(&text, "sipstamp_active_calls", &[]), Some(7.0));
    assert_eq!(value_of(&text, "sipstamp_tcp_connections", &[]), Some(3.0));
    assert_eq!(
        value_of(&text, "sipstamp_tcp_framing_errors_total", &[]),
        Some(5.0)
    );
    assert_eq!(
        value_of(
            &text,
            "sipstamp_send_errors_total",
            &[("reason", "no_socket")]
        ),
        Some(4.0)
    );
    assert_eq!(
        value_of(&text, "sipstamp_send_errors_total", &[("reason", "udp_io")]),
        Some(0.0)
    );

    calls.store(2, Ordering::Relaxed);
    framing.store(9, Ordering::Relaxed);
    let text = metrics.render();
    assert_eq!(value_of(&text, "sipstamp_active_calls", &[]), Some(2.0));
    assert_eq!(
        value_of(&text, "sipstamp_tcp_framing_errors_total", &[]),
        Some(9.0)
    );

    // A source that goes back (a restarted transport) must not move the counter back.
    framing.store(1, Ordering::Relaxed);
    let text = metrics.render();
    assert_eq!(
        value_of(&text, "sipstamp_tcp_framing_errors_total", &[]),
        Some(9.0)
    );
    let labels = [("backend", "redis"), ("operation", "ping")];
    assert_eq!(
        value_of(&text, "sipstamp_store_operations_total", &labels),
        Some(0.0)
    );
}

/// Returns the allowed values of each label name.
fn allowed_labels() -> HashMap<&'static str, HashSet<&'static str>> {
    let mut allowed: HashMap<&str, HashSet<&str>> = HashMap::new();
    let mut add = |name: &'static str, values: &[&'static str]| {
        allowed.entry(name).or_default().extend(values);
    };
    add("method", &METHODS);
    add("transport", &TRANSPORTS);
    add("status_class", &STATUS_CLASSES);
    add("status_class", &REPLY_CLASSES);
    add("reason", &REPLY_REASONS);
    add("reason", &DROP_REASONS);
    add("identity_source", &IDENTITY_SOURCES);
    add("anonymous", &BOOLEANS);
    add("returning", &RETURNING);
    add("backend", &STORE_BACKENDS);
    add("operation", &STORE_OPS);
    add("error", &STORE_ERRORS);
    add("kind", &MESSAGE_KINDS);
    allowed
}

#[test]
fn labels_stay_in_fixed_sets() {
    let metrics = fresh();
    record_samples(&metrics);
    let allowed = allowed_labels();
    for (name, labels, _) in samples(&metrics.render()) {
        for (key, value) in labels {
            // `le` is the bucket bound that Prometheus histograms require.
            if key == "le" {
                assert!(
                    value == "+Inf" || value.parse::<f64>().is_ok(),
                    "{name}: le={value}"
                );
                continue;
            }
            let values = allowed
                .get(key.as_str())
                .unwrap_or_else(|| panic!("{name}: unexpected label {key}"));
            assert!(values.contains(value.as_str()), "{name}: {key}={value}");
            assert!(
                !value.bytes().all(|b| b.is_ascii_digit()),
                "{name}: {key}={value} is a number"
            );
        }
    }
}

#[tokio::test]
async fn timed_store_op_records_result() {
    let metrics = fresh();
    let ok = metrics
        .timed_store_op(StoreOp::PutAlias, async { Ok::<_, StoreError>(7) })
        .await;
    assert_eq!(ok.unwrap(), 7);
    let failed = metrics
        .timed_store_op(StoreOp::PutAlias, async {
            Err::<(), _>(StoreError::Closed)
        })
        .await;
    assert!(matches!(failed, Err(StoreError::Closed)));

    let text = metrics.render();
    let operation = [("backend", "embedded"), ("operation", "put_alias")];
    assert_eq!(
        value_of(&text, "sipstamp_store_operations_total", &operation),
        Some(2.0)
    );
    let closed = [
        ("backend", "embedded"),
        ("operation", "put_alias"),
        ("error", "closed"),
    ];
    assert_eq!(
        value_of(&text, "sipstamp_store_errors_total", &closed),
        Some(1.0)
    );
    assert_eq!(
        value_of(
            &text,
            "sipstamp_store_operation_duration_seconds_count",
            &operation
        ),
        Some(2.0)
    );
}

#[test]
fn store_op_labels_match_enum() {
    for (i, op) in StoreOp::ALL.into_iter().enumerate() {
        assert_eq!(op as usize, i, "{op:?}");
        assert_eq!(op.as_str(), STORE_OPS[i]);
    }
}

#[test]
fn reply_reasons_cover_scan_errors() {
    use crate::message::ScanError;
    let errors = [
        ScanError::MessageTooLarge,
        ScanError::BodyTooLarge,
        ScanError::TooManyHeaders,
        ScanError::HeaderTooLong,
        ScanError::BadStartLine,
        ScanError::BadVersion,
        ScanError::BadHeader,
        ScanError::Unterminated,
        ScanError::BadContentLength,
        ScanError::Truncated,
        ScanError::RepeatedHeader(crate::message::HeaderName::From),
    ];
    for error in errors {
        assert!(REPLY_REASONS.contains(&error.as_str()), "{error:?}");
    }
}

/// Runs `promtool check metrics` on a rendered scrape. Without promtool the test passes
/// locally and fails in CI, where `.ci/run` installs it.
#[test]
fn promtool_accepts_metrics() {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let metrics = fresh();
    record_samples(&metrics);
    let text = metrics.render();

    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipped: promtool not runnable ({error})");
            return;
        }
        Err(error) => panic!("promtool is required in CI: {error}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn limiter_logs_first_then_suppresses() {
    let limiter = RateLimiter::new(Duration::from_secs(10), 16);
    let start = Instant::now();
    assert_eq!(limiter.check("a", start), Verdict::Log { suppressed: 0 });
    assert_eq!(
        limiter.check("a", start + Duration::from_secs(1)),
        Verdict::Suppress
    );
    assert_eq!(
        limiter.check("a", start + Duration::from_secs(9)),
        Verdict::Suppress
    );
    assert_eq!(
        limiter.check("b", start + Duration::from_secs(2)),
        Verdict::Log { suppressed: 0 }
    );
    assert_eq!(
        limiter.check("a", start + Duration::from_secs(10)),
        Verdict::Log { suppressed: 2 }
    );
    assert_eq!(
        limiter.check("a", start + Duration::from_secs(11)),
        Verdict::Suppress
    );
}

#[test]
fn limiter_flush_reports_quiet_keys() {
    let limiter = RateLimiter::new(Duration::from_secs(10), 16);
    let start = Instant::now();
    limiter.check("loud", start);
    limiter.check("loud", start + Duration::from_secs(1));
    limiter.check("loud", start + Duration::from_secs(2));
    limiter.check("once", start);
    limiter.check("late", start + Duration::from_secs(8));

    let (summaries, overflow) = limiter.flush(start + Duration::from_secs(10));
    assert_eq!(summaries, vec![("loud", 2)]);
    assert_eq!(overflow, 0);
    assert_eq!(limiter.len(), 1, "only the key inside its interval stays");
    assert_eq!(
        limiter.check("loud", start + Duration::from_secs(11)),
        Verdict::Log { suppressed: 0 }
    );
}

#[test]
fn limiter_bounds_key_count() {
    let limiter = RateLimiter::new(Duration::from_secs(10), 2);
    let start = Instant::now();
    assert_eq!(limiter.check(1, start), Verdict::Log { suppressed: 0 });
    assert_eq!(limiter.check(2, start), Verdict::Log { suppressed: 0 });
    limiter.check(1, start + Duration::from_secs(1));
    assert_eq!(
        limiter.check(3, start + Duration::from_secs(1)),
        Verdict::Suppress
    );
    assert_eq!(limiter.len(), 2);

    // Once key 1 and 2 expire, key 3 gets a slot, and key 1's suppressed line moves to the
    // overflow count.
    assert_eq!(
        limiter.check(3, start + Duration::from_secs(10)),
        Verdict::Log { suppressed: 0 }
    );
    assert_eq!(limiter.len(), 1);
    let (summaries, overflow) = limiter.flush(start + Duration::from_secs(10));
    assert!(summaries.is_empty());
    assert_eq!(overflow, 2);
}

#[test]
fn rust_log_overrides_level() {
    let filter = build_filter("info", Some("sipstamp=trace")).unwrap();
    assert_eq!(filter.to_string(), "sipstamp=trace");
    let filter = build_filter("warn", Some("  ")).unwrap();
    assert_eq!(filter.to_string(), "warn");
    let filter = build_filter("debug", None).unwrap();
    assert_eq!(filter.to_string(), "debug");
}

#[test]
fn invalid_filter_names_origin() {
    let error = build_filter("info", Some("sipstamp=[")).unwrap_err();
    assert!(
        matches!(
            error,
            LogInitError::InvalidFilter {
                origin: "RUST_LOG",
                ..
            }
        ),
        "{error}"
    );
    let error = build_filter("=bogus=", None).unwrap_err();
    assert!(
        matches!(
            error,
            LogInitError::InvalidFilter {
                origin: "log.level",
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn log_format_flag_parses() {
    assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
    assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
    let error = "yaml".parse::<LogFormat>().unwrap_err();
    assert!(error.contains("\"yaml\""), "{error}");
}

#[test]
fn redacted_hides_value() {
    let number = Redacted("+4930123456");
    assert_eq!(number.to_string(), "<redacted>");
    assert_eq!(format!("{number:?}"), "<redacted>");
}

/// A log writer that keeps every line in memory.
#[derive(Clone, Default)]
struct SharedBuffer(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuffer {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[test]
fn json_log_line_fields() {
    let buffer = SharedBuffer::default();
    let writer = buffer.clone();
    let subscriber =
        logging::build_subscriber("info", None, LogFormat::Json, false, move || writer.clone())
            .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        tracing::warn!(
            transport = "udp",
            callerid = %Redacted("+4930123456"),
            "dropped an unparsable message"
        );
        tracing::debug!("below the configured level");
    });

    let text = buffer.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let line: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(line["level"], "WARN");
    assert_eq!(line["message"], "dropped an unparsable message");
    assert_eq!(line["transport"], "udp");
    assert_eq!(line["callerid"], "<redacted>");
    assert!(!text.contains("4930123456"), "{text}");
}

#[test]
fn text_log_follows_rust_log() {
    let buffer = SharedBuffer::default();
    let writer = buffer.clone();
    let subscriber =
        logging::build_subscriber("warn", Some("debug"), LogFormat::Text, false, move || {
            writer.clone()
        })
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        tracing::debug!("store ping finished");
    });
    let text = buffer.text();
    assert!(text.contains("DEBUG"), "{text}");
    assert!(!text.contains('\x1b'), "no colour codes: {text:?}");
    assert!(text.contains("store ping finished"), "{text}");
    assert!(serde_json::from_str::<serde_json::Value>(text.trim()).is_err());
}
