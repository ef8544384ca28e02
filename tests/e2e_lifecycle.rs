//! Lifecycle of the real `sipstamp` binary: the drain on SIGTERM and the configuration
//! reload on SIGHUP, with SIPp calls and hand-written requests on 127.0.0.1.

mod support;

use std::time::{Duration, Instant};

use support::{
    free_port, header_values, invite_request, sipp_available, status_code, CallPlan, Proxy, RawUdp,
    Sipp, SippSpec, Transport,
};

const FORWARD_TIMEOUT: Duration = Duration::from_secs(3);
const RELOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Polls the proxy's `sipstamp_active_calls` gauge until it equals `expected` or `timeout`
/// passes, and returns the last value read.
fn wait_active_calls(proxy: &Proxy, expected: u64, timeout: Duration) -> Option<u64> {
    let deadline = Instant::now() + timeout;
    loop {
        let (_, body) = proxy.admin_get("/metrics");
        let value = body
            .lines()
            .find_map(|line| line.strip_prefix("sipstamp_active_calls "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64);
        if value == Some(expected) || Instant::now() >= deadline {
            return value;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends an INVITE from `caller` through the proxy and returns the copy `upstream` receives.
fn forwarded_invite(
    proxy: &Proxy,
    caller: &RawUdp,
    upstream: &RawUdp,
    extra_headers: &str,
    call_id: &str,
) -> Vec<u8> {
    let request = invite_request(
        caller.local_addr(),
        proxy.sip_port,
        "sip:+493055507001@edge.test",
        extra_headers,
        call_id,
    );
    caller.send(request.as_bytes());
    upstream
        .recv_request("INVITE", call_id, FORWARD_TIMEOUT)
        .unwrap_or_else(|| {
            panic!(
                "INVITE {call_id} was not forwarded\n--- proxy log ---\n{}",
                proxy.log()
            )
        })
}

/// Writes `extra_toml` into the config, sends SIGHUP and waits for the log line `expected`.
fn reload(proxy: &Proxy, extra_toml: &str, expected: &str) {
    let before = proxy.full_log().len();
    proxy.rewrite_config(extra_toml);
    proxy.signal("HUP");
    assert!(
        proxy.wait_for_log(expected, before, RELOAD_TIMEOUT),
        "no {expected:?} in the log after SIGHUP\n--- proxy log ---\n{}",
        proxy.log()
    );
}

#[test]
fn sigterm_drains_calls_in_progress() {
    if !sipp_available() {
        return;
    }
    let uas_port = free_port();
    let mut proxy = Proxy::start_with(uas_port, "[lifecycle]\ndrain_timeout_secs = 20\n");
    let mut uas = Sipp::spawn(SippSpec::uas(
        "uas-stamped.xml",
        Transport::Udp,
        uas_port,
        1,
    ));
    uas.wait_listening();
    let uac = Sipp::spawn(
        SippSpec::uac("uac-hold.xml", Transport::Udp, proxy.sip_port, 1, 1)
            .injection("callers.csv"),
    );
    let active = wait_active_calls(&proxy, 1, Duration::from_secs(5));
    assert_eq!(
        active,
        Some(1),
        "the held call did not become active\n{}",
        proxy.log()
    );

    proxy.signal("TERM");
    // The signal is handled asynchronously, so wait until the drain has begun.
    assert!(
        proxy.wait_for_log("drain started", 0, Duration::from_secs(5)),
        "{}",
        proxy.log()
    );
    let (status, body) = proxy.admin_get("/readyz");
    assert_eq!(status, 503, "readyz during the drain: {body}");
    assert!(body.contains("draining"), "readyz body: {body}");

    let caller = RawUdp::new(proxy.sip_port);
    let request = invite_request(
        caller.local_addr(),
        proxy.sip_port,
        "sip:+493055507002@edge.test",
        "",
        "drain-new-call",
    );
    let reply = caller
        .exchange(request.as_bytes(), FORWARD_TIMEOUT)
        .expect("no reply to an INVITE during the drain");
    assert_eq!(
        status_code(&reply),
        Some(503),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert_eq!(header_values(&reply, "Retry-After"), vec!["5"]);
    assert!(
        proxy.is_running(),
        "the proxy exited with a call active\n{}",
        proxy.log()
    );

    let uac_stats = uac.finish(Duration::from_secs(20));
    let uas_stats = uas.finish(Duration::from_secs(25));
    let detail = format!(
        "{uac_stats}\n{uas_stats}\n{}\n--- proxy log ---\n{}",
        uac_stats.diagnostics,
        proxy.log()
    );
    assert_eq!(uac_stats.failed, 0, "UAC counted failed calls\n{detail}");
    assert_eq!(
        uac_stats.successful, 1,
        "UAC did not complete the call\n{detail}"
    );
    assert_eq!(uas_stats.failed, 0, "UAS counted failed calls\n{detail}");

    let exit = proxy.wait_exit(Duration::from_secs(10));
    assert!(
        exit.is_some_and(|s| s.success()),
        "the proxy did not exit 0 after the drain: {exit:?}\n{}",
        proxy.log()
    );
    let log = proxy.full_log();
    assert!(log.contains("drain started"), "{log}");
    assert!(
        log.contains("drain finished: every call has ended"),
        "{log}"
    );
    assert!(log.contains("queued store writes finished"), "{log}");
}

#[test]
fn second_sigterm_stops_at_once() {
    let upstream_port = free_port();
    let upstream = RawUdp::bound(upstream_port, 0);
    let mut proxy = Proxy::start_with(upstream_port, "[lifecycle]\ndrain_timeout_secs = 60\n");
    let caller = RawUdp::new(proxy.sip_port);
    // The upstream never responds, so the call stays active and the drain would wait 60 s.
    forwarded_invite(&proxy, &caller, &upstream, "", "never-answered");

    proxy.signal("TERM");
    assert!(
        proxy.wait_for_log("drain started", 0, Duration::from_secs(5)),
        "{}",
        proxy.log()
    );
    assert!(
        proxy.is_running(),
        "the proxy did not wait for the active call"
    );
    proxy.signal("TERM");
    let exit = proxy.wait_exit(Duration::from_secs(5));
    assert!(
        exit.is_some_and(|s| s.success()),
        "the proxy did not stop after a second SIGTERM: {exit:?}\n{}",
        proxy.log()
    );
    assert!(proxy.full_log().contains("second SIGTERM received"));
}

#[test]
fn drain_timeout_stops_with_calls_active() {
    let upstream_port = free_port();
    let upstream = RawUdp::bound(upstream_port, 0);
    let mut proxy = Proxy::start_with(upstream_port, "[lifecycle]\ndrain_timeout_secs = 1\n");
    let caller = RawUdp::new(proxy.sip_port);
    forwarded_invite(&proxy, &caller, &upstream, "", "never-answered-2");

    proxy.signal("TERM");
    let exit = proxy.wait_exit(Duration::from_secs(5));
    assert!(
        exit.is_some_and(|s| s.success()),
        "{exit:?}\n{}",
        proxy.log()
    );
    assert!(
        proxy.full_log().contains("drain timed out"),
        "{}",
        proxy.log()
    );
}

#[test]
fn invalid_reload_keeps_calls_working() {
    if !sipp_available() {
        return;
    }
    let uas_port = free_port();
    let proxy = Proxy::start(uas_port);
    reload(
        &proxy,
        "[limits]\nmax_via = 0\n\n[headers]\nsessionid = \"not a token\"\n",
        "config reload failed",
    );
    let log = proxy.full_log();
    assert!(log.contains("limits.max_via"), "{log}");
    assert!(log.contains("headers.sessionid"), "{log}");

    let plan =
        CallPlan::new("uac.xml", "uas-stamped.xml", Transport::Udp, 3, 10).injection("callers.csv");
    let run = plan.run(uas_port, proxy.sip_port);
    let detail = format!("{}\n--- proxy log ---\n{}", run.detail(), proxy.log());
    assert_eq!(run.uac.failed, 0, "UAC counted failed calls\n{detail}");
    run.assert_all_succeeded();
}

#[test]
fn reload_applies_header_name_and_trunk() {
    let upstream_port = free_port();
    let upstream = RawUdp::bound(upstream_port, 0);
    let proxy = Proxy::start(upstream_port);
    let caller = RawUdp::new(proxy.sip_port);
    let pai = "P-Asserted-Identity: <tel:+493055507003>\r\n";

    let before = forwarded_invite(&proxy, &caller, &upstream, pai, "before-reload");
    assert_eq!(header_values(&before, "X-Sessionid").len(), 1);
    assert!(header_values(&before, "X-Session-Id").is_empty());
    assert_eq!(header_values(&before, "X-Identity-Source"), vec!["from"]);

    reload(
        &proxy,
        "[headers]\nsessionid = \"X-Session-Id\"\n\n[[trunks]]\nid = \"loopback\"\ntrusted_cidrs = [\"127.0.0.1/32\"]\nregion = \"DE\"\n",
        "configuration reloaded",
    );

    let after = forwarded_invite(&proxy, &caller, &upstream, pai, "after-reload");
    assert!(header_values(&after, "X-Sessionid").is_empty());
    let sessionid = header_values(&after, "X-Session-Id");
    assert_eq!(sessionid.len(), 1, "{}", String::from_utf8_lossy(&after));
    assert!(sessionid[0].starts_with("k1_"), "{sessionid:?}");
    assert_eq!(header_values(&after, "X-Identity-Source"), vec!["pai-tel"]);
    assert_eq!(header_values(&after, "X-Callerid"), vec!["+493055507003"]);
}

#[test]
fn reload_warns_about_restart_only_keys() {
    let upstream_port = free_port();
    let proxy = Proxy::start(upstream_port);
    reload(
        &proxy,
        "[calls]\nmax_active = 10\n",
        "configuration reloaded",
    );
    let log = proxy.full_log();
    assert!(
        log.lines()
            .any(|l| l.contains("takes effect only after a restart") && l.contains("calls")),
        "{log}"
    );
}
