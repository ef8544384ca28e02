//! What the real `sipstamp` binary writes about real calls: its trace-level JSON log must not
//! contain any caller number or display name, and `/metrics` must count the calls correctly
//! and pass `promtool check metrics`.

mod support;

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{
    free_port, invite_request, sipp_available, sipp_file, status_code, CallPlan, Proxy, RawUdp,
    Transport,
};

/// Country calling codes of the numbers in `callers.csv`, longest first so "49" is not read as
/// "4" followed by the national number.
const COUNTRY_CODES: [&str; 4] = ["49", "44", "33", "1"];

/// One caller line of an injection file.
struct Caller {
    /// User parts with digits of the From URI and the P-Asserted-Identity, as written.
    written: Vec<String>,
    display_names: Vec<String>,
    /// Whether the proxy must treat the call as anonymous (field 4).
    anonymous: bool,
}

/// Reads the callers of an injection file: every number as written and every display name.
fn callers(file: &str) -> Vec<Caller> {
    let text = std::fs::read_to_string(sipp_file(file)).expect("read the injection file");
    let mut out = Vec::new();
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(';').collect();
        let mut written = Vec::new();
        let mut display_names = Vec::new();
        for field in fields.iter().take(3) {
            for (i, quoted) in field.split('"').enumerate() {
                if i % 2 == 1 && !quoted.is_empty() {
                    display_names.push(quoted.to_owned());
                }
            }
            for scheme in ["sip:", "tel:"] {
                for (i, part) in field.split(scheme).enumerate() {
                    if i == 0 {
                        continue;
                    }
                    let user: String = part
                        .chars()
                        .take_while(|c| !matches!(c, '@' | '>' | ';' | ' '))
                        .collect();
                    if user.chars().any(|c| c.is_ascii_digit()) {
                        written.push(user);
                    }
                }
            }
        }
        out.push(Caller {
            written,
            display_names,
            anonymous: fields.get(4) == Some(&"true"),
        });
    }
    out
}

/// Returns the country code and national significant number of a number as written in the
/// test data: international with `+` or `00`, or national with a leading 0 (read as German).
fn split_number(written: &str) -> (String, String) {
    let digits: String = written.chars().filter(char::is_ascii_digit).collect();
    let international = if written.starts_with('+') {
        Some(digits.clone())
    } else {
        digits.strip_prefix("00").map(str::to_owned)
    };
    if let Some(number) = international {
        for code in COUNTRY_CODES {
            if let Some(national) = number.strip_prefix(code) {
                return (code.to_owned(), national.to_owned());
            }
        }
        panic!("no known country code in {written:?}");
    }
    let national = digits.strip_prefix('0').unwrap_or(&digits).to_owned();
    ("49".to_owned(), national)
}

/// Returns every written form of a number that must not appear in the log.
fn number_forms(written: &str) -> Vec<String> {
    let (code, national) = split_number(written);
    let mut dashed = String::new();
    for (i, c) in national.chars().enumerate() {
        if i > 0 && i % 3 == 0 {
            dashed.push('-');
        }
        dashed.push(c);
    }
    vec![
        written.to_owned(),
        national.clone(),
        format!("{code}{national}"),
        format!("+{code}{national}"),
        format!("00{code}{national}"),
        format!("0{national}"),
        format!("+{code}-{dashed}"),
        format!("0{dashed}"),
        format!("tel:+{code}{national}"),
        format!("sip:+{code}{national}@"),
        format!("sip:0{national}@"),
    ]
}

/// Stops the proxy with SIGTERM, waits for it to exit and returns its whole log.
fn stop_and_read_log(proxy: &mut Proxy) -> String {
    proxy.signal("TERM");
    let exit = proxy.wait_exit(Duration::from_secs(10));
    assert!(
        exit.is_some_and(|s| s.success()),
        "proxy exit: {exit:?}\n{}",
        proxy.log()
    );
    proxy.full_log()
}

#[test]
fn trace_log_has_no_caller_data() {
    if !sipp_available() {
        return;
    }
    let uas_port = free_port();
    let mut proxy = Proxy::start_custom(
        uas_port,
        "[lifecycle]\ndrain_timeout_secs = 5\n",
        &[("RUST_LOG", "trace")],
        &["--log-format", "json"],
    );
    let callers = callers("callers.csv");
    let count = callers.len() as u32;
    for transport in [Transport::Udp, Transport::Tcp] {
        let plan = CallPlan::new("uac.xml", "uas-stamped.xml", transport, count, 20)
            .injection("callers.csv");
        let run = plan.run(uas_port, proxy.sip_port);
        run.assert_all_succeeded();
    }
    // Requests the proxy rejects or drops go through other log lines than calls do.
    let raw = RawUdp::new(proxy.sip_port);
    let from = "sip:+493055501234@edge.test";
    let bad_cseq = invite_request(raw.local_addr(), proxy.sip_port, from, "", "leak-cseq")
        .replace("CSeq: 1 INVITE", "CSeq: 1 BYE");
    let reply = raw.exchange(bad_cseq.as_bytes(), Duration::from_secs(3));
    assert_eq!(reply.as_deref().and_then(status_code), Some(400));
    let junk = format!("INVITE {from} SIP/2.0\r\nFrom: \"Erika Example\" <{from}>\r\n\r\n");
    raw.send(junk.as_bytes());
    let log = stop_and_read_log(&mut proxy);
    assert!(
        log.contains("\"level\":\"DEBUG\""),
        "debug logging is not on:\n{log}"
    );
    // With dashes removed, a number logged in groups joined by dashes shows its digits in a row.
    let undashed = log.replace('-', "");

    for caller in &callers {
        for written in &caller.written {
            for form in number_forms(written) {
                assert!(
                    !log.contains(&form),
                    "the log contains {form:?} (caller {written})"
                );
            }
            let (_, national) = split_number(written);
            assert!(
                !undashed.contains(&national),
                "the log contains the digits of {written} in some grouping"
            );
        }
        for name in &caller.display_names {
            if name.eq_ignore_ascii_case("anonymous") {
                continue;
            }
            assert!(
                !log.contains(name.as_str()),
                "the log contains the display name {name:?}"
            );
        }
    }

    // Each non-anonymous call forwards its INVITE inside a span that names all three ids.
    let span_callids: HashSet<String> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|event| {
            let spans = event.get("spans")?.as_array()?.clone();
            spans.into_iter().find(|s| s["name"] == "call")
        })
        .filter(|span| {
            ["callid", "sessionid", "conversationid"]
                .iter()
                .all(|field| span.get(field).and_then(|v| v.as_str()).is_some())
        })
        .filter_map(|span| span["callid"].as_str().map(str::to_owned))
        .collect();
    let identified_calls = 2 * callers.iter().filter(|c| !c.anonymous).count();
    assert_eq!(
        span_callids.len(),
        identified_calls,
        "calls with a span naming callid, sessionid and conversationid"
    );
}

/// Reads the Prometheus text format into a map from `name{labels}` to value.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// Returns the value of one series, or 0 when it is absent.
fn value(metrics: &HashMap<String, f64>, series: &str) -> f64 {
    metrics.get(series).copied().unwrap_or(0.0)
}

/// Returns the sum of every series of `name` whose labels contain each of `labels`.
fn sum(metrics: &HashMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    metrics
        .iter()
        .filter(|(series, _)| {
            series
                .strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
                && labels.iter().all(|l| series.contains(l))
        })
        .map(|(_, v)| v)
        .sum()
}

/// Runs `promtool check metrics` on `text`, or returns false when promtool is missing outside
/// CI.
fn promtool_check(text: &str) -> bool {
    use std::io::Write;
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipped promtool check: promtool is not runnable ({error})");
            return false;
        }
        Err(error) => panic!("promtool is required when CI=true: {error}"),
    };
    child
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(text.as_bytes())
        .expect("write the metrics to promtool");
    let output = child.wait_with_output().expect("wait for promtool");
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    true
}

#[test]
fn metrics_count_real_calls() {
    if !sipp_available() {
        return;
    }
    let uas_port = free_port();
    // A trusted trunk for 127.0.0.1, so P-Asserted-Identity counts and callers that call
    // twice are recognised as returning.
    let proxy = Proxy::start_with(
        uas_port,
        "[[trunks]]\nid = \"loopback\"\ntrusted_cidrs = [\"127.0.0.1/32\"]\nregion = \"DE\"\n",
    );
    // Both rounds use the first five callers of callers.csv, none of them anonymous. In round
    // two, those whose identity has at least medium assurance count as returning.
    let calls_per_round = 5;
    let mut retransmissions = 0;
    for _ in 0..2 {
        let plan = CallPlan::new(
            "uac.xml",
            "uas-stamped.xml",
            Transport::Udp,
            calls_per_round,
            10,
        )
        .injection("callers.csv");
        let run = plan.run(uas_port, proxy.sip_port);
        run.assert_all_succeeded();
        retransmissions += run.uac.retransmissions + run.uas.retransmissions;
    }
    let calls = f64::from(2 * calls_per_round);
    let slack = retransmissions as f64;

    let deadline = Instant::now() + Duration::from_secs(5);
    let (text, metrics) = loop {
        let (status, text) = proxy.admin_get("/metrics");
        assert_eq!(status, 200, "{text}");
        let metrics = parse_metrics(&text);
        if value(&metrics, "sipstamp_active_calls") == 0.0 || Instant::now() >= deadline {
            break (text, metrics);
        }
        std::thread::sleep(Duration::from_millis(50));
    };

    assert_eq!(value(&metrics, "sipstamp_active_calls"), 0.0, "{text}");
    for method in ["INVITE", "ACK", "BYE"] {
        let received = value(
            &metrics,
            &format!("sipstamp_requests_received_total{{method=\"{method}\",transport=\"udp\"}}"),
        );
        let forwarded = value(
            &metrics,
            &format!("sipstamp_requests_forwarded_total{{method=\"{method}\",transport=\"udp\"}}"),
        );
        assert!(
            received >= calls && received <= calls + slack,
            "{method} received {received}, expected {calls} plus at most {slack} retransmissions"
        );
        assert!(
            forwarded >= calls && forwarded <= received,
            "{method} forwarded {forwarded}, received {received}"
        );
    }
    assert_eq!(
        sum(&metrics, "sipstamp_calls_started_total", &[]),
        calls,
        "{text}"
    );
    assert_eq!(
        sum(
            &metrics,
            "sipstamp_calls_started_total",
            &["anonymous=\"true\""]
        ),
        0.0,
        "{text}"
    );
    assert_eq!(
        sum(&metrics, "sipstamp_calls_returning_total", &[]),
        calls,
        "{text}"
    );
    let returning = value(
        &metrics,
        "sipstamp_calls_returning_total{returning=\"true\"}",
    );
    assert!(returning >= 1.0, "no returning caller counted:\n{text}");
    assert!(returning <= f64::from(calls_per_round), "{text}");

    let forwarded_requests = sum(&metrics, "sipstamp_requests_forwarded_total", &[]);
    let timed_requests = value(
        &metrics,
        "sipstamp_message_duration_seconds_count{kind=\"request\"}",
    );
    assert_eq!(timed_requests, forwarded_requests, "{text}");
    let relayed_responses = sum(&metrics, "sipstamp_responses_relayed_total", &[]);
    let timed_responses = value(
        &metrics,
        "sipstamp_message_duration_seconds_count{kind=\"response\"}",
    );
    assert_eq!(timed_responses, relayed_responses, "{text}");
    assert!(relayed_responses >= 3.0 * calls, "{text}");

    promtool_check(&text);
}
