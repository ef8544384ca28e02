//! The TOML configuration: schema, defaults and validation that reports every problem.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod validate;

pub use validate::Problem;

/// The default configuration, compiled into the binary so `sipstamp run` works without files.
pub const DEFAULT_CONFIG: &str = include_str!("../../configs/sipstamp.toml");

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Folder for generated secrets and the embedded store, relative to the working directory.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub sip: SipConfig,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub calls: CallsConfig,
    #[serde(default)]
    pub flood: FloodConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub headers: HeaderNames,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub lifecycle: LifecycleConfig,
    /// The session store: backend, retention and op budget.
    #[serde(default)]
    pub store: crate::store::StoreConfig,
    #[serde(default = "default_tenants")]
    pub tenants: Vec<TenantConfig>,
    #[serde(default = "default_releases")]
    pub releases: Vec<ReleaseConfig>,
    #[serde(default)]
    pub trunks: Vec<TrunkConfig>,
}

/// Maximum number of UDP worker threads that `sip.workers` accepts.
pub const MAX_WORKERS: usize = 1024;

/// SIP listeners and the upstream gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// UDP listen addresses.
    pub udp: Vec<SocketAddr>,
    /// TCP listen addresses.
    pub tcp: Vec<SocketAddr>,
    /// The gateway that new inbound calls are forwarded to.
    pub upstream: SocketAddr,
    /// Transport toward the upstream: `same` as the request arrived on, `udp` or `tcp`.
    pub upstream_transport: UpstreamTransport,
    /// Host written into the proxy's Via and Record-Route; defaults to the listen address.
    pub advertised_host: Option<String>,
    /// UDP worker threads, each with its own SO_REUSEPORT socket. 0 means one per core, and
    /// the maximum is [`MAX_WORKERS`].
    pub workers: usize,
}

impl Default for SipConfig {
    fn default() -> Self {
        let local: SocketAddr = ([127, 0, 0, 1], 5060).into();
        Self {
            udp: vec![local],
            tcp: vec![local],
            upstream: ([127, 0, 0, 1], 5090).into(),
            upstream_transport: UpstreamTransport::Same,
            advertised_host: None,
            workers: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamTransport {
    Same,
    Udp,
    Tcp,
}

/// Size and count limits applied to every received message.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest message accepted, head and body, in bytes.
    pub max_message_bytes: usize,
    /// Largest body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Most header lines (folded continuations count once) in one message.
    pub max_headers: usize,
    /// Maximum size of one header, continuation lines included, in bytes.
    pub max_header_bytes: usize,
    /// Most Via values in one message.
    pub max_via: usize,
    /// Maximum TCP connections open at once. Accepted and outbound connections each have this
    /// limit, so a flood of accepted connections cannot block the connection to the upstream.
    pub max_tcp_connections: usize,
    /// Maximum TCP connections accepted from one source IP address at once.
    pub max_tcp_connections_per_source: usize,
    /// Seconds a TCP connection may stay idle before it is closed.
    pub tcp_idle_timeout_secs: u64,
    /// Seconds within which a TCP message must arrive completely once its first byte has
    /// arrived; slower connections are closed.
    pub tcp_header_timeout_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 65_535,
            max_body_bytes: 32_768,
            max_headers: 128,
            max_header_bytes: 8_192,
            max_via: 32,
            max_tcp_connections: 4_096,
            max_tcp_connections_per_source: 64,
            tcp_idle_timeout_secs: 300,
            tcp_header_timeout_secs: 10,
        }
    }
}

/// The table of calls in progress.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallsConfig {
    /// Maximum number of calls tracked at once; new INVITEs beyond it get a 503 response.
    pub max_active: usize,
    /// Seconds a call stays in the table after BYE or a failed final response, so that
    /// retransmissions and the ACK still get the same identifiers (64 x T1 = 32 s).
    pub grace_secs: u64,
    /// Seconds a call stays in the table without a 2xx to its INVITE, like Timer C of
    /// RFC 3261 (more than 3 minutes there). INVITEs that the upstream never responds to so
    /// leave the table long before `max_age_secs`.
    pub setup_timeout_secs: u64,
    /// Seconds after which a call is dropped from the table whatever its state.
    pub max_age_secs: u64,
}

impl Default for CallsConfig {
    fn default() -> Self {
        Self {
            max_active: 500_000,
            grace_secs: 32,
            setup_timeout_secs: 200,
            max_age_secs: 4 * 3600,
        }
    }
}

/// Per-source request rate limiting: a token bucket for each source IP address.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FloodConfig {
    /// Requests per second one source IP address may send on average; 0 turns the limit off.
    pub requests_per_second: u32,
    /// Requests one source may send at once above the average rate (the bucket size).
    pub burst: u32,
    /// Action taken on a request over the limit.
    pub action: FloodAction,
    /// Whether sources in a trunk's `trusted_cidrs` are exempt from the limit.
    pub exempt_trusted: bool,
    /// Most source addresses tracked at once. Sources beyond it share one bucket.
    pub max_sources: usize,
}

impl Default for FloodConfig {
    fn default() -> Self {
        Self {
            requests_per_second: 0,
            burst: 200,
            action: FloodAction::Drop,
            exempt_trusted: true,
            max_sources: 65_536,
        }
    }
}

/// Action taken on a request over the per-source rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum FloodAction {
    /// Reply 503 Service Unavailable with Retry-After (ACKs are dropped).
    #[serde(rename = "reply-503")]
    Reply503,
    /// Send nothing.
    #[serde(rename = "drop")]
    Drop,
}

/// The admin HTTP listener (metrics, health, session API).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// File with the session API's bearer token; unset means `data_dir/admin.token`, created
    /// with a random token on first start.
    pub token_file: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 9090).into(),
            token_file: None,
        }
    }
}

/// Names of the headers sipstamp stamps into the forwarded INVITE.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderNames {
    pub callid: String,
    pub sessionid: String,
    pub conversationid: String,
    pub anonymous: String,
    pub callerid: String,
    pub identity_source: String,
    pub identity_assurance: String,
    pub returning_caller: String,
}

impl Default for HeaderNames {
    fn default() -> Self {
        Self {
            callid: "X-Callid".into(),
            sessionid: "X-Sessionid".into(),
            conversationid: "X-Conversationid".into(),
            anonymous: "X-Anonymous".into(),
            callerid: "X-Callerid".into(),
            identity_source: "X-Identity-Source".into(),
            identity_assurance: "X-Identity-Assurance".into(),
            returning_caller: "X-Returning-Caller".into(),
        }
    }
}

impl HeaderNames {
    /// Returns every configured name, in stamping order.
    pub fn all(&self) -> [&str; 8] {
        [
            &self.callid,
            &self.sessionid,
            &self.conversationid,
            &self.anonymous,
            &self.callerid,
            &self.identity_source,
            &self.identity_assurance,
            &self.returning_caller,
        ]
    }
}

/// Shutdown behaviour.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// Seconds that calls in progress get to end after SIGTERM or SIGINT before the process
    /// exits anyway; 0 exits without waiting.
    pub drain_timeout_secs: u64,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            drain_timeout_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// Default filter in tracing's `EnvFilter` syntax; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// A tenant: the owner of a secret key and the releases that use it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub name: String,
    /// Key id written as the sessionid prefix (1 to 16 letters or digits).
    pub key_id: String,
    /// File holding the secret key as hex (at least 64 hex digits).
    pub key_file: Option<PathBuf>,
    /// Environment variable holding the secret key as hex.
    pub key_env: Option<String>,
    /// Retired keys, still used to find the sessionids computed under them during a rotation.
    #[serde(default)]
    pub previous_keys: Vec<PreviousKey>,
}

/// A retired tenant key, identified by the key id it wrote into sessionids.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviousKey {
    pub key_id: String,
    /// File holding the key as hex.
    pub key_file: Option<PathBuf>,
    /// Environment variable holding the key as hex.
    pub key_env: Option<String>,
}

/// A release: an instance id whose callers share sessionids.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseConfig {
    pub instance_id: String,
    pub tenant: String,
    /// Request-URI user parts (dialled numbers) that select this release, compared exactly.
    /// Calls matching no release go to the first release.
    #[serde(default)]
    pub request_uri_users: Vec<String>,
}

/// A trunk: transport peers that share trust and numbering settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    /// Stable, non-secret label; appears in `local:<digits>@<id>` callerids.
    pub id: String,
    /// Source address ranges of the trunk's peers, as written (`ADDRESS/PREFIX`). They stay
    /// text so that validation can name each bad entry. [`Self::trusted_networks`] parses them.
    #[serde(default)]
    pub trusted_cidrs: Vec<String>,
    /// Whether P-Asserted-Identity and Remote-Party-ID from these peers are used as callerid.
    #[serde(default = "enabled")]
    pub trusted_identity_headers: bool,
    /// Country calling code for national numbers, for example 49. Defaults to the region's.
    pub country_code: Option<u16>,
    /// ISO 3166 region whose numbering plan applies, for example "DE".
    pub region: Option<String>,
    /// Digits that start a national number, for example "0". Defaults to the region's.
    pub national_prefix: Option<String>,
    /// Digits that start an international number, for example "00" or "011". Defaults to the
    /// region's.
    pub international_prefix: Option<String>,
    /// From user parts that mark a call as anonymous, compared without case. Unset means
    /// anonymous, restricted, private, withheld, unavailable and unknown.
    pub anonymous_users: Option<Vec<String>>,
    /// Whether a display name "Anonymous" alone marks a call as anonymous.
    #[serde(default = "enabled")]
    pub anonymous_display_name: bool,
    /// Whether P-Asserted-Identity and Remote-Party-ID are removed from anonymous calls before
    /// forwarding.
    #[serde(default = "enabled")]
    pub strip_identity_when_anonymous: bool,
}

impl TrunkConfig {
    /// Returns the parsed `trusted_cidrs`. Validation rejects a configuration with an entry
    /// that does not parse, so in a validated configuration none is left out.
    pub fn trusted_networks(&self) -> impl Iterator<Item = ipnet::IpNet> + '_ {
        self.trusted_cidrs
            .iter()
            .filter_map(|cidr| cidr.parse::<ipnet::IpNet>().ok())
    }
}

fn enabled() -> bool {
    true
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}

fn default_tenants() -> Vec<TenantConfig> {
    vec![TenantConfig {
        name: "default".into(),
        key_id: "k1".into(),
        key_file: None,
        key_env: None,
        previous_keys: Vec::new(),
    }]
}

fn default_releases() -> Vec<ReleaseConfig> {
    vec![ReleaseConfig {
        instance_id: "default".into(),
        tenant: "default".into(),
        request_uri_users: Vec::new(),
    }]
}

/// Errors loading a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config {origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("invalid config {origin}: {}", format_problems(.problems))]
    Invalid {
        origin: String,
        problems: Vec<Problem>,
    },
}

fn format_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Returns one problem for each top-level key whose value does not deserialize, plus the
/// validation problems of the rest of the file read with those keys at their defaults.
/// Returns nothing when the text is not valid TOML at all.
fn section_problems(text: &str) -> Vec<Problem> {
    let Ok(table) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    let mut rest = toml::Table::new();
    for (key, value) in table {
        let mut alone = toml::Table::new();
        alone.insert(key.clone(), value.clone());
        match toml::Value::Table(alone).try_into::<Config>() {
            Ok(_) => {
                rest.insert(key, value);
            }
            Err(error) => problems.push(Problem {
                key,
                message: error.to_string().trim_end().replace('\n', " "),
            }),
        }
    }
    let failed: Vec<String> = problems.iter().map(|p| p.key.clone()).collect();
    if let Ok(config) = toml::Value::Table(rest).try_into::<Config>() {
        // NOTE: a section with two bad values reports only the first, as serde stops there.
        problems.extend(config.problems().into_iter().filter(|problem| {
            !failed
                .iter()
                .any(|section| problem.key.split(['.', '[']).next() == Some(section.as_str()))
        }));
    }
    problems
}

impl Config {
    /// Parses and validates a configuration text; `origin` names it in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Config = match toml::from_str(text) {
            Ok(config) => config,
            Err(error) => {
                // serde stops at the first bad value, so each top-level key is read on its own
                // as well, to report one problem per section instead of one per run.
                let problems = section_problems(text);
                if !problems.is_empty() {
                    return Err(ConfigError::Invalid {
                        origin: origin.to_owned(),
                        problems,
                    });
                }
                return Err(ConfigError::Parse {
                    origin: origin.to_owned(),
                    message: error.to_string().trim_end().to_owned(),
                });
            }
        };
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                origin: origin.to_owned(),
                problems,
            })
        }
    }

    /// Loads a file, or the embedded default when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        match path {
            None => Self::parse(DEFAULT_CONFIG, "(embedded default)"),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Self::parse(&text, &path.display().to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests;
