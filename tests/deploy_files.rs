//! Checks of the deployment files: the example configuration, the Prometheus configuration
//! and alerts, the Grafana dashboard, the systemd unit, the Kubernetes manifest and the
//! Dockerfile. The `promtool` checks are skipped without promtool locally and fail without it
//! when CI=true, where `.ci/run` installs it. `systemd-analyze verify` runs only where it is
//! installed.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Deserialize;
use sipstamp::config::{AdminConfig, Config};
use sipstamp::store::StoreBackend;
use sipstamp::telemetry::{Metrics, ScrapeSources};

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    let path = repo_file(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Runs a tool, or returns `None` when it is not installed and either `required_in_ci` is
/// false or CI is not set.
fn run_tool(program: &str, args: &[&str], required_in_ci: bool) -> Option<Output> {
    match Command::new(program).args(args).output() {
        Ok(output) => Some(output),
        Err(error) if !required_in_ci || std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipped: {program} is not runnable ({error})");
            None
        }
        Err(error) => panic!("{program} is required in CI: {error}"),
    }
}

fn assert_success(command: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{command} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

const EXAMPLE: &str = "configs/sipstamp.example.toml";

#[test]
fn example_config_validates() {
    let config = Config::parse(&read(EXAMPLE), EXAMPLE).unwrap();
    assert_eq!(config.trunks.len(), 1);
    assert_eq!(config.releases.len(), 2);
    assert_eq!(config.tenants[0].previous_keys.len(), 1);
}

/// Returns the field names that serde expects in the table at `probe`, by feeding it an
/// unknown key: every section denies unknown fields and names the expected ones in its error.
fn expected_fields(probe: &str) -> Vec<String> {
    let text = format!("{probe}zzz_unknown_probe = 1\n");
    let error = toml::from_str::<Config>(&text)
        .err()
        .unwrap_or_else(|| panic!("probe {probe:?} was accepted"))
        .to_string();
    let (_, expected) = error
        .split_once("expected")
        .unwrap_or_else(|| panic!("no field list in {error:?}"));
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Returns the keys set in the table at `path`, merged over every element of an array.
fn keys_at(table: &toml::Table, path: &[&str]) -> HashSet<String> {
    let mut tables = vec![table];
    for step in path {
        let mut next = Vec::new();
        for table in tables {
            match table.get(*step) {
                Some(toml::Value::Table(inner)) => next.push(inner),
                Some(toml::Value::Array(items)) => {
                    next.extend(items.iter().filter_map(toml::Value::as_table))
                }
                _ => {}
            }
        }
        tables = next;
    }
    tables
        .into_iter()
        .flat_map(|table| table.keys().cloned())
        .collect()
}

#[test]
fn example_config_lists_every_option() {
    let text = read(EXAMPLE);
    let table: toml::Table = text.parse().unwrap();
    // Keys that cannot be set together with their alternative appear as a commented line.
    let commented: HashSet<String> = text
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix('#'))
        .filter_map(|rest| rest.split_once('='))
        .map(|(key, _)| key.trim().to_owned())
        .collect();

    let previous_keys_probe =
        "[[tenants]]\nname = \"a\"\nkey_id = \"k\"\n[[tenants.previous_keys]]\n";
    let sections: [(&str, &[&str]); 12] = [
        ("", &[]),
        ("[sip]\n", &["sip"]),
        ("[limits]\n", &["limits"]),
        ("[calls]\n", &["calls"]),
        ("[admin]\n", &["admin"]),
        ("[headers]\n", &["headers"]),
        ("[log]\n", &["log"]),
        ("[store]\n", &["store"]),
        ("[[tenants]]\n", &["tenants"]),
        (previous_keys_probe, &["tenants", "previous_keys"]),
        ("[[releases]]\n", &["releases"]),
        ("[[trunks]]\n", &["trunks"]),
    ];
    for (probe, path) in sections {
        let fields = expected_fields(probe);
        assert!(!fields.is_empty(), "no fields found for {path:?}");
        let present = keys_at(&table, path);
        for field in fields {
            assert!(
                present.contains(&field) || commented.contains(&field),
                "{EXAMPLE} does not show {}{field}",
                path.iter().map(|p| format!("{p}.")).collect::<String>()
            );
        }
    }
}

#[test]
fn promtool_accepts_prometheus_files() {
    let config = repo_file("deploy/prometheus/prometheus.yml");
    let rules = repo_file("deploy/prometheus/alerts.yml");
    let rule_tests = repo_file("deploy/prometheus/alerts_test.yml");
    let checks: [(&str, [&str; 2], &Path); 3] = [
        ("promtool check config", ["check", "config"], &config),
        ("promtool check rules", ["check", "rules"], &rules),
        ("promtool test rules", ["test", "rules"], &rule_tests),
    ];
    for (command, args, file) in checks {
        let file = file.to_str().unwrap();
        let Some(output) = run_tool("promtool", &[args[0], args[1], file], true) else {
            return;
        };
        assert_success(command, &output);
    }
}

/// Returns every name of a series in a fresh scrape, `_bucket`, `_sum` and `_count` included.
fn rendered_names() -> HashSet<String> {
    let metrics = Metrics::new(StoreBackend::Embedded, ScrapeSources::default()).unwrap();
    metrics
        .render()
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| line.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

/// Returns every `sipstamp_…` identifier in `text`.
fn metric_names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("sipstamp_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

#[derive(Deserialize)]
struct Dashboard {
    panels: Vec<Panel>,
}

#[derive(Deserialize)]
struct Panel {
    title: String,
    #[serde(default)]
    targets: Vec<Target>,
}

#[derive(Deserialize)]
struct Target {
    expr: String,
}

#[test]
fn dashboard_queries_existing_metrics() {
    let dashboard: Dashboard =
        serde_json::from_str(&read("deploy/grafana/sipstamp-dashboard.json")).unwrap();
    let known = rendered_names();
    let mut queried = BTreeSet::new();
    for panel in &dashboard.panels {
        assert!(
            !panel.targets.is_empty(),
            "panel {:?} has no query",
            panel.title
        );
        for target in &panel.targets {
            let names = metric_names_in(&target.expr);
            assert!(
                !names.is_empty(),
                "{:?} queries no sipstamp metric",
                panel.title
            );
            for name in names {
                assert!(
                    known.contains(&name),
                    "{:?} queries unknown {name}",
                    panel.title
                );
                queried.insert(name);
            }
        }
    }
    // Every metric family appears on some panel.
    for name in &known {
        let family = name
            .strip_suffix("_bucket")
            .or_else(|| name.strip_suffix("_sum"))
            .or_else(|| name.strip_suffix("_count"))
            .unwrap_or(name);
        let on_panel = queried.iter().any(|q| q.starts_with(family));
        assert!(on_panel, "no dashboard panel shows {family}");
    }
}

#[test]
fn alerts_use_existing_metrics() {
    let known = rendered_names();
    let names = metric_names_in(&read("deploy/prometheus/alerts.yml"));
    assert!(!names.is_empty());
    for name in names {
        assert!(known.contains(&name), "alerts.yml uses unknown {name}");
    }
}

/// Returns the `key=value` settings of one section of a systemd unit.
fn unit_section(text: &str, section: &str) -> Vec<(String, String)> {
    let header = format!("[{section}]");
    let mut inside = false;
    let mut settings = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == header;
            continue;
        }
        if !inside || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("line without '=' in [{section}]: {line:?}"));
        settings.push((key.to_owned(), value.to_owned()));
    }
    settings
}

#[test]
fn systemd_unit_parses() {
    let text = read("deploy/systemd/sipstamp.service");
    let service = unit_section(&text, "Service");
    let get = |key: &str| {
        service
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    assert!(get("ExecStart")
        .unwrap()
        .starts_with("/usr/local/bin/sipstamp run --config "));
    assert_eq!(
        get("DynamicUser"),
        Some("yes"),
        "runs as an unprivileged user"
    );
    assert_eq!(get("User"), None);
    assert_eq!(get("NoNewPrivileges"), Some("yes"));
    assert!(!unit_section(&text, "Unit").is_empty());
    assert_eq!(
        unit_section(&text, "Install"),
        [("WantedBy".to_owned(), "multi-user.target".to_owned())]
    );

    // systemd-analyze checks that ExecStart is executable, so the copy points at this test.
    let executable = std::env::current_exe().unwrap();
    let copy = text.replace("/usr/local/bin/sipstamp", executable.to_str().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sipstamp.service");
    std::fs::write(&path, copy).unwrap();
    let Some(output) = run_tool(
        "systemd-analyze",
        &["verify", "--man=no", path.to_str().unwrap()],
        false,
    ) else {
        return;
    };
    assert_success("systemd-analyze verify", &output);
}

#[test]
fn kubernetes_probes_match_admin_port() {
    let text = read("deploy/kubernetes/sipstamp-sidecar.yaml");
    let documents: Vec<serde_norway::Value> = serde_norway::Deserializer::from_str(&text)
        .map(|document| serde_norway::Value::deserialize(document).unwrap())
        .collect();
    let of_kind = |kind: &str| {
        documents
            .iter()
            .find(|d| d["kind"].as_str() == Some(kind))
            .unwrap_or_else(|| panic!("no {kind} in the manifest"))
    };
    let admin_port = AdminConfig::default().listen.port();

    let config_text = of_kind("ConfigMap")["data"]["sipstamp.toml"]
        .as_str()
        .unwrap();
    let config = Config::parse(config_text, "ConfigMap sipstamp-config").unwrap();
    assert_eq!(config.admin.listen.port(), admin_port);
    assert!(
        config.admin.listen.ip().is_unspecified(),
        "the kubelet probes the pod IP, so admin.listen must not be loopback"
    );

    let spec = &of_kind("Deployment")["spec"]["template"]["spec"];
    let containers = spec["containers"].as_sequence().unwrap();
    assert_eq!(containers.len(), 2, "sipstamp runs next to the gateway");
    let sipstamp = containers
        .iter()
        .find(|c| c["name"].as_str() == Some("sipstamp"))
        .expect("a container named sipstamp");
    let port_of = |probe: &str| sipstamp[probe]["httpGet"]["port"].as_u64();
    let path_of = |probe: &str| sipstamp[probe]["httpGet"]["path"].as_str();
    assert_eq!(path_of("livenessProbe"), Some("/healthz"));
    assert_eq!(path_of("readinessProbe"), Some("/readyz"));
    assert_eq!(port_of("livenessProbe"), Some(u64::from(admin_port)));
    assert_eq!(port_of("readinessProbe"), Some(u64::from(admin_port)));

    let ports = sipstamp["ports"].as_sequence().unwrap();
    let admin = ports
        .iter()
        .find(|p| p["name"].as_str() == Some("admin"))
        .expect("a port named admin");
    assert_eq!(admin["containerPort"].as_u64(), Some(u64::from(admin_port)));

    let upstream = config.sip.upstream.port();
    let gateway = containers
        .iter()
        .find(|c| c["name"].as_str() != Some("sipstamp"))
        .unwrap();
    let gateway_ports: Vec<u64> = gateway["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|p| p["containerPort"].as_u64())
        .collect();
    assert!(
        gateway_ports.contains(&u64::from(upstream)),
        "sip.upstream port {upstream} is not a gateway port {gateway_ports:?}"
    );
}

#[test]
fn dockerfile_builds_and_runs_unprivileged() {
    let text = read("deploy/Dockerfile");
    let instructions: Vec<(String, String)> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let (word, rest) = line.split_once(' ')?;
            word.chars()
                .all(|c| c.is_ascii_uppercase())
                .then(|| (word.to_owned(), rest.trim().to_owned()))
        })
        .collect();
    let all = |word: &str| -> Vec<&str> {
        instructions
            .iter()
            .filter(|(w, _)| w == word)
            .map(|(_, rest)| rest.as_str())
            .collect()
    };

    let stages = all("FROM");
    assert!(stages.len() >= 2, "multi-stage build: {stages:?}");
    assert!(
        stages[0].to_ascii_lowercase().ends_with(" as builder"),
        "first stage is named builder: {:?}",
        stages[0]
    );
    assert!(text.contains("COPY --from=builder "));

    let user = *all("USER").last().expect("a USER instruction");
    let name = user.split(':').next().unwrap();
    assert_ne!(name, "root", "runs as root: USER {user}");
    assert_ne!(name, "0", "runs as root: USER {user}");

    let exposed: HashSet<&str> = all("EXPOSE")
        .into_iter()
        .flat_map(str::split_whitespace)
        .collect();
    let admin = format!("{}/tcp", AdminConfig::default().listen.port());
    for port in ["5060/udp", "5060/tcp", admin.as_str()] {
        assert!(exposed.contains(port), "EXPOSE lacks {port}: {exposed:?}");
    }
}
