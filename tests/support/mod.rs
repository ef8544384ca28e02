//! End-to-end harness shared by the `tests/*.rs` files: runs the real `sipstamp` binary
//! between SIPp callers (UAC) and a SIPp upstream gateway (UAS), all on 127.0.0.1.
//!
//! Every process started here is a child of the test and is killed by its PID when its
//! handle is dropped, also when an assertion panics. Every wait has a deadline.
//!
//! Tests that need SIPp call [`sipp_available`] first. Without `sipp` on the PATH they
//! print a message and return early, except under `CI=true`, where they panic so that a
//! CI machine without SIPp cannot pass by skipping.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

pub mod http;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Loopback address of every socket in these tests.
pub const LOCALHOST: &str = "127.0.0.1";

/// Time the proxy and a SIPp UAS get to open their sockets.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Time a SIPp process gets to exit after SIGUSR1 before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// SIPp's wait for each expected message, in milliseconds.
const SIPP_RECV_TIMEOUT_MS: u64 = 5_000;

/// SIP transport of a run, as SIPp's `-t` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// SIPp's `-t` value: one socket for all calls.
    pub fn sipp_flag(self) -> &'static str {
        match self {
            Transport::Udp => "u1",
            Transport::Tcp => "t1",
        }
    }

    /// Returns the transport token of a Via header.
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}

/// Returns true when `sipp` can be started. Without it, prints why the test is skipped,
/// or panics when the environment variable `CI` is `true`.
pub fn sipp_available() -> bool {
    match Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => true,
        Err(err) if err.kind() == ErrorKind::NotFound => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("sipp not found on the PATH, and CI=true forbids skipping: install the Debian package sip-tester");
            }
            eprintln!(
                "skipping: sipp not found on the PATH (install the Debian package sip-tester)"
            );
            false
        }
        Err(err) => panic!("cannot start sipp -v: {err}"),
    }
}

/// Returns the path of a file in `tests/sipp/`.
pub fn sipp_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
}

/// Returns a port on 127.0.0.1 that is free for both UDP and TCP and that no other test
/// in this process has been given. Another process can still take it before it is bound.
pub fn free_port() -> u16 {
    static ISSUED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let issued = ISSUED.get_or_init(|| Mutex::new(HashSet::new()));
    for _ in 0..200 {
        let tcp = TcpListener::bind((LOCALHOST, 0)).expect("bind a TCP port on 127.0.0.1");
        let port = tcp.local_addr().expect("local address").port();
        if UdpSocket::bind((LOCALHOST, port)).is_err() {
            continue;
        }
        if issued.lock().expect("port set lock").insert(port) {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1 after 200 attempts");
}

/// Returns true when something listens on 127.0.0.1:`port` (or on 0.0.0.0:`port`) with
/// `transport`, read from /proc/net/udp or /proc/net/tcp.
pub fn is_listening(port: u16, transport: Transport) -> bool {
    let (table, state) = match transport {
        Transport::Udp => ("/proc/net/udp", "07"),
        Transport::Tcp => ("/proc/net/tcp", "0A"),
    };
    let Ok(text) = fs::read_to_string(table) else {
        return false;
    };
    let loopback = format!("0100007F:{port:04X}");
    let any = format!("00000000:{port:04X}");
    text.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() > 3 && (fields[1] == loopback || fields[1] == any) && fields[3] == state
    })
}

/// Sends `signal` (a name such as `TERM` or `USR1`) to one process, by its PID.
fn send_signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Waits up to `timeout` for `child` to exit.
fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(20)),
            _ => return None,
        }
    }
}

/// Stops a child: `signal` first, SIGKILL when it is still running after `grace`.
fn stop_child(child: &mut Child, signal: &str, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    send_signal(child.id(), signal);
    if let Some(status) = wait_with_timeout(child, grace) {
        return Some(status);
    }
    let _ = child.kill();
    child.wait().ok()
}

/// Returns the last `max` characters of a file, or a note when it cannot be read.
pub fn tail_of(path: &Path, max: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let start = text.len().saturating_sub(max);
            let start = (start..text.len())
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(text.len());
            text[start..].to_owned()
        }
        Err(err) => format!("({} not readable: {err})", path.display()),
    }
}

/// A running `sipstamp run --config FILE`, with its temporary config, data folder and log.
pub struct Proxy {
    child: Child,
    dir: TempDir,
    config_path: PathBuf,
    /// SIP port, the same number for UDP and TCP.
    pub sip_port: u16,
    /// Admin HTTP port.
    pub admin_port: u16,
    /// Where the proxy forwards new INVITEs.
    pub upstream_port: u16,
}

impl Proxy {
    /// Starts the proxy with UDP and TCP listeners on a free port, forwarding to
    /// 127.0.0.1:`upstream_port`, and waits until both listeners are open.
    pub fn start(upstream_port: u16) -> Proxy {
        Proxy::start_with(upstream_port, "")
    }

    /// Like [`Proxy::start`], with `extra_toml` appended to the generated config. It may add
    /// tables such as `[limits]`, but it must not repeat the keys written here.
    pub fn start_with(upstream_port: u16, extra_toml: &str) -> Proxy {
        Proxy::start_custom(upstream_port, extra_toml, &[], &[])
    }

    /// Like [`Proxy::start_with`], with environment variables `env` set for the process and
    /// `args` added after `run --config FILE`.
    pub fn start_custom(
        upstream_port: u16,
        extra_toml: &str,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Proxy {
        let dir = tempfile::Builder::new()
            .prefix("sipstamp-e2e-")
            .tempdir()
            .expect("create a temporary folder");
        let sip_port = free_port();
        let admin_port = free_port();

        let config_path = dir.path().join("sipstamp.toml");
        let config = base_config(dir.path(), sip_port, admin_port, upstream_port);
        fs::write(&config_path, format!("{config}{extra_toml}\n")).expect("write the proxy config");

        let child = spawn_proxy(&config_path, dir.path(), args, env);
        let mut proxy = Proxy {
            child,
            dir,
            config_path,
            sip_port,
            admin_port,
            upstream_port,
        };
        proxy.wait_listening();
        proxy
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let udp = is_listening(self.sip_port, Transport::Udp);
            let tcp = is_listening(self.sip_port, Transport::Tcp);
            if udp && tcp {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "sipstamp exited ({status}) before listening on {LOCALHOST}:{port} (UDP {udp}, TCP {tcp}).\nLog:\n{log}",
                    port = self.sip_port,
                    log = self.log(),
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "sipstamp is not listening on {LOCALHOST}:{port} after {START_TIMEOUT:?} (UDP {udp}, TCP {tcp}).\nLog:\n{log}",
                    port = self.sip_port,
                    log = self.log(),
                );
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// Kills the proxy with SIGKILL, as a crash would, and waits for it to exit.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the proxy again with the same config and data folder after it exited, and
    /// waits until it listens. The log file is appended to.
    pub fn restart(&mut self) {
        if self.is_running() {
            panic!("restart called while sipstamp {} still runs", self.pid());
        }
        self.child = spawn_proxy(&self.config_path, self.dir.path(), &[], &[]);
        self.wait_listening();
    }

    /// The proxy's data folder.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Returns the admin API bearer token the proxy created in its data folder.
    pub fn admin_token(&self) -> String {
        let path = self.data_dir().join("admin.token");
        fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
            .trim()
            .to_owned()
    }

    /// PID of the proxy process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Returns true while the proxy process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Returns the end of the proxy's stdout and stderr.
    pub fn log(&self) -> String {
        tail_of(&self.dir.path().join("proxy.log"), 8_000)
    }

    /// Folder holding the config, the data folder and the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Returns the whole proxy log: stdout and stderr.
    pub fn full_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default()
    }

    /// Rewrites the config file with the generated keys plus `extra_toml`, for a reload.
    pub fn rewrite_config(&self, extra_toml: &str) {
        let config = base_config(
            self.dir.path(),
            self.sip_port,
            self.admin_port,
            self.upstream_port,
        );
        fs::write(
            self.dir.path().join("sipstamp.toml"),
            format!("{config}{extra_toml}\n"),
        )
        .expect("rewrite the proxy config");
    }

    /// Sends `signal` (a name such as `TERM` or `HUP`) to the proxy.
    pub fn signal(&self, signal: &str) {
        send_signal(self.child.id(), signal);
    }

    /// Waits up to `timeout` for the proxy to exit and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_with_timeout(&mut self.child, timeout)
    }

    /// Waits up to `timeout` until the log contains `needle`, counting only what was
    /// written after the first `skip` bytes. Returns whether it appeared.
    pub fn wait_for_log(&self, needle: &str, skip: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.full_log();
            if log.get(skip..).is_some_and(|tail| tail.contains(needle)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// Sends `GET path` to the admin listener and returns the status code and body.
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        http_get(self.admin_port, path)
    }
}

/// Returns the config every test proxy starts with: listeners on `sip_port`, the admin API on
/// `admin_port`, the upstream on `upstream_port`, data and log level.
fn base_config(dir: &Path, sip_port: u16, admin_port: u16, upstream_port: u16) -> String {
    let data_dir = dir.join("data");
    format!(
        "data_dir = \"{data}\"\n\
         \n\
         [sip]\n\
         udp = [\"{LOCALHOST}:{sip_port}\"]\n\
         tcp = [\"{LOCALHOST}:{sip_port}\"]\n\
         upstream = \"{LOCALHOST}:{upstream_port}\"\n\
         upstream_transport = \"same\"\n\
         \n\
         [admin]\n\
         listen = \"{LOCALHOST}:{admin_port}\"\n\
         \n\
         [log]\n\
         level = \"info\"\n\
         \n",
        data = data_dir.display(),
    )
}

/// Sends one HTTP/1.1 GET to 127.0.0.1:`port` and returns the status code and body. Panics
/// when the server does not respond within 5 s.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(5),
    )
    .unwrap_or_else(|err| panic!("connect to the admin port {port}: {err}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set the read timeout");
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {LOCALHOST}:{port}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .expect("send the HTTP request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .unwrap_or_else(|err| panic!("read the response to GET {path}: {err}"));
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status line in the response to GET {path}: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Starts `sipstamp run --config config_path` in `dir`, appending its output to
/// `dir/proxy.log`.
fn spawn_proxy(config_path: &Path, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Child {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("proxy.log"))
        .expect("open proxy.log");
    Command::new(env!("CARGO_BIN_EXE_sipstamp"))
        .arg("run")
        .arg("--config")
        .arg(config_path)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone the log handle"))
        .stderr(log)
        .spawn()
        .expect("start the sipstamp binary")
}

impl Drop for Proxy {
    /// Stops the proxy with SIGTERM. Calls still active would make it drain for the configured
    /// timeout, so after 1 s a second SIGTERM makes it exit at once.
    fn drop(&mut self) {
        send_signal(self.child.id(), "TERM");
        if wait_with_timeout(&mut self.child, Duration::from_secs(1)).is_some() {
            return;
        }
        stop_child(&mut self.child, "TERM", Duration::from_secs(4));
    }
}

/// One SIPp process to start. Build it with [`SippSpec::uac`] or [`SippSpec::uas`].
#[derive(Debug, Clone)]
pub struct SippSpec {
    /// Scenario file name in `tests/sipp/`.
    pub scenario: String,
    pub transport: Transport,
    /// Port SIPp binds (`-p`).
    pub local_port: u16,
    /// Port of the peer a UAC sends to; `None` for a UAS.
    pub remote_port: Option<u16>,
    /// Calls after which SIPp exits (`-m`).
    pub calls: u32,
    /// New calls per second for a UAC (`-r`).
    pub rate: u32,
    /// Injection file name in `tests/sipp/` (`-inf`).
    pub injection: Option<String>,
    /// More command-line arguments, such as `-trace_msg`.
    pub extra_args: Vec<String>,
}

impl SippSpec {
    /// A UAC that places `calls` calls at `rate` per second to 127.0.0.1:`remote_port`.
    pub fn uac(
        scenario: &str,
        transport: Transport,
        remote_port: u16,
        calls: u32,
        rate: u32,
    ) -> SippSpec {
        SippSpec {
            scenario: scenario.to_owned(),
            transport,
            local_port: free_port(),
            remote_port: Some(remote_port),
            calls,
            rate,
            injection: None,
            extra_args: Vec::new(),
        }
    }

    /// A UAS on 127.0.0.1:`local_port` that exits after `calls` calls.
    pub fn uas(scenario: &str, transport: Transport, local_port: u16, calls: u32) -> SippSpec {
        SippSpec {
            scenario: scenario.to_owned(),
            transport,
            local_port,
            remote_port: None,
            calls,
            rate: 0,
            injection: None,
            extra_args: Vec::new(),
        }
    }

    /// Sets the injection file, a name in `tests/sipp/`.
    pub fn injection(mut self, file: &str) -> SippSpec {
        self.injection = Some(file.to_owned());
        self
    }

    fn role(&self) -> &'static str {
        if self.remote_port.is_some() {
            "uac"
        } else {
            "uas"
        }
    }
}

/// A running SIPp process. It writes its files to a temporary folder and is killed when
/// dropped.
pub struct Sipp {
    spec: SippSpec,
    child: Child,
    dir: TempDir,
    started: Instant,
}

/// Final counters of one SIPp run.
#[derive(Debug, Clone)]
pub struct SippStats {
    /// `uac` or `uas`, and the scenario file.
    pub label: String,
    pub successful: u64,
    pub failed: u64,
    pub retransmissions: u64,
    /// SIPp's exit code: 0 when every call succeeded, 1 when one failed, 97 or 99 when it
    /// stopped on a command or without calls, 255 on a fatal error.
    pub exit_code: Option<i32>,
    /// True when SIPp had to be stopped because it ran past its deadline.
    pub timed_out: bool,
    /// The end of SIPp's error log and screen output, for failure messages.
    pub diagnostics: String,
}

impl fmt::Display for SippStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: successful={} failed={} retransmissions={} exit_code={:?} timed_out={}",
            self.label,
            self.successful,
            self.failed,
            self.retransmissions,
            self.exit_code,
            self.timed_out
        )
    }
}

impl Sipp {
    /// Starts SIPp in the foreground as a child process, in its own temporary folder.
    pub fn spawn(spec: SippSpec) -> Sipp {
        let dir = tempfile::Builder::new()
            .prefix(&format!("sipstamp-sipp-{}-", spec.role()))
            .tempdir()
            .expect("create a temporary folder");
        let mut command = Command::new("sipp");
        if let Some(remote) = spec.remote_port {
            command.arg(format!("{LOCALHOST}:{remote}"));
        }
        command
            .arg("-sf")
            .arg(sipp_file(&spec.scenario))
            .args(["-i", LOCALHOST])
            .arg("-p")
            .arg(spec.local_port.to_string())
            .args(["-t", spec.transport.sipp_flag()])
            .arg("-m")
            .arg(spec.calls.to_string())
            .arg("-recv_timeout")
            .arg(SIPP_RECV_TIMEOUT_MS.to_string())
            .args(["-nostdin", "-trace_stat", "-fd", "1", "-trace_err"])
            .arg("-stf")
            .arg(dir.path().join("stat.csv"))
            .arg("-error_file")
            .arg(dir.path().join("errors.log"));
        if spec.remote_port.is_some() {
            command.arg("-r").arg(spec.rate.max(1).to_string());
        }
        if let Some(file) = &spec.injection {
            command.arg("-inf").arg(sipp_file(file));
        }
        command.args(&spec.extra_args);
        let out = fs::File::create(dir.path().join("screen.log")).expect("create screen.log");
        let child = command
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone the screen log handle"))
            .stderr(out)
            .spawn()
            .expect("start sipp");
        Sipp {
            spec,
            child,
            dir,
            started: Instant::now(),
        }
    }

    /// Waits until the SIPp socket is open, as a UAS must be before calls arrive.
    pub fn wait_listening(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while !is_listening(self.spec.local_port, self.spec.transport) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "sipp {} exited ({status}) before listening on port {}:\n{}",
                    self.spec.scenario,
                    self.spec.local_port,
                    self.diagnostics()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "sipp {} is not listening on port {} after {START_TIMEOUT:?}:\n{}",
                    self.spec.scenario,
                    self.spec.local_port,
                    self.diagnostics()
                );
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// Waits for SIPp to exit on its own until `timeout` after its start. Past that it is
    /// sent SIGUSR1, which makes SIPp stop and write its final statistics, and then killed.
    pub fn finish(mut self, timeout: Duration) -> SippStats {
        let remaining = timeout.saturating_sub(self.started.elapsed());
        let mut timed_out = false;
        let status = match wait_with_timeout(&mut self.child, remaining) {
            Some(status) => Some(status),
            None => {
                timed_out = true;
                stop_child(&mut self.child, "USR1", STOP_GRACE)
            }
        };
        self.stats(status.and_then(|s| s.code()), timed_out)
    }

    fn stats(&self, exit_code: Option<i32>, timed_out: bool) -> SippStats {
        let stat_path = self.dir.path().join("stat.csv");
        let columns = fs::read_to_string(&stat_path)
            .ok()
            .and_then(|text| parse_stat_csv(&text))
            .unwrap_or_default();
        let counter = |name: &str| -> u64 {
            columns
                .get(name)
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        SippStats {
            label: format!("{} {}", self.spec.role(), self.spec.scenario),
            successful: counter("SuccessfulCall(C)"),
            failed: counter("FailedCall(C)"),
            retransmissions: counter("Retransmissions(C)"),
            exit_code,
            timed_out,
            diagnostics: self.diagnostics(),
        }
    }

    fn diagnostics(&self) -> String {
        format!(
            "--- {} errors.log ---\n{}\n--- {} screen ---\n{}",
            self.spec.scenario,
            tail_of(&self.dir.path().join("errors.log"), 3_000),
            self.spec.scenario,
            tail_of(&self.dir.path().join("screen.log"), 2_500),
        )
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        stop_child(&mut self.child, "KILL", Duration::from_secs(1));
    }
}

/// Parses SIPp's `-trace_stat` file: a header line of `;`-separated column names, then one
/// line per dump. Returns the columns of the last line, which contains the final counters.
pub fn parse_stat_csv(text: &str) -> Option<HashMap<String, String>> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next()?.split(';').collect();
    let last = lines.next_back()?;
    Some(
        header
            .iter()
            .zip(last.split(';'))
            .map(|(name, value)| (name.trim().to_owned(), value.to_owned()))
            .collect(),
    )
}

/// Counters of one run of calls: the caller side and the upstream side.
#[derive(Debug)]
pub struct CallRun {
    pub calls: u32,
    pub uac: SippStats,
    pub uas: SippStats,
}

impl CallRun {
    /// Asserts that every call succeeded on both sides and none failed.
    pub fn assert_all_succeeded(&self) {
        let detail = self.detail();
        assert_eq!(self.uac.failed, 0, "UAC counted failed calls\n{detail}");
        assert_eq!(self.uas.failed, 0, "UAS counted failed calls\n{detail}");
        assert_eq!(
            self.uac.successful,
            u64::from(self.calls),
            "UAC did not complete every call\n{detail}"
        );
        assert_eq!(
            self.uas.successful,
            u64::from(self.calls),
            "UAS did not complete every call\n{detail}"
        );
        assert!(!self.uac.timed_out, "UAC ran past its deadline\n{detail}");
        assert!(!self.uas.timed_out, "UAS ran past its deadline\n{detail}");
    }

    /// Returns both sides' counters and diagnostics, for assertion messages.
    pub fn detail(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}",
            self.uac, self.uas, self.uac.diagnostics, self.uas.diagnostics
        )
    }
}

/// One run of calls: a UAS scenario on `uas_port` and a UAC scenario sending `calls` calls
/// at `rate` per second to `target_port` (the proxy, or the UAS itself for a self-test).
#[derive(Debug, Clone)]
pub struct CallPlan {
    pub uac_scenario: String,
    pub uas_scenario: String,
    pub injection: Option<String>,
    pub transport: Transport,
    pub calls: u32,
    pub rate: u32,
}

impl CallPlan {
    /// Creates a plan with no injection file.
    pub fn new(
        uac_scenario: &str,
        uas_scenario: &str,
        transport: Transport,
        calls: u32,
        rate: u32,
    ) -> CallPlan {
        CallPlan {
            uac_scenario: uac_scenario.to_owned(),
            uas_scenario: uas_scenario.to_owned(),
            injection: None,
            transport,
            calls,
            rate,
        }
    }

    /// Sets the UAC's injection file, a name in `tests/sipp/`.
    pub fn injection(mut self, file: &str) -> CallPlan {
        self.injection = Some(file.to_owned());
        self
    }

    /// Starts the UAS on `uas_port`, runs the UAC against `target_port` and collects both
    /// sides' final counters. The UAC gets the run's expected length plus 30 s. The UAS then
    /// gets 5 s more to finish its last calls before it is stopped.
    pub fn run(&self, uas_port: u16, target_port: u16) -> CallRun {
        let mut uas = Sipp::spawn(SippSpec::uas(
            &self.uas_scenario,
            self.transport,
            uas_port,
            self.calls,
        ));
        uas.wait_listening();

        let mut uac_spec = SippSpec::uac(
            &self.uac_scenario,
            self.transport,
            target_port,
            self.calls,
            self.rate,
        );
        uac_spec.injection = self.injection.clone();
        let uac = Sipp::spawn(uac_spec);

        let expected = Duration::from_secs(u64::from(self.calls / self.rate.max(1)));
        let uac_deadline = expected + Duration::from_secs(30);
        let uac_stats = uac.finish(uac_deadline);
        let uas_stats = uas.finish(uac_deadline + Duration::from_secs(5));
        // Shown by `cargo test -- --nocapture`.
        eprintln!("{uac_stats}\n{uas_stats}");
        CallRun {
            calls: self.calls,
            uac: uac_stats,
            uas: uas_stats,
        }
    }
}

/// A UDP socket on 127.0.0.1 for sending hand-written SIP to the proxy.
pub struct RawUdp {
    socket: UdpSocket,
    target: SocketAddr,
}

impl RawUdp {
    /// Binds a free local port and aims at 127.0.0.1:`port`.
    pub fn new(port: u16) -> RawUdp {
        let socket = UdpSocket::bind((LOCALHOST, 0)).expect("bind a UDP socket on 127.0.0.1");
        let target = SocketAddr::from(([127, 0, 0, 1], port));
        RawUdp { socket, target }
    }

    /// Binds 127.0.0.1:`local_port`, for a hand-written upstream that receives what the
    /// proxy forwards. Replies go to 127.0.0.1:`target_port`.
    pub fn bound(local_port: u16, target_port: u16) -> RawUdp {
        let socket = UdpSocket::bind((LOCALHOST, local_port))
            .unwrap_or_else(|err| panic!("bind UDP 127.0.0.1:{local_port}: {err}"));
        let target = SocketAddr::from(([127, 0, 0, 1], target_port));
        RawUdp { socket, target }
    }

    /// Returns the local address, for the Via header of a hand-written request.
    pub fn local_addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("local address")
    }

    /// Returns the first request with `method` and `call_id` that arrives within `timeout`,
    /// skipping other datagrams such as retransmissions of earlier calls.
    pub fn recv_request(&self, method: &str, call_id: &str, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.checked_duration_since(Instant::now())?;
            if remaining.is_zero() {
                return None;
            }
            let message = self.recv(remaining)?;
            let is_method = message.starts_with(format!("{method} ").as_bytes());
            let ids = header_values(&message, "Call-ID");
            if is_method && ids.iter().any(|id| id == call_id) {
                return Some(message);
            }
        }
    }

    /// Sends one datagram.
    pub fn send(&self, bytes: &[u8]) {
        self.socket
            .send_to(bytes, self.target)
            .expect("send a UDP datagram to the proxy");
    }

    /// Returns the next datagram that arrives within `timeout`, or `None`.
    pub fn recv(&self, timeout: Duration) -> Option<Vec<u8>> {
        self.socket
            .set_read_timeout(Some(timeout))
            .expect("set the read timeout");
        let mut buffer = vec![0u8; 65_535];
        match self.socket.recv_from(&mut buffer) {
            Ok((len, _)) => {
                buffer.truncate(len);
                Some(buffer)
            }
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            Err(err) => panic!("receive from the proxy over UDP failed: {err}"),
        }
    }

    /// Sends `bytes` and returns the first reply within `timeout`, or `None`.
    pub fn exchange(&self, bytes: &[u8], timeout: Duration) -> Option<Vec<u8>> {
        self.send(bytes);
        self.recv(timeout)
    }
}

/// A TCP connection to the proxy for hand-written SIP.
pub struct RawTcp {
    stream: TcpStream,
    pending: Vec<u8>,
}

/// What a read from a [`RawTcp`] connection produced.
#[derive(Debug, PartialEq, Eq)]
pub enum TcpReply {
    /// One whole SIP message, framed by Content-Length.
    Message(Vec<u8>),
    /// The proxy closed the connection; the bytes are what arrived before.
    Closed(Vec<u8>),
    /// Nothing whole arrived within the timeout; the bytes are what arrived.
    TimedOut(Vec<u8>),
}

impl RawTcp {
    /// Connects to 127.0.0.1:`port`.
    pub fn connect(port: u16) -> RawTcp {
        let stream = TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(5),
        )
        .expect("connect to the proxy over TCP");
        RawTcp {
            stream,
            pending: Vec::new(),
        }
    }

    /// Returns the local address, for the Via header of a hand-written request.
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local address")
    }

    /// Writes `bytes` to the connection. A write error is returned, not raised, because
    /// the proxy may close a connection that carried bad input.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Reads until one whole SIP message has arrived, the connection closes, or `timeout`
    /// passes.
    pub fn read_message(&mut self, timeout: Duration) -> TcpReply {
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; 8_192];
        loop {
            if let Some(len) = framed_length(&self.pending) {
                let rest = self.pending.split_off(len);
                let message = std::mem::replace(&mut self.pending, rest);
                return TcpReply::Message(message);
            }
            let now = Instant::now();
            if now >= deadline {
                return TcpReply::TimedOut(std::mem::take(&mut self.pending));
            }
            self.stream
                .set_read_timeout(Some(deadline - now))
                .expect("set the read timeout");
            match self.stream.read(&mut chunk) {
                Ok(0) => return TcpReply::Closed(std::mem::take(&mut self.pending)),
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return TcpReply::TimedOut(std::mem::take(&mut self.pending));
                }
                Err(err) if err.kind() == ErrorKind::ConnectionReset => {
                    return TcpReply::Closed(std::mem::take(&mut self.pending));
                }
                Err(err) => panic!("read from the proxy over TCP failed: {err}"),
            }
        }
    }
}

/// Returns the length of the first whole message in `buffer`: its head up to the blank
/// line plus Content-Length bytes of body (0 when the header is absent). Leading CRLF
/// keep-alives are part of the count.
fn framed_length(buffer: &[u8]) -> Option<usize> {
    let head_end = buffer.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buffer[..head_end]);
    let body_len = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            let name = name.trim();
            (name.eq_ignore_ascii_case("content-length") || name == "l")
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    let total = head_end + body_len;
    (buffer.len() >= total).then_some(total)
}

/// Returns the values of every header called `name` (compared without regard to letter
/// case) in the head of `message`, trimmed. Folded continuation lines are not joined.
pub fn header_values(message: &[u8], name: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(message);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    head.lines()
        .skip(1)
        .filter_map(|line| {
            let (header, value) = line.split_once(':')?;
            header
                .trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
        .collect()
}

/// Returns an INVITE from `from_uri` to the proxy on `proxy_port`, sent from `local` over
/// UDP. `extra_headers` are whole header lines, each ending in CRLF, or empty.
pub fn invite_request(
    local: SocketAddr,
    proxy_port: u16,
    from_uri: &str,
    extra_headers: &str,
    call_id: &str,
) -> String {
    format!(
        "INVITE sip:service@{LOCALHOST}:{proxy_port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-raw-{call_id}\r\n\
         From: <{from_uri}>;tag=raw-{call_id}\r\n\
         To: <sip:service@{LOCALHOST}:{proxy_port}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:caller@{local}>\r\n\
         Max-Forwards: 70\r\n\
         {extra_headers}\
         Content-Length: 0\r\n\
         \r\n"
    )
}

/// Returns the status code of a SIP response, or `None` when `message` is no response.
pub fn status_code(message: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(message).ok()?;
    let rest = text.strip_prefix("SIP/2.0 ")?;
    rest.get(..3)?.parse().ok()
}

/// Returns an OPTIONS request to the proxy on `proxy_port` whose Via names `local`, as a
/// probe that a working proxy must reply to with 200.
pub fn options_request(
    local: SocketAddr,
    proxy_port: u16,
    transport: Transport,
    call_id: &str,
) -> String {
    let via = transport.via_token();
    format!(
        "OPTIONS sip:{LOCALHOST}:{proxy_port} SIP/2.0\r\n\
         Via: SIP/2.0/{via} {local};branch=z9hG4bK-raw-{call_id}\r\n\
         From: <sip:probe@{local}>;tag=raw-{call_id}\r\n\
         To: <sip:{LOCALHOST}:{proxy_port}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\
         \r\n"
    )
}
