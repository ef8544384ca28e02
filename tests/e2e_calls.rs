//! Calls through the real `sipstamp` binary: SIPp callers on one side, a SIPp upstream
//! gateway on the other, all on 127.0.0.1. The upstream scenarios check the stamped
//! headers and reply 500 on a failed check, so a bad stamp fails the call on both sides.

mod support;

use std::time::Duration;

use support::{
    free_port, options_request, sipp_available, status_code, CallPlan, Proxy, RawTcp, RawUdp, Sipp,
    SippSpec, TcpReply, Transport,
};

/// Runs `plan` through a fresh proxy whose upstream is the plan's UAS, asserts that every
/// call succeeded on both sides and that the proxy still runs.
fn assert_calls_pass(plan: &CallPlan) {
    let uas_port = free_port();
    let mut proxy = Proxy::start(uas_port);
    let run = plan.run(uas_port, proxy.sip_port);
    let detail = format!("{}\n--- proxy log ---\n{}", run.detail(), proxy.log());
    assert_eq!(run.uac.failed, 0, "UAC counted failed calls\n{detail}");
    assert_eq!(run.uas.failed, 0, "UAS counted failed calls\n{detail}");
    run.assert_all_succeeded();
    assert!(
        proxy.is_running(),
        "sipstamp exited during the calls\n{detail}"
    );
}

#[test]
fn calls_over_udp_are_stamped() {
    if !sipp_available() {
        return;
    }
    let plan = CallPlan::new("uac.xml", "uas-stamped.xml", Transport::Udp, 200, 100)
        .injection("callers.csv");
    assert_calls_pass(&plan);
}

#[test]
fn calls_over_tcp_are_stamped() {
    if !sipp_available() {
        return;
    }
    let plan = CallPlan::new("uac.xml", "uas-stamped.xml", Transport::Tcp, 200, 100)
        .injection("callers.csv");
    assert_calls_pass(&plan);
}

#[test]
fn anonymous_callers_get_anonymous_true() {
    if !sipp_available() {
        return;
    }
    // Every line expects X-Anonymous: true, an "an" sessionid and no X-Callerid.
    let plan = CallPlan::new("uac.xml", "uas-stamped.xml", Transport::Udp, 25, 50)
        .injection("callers-anonymous.csv");
    assert_calls_pass(&plan);
}

#[test]
fn forged_stamp_headers_are_replaced() {
    if !sipp_available() {
        return;
    }
    // The callers send their own X-Sessionid, X-Anonymous, X-Callerid and so on. The UAS
    // fails a call that arrives with a duplicate or with the forged anonymity.
    let plan = CallPlan::new("uac.xml", "uas-stamped.xml", Transport::Udp, 8, 50)
        .injection("callers-forged.csv");
    assert_calls_pass(&plan);
}

#[test]
fn upstream_bye_follows_record_route_udp() {
    if !sipp_available() {
        return;
    }
    let plan = CallPlan::new("uac-bye.xml", "uas-bye.xml", Transport::Udp, 50, 50)
        .injection("callers.csv");
    assert_calls_pass(&plan);
}

#[test]
fn upstream_bye_follows_record_route_tcp() {
    if !sipp_available() {
        return;
    }
    let plan = CallPlan::new("uac-bye.xml", "uas-bye.xml", Transport::Tcp, 50, 50)
        .injection("callers.csv");
    assert_calls_pass(&plan);
}

#[test]
fn cancel_while_ringing_udp() {
    if !sipp_available() {
        return;
    }
    let plan = CallPlan::new("uac-cancel.xml", "uas-cancel.xml", Transport::Udp, 50, 50)
        .injection("callers.csv");
    assert_calls_pass(&plan);
}

#[test]
fn cancel_while_ringing_tcp() {
    if !sipp_available() {
        return;
    }
    let plan = CallPlan::new("uac-cancel.xml", "uas-cancel.xml", Transport::Tcp, 50, 50)
        .injection("callers.csv");
    assert_calls_pass(&plan);
}

#[test]
fn options_probe_answered_by_proxy() {
    if !sipp_available() {
        return;
    }
    // No upstream listens, so the proxy itself must reply to an OPTIONS addressed to it.
    let proxy = Proxy::start(free_port());
    for transport in [Transport::Udp, Transport::Tcp] {
        let uac = Sipp::spawn(SippSpec::uac(
            "uac-options.xml",
            transport,
            proxy.sip_port,
            3,
            10,
        ));
        let stats = uac.finish(Duration::from_secs(20));
        let detail = format!(
            "{stats}\n{}\n--- proxy log ---\n{}",
            stats.diagnostics,
            proxy.log()
        );
        assert_eq!(
            stats.failed, 0,
            "OPTIONS over {transport:?} failed\n{detail}"
        );
        assert_eq!(
            stats.successful, 3,
            "OPTIONS over {transport:?} not answered\n{detail}"
        );
    }
}

#[test]
fn raw_options_answered_200() {
    // Needs no SIPp: a hand-written OPTIONS over UDP and over TCP.
    let proxy = Proxy::start(free_port());

    let udp = RawUdp::new(proxy.sip_port);
    let request = options_request(
        udp.local_addr(),
        proxy.sip_port,
        Transport::Udp,
        "raw-udp-1",
    );
    let reply = udp
        .exchange(request.as_bytes(), Duration::from_secs(3))
        .unwrap_or_else(|| panic!("no UDP reply to OPTIONS\n{}", proxy.log()));
    assert_eq!(
        status_code(&reply),
        Some(200),
        "UDP reply: {}",
        String::from_utf8_lossy(&reply)
    );

    let mut tcp = RawTcp::connect(proxy.sip_port);
    let request = options_request(
        tcp.local_addr(),
        proxy.sip_port,
        Transport::Tcp,
        "raw-tcp-1",
    );
    tcp.send(request.as_bytes())
        .expect("write OPTIONS over TCP");
    match tcp.read_message(Duration::from_secs(3)) {
        TcpReply::Message(reply) => assert_eq!(
            status_code(&reply),
            Some(200),
            "TCP reply: {}",
            String::from_utf8_lossy(&reply)
        ),
        other => panic!("no whole TCP reply to OPTIONS: {other:?}\n{}", proxy.log()),
    }
}
