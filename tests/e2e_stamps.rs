//! Exact stamped values, read by a hand-written UDP upstream: which identifiers repeat
//! for the same caller and which are fresh for every call. These tests need no SIPp.

mod support;

use std::time::Duration;

use support::{free_port, header_values, invite_request, Proxy, RawUdp};

const FORWARD_TIMEOUT: Duration = Duration::from_secs(3);

/// The stamped headers of one forwarded INVITE.
#[derive(Debug)]
struct Stamps {
    callid: String,
    sessionid: String,
    conversationid: String,
    anonymous: String,
    callerid: Vec<String>,
}

/// Sends an INVITE through the proxy and returns the stamps of the copy that reaches
/// `upstream`.
fn stamps_of_call(
    proxy: &Proxy,
    caller: &RawUdp,
    upstream: &RawUdp,
    from_uri: &str,
    extra_headers: &str,
    call_id: &str,
) -> Stamps {
    let request = invite_request(
        caller.local_addr(),
        proxy.sip_port,
        from_uri,
        extra_headers,
        call_id,
    );
    caller.send(request.as_bytes());
    let forwarded = upstream
        .recv_request("INVITE", call_id, FORWARD_TIMEOUT)
        .unwrap_or_else(|| panic!("INVITE {call_id} was not forwarded\n{}", proxy.log()));

    let single = |name: &str| -> String {
        let values = header_values(&forwarded, name);
        assert_eq!(
            values.len(),
            1,
            "{name} in INVITE {call_id}: {values:?}\n{}",
            String::from_utf8_lossy(&forwarded)
        );
        values[0].clone()
    };
    Stamps {
        callid: single("X-Callid"),
        sessionid: single("X-Sessionid"),
        conversationid: single("X-Conversationid"),
        anonymous: single("X-Anonymous"),
        callerid: header_values(&forwarded, "X-Callerid"),
    }
}

#[test]
fn same_caller_keeps_sessionid() {
    let upstream_port = free_port();
    let proxy = Proxy::start(upstream_port);
    let upstream = RawUdp::bound(upstream_port, proxy.sip_port);
    let caller = RawUdp::new(proxy.sip_port);
    let uri = "sip:+493055507001@edge.test";

    let first = stamps_of_call(&proxy, &caller, &upstream, uri, "", "stable-1");
    let second = stamps_of_call(&proxy, &caller, &upstream, uri, "", "stable-2");

    assert_eq!(first.sessionid, second.sessionid, "sessionid of one caller");
    assert!(first.sessionid.starts_with("k1_"), "{first:?}");
    assert_eq!(first.anonymous, "false", "{first:?}");
    assert_eq!(first.callerid.len(), 1, "{first:?}");
    assert_ne!(
        first.callid, second.callid,
        "X-Callid must be new for each call"
    );
    assert_ne!(
        first.conversationid, second.conversationid,
        "X-Conversationid must be new for each call"
    );
}

#[test]
fn different_callers_differ() {
    let upstream_port = free_port();
    let proxy = Proxy::start(upstream_port);
    let upstream = RawUdp::bound(upstream_port, proxy.sip_port);
    let caller = RawUdp::new(proxy.sip_port);

    let first = stamps_of_call(
        &proxy,
        &caller,
        &upstream,
        "sip:+493055507002@edge.test",
        "",
        "differ-1",
    );
    let second = stamps_of_call(
        &proxy,
        &caller,
        &upstream,
        "sip:+493055507003@edge.test",
        "",
        "differ-2",
    );

    assert_ne!(
        first.sessionid, second.sessionid,
        "two callers, one sessionid"
    );
    assert_ne!(
        first.callerid, second.callerid,
        "two callers, one X-Callerid"
    );
}

#[test]
fn anonymous_sessionids_never_repeat() {
    let upstream_port = free_port();
    let proxy = Proxy::start(upstream_port);
    let upstream = RawUdp::bound(upstream_port, proxy.sip_port);
    let caller = RawUdp::new(proxy.sip_port);
    let uri = "sip:+493055507004@edge.test";
    let privacy = "Privacy: id\r\n";

    let first = stamps_of_call(&proxy, &caller, &upstream, uri, privacy, "anon-1");
    let second = stamps_of_call(&proxy, &caller, &upstream, uri, privacy, "anon-2");

    for stamps in [&first, &second] {
        assert_eq!(stamps.anonymous, "true", "{stamps:?}");
        assert!(stamps.sessionid.starts_with("an"), "{stamps:?}");
        assert!(
            stamps.callerid.is_empty(),
            "X-Callerid on an anonymous call: {stamps:?}"
        );
    }
    assert_ne!(
        first.sessionid, second.sessionid,
        "anonymous sessionids must be random per call"
    );
}
