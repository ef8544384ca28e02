//! Flood protection and memory bounds of the running proxy, driven with raw UDP on 127.0.0.1.
//! These tests need no SIPp.

mod support;

use std::time::{Duration, Instant};

use support::{
    free_port, header_values, invite_request, options_request, status_code, Proxy, RawUdp,
    Transport,
};

/// Returns the resident set size of a process in KiB, from /proc/PID/status.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Receives every datagram that arrives until the socket stays quiet for `quiet`, and returns
/// their status codes.
fn drain(udp: &RawUdp, quiet: Duration) -> Vec<u16> {
    let mut statuses = Vec::new();
    while let Some(reply) = udp.recv(quiet) {
        if let Some(status) = status_code(&reply) {
            statuses.push(status);
        }
    }
    statuses
}

#[test]
fn flood_source_gets_503_after_burst() {
    let mut proxy = Proxy::start_with(
        free_port(),
        "[flood]\nrequests_per_second = 5\nburst = 20\naction = \"reply-503\"\n",
    );
    let udp = RawUdp::new(proxy.sip_port);
    let started = Instant::now();
    for i in 0..100 {
        let request = options_request(
            udp.local_addr(),
            proxy.sip_port,
            Transport::Udp,
            &format!("flood-{i}"),
        );
        udp.send(request.as_bytes());
    }
    let statuses = drain(&udp, Duration::from_millis(500));
    let elapsed = started.elapsed().as_secs_f64();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 503).count();

    // The burst plus what the bucket refilled while the requests were sent.
    let allowed = 20 + (5.0 * elapsed).ceil() as usize;
    assert!(
        ok >= 20,
        "only {ok} of the burst answered 200\n{}",
        proxy.log()
    );
    assert!(ok <= allowed, "{ok} answered 200, limit {allowed}");
    assert_eq!(
        ok + limited,
        100,
        "some requests got no answer: {statuses:?}"
    );

    let log = proxy.log();
    let warnings = log.matches("over its request rate limit").count();
    assert_eq!(warnings, 1, "rate-limit warning not logged once:\n{log}");
    assert!(proxy.is_running(), "proxy died under the flood");
}

#[test]
fn flood_drop_action_sends_nothing() {
    let proxy = Proxy::start_with(
        free_port(),
        "[flood]\nrequests_per_second = 1\nburst = 5\naction = \"drop\"\n",
    );
    let udp = RawUdp::new(proxy.sip_port);
    for i in 0..30 {
        let request = options_request(
            udp.local_addr(),
            proxy.sip_port,
            Transport::Udp,
            &format!("drop-{i}"),
        );
        udp.send(request.as_bytes());
    }
    let statuses = drain(&udp, Duration::from_millis(500));
    assert!(
        statuses.iter().all(|s| *s == 200),
        "dropped requests were answered: {statuses:?}"
    );
    assert!(
        (5..=7).contains(&statuses.len()),
        "expected about the burst of 5 answers, got {}",
        statuses.len()
    );
}

/// Sends thousands of INVITEs that never end through the proxy with a small call table, and
/// checks that it replies 503 beyond the table size and that its memory levels off.
#[test]
fn unended_calls_bounded_by_call_table() {
    const MAX_ACTIVE: usize = 200;
    const BATCH: usize = 250;
    const BATCHES: usize = 12;

    let upstream_port = free_port();
    let upstream = RawUdp::bound(upstream_port, 9);
    let mut proxy = Proxy::start_with(
        upstream_port,
        &format!("[calls]\nmax_active = {MAX_ACTIVE}\n"),
    );
    let udp = RawUdp::new(proxy.sip_port);

    let mut rss_after_batch = Vec::new();
    let mut statuses = Vec::new();
    let mut forwarded = 0;
    for batch in 0..BATCHES {
        for i in 0..BATCH {
            let call_id = format!("unended-{batch}-{i}");
            // Anonymous callers create no session, so only the call table can grow.
            let request = invite_request(
                udp.local_addr(),
                proxy.sip_port,
                "sip:anonymous@anonymous.invalid",
                "",
                &call_id,
            );
            udp.send(request.as_bytes());
            if i % 25 == 24 {
                // Read the replies so neither side's socket buffer overflows.
                statuses.extend(drain(&udp, Duration::from_millis(50)));
            }
        }
        statuses.extend(drain(&udp, Duration::from_millis(200)));
        while upstream.recv(Duration::from_millis(1)).is_some() {
            forwarded += 1;
        }
        rss_after_batch.push(rss_kib(proxy.pid()));
    }
    while upstream.recv(Duration::from_millis(100)).is_some() {
        forwarded += 1;
    }

    eprintln!("RSS after each batch of {BATCH} INVITEs (KiB): {rss_after_batch:?}");
    let rejected = statuses.iter().filter(|s| **s == 503).count();
    let total = BATCH * BATCHES;
    assert!(proxy.is_running(), "proxy died\n{}", proxy.log());
    assert!(
        forwarded <= MAX_ACTIVE,
        "{forwarded} INVITEs forwarded with max_active {MAX_ACTIVE}"
    );
    assert!(
        rejected >= total - MAX_ACTIVE - total / 20,
        "only {rejected} of {total} INVITEs answered 503 ({} replies, {forwarded} forwarded)",
        statuses.len()
    );

    // After the first batches fill the table, memory must not keep growing with the number
    // of rejected INVITEs. Allow 2 MiB of allocator noise between batch 4 and the last.
    let settled = rss_after_batch[3];
    let last = *rss_after_batch.last().expect("at least one batch");
    assert!(
        last <= settled + 2_048,
        "RSS grew from {settled} KiB to {last} KiB while rejecting: {rss_after_batch:?}"
    );
}

/// Sends an INVITE that the upstream never answers, with a one-second setup time, and checks
/// that the call leaves the table and its conversation ends with status 408.
#[test]
fn unanswered_call_ends_after_setup_time() {
    let upstream_port = free_port();
    let upstream = RawUdp::bound(upstream_port, 9);
    let proxy = Proxy::start_with(upstream_port, "[calls]\nsetup_timeout_secs = 1\n");
    let udp = RawUdp::new(proxy.sip_port);

    let call_id = "unanswered-setup-timeout";
    let request = invite_request(
        udp.local_addr(),
        proxy.sip_port,
        "sip:anonymous@anonymous.invalid",
        "",
        call_id,
    );
    udp.send(request.as_bytes());
    let forwarded = upstream
        .recv_request("INVITE", call_id, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("INVITE not forwarded\n{}", proxy.log()));
    let conversationids = header_values(&forwarded, "X-Conversationid");
    assert_eq!(conversationids.len(), 1, "{forwarded:?}");
    let path = format!("/v1/conversations/{}", conversationids[0]);
    let token = proxy.admin_token();

    // The ticker sweeps once a second and the end is written off the call path.
    let deadline = Instant::now() + Duration::from_secs(10);
    let record = loop {
        let response = support::http::request(proxy.admin_port, "GET", &path, Some(&token), None);
        let ended = response.status == 200 && !response.json()["ended_at_ms"].is_null();
        if ended || Instant::now() >= deadline {
            assert_eq!(response.status, 200, "{response:?}\n{}", proxy.log());
            break response.json();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(record["final_status"], 408, "{record}");
    assert!(record["answered_at_ms"].is_null(), "{record}");
    assert!(!record["ended_at_ms"].is_null(), "{record}");
    let (status, metrics) = proxy.admin_get("/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("sipstamp_active_calls 0"),
        "call still counted as active\n{metrics}"
    );
}
