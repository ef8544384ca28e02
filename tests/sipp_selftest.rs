//! Checks the SIPp scenarios and the harness without the proxy: each UAC talks straight
//! to its UAS. The self-test injection files make the UAC send the stamped headers itself,
//! so the UAS header checks can be seen passing on correct values and failing on wrong ones.

mod support;

use support::{free_port, parse_stat_csv, sipp_available, CallPlan, Transport};

fn run_direct(plan: &CallPlan) -> support::CallRun {
    let uas_port = free_port();
    plan.run(uas_port, uas_port)
}

#[test]
fn valid_stamps_pass_over_udp() {
    if !sipp_available() {
        return;
    }
    let plan = CallPlan::new("uac.xml", "uas-stamped.xml", Transport::Udp, 12, 50)
        .injection("stamped-valid.csv");
    run_direct(&plan).assert_all_succeeded();
}

#[test]
fn valid_stamps_pass_over_tcp() {
    if !sipp_available() {
        return;
    }
    let plan = CallPlan::new("uac.xml", "uas-stamped.xml", Transport::Tcp, 12, 50)
        .injection("stamped-valid.csv");
    run_direct(&plan).assert_all_succeeded();
}

#[test]
fn invalid_stamps_fail_every_call() {
    if !sipp_available() {
        return;
    }
    // One call per line of stamped-invalid.csv. Each line breaks exactly one check.
    let lines = std::fs::read_to_string(support::sipp_file("stamped-invalid.csv"))
        .expect("read stamped-invalid.csv");
    let calls = lines.lines().skip(1).filter(|l| !l.is_empty()).count() as u32;

    let plan = CallPlan::new("uac.xml", "uas-stamped.xml", Transport::Udp, calls, 50)
        .injection("stamped-invalid.csv");
    let run = run_direct(&plan);

    let detail = run.detail();
    assert_eq!(
        run.uac.successful, 0,
        "a call with a bad stamp passed\n{detail}"
    );
    assert_eq!(
        run.uac.failed,
        u64::from(calls),
        "UAC failure count\n{detail}"
    );
    assert_eq!(
        run.uas.successful, 0,
        "the UAS accepted a bad stamp\n{detail}"
    );
    assert_eq!(
        run.uas.failed,
        u64::from(calls),
        "UAS failure count\n{detail}"
    );
    assert_eq!(run.uac.exit_code, Some(1), "UAC exit code\n{detail}");
}

#[test]
fn unstamped_callers_fail_the_check() {
    if !sipp_available() {
        return;
    }
    // The caller files carry no stamped headers, so without a proxy every call must fail.
    let plan = CallPlan::new("uac.xml", "uas-stamped.xml", Transport::Udp, 16, 50)
        .injection("callers.csv");
    let run = run_direct(&plan);
    let detail = run.detail();
    assert_eq!(run.uac.successful, 0, "{detail}");
    assert_eq!(run.uac.failed, 16, "{detail}");
    assert_eq!(run.uas.failed, 16, "{detail}");
}

#[test]
fn upstream_bye_flow_direct() {
    if !sipp_available() {
        return;
    }
    for transport in [Transport::Udp, Transport::Tcp] {
        let plan = CallPlan::new("uac-bye.xml", "uas-bye.xml", transport, 6, 50)
            .injection("stamped-valid.csv");
        run_direct(&plan).assert_all_succeeded();
    }
}

#[test]
fn cancel_flow_direct() {
    if !sipp_available() {
        return;
    }
    for transport in [Transport::Udp, Transport::Tcp] {
        let plan = CallPlan::new("uac-cancel.xml", "uas-cancel.xml", transport, 6, 50)
            .injection("stamped-valid.csv");
        run_direct(&plan).assert_all_succeeded();
    }
}

#[test]
fn options_probe_direct() {
    if !sipp_available() {
        return;
    }
    for transport in [Transport::Udp, Transport::Tcp] {
        let plan = CallPlan::new("uac-options.xml", "uas-options.xml", transport, 3, 10);
        run_direct(&plan).assert_all_succeeded();
    }
}

#[test]
fn stat_csv_last_line_wins() {
    let text = "StartTime;SuccessfulCall(C);FailedCall(C)\n\
                t0;0;0\n\
                t1;7;2\n";
    let columns = parse_stat_csv(text).expect("parse");
    assert_eq!(columns["SuccessfulCall(C)"], "7");
    assert_eq!(columns["FailedCall(C)"], "2");
    assert!(parse_stat_csv("only;a;header\n").is_none());
}
