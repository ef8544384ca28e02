//! Real `redis-server` processes for tests, on loopback ports, killed when dropped.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server or cluster may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Returns false, after printing why, when redis-server is missing locally. Panics when it is
/// missing and `CI=true`, so CI cannot pass without running these tests.
pub fn available() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("redis-server is not installed, and CI=true requires the Redis tests to run");
    }
    println!("skipping Redis tests: redis-server is not installed");
    false
}

/// Running redis-server processes; each is killed and reaped on drop.
pub struct Servers {
    children: Vec<Child>,
    pub ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Servers {
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}/"))
            .collect()
    }

    /// Returns the keys on every node that match a glob `pattern`.
    pub fn keys_matching(&self, pattern: &str) -> Vec<String> {
        let mut keys = Vec::new();
        for &port in &self.ports {
            let output = cli(port, &["--scan", "--pattern", pattern]).expect("redis-cli runs");
            keys.extend(output.lines().map(str::to_owned));
        }
        keys
    }

    /// Returns whether any node has a key whose value contains `needle`, checking every
    /// string, hash and set.
    pub fn any_value_contains(&self, needle: &str) -> bool {
        for &port in &self.ports {
            let keys = cli(port, &["--scan"]).expect("redis-cli runs");
            for key in keys.lines() {
                let kind = cli(port, &["type", key]).unwrap_or_default();
                let dump = match kind.trim() {
                    "string" => cli(port, &["get", key]),
                    "hash" => cli(port, &["hgetall", key]),
                    "set" => cli(port, &["smembers", key]),
                    _ => None,
                };
                if dump.is_some_and(|text| text.contains(needle)) {
                    return true;
                }
            }
        }
        false
    }

    /// Returns the absolute expiry of `key` in Unix milliseconds from the node that stores it.
    /// The result is -1 when the key has no expiry and -2 when no node stores it. Needs Redis
    /// 7.0 or later (PEXPIRETIME).
    pub fn expire_time_ms(&self, key: &str) -> i64 {
        for &port in &self.ports {
            // Other cluster nodes reply with a MOVED error, which does not parse.
            let reply = cli(port, &["pexpiretime", key]).expect("redis-cli runs");
            match reply.trim().parse::<i64>() {
                Ok(-2) | Err(_) => continue,
                Ok(at) => return at,
            }
        }
        -2
    }

    /// Starts one standalone node.
    pub fn single() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port_pair();
        let child = spawn(dir.path(), port, false);
        let servers = Self {
            children: vec![child],
            ports: vec![port],
            _dir: dir,
        };
        wait_for(|| cli(port, &["ping"]).is_some_and(|out| out.contains("PONG")));
        servers
    }

    /// Starts three cluster nodes (no replicas) and joins them into one cluster.
    pub fn cluster() -> Self {
        let mut servers = Self {
            children: Vec::new(),
            ports: Vec::new(),
            _dir: tempfile::tempdir().unwrap(),
        };
        for i in 0..3 {
            let node_dir = servers._dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&node_dir).unwrap();
            let port = free_port_pair();
            servers.children.push(spawn(&node_dir, port, true));
            servers.ports.push(port);
        }
        for &port in &servers.ports {
            wait_for(|| cli(port, &["ping"]).is_some_and(|out| out.contains("PONG")));
        }
        let mut create = vec!["--cluster".to_owned(), "create".to_owned()];
        create.extend(servers.ports.iter().map(|p| format!("127.0.0.1:{p}")));
        create.extend(["--cluster-replicas", "0", "--cluster-yes"].map(String::from));
        let status = Command::new("redis-cli")
            .args(&create)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(
            status.success(),
            "redis-cli --cluster create failed: {status}"
        );
        for &port in &servers.ports {
            wait_for(|| {
                cli(port, &["cluster", "info"]).is_some_and(|out| out.contains("cluster_state:ok"))
            });
        }
        servers
    }
}

fn spawn(dir: &Path, port: u16, cluster: bool) -> Child {
    let mut command = Command::new("redis-server");
    command
        .arg("--port")
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if cluster {
        command.args([
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "5000",
        ]);
    }
    command.spawn().expect("redis-server starts")
}

/// Returns a port that is free on 127.0.0.1 together with port + 10000 (the cluster bus port).
fn free_port_pair() -> u16 {
    for _ in 0..200 {
        let port: u16 = rand::random_range(20_000..40_000);
        let pair = (
            TcpListener::bind(("127.0.0.1", port)),
            TcpListener::bind(("127.0.0.1", port + 10_000)),
        );
        if let (Ok(_), Ok(_)) = pair {
            return port;
        }
    }
    panic!("no free loopback port pair found in 200 tries");
}

fn cli(port: u16, args: &[&str]) -> Option<String> {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn wait_for(mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + START_TIMEOUT;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "redis did not become ready within {START_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
