//! The `[store]` configuration section.

use std::time::Duration;

use serde::Deserialize;

use crate::config::Problem;

/// The backend that stores sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreBackend {
    /// A redb file `sessions.redb` in `data_dir`.
    Embedded,
    /// One Redis or Valkey node.
    Redis,
    /// A Redis or Valkey Cluster; `redis_urls` lists seed nodes.
    RedisCluster,
}

/// The `[store]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    /// Redis URLs (`redis://host:port/db`): exactly one for `redis`, one or more seed nodes for
    /// `redis-cluster`.
    pub redis_urls: Vec<String>,
    /// Prefix of every Redis key the store writes.
    pub redis_key_prefix: String,
    /// Days without activity after which `session` variables are deleted.
    pub session_variable_retention_days: u32,
    /// Days after its start after which a conversation is deleted; 0 keeps conversations until
    /// their session is erased or their tenant purged.
    pub conversation_retention_days: u32,
    /// Milliseconds a store operation on the call path may take before it fails as timed out.
    pub op_budget_ms: u64,
    /// Mebibytes of page cache the embedded store keeps in memory. Ignored by Redis.
    pub embedded_cache_mb: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Embedded,
            redis_urls: Vec::new(),
            redis_key_prefix: "sipstamp".into(),
            session_variable_retention_days: 30,
            conversation_retention_days: 90,
            op_budget_ms: 50,
            embedded_cache_mb: 64,
        }
    }
}

/// Maximum retention accepted, in days (about 10 years).
const MAX_RETENTION_DAYS: u32 = 3650;
/// Largest embedded page cache accepted, in mebibytes.
const MAX_CACHE_MB: u32 = 65_536;

impl StoreConfig {
    pub fn op_budget(&self) -> Duration {
        Duration::from_millis(self.op_budget_ms)
    }

    /// Returns the embedded store's page cache size in bytes.
    pub fn embedded_cache_bytes(&self) -> usize {
        self.embedded_cache_mb as usize * 1024 * 1024
    }

    pub fn retention_ms(&self) -> u64 {
        u64::from(self.session_variable_retention_days) * super::DAY_MS
    }

    /// Returns the conversation retention period in milliseconds, or `None` when conversations
    /// are kept forever.
    pub fn conversation_retention_ms(&self) -> Option<u64> {
        match self.conversation_retention_days {
            0 => None,
            days => Some(u64::from(days) * super::DAY_MS),
        }
    }

    /// Returns every problem in this section, with keys prefixed by `store.`.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        match self.backend {
            StoreBackend::Embedded => {}
            StoreBackend::Redis if self.redis_urls.len() != 1 => {
                out.push(problem(
                    "redis_urls",
                    "backend \"redis\" needs exactly one URL",
                ));
            }
            StoreBackend::RedisCluster if self.redis_urls.is_empty() => {
                out.push(problem(
                    "redis_urls",
                    "backend \"redis-cluster\" needs at least one seed URL",
                ));
            }
            StoreBackend::Redis | StoreBackend::RedisCluster => {}
        }
        for (i, url) in self.redis_urls.iter().enumerate() {
            // TLS (rediss://) would need the redis crate's rustls features, which are not built.
            if !url.starts_with("redis://") {
                out.push(problem(
                    &format!("redis_urls[{i}]"),
                    "must start with redis:// (TLS connections are not supported yet)",
                ));
            }
        }
        let prefix_ok = !self.redis_key_prefix.is_empty()
            && self.redis_key_prefix.len() <= 64
            && self
                .redis_key_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !prefix_ok {
            out.push(problem(
                "redis_key_prefix",
                "must be 1 to 64 ASCII letters, digits, '-', '_' or '.'",
            ));
        }
        if !(1..=MAX_RETENTION_DAYS).contains(&self.session_variable_retention_days) {
            out.push(problem(
                "session_variable_retention_days",
                &format!("must be between 1 and {MAX_RETENTION_DAYS}"),
            ));
        }
        if self.conversation_retention_days > MAX_RETENTION_DAYS {
            out.push(problem(
                "conversation_retention_days",
                &format!("must be between 0 (keep forever) and {MAX_RETENTION_DAYS}"),
            ));
        }
        if !(1..=10_000).contains(&self.op_budget_ms) {
            out.push(problem("op_budget_ms", "must be between 1 and 10000"));
        }
        if !(1..=MAX_CACHE_MB).contains(&self.embedded_cache_mb) {
            out.push(problem(
                "embedded_cache_mb",
                &format!("must be between 1 and {MAX_CACHE_MB}"),
            ));
        }
        out
    }
}

fn problem(key: &str, message: &str) -> Problem {
    Problem {
        key: format!("store.{key}"),
        message: message.to_owned(),
    }
}
