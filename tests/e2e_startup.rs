//! Start-up failures of the real `sipstamp` binary and the matching `check-config` problems,
//! on 127.0.0.1.

mod support;

use std::fs;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::{free_port, LOCALHOST};

/// Time the binary gets to fail and exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// Returns a config with SIP listeners on `sip_port`, the admin API on `admin_listen` and data
/// in `dir`.
fn config_text(dir: &std::path::Path, sip_port: u16, admin_listen: &str) -> String {
    format!(
        "data_dir = \"{data}\"\n\
         [sip]\n\
         udp = [\"{LOCALHOST}:{sip_port}\"]\n\
         tcp = [\"{LOCALHOST}:{sip_port}\"]\n\
         upstream = \"{LOCALHOST}:{upstream}\"\n\
         [admin]\n\
         listen = \"{admin_listen}\"\n",
        data = dir.join("data").display(),
        upstream = free_port(),
    )
}

#[test]
fn admin_bind_failure_names_address() {
    let dir = tempfile::tempdir().expect("create a temporary folder");
    // The test's own listener occupies the admin port, so only the admin listener fails.
    let occupied = TcpListener::bind((LOCALHOST, 0)).expect("bind a TCP port");
    let admin_addr = occupied.local_addr().expect("local address");
    let config = dir.path().join("sipstamp.toml");
    fs::write(
        &config,
        config_text(dir.path(), free_port(), &admin_addr.to_string()),
    )
    .expect("write the config");
    let log_path = dir.path().join("proxy.log");
    let log = fs::File::create(&log_path).expect("create proxy.log");

    let mut child = Command::new(env!("CARGO_BIN_EXE_sipstamp"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone the log handle"))
        .stderr(log)
        .spawn()
        .expect("start the sipstamp binary");
    let deadline = Instant::now() + EXIT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll sipstamp") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        sleep(Duration::from_millis(50));
    };
    let text = fs::read_to_string(&log_path).unwrap_or_default();

    let status =
        status.unwrap_or_else(|| panic!("sipstamp still running after the bind failure:\n{text}"));
    assert!(!status.success(), "sipstamp exited with success:\n{text}");
    let expected = format!("cannot bind admin listener on {admin_addr}: Address already in use");
    assert!(
        text.contains(&expected),
        "no {expected:?} in the log:\n{text}"
    );
    drop(occupied);
}

#[test]
fn check_config_reports_admin_on_sip_tcp() {
    let dir = tempfile::tempdir().expect("create a temporary folder");
    let sip_port = free_port();
    let cases = [
        format!("{LOCALHOST}:{sip_port}"),
        format!("0.0.0.0:{sip_port}"),
    ];
    for admin_listen in cases {
        let config = dir.path().join("sipstamp.toml");
        fs::write(&config, config_text(dir.path(), sip_port, &admin_listen))
            .expect("write the config");
        let output = Command::new(env!("CARGO_BIN_EXE_sipstamp"))
            .arg("check-config")
            .arg(&config)
            .output()
            .expect("run sipstamp check-config");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{admin_listen}: accepted");
        assert!(
            stderr.contains(&format!(
                "admin.listen: overlaps the SIP TCP listener {LOCALHOST}:{sip_port}"
            )),
            "{admin_listen}: {stderr}"
        );
    }
}
