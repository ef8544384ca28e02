//! The session store through the real binary: returning callers, a crash with SIGKILL, parallel
//! calls of one caller, conversation records, key rotation, a Redis store and a store that is
//! down. INVITEs are read by a hand-written UDP upstream, and the store through the admin
//! API. All sockets and processes are on 127.0.0.1.

mod support;

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::http::{request, Response};
use support::{
    free_port, header_values, invite_request, sipp_available, Proxy, RawUdp, Sipp, SippSpec,
    Transport,
};

const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// Configuration that trusts identity headers from 127.0.0.1, where the test callers are.
const TRUSTED_TRUNK: &str = "[[trunks]]\n\
id = \"loopback\"\n\
trusted_cidrs = [\"127.0.0.1/32\"]\n";

/// The stamped headers of one forwarded INVITE that these tests compare.
#[derive(Debug, Clone)]
struct Stamps {
    callid: String,
    sessionid: String,
    conversationid: String,
    returning: String,
    assurance: String,
    anonymous: String,
}

/// A proxy with a hand-written upstream and caller socket.
struct Rig {
    proxy: Proxy,
    upstream: RawUdp,
    caller: RawUdp,
}

impl Rig {
    fn start(extra_toml: &str) -> Rig {
        let upstream_port = free_port();
        let proxy = Proxy::start_with(upstream_port, extra_toml);
        let upstream = RawUdp::bound(upstream_port, proxy.sip_port);
        let caller = RawUdp::new(proxy.sip_port);
        Rig {
            proxy,
            upstream,
            caller,
        }
    }

    /// Sends an INVITE from `number` and returns the stamps of the copy the upstream gets.
    /// `trusted` adds a P-Asserted-Identity header, `privacy` a `Privacy: id` header.
    fn call(&self, number: &str, call_id: &str, trusted: bool, privacy: bool) -> Stamps {
        self.send_invite(number, call_id, trusted, privacy);
        self.receive_invite(call_id)
    }

    fn send_invite(&self, number: &str, call_id: &str, trusted: bool, privacy: bool) {
        let mut extra = String::new();
        if trusted {
            extra.push_str(&format!(
                "P-Asserted-Identity: <sip:{number}@edge.test>\r\n"
            ));
        }
        if privacy {
            extra.push_str("Privacy: id\r\n");
        }
        let from = format!("sip:{number}@edge.test");
        let invite = invite_request(
            self.caller.local_addr(),
            self.proxy.sip_port,
            &from,
            &extra,
            call_id,
        );
        self.caller.send(invite.as_bytes());
    }

    fn receive_invite(&self, call_id: &str) -> Stamps {
        let forwarded = self
            .upstream
            .recv_request("INVITE", call_id, FORWARD_TIMEOUT)
            .unwrap_or_else(|| panic!("INVITE {call_id} was not forwarded\n{}", self.proxy.log()));
        stamps_of(&forwarded, call_id)
    }

    /// Returns the stamps of the INVITEs with these Call-IDs, in the order given, whatever
    /// order they arrive in.
    fn receive_invites(&self, call_ids: &[String]) -> Vec<Stamps> {
        let mut received = std::collections::HashMap::new();
        let deadline = Instant::now() + FORWARD_TIMEOUT;
        while received.len() < call_ids.len() {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            let Some(message) = self.upstream.recv(remaining) else {
                break;
            };
            if !message.starts_with(b"INVITE ") {
                continue;
            }
            let call_id = header_values(&message, "Call-ID").pop().unwrap_or_default();
            if call_ids.contains(&call_id) {
                let stamps = stamps_of(&message, &call_id);
                received.insert(call_id, stamps);
            }
        }
        call_ids
            .iter()
            .map(|call_id| {
                received.remove(call_id).unwrap_or_else(|| {
                    panic!("INVITE {call_id} was not forwarded\n{}", self.proxy.log())
                })
            })
            .collect()
    }

    fn admin(&self, method: &str, path: &str, body: Option<&str>) -> Response {
        let token = self.proxy.admin_token();
        request(self.proxy.admin_port, method, path, Some(&token), body)
    }

    /// Returns the session record, panicking unless the API returns 200.
    fn session(&self, sessionid: &str) -> serde_json::Value {
        let response = self.admin("GET", &format!("/v1/sessions/{sessionid}"), None);
        assert_eq!(
            response.status,
            200,
            "GET session {sessionid}: {response:?}\n{}",
            self.proxy.log()
        );
        response.json()
    }
}

/// Returns the stamps of a forwarded INVITE, asserting that each header appears once.
fn stamps_of(forwarded: &[u8], call_id: &str) -> Stamps {
    let single = |name: &str| -> String {
        let values = header_values(forwarded, name);
        assert_eq!(
            values.len(),
            1,
            "{name} in INVITE {call_id}: {values:?}\n{}",
            String::from_utf8_lossy(forwarded)
        );
        values[0].clone()
    };
    Stamps {
        callid: single("X-Callid"),
        sessionid: single("X-Sessionid"),
        conversationid: single("X-Conversationid"),
        returning: single("X-Returning-Caller"),
        assurance: single("X-Identity-Assurance"),
        anonymous: single("X-Anonymous"),
    }
}

fn call_count(session: &serde_json::Value) -> u64 {
    session["session"]["call_count"]
        .as_u64()
        .unwrap_or_else(|| panic!("no call_count in {session}"))
}

#[test]
fn returning_caller_on_trusted_trunk() {
    let rig = Rig::start(TRUSTED_TRUNK);
    let number = "+493055508001";

    let first = rig.call(number, "ret-trusted-1", true, false);
    let second = rig.call(number, "ret-trusted-2", true, false);

    assert!(
        first.assurance == "high" || first.assurance == "medium",
        "{first:?}"
    );
    assert_eq!(first.returning, "false", "first call: {first:?}");
    assert_eq!(second.returning, "true", "second call: {second:?}");
    assert_eq!(first.sessionid, second.sessionid);
    assert_eq!(call_count(&rig.session(&first.sessionid)), 2);
}

#[test]
fn untrusted_from_never_returning() {
    let rig = Rig::start("");
    let number = "+493055508002";

    let calls: Vec<Stamps> = (0..3)
        .map(|i| rig.call(number, &format!("ret-untrusted-{i}"), false, false))
        .collect();

    for stamps in &calls {
        assert_eq!(stamps.assurance, "low", "{stamps:?}");
        assert_eq!(stamps.returning, "false", "{stamps:?}");
    }
    // The session still counts the calls, but the stamp withholds recognition.
    assert_eq!(call_count(&rig.session(&calls[0].sessionid)), 3);
}

#[test]
fn anonymous_calls_create_no_session() {
    let rig = Rig::start(TRUSTED_TRUNK);
    let number = "+493055508003";

    for i in 0..2 {
        let stamps = rig.call(number, &format!("anon-{i}"), true, true);
        assert_eq!(stamps.anonymous, "true", "{stamps:?}");
        assert_eq!(stamps.returning, "false", "{stamps:?}");
        assert!(stamps.sessionid.starts_with("an"), "{stamps:?}");
        let response = rig.admin("GET", &format!("/v1/sessions/{}", stamps.sessionid), None);
        assert_eq!(response.status, 404, "{response:?}");
    }
}

#[test]
fn sessions_survive_kill_9() {
    let mut rig = Rig::start(TRUSTED_TRUNK);
    let numbers: Vec<String> = (0..5).map(|i| format!("+49305550810{i}")).collect();

    let mut sessionids = Vec::new();
    for (i, number) in numbers.iter().enumerate() {
        let stamps = rig.call(number, &format!("crash-{i}"), true, false);
        let body = format!(r#"{{"value": "v{i}", "lifetime": "user"}}"#);
        let path = format!("/v1/sessions/{}/variables/note", stamps.sessionid);
        let put = rig.admin("PUT", &path, Some(&body));
        assert_eq!(put.status, 200, "PUT {path}: {put:?}");
        sessionids.push(stamps.sessionid);
    }

    rig.proxy.kill_9();
    rig.proxy.restart();

    for (i, sessionid) in sessionids.iter().enumerate() {
        let session = rig.session(sessionid);
        assert_eq!(call_count(&session), 1, "{session}");
        let variables = session["variables"].as_array().expect("variables array");
        assert_eq!(variables.len(), 1, "{session}");
        assert_eq!(variables[0]["name"], "note", "{session}");
        assert_eq!(variables[0]["value"], format!("v{i}"), "{session}");
    }
    let again = rig.call(&numbers[0], "crash-after", true, false);
    assert_eq!(again.sessionid, sessionids[0]);
    assert_eq!(again.returning, "true", "{again:?}");
}

#[test]
fn parallel_calls_share_one_session() {
    const CALLS: usize = 10;
    let rig = Rig::start(TRUSTED_TRUNK);
    let number = "+493055508200";

    let call_ids: Vec<String> = (0..CALLS).map(|i| format!("parallel-{i}")).collect();
    for call_id in &call_ids {
        rig.send_invite(number, call_id, true, false);
    }
    let calls = rig.receive_invites(&call_ids);

    let sessionid = &calls[0].sessionid;
    for stamps in &calls {
        assert_eq!(&stamps.sessionid, sessionid, "{stamps:?}");
    }
    let mut callids: Vec<&str> = calls.iter().map(|s| s.callid.as_str()).collect();
    callids.sort_unstable();
    callids.dedup();
    assert_eq!(callids.len(), CALLS, "callids repeat: {calls:?}");
    let mut conversations: Vec<&str> = calls.iter().map(|s| s.conversationid.as_str()).collect();
    conversations.sort_unstable();
    conversations.dedup();
    assert_eq!(
        conversations.len(),
        CALLS,
        "conversationids repeat: {calls:?}"
    );

    let first_calls = calls.iter().filter(|s| s.returning == "false").count();
    assert_eq!(
        first_calls, 1,
        "exactly one call creates the session: {calls:?}"
    );
    assert_eq!(call_count(&rig.session(sessionid)), CALLS as u64);
}

/// Returns the values of header `name` in every INVITE of a SIPp `-trace_msg` file.
fn traced_invite_headers(messages: &str, name: &str) -> Vec<String> {
    messages
        .split("INVITE sip:")
        .skip(1)
        .flat_map(|message| {
            let text = format!("INVITE sip:{message}");
            header_values(text.as_bytes(), name)
        })
        .collect()
}

#[test]
fn conversation_record_of_a_sipp_call() {
    if !sipp_available() {
        return;
    }
    let uas_port = free_port();
    let proxy = Proxy::start_with(uas_port, TRUSTED_TRUNK);
    let trace = tempfile::tempdir().expect("temporary folder");
    let messages_path = trace.path().join("uas-messages.log");

    let mut uas_spec = SippSpec::uas("uas-stamped.xml", Transport::Udp, uas_port, 1);
    uas_spec.extra_args = vec![
        "-trace_msg".into(),
        "-message_file".into(),
        messages_path.display().to_string(),
    ];
    let mut uas = Sipp::spawn(uas_spec);
    uas.wait_listening();
    let started_ms = unix_ms();
    let uac = Sipp::spawn(
        SippSpec::uac("uac.xml", Transport::Udp, proxy.sip_port, 1, 1).injection("callers.csv"),
    );
    let uac_stats = uac.finish(Duration::from_secs(30));
    let uas_stats = uas.finish(Duration::from_secs(35));
    assert_eq!(
        uac_stats.successful, 1,
        "{uac_stats}\n{}",
        uac_stats.diagnostics
    );
    assert_eq!(
        uas_stats.successful, 1,
        "{uas_stats}\n{}",
        uas_stats.diagnostics
    );

    let messages = fs::read_to_string(&messages_path).expect("read the SIPp message trace");
    let conversationids = traced_invite_headers(&messages, "X-Conversationid");
    assert_eq!(conversationids.len(), 1, "{messages}");
    let path = format!("/v1/conversations/{}", conversationids[0]);
    let token = proxy.admin_token();

    // Conversation writes are queued off the call path, so the end may land a moment later.
    let deadline = Instant::now() + Duration::from_secs(5);
    let record = loop {
        let response = request(proxy.admin_port, "GET", &path, Some(&token), None);
        let ended = response.status == 200 && !response.json()["ended_at_ms"].is_null();
        if ended || Instant::now() >= deadline {
            assert_eq!(response.status, 200, "{response:?}\n{}", proxy.log());
            break response.json();
        }
        sleep(Duration::from_millis(50));
    };

    let started = record["started_at_ms"].as_u64().expect("started_at_ms");
    let answered = record["answered_at_ms"].as_u64().expect("answered_at_ms");
    let ended = record["ended_at_ms"].as_u64().expect("ended_at_ms");
    assert!(started + 1_000 >= started_ms, "{record}");
    assert!(started <= answered, "{record}");
    assert!(answered <= ended, "{record}");
    assert_eq!(record["final_status"], 200, "{record}");
    let sessionids = traced_invite_headers(&messages, "X-Sessionid");
    assert_eq!(record["sessionid"], sessionids[0].as_str(), "{record}");
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// Writes a 256-bit tenant key as hex, readable only by the owner.
fn write_key(path: &Path, byte: u8) {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, hex_repeat(byte)).expect("write a key file");
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod 600");
}

fn hex_repeat(byte: u8) -> String {
    format!("{byte:02x}").repeat(32)
}

#[test]
fn rotation_keeps_original_sessionid() {
    let keys = tempfile::tempdir().expect("temporary folder");
    let old_key = keys.path().join("k0.key");
    let new_key = keys.path().join("k1.key");
    write_key(&old_key, 0x11);
    write_key(&new_key, 0x22);
    let before = format!(
        "{TRUSTED_TRUNK}\n[[tenants]]\nname = \"default\"\nkey_id = \"k0\"\nkey_file = \"{}\"\n",
        old_key.display()
    );
    let mut rig = Rig::start(&before);
    let number = "+493055508300";

    let first = rig.call(number, "rotate-1", true, false);
    assert!(first.sessionid.starts_with("k0_"), "{first:?}");
    let put = rig.admin(
        "PUT",
        &format!("/v1/sessions/{}/variables/language", first.sessionid),
        Some(r#"{"value": "de", "lifetime": "user"}"#),
    );
    assert_eq!(put.status, 200, "{put:?}");

    // Rotate: k1 becomes the current key and k0 stays listed as retired.
    rig.proxy.kill_9();
    let config_path = rig.proxy.dir().join("sipstamp.toml");
    let config = fs::read_to_string(&config_path).expect("read the proxy config");
    let after = format!(
        "key_id = \"k1\"\nkey_file = \"{}\"\nprevious_keys = [{{ key_id = \"k0\", key_file = \"{}\" }}]\n",
        new_key.display(),
        old_key.display()
    );
    let old_lines = format!("key_id = \"k0\"\nkey_file = \"{}\"\n", old_key.display());
    assert!(config.contains(&old_lines), "{config}");
    fs::write(&config_path, config.replace(&old_lines, &after)).expect("write the config");
    rig.proxy.restart();

    let second = rig.call(number, "rotate-2", true, false);
    let third = rig.call(number, "rotate-3", true, false);
    assert_eq!(second.sessionid, first.sessionid, "{second:?}");
    assert_eq!(second.returning, "true", "{second:?}");
    assert_eq!(third.sessionid, first.sessionid, "{third:?}");
    assert_eq!(third.returning, "true", "{third:?}");

    let session = rig.session(&first.sessionid);
    assert_eq!(call_count(&session), 3, "{session}");
    assert_eq!(session["variables"][0]["value"], "de", "{session}");

    // The lookup API reports the current-key sessionid as an alias of the original.
    let lookup = rig.admin(
        "POST",
        "/v1/sessions/lookup",
        Some(&format!(
            r#"{{"instance": "default", "callerid": "{number}"}}"#
        )),
    );
    assert_eq!(lookup.status, 200, "{lookup:?}");
    let sessions = lookup.json()["sessions"].clone();
    let current = &sessions[0];
    assert!(
        current["sessionid"].as_str().unwrap().starts_with("k1_"),
        "{sessions}"
    );
    assert_eq!(current["alias_of"], first.sessionid.as_str(), "{sessions}");
    assert_eq!(current["exists"], false, "{sessions}");
    let retired = &sessions[1];
    assert_eq!(retired["sessionid"], first.sessionid.as_str(), "{sessions}");
    assert_eq!(retired["exists"], true, "{sessions}");
}

/// Returns a folder with key files for k0 and k1, and configuration in which k1 is the current
/// key and k0 a retired one, with the trusted loopback trunk.
fn rotated_config() -> (tempfile::TempDir, String) {
    let keys = tempfile::tempdir().expect("temporary folder");
    let old_key = keys.path().join("k0.key");
    let new_key = keys.path().join("k1.key");
    write_key(&old_key, 0x11);
    write_key(&new_key, 0x22);
    let config = format!(
        "{TRUSTED_TRUNK}\n[[tenants]]\nname = \"default\"\nkey_id = \"k1\"\nkey_file = \"{}\"\n\
         previous_keys = [{{ key_id = \"k0\", key_file = \"{}\" }}]\n",
        new_key.display(),
        old_key.display()
    );
    (keys, config)
}

#[test]
fn rotation_new_caller_gets_current_key() {
    let (_keys, config) = rotated_config();
    let rig = Rig::start(&config);
    let number = "+493055508301";

    let first = rig.call(number, "rotate-new-1", true, false);
    let second = rig.call(number, "rotate-new-2", true, false);
    assert!(first.sessionid.starts_with("k1_"), "{first:?}");
    assert_eq!(first.returning, "false", "{first:?}");
    assert_eq!(second.sessionid, first.sessionid, "{second:?}");
    assert_eq!(second.returning, "true", "{second:?}");
    assert_eq!(call_count(&rig.session(&first.sessionid)), 2);
}

/// Returns the `[store]` table for a single Redis node on 127.0.0.1:`port`.
fn redis_config(port: u16) -> String {
    format!(
        "[store]\nbackend = \"redis\"\nredis_urls = [\"redis://127.0.0.1:{port}/\"]\nop_budget_ms = 200\n"
    )
}

/// A redis-server on a free loopback port, killed when dropped.
struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts redis-server without persistence, or returns `None` after printing why when it
    /// is not installed. Panics when it is missing and `CI=true`.
    fn start() -> Option<RedisServer> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("find a free TCP port")
            .port();
        RedisServer::start_on(port)
    }

    /// Like [`RedisServer::start`], on 127.0.0.1:`port`.
    fn start_on(port: u16) -> Option<RedisServer> {
        let installed = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !installed {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("redis-server is not installed, and CI=true forbids skipping: install the Debian package redis-server");
            }
            eprintln!("skipping: redis-server is not installed (Debian package redis-server)");
            return None;
        }
        let dir = tempfile::tempdir().expect("temporary folder");
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let mut server = RedisServer {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("redis-server exited ({status}) before listening on port {port}");
            }
            assert!(
                Instant::now() < deadline,
                "redis-server is not listening on port {port} after 20 s"
            );
            sleep(Duration::from_millis(20));
        }
        Some(server)
    }

    fn config(&self) -> String {
        redis_config(self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn returning_caller_with_redis() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let rig = Rig::start(&format!("{}\n{TRUSTED_TRUNK}", redis.config()));
    let number = "+493055508400";

    let first = rig.call(number, "redis-1", true, false);
    let second = rig.call(number, "redis-2", true, false);

    assert_eq!(first.returning, "false", "{first:?}");
    assert_eq!(second.returning, "true", "{second:?}");
    assert_eq!(second.sessionid, first.sessionid);
    assert_eq!(call_count(&rig.session(&first.sessionid)), 2);
    let anonymous = rig.call(number, "redis-anon", true, true);
    assert_eq!(anonymous.returning, "false", "{anonymous:?}");
    let response = rig.admin(
        "GET",
        &format!("/v1/sessions/{}", anonymous.sessionid),
        None,
    );
    assert_eq!(response.status, 404, "{response:?}");
}

/// Returns the sum of every sample of metric `name` in a Prometheus text exposition.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn store_down_forwards_with_unknown() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let rig = Rig::start(&format!("{}\n{TRUSTED_TRUNK}", redis.config()));
    redis.stop();

    let mut calls = Vec::new();
    for i in 0..3 {
        let started = Instant::now();
        let stamps = rig.call("+493055508500", &format!("down-{i}"), true, false);
        calls.push((stamps, started.elapsed()));
    }
    for (stamps, elapsed) in &calls {
        assert_eq!(stamps.returning, "unknown", "{stamps:?}");
        assert!(stamps.sessionid.starts_with("k1_"), "{stamps:?}");
        // The op budget is 200 ms; the rest is slack for a loaded debug build.
        assert!(
            *elapsed < Duration::from_secs(2),
            "forwarded after {elapsed:?}"
        );
    }

    let metrics = request(rig.proxy.admin_port, "GET", "/metrics", None, None);
    assert_eq!(metrics.status, 200, "{metrics:?}");
    let errors = metric_sum(&metrics.body, "sipstamp_store_errors_total");
    assert!(
        errors >= 3.0,
        "sipstamp_store_errors_total is {errors}\n{}",
        metrics
            .body
            .lines()
            .filter(|l| l.contains("store_errors"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn redis_unreachable_at_start() {
    // Nothing listens on this port until the test starts redis-server on it.
    let port = free_port();
    let rig = Rig::start(&format!("{}\n{TRUSTED_TRUNK}", redis_config(port)));
    let number = "+493055508600";

    let down = rig.call(number, "late-0", true, false);
    assert_eq!(down.returning, "unknown", "{down:?}");
    let metrics = request(rig.proxy.admin_port, "GET", "/metrics", None, None);
    let errors = metric_sum(&metrics.body, "sipstamp_store_errors_total");
    assert!(errors >= 1.0, "sipstamp_store_errors_total is {errors}");
    let ready = request(rig.proxy.admin_port, "GET", "/readyz", None, None);
    assert_eq!(ready.status, 503, "{ready:?}");

    let Some(_redis) = RedisServer::start_on(port) else {
        return;
    };
    // The connection manager reconnects on a later operation; allow a few calls for that.
    let mut answers = Vec::new();
    for i in 1..=20 {
        let stamps = rig.call(number, &format!("late-{i}"), true, false);
        answers.push(stamps.returning.clone());
        if stamps.returning == "true" {
            break;
        }
        sleep(Duration::from_millis(100));
    }
    assert_eq!(
        answers.last().map(String::as_str),
        Some("true"),
        "answers after Redis started: {answers:?}\n{}",
        rig.proxy.log()
    );
    // The first call's failed session update is retried in the background, so the first
    // known answer may already be true.
    eprintln!("answers after Redis started: {answers:?}");
    let sessionid = &down.sessionid;
    assert!(call_count(&rig.session(sessionid)) >= 2);
}

/// Returns the median and the slowest time from sending an INVITE to its arrival upstream,
/// over `callers` first calls of distinct callers and then a second call of each.
fn forward_latencies(rig: &Rig, prefix: &str, callers: usize) -> (Duration, Duration) {
    let mut times = Vec::with_capacity(callers * 2);
    for round in 0..2 {
        for i in 0..callers {
            let number = format!("+4930555{:06}", 700_000 + i);
            let started = Instant::now();
            rig.call(&number, &format!("{prefix}-{round}-{i}"), true, false);
            times.push(started.elapsed());
        }
    }
    times.sort_unstable();
    (times[times.len() / 2], times[times.len() - 1])
}

/// Measures what the retired-key lookups add per call with the embedded store. Run with
/// `cargo test --test e2e_sessions rotation_lookup_cost -- --ignored --nocapture`.
#[test]
#[ignore = "measurement; prints numbers and checks nothing"]
fn rotation_lookup_cost() {
    const CALLERS: usize = 200;
    let (_keys, rotated) = rotated_config();

    let plain = Rig::start(TRUSTED_TRUNK);
    let (median, slowest) = forward_latencies(&plain, "plain", CALLERS);
    eprintln!("no retired key: median {median:?}, slowest {slowest:?}");
    drop(plain);

    let rotation = Rig::start(&rotated);
    let (median, slowest) = forward_latencies(&rotation, "rotated", CALLERS);
    eprintln!("one retired key: median {median:?}, slowest {slowest:?}");
}
