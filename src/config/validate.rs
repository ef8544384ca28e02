//! Checks on a parsed configuration that serde cannot express. Every problem is collected so
//! an operator sees them all at once.

use std::collections::HashSet;

use super::Config;

/// One problem in a configuration, with the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl Config {
    /// Returns every problem found; an empty list means the configuration is usable.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut add = |key: String, message: &str| {
            out.push(Problem {
                key,
                message: message.to_owned(),
            })
        };

        if self.sip.udp.is_empty() && self.sip.tcp.is_empty() {
            add("sip.udp".into(), "no listener: set sip.udp or sip.tcp");
        }
        if self.sip.upstream.port() == 0 {
            add("sip.upstream".into(), "port 0 is not a valid upstream port");
        }
        if let Some(host) = &self.sip.advertised_host {
            if host.is_empty() || host.bytes().any(|b| b.is_ascii_whitespace() || b == b';') {
                add(
                    "sip.advertised_host".into(),
                    "must be a host name or IP address",
                );
            }
        }

        let limits = &self.limits;
        if limits.max_message_bytes < 512 {
            add("limits.max_message_bytes".into(), "must be at least 512");
        }
        if limits.max_body_bytes > limits.max_message_bytes {
            add(
                "limits.max_body_bytes".into(),
                "must not exceed limits.max_message_bytes",
            );
        }
        if limits.max_headers < 8 {
            add("limits.max_headers".into(), "must be at least 8");
        }
        if limits.max_header_bytes < 256 {
            add("limits.max_header_bytes".into(), "must be at least 256");
        }
        if limits.max_via == 0 {
            add("limits.max_via".into(), "must be at least 1");
        }
        if limits.max_tcp_connections == 0 {
            add("limits.max_tcp_connections".into(), "must be at least 1");
        }
        if limits.tcp_idle_timeout_secs == 0 {
            add("limits.tcp_idle_timeout_secs".into(), "must be at least 1");
        }

        if self.calls.max_active == 0 {
            add("calls.max_active".into(), "must be at least 1");
        }
        if self.calls.max_age_secs <= self.calls.grace_secs {
            add(
                "calls.max_age_secs".into(),
                "must be greater than calls.grace_secs",
            );
        }

        let mut seen = HashSet::new();
        let names = [
            ("callid", &self.headers.callid),
            ("sessionid", &self.headers.sessionid),
            ("conversationid", &self.headers.conversationid),
            ("anonymous", &self.headers.anonymous),
            ("callerid", &self.headers.callerid),
            ("identity_source", &self.headers.identity_source),
        ];
        for (field, name) in names {
            if !is_token(name) {
                add(format!("headers.{field}"), "must be a header name (letters, digits, '-', '.', '_', '!', '%', '*', '+', '`', ''', '~')");
            } else if !seen.insert(name.to_ascii_lowercase()) {
                add(
                    format!("headers.{field}"),
                    "is used for another stamped header too",
                );
            }
        }

        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            add(
                "log.level".into(),
                "is not a valid tracing filter (for example \"info\" or \"sipstamp=debug\")",
            );
        }

        let mut tenants = HashSet::new();
        for (i, tenant) in self.tenants.iter().enumerate() {
            if tenant.name.is_empty() {
                add(format!("tenants[{i}].name"), "must not be empty");
            } else if !tenants.insert(tenant.name.as_str()) {
                add(format!("tenants[{i}].name"), "is defined twice");
            }
            let id_ok = (1..=16).contains(&tenant.key_id.len())
                && tenant.key_id.bytes().all(|b| b.is_ascii_alphanumeric());
            if !id_ok {
                add(
                    format!("tenants[{i}].key_id"),
                    "must be 1 to 16 ASCII letters or digits",
                );
            }
            if tenant.key_file.is_some() && tenant.key_env.is_some() {
                add(
                    format!("tenants[{i}].key_env"),
                    "set key_file or key_env, not both",
                );
            }
        }
        if self.releases.is_empty() {
            add("releases".into(), "at least one release is required");
        }
        let mut instances = HashSet::new();
        for (i, release) in self.releases.iter().enumerate() {
            if release.instance_id.is_empty() {
                add(format!("releases[{i}].instance_id"), "must not be empty");
            } else if !instances.insert(release.instance_id.as_str()) {
                add(format!("releases[{i}].instance_id"), "is defined twice");
            }
            if !tenants.contains(release.tenant.as_str()) {
                add(
                    format!("releases[{i}].tenant"),
                    "names no tenant in [[tenants]]",
                );
            }
        }
        let mut trunks = HashSet::new();
        for (i, trunk) in self.trunks.iter().enumerate() {
            if trunk.id.is_empty() || !trunks.insert(trunk.id.as_str()) {
                add(format!("trunks[{i}].id"), "must be non-empty and unique");
            }
        }
        out.extend(self.store.problems());
        out
    }
}

/// Returns true for an RFC 3261 `token`, the grammar of a header name.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}
