//! Checks on a parsed configuration that serde cannot express. Every problem is collected so
//! an operator sees them all at once.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use super::{Config, TrunkConfig, UpstreamTransport, MAX_WORKERS};

/// Longest drain accepted, so a typo cannot keep a stopping process alive for weeks.
const MAX_DRAIN_TIMEOUT_SECS: u64 = 86_400;

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

        if self.data_dir.as_os_str().is_empty() {
            add(
                "data_dir".into(),
                "must not be empty; leave it out for the default \"./data\"",
            );
        }

        if self.sip.udp.is_empty() && self.sip.tcp.is_empty() {
            add("sip.udp".into(), "no listener: set sip.udp or sip.tcp");
        }
        if self.sip.udp.contains(&self.sip.upstream) || self.sip.tcp.contains(&self.sip.upstream) {
            add(
                "sip.upstream".into(),
                "is one of the proxy's own listen addresses, which would loop every call",
            );
        }
        if self.sip.upstream.port() == 0 {
            add("sip.upstream".into(), "port 0 is not a valid upstream port");
        }
        // UDP to the upstream leaves through a UDP listener's socket of the same address
        // family (IPv6 sockets are IPv6-only), so without one every forward would be lost.
        let udp_upstream = match self.sip.upstream_transport {
            UpstreamTransport::Udp => true,
            UpstreamTransport::Same => !self.sip.udp.is_empty(),
            UpstreamTransport::Tcp => false,
        };
        let family_matches = |addr: &SocketAddr| addr.is_ipv4() == self.sip.upstream.is_ipv4();
        if udp_upstream && !self.sip.udp.iter().any(family_matches) {
            let family = if self.sip.upstream.is_ipv4() {
                "IPv4"
            } else {
                "IPv6"
            };
            add(
                "sip.upstream".into(),
                &format!(
                    "is an {family} address but no sip.udp listener is {family}, so UDP \
                     messages to it could not be sent; add one or set upstream_transport = \"tcp\""
                ),
            );
        }
        if self.sip.workers > MAX_WORKERS {
            add(
                "sip.workers".into(),
                &format!("must be at most {MAX_WORKERS} (0 means one per CPU core)"),
            );
        }
        if let Some(host) = &self.sip.advertised_host {
            if host.is_empty() || host.bytes().any(|b| b.is_ascii_whitespace() || b == b';') {
                add(
                    "sip.advertised_host".into(),
                    "must be a host name or IP address",
                );
            }
        }

        if let Some((i, tcp)) = self
            .sip
            .tcp
            .iter()
            .enumerate()
            .find(|(_, tcp)| tcp_addresses_overlap(self.admin.listen, **tcp))
        {
            add(
                "admin.listen".into(),
                &format!(
                    "overlaps the SIP TCP listener {tcp} (sip.tcp[{i}]); give the admin listener a port of its own"
                ),
            );
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
        if limits.max_tcp_connections_per_source == 0 {
            add(
                "limits.max_tcp_connections_per_source".into(),
                "must be at least 1",
            );
        }
        if limits.tcp_idle_timeout_secs == 0 {
            add("limits.tcp_idle_timeout_secs".into(), "must be at least 1");
        }
        if limits.tcp_header_timeout_secs == 0 {
            add(
                "limits.tcp_header_timeout_secs".into(),
                "must be at least 1",
            );
        }

        if self.flood.requests_per_second > 0 && self.flood.burst == 0 {
            add(
                "flood.burst".into(),
                "must be at least 1 when the limit is on",
            );
        }
        if self.flood.max_sources == 0 {
            add("flood.max_sources".into(), "must be at least 1");
        }
        if self.calls.max_active == 0 {
            add("calls.max_active".into(), "must be at least 1");
        }
        if self.calls.setup_timeout_secs == 0
            || self.calls.setup_timeout_secs > self.calls.max_age_secs
        {
            add(
                "calls.setup_timeout_secs".into(),
                "must be between 1 and calls.max_age_secs",
            );
        }
        if self.calls.max_age_secs <= self.calls.grace_secs {
            add(
                "calls.max_age_secs".into(),
                "must be greater than calls.grace_secs",
            );
        }

        if self.lifecycle.drain_timeout_secs > MAX_DRAIN_TIMEOUT_SECS {
            add(
                "lifecycle.drain_timeout_secs".into(),
                "must be at most 86400 (one day)",
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
            ("identity_assurance", &self.headers.identity_assurance),
            ("returning_caller", &self.headers.returning_caller),
        ];
        for (field, name) in names {
            if !is_token(name) {
                add(format!("headers.{field}"), "must be a header name (letters, digits, '-', '.', '_', '!', '%', '*', '+', '`', ''', '~')");
            } else if is_sip_header(name) {
                add(format!("headers.{field}"), "is a standard SIP header name or compact form; choose a name of your own, such as one starting with X-");
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
            if !is_label(&tenant.name) {
                // The name becomes part of the generated key file name.
                add(
                    format!("tenants[{i}].name"),
                    "must be 1 to 64 ASCII letters, digits, '-', '_' or '.'",
                );
            } else if !tenants.insert(tenant.name.as_str()) {
                add(format!("tenants[{i}].name"), "is defined twice");
            }
            if !is_key_id(&tenant.key_id) {
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
            let mut key_ids = HashSet::from([tenant.key_id.as_str()]);
            for (j, previous) in tenant.previous_keys.iter().enumerate() {
                let key = format!("tenants[{i}].previous_keys[{j}]");
                if !is_key_id(&previous.key_id) {
                    add(
                        format!("{key}.key_id"),
                        "must be 1 to 16 ASCII letters or digits",
                    );
                } else if !key_ids.insert(previous.key_id.as_str()) {
                    add(
                        format!("{key}.key_id"),
                        "is already used by another key of this tenant",
                    );
                }
                if previous.key_file.is_some() == previous.key_env.is_some() {
                    add(
                        format!("{key}.key_file"),
                        "set exactly one of key_file or key_env",
                    );
                }
            }
        }
        if self.releases.is_empty() {
            add("releases".into(), "at least one release is required");
        }
        let mut instances = HashSet::new();
        let mut selectors = HashSet::new();
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
            for (j, user) in release.request_uri_users.iter().enumerate() {
                if user.is_empty() || user.bytes().any(|b| b.is_ascii_whitespace()) {
                    add(
                        format!("releases[{i}].request_uri_users[{j}]"),
                        "must be a non-empty Request-URI user without spaces",
                    );
                } else if !selectors.insert(user.as_str()) {
                    add(
                        format!("releases[{i}].request_uri_users[{j}]"),
                        "already selects another release",
                    );
                }
            }
        }
        let mut trunks = HashSet::new();
        for (i, trunk) in self.trunks.iter().enumerate() {
            if !is_label(&trunk.id) {
                add(
                    format!("trunks[{i}].id"),
                    "must be 1 to 64 ASCII letters, digits, '-', '_' or '.'",
                );
            } else if !trunks.insert(trunk.id.as_str()) {
                add(format!("trunks[{i}].id"), "is defined twice");
            }
            for (j, cidr) in trunk.trusted_cidrs.iter().enumerate() {
                if let Some(message) = cidr_problem(cidr) {
                    add(format!("trunks[{i}].trusted_cidrs[{j}]"), &message);
                }
            }
            for problem in trunk_numbering_problems(trunk) {
                add(format!("trunks[{i}].{}", problem.0), problem.1);
            }
            if let Some(users) = &trunk.anonymous_users {
                for (j, user) in users.iter().enumerate() {
                    if user.is_empty() || user.bytes().any(|b| b.is_ascii_whitespace()) {
                        add(
                            format!("trunks[{i}].anonymous_users[{j}]"),
                            "must be a non-empty user part without spaces",
                        );
                    }
                }
            }
        }
        out.extend(self.store.problems());
        out
    }
}

/// Returns whether two TCP listen addresses cannot both be bound. That is the case for the same
/// port with the same address or a wildcard address that covers the other. `[::]` covers IPv4
/// too, because Linux binds it dual-stack by default. Port 0 picks a free port, so it never
/// overlaps.
fn tcp_addresses_overlap(a: SocketAddr, b: SocketAddr) -> bool {
    let covers = |wild: IpAddr, other: IpAddr| {
        wild.is_unspecified() && (wild.is_ipv6() || wild.is_ipv4() == other.is_ipv4())
    };
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || covers(a.ip(), b.ip()) || covers(b.ip(), a.ip()))
}

/// Maximum number of characters of a bad `trusted_cidrs` entry repeated in its problem message.
const MAX_SHOWN_CIDR_CHARS: usize = 64;

/// Checks one `trusted_cidrs` entry and returns the problem, which quotes the entry. A CIDR is
/// not personal data, so it may be repeated, but a very long entry is cut short.
fn cidr_problem(cidr: &str) -> Option<String> {
    if cidr.parse::<ipnet::IpNet>().is_ok() {
        return None;
    }
    let quoted: String = cidr.chars().take(MAX_SHOWN_CIDR_CHARS).collect();
    let quoted = if quoted.len() < cidr.len() {
        format!("{quoted:?}...")
    } else {
        format!("{quoted:?}")
    };
    let message = match cidr.split_once('/') {
        None if cidr.parse::<IpAddr>().is_ok() => format!(
            "{quoted} has no prefix length; write ADDRESS/PREFIX, for example \"{cidr}/32\" for one IPv4 address"
        ),
        Some((address, prefix)) => match address.parse::<IpAddr>() {
            Ok(ip) => {
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
                if prefix.bytes().all(|b| b.is_ascii_digit()) && !prefix.is_empty() {
                    format!("{quoted}: prefix length {prefix} is out of range for an {family} address (0 to {max})")
                } else {
                    format!("{quoted}: prefix length must be a number from 0 to {max}")
                }
            }
            Err(_) => format!(
                "{quoted}: the part before '/' is not an IP address; write ADDRESS/PREFIX, for example \"192.0.2.0/24\""
            ),
        },
        None => format!(
            "{quoted} is not an IP address range; write ADDRESS/PREFIX, for example \"192.0.2.0/24\""
        ),
    };
    Some(message)
}

fn is_key_id(key_id: &str) -> bool {
    (1..=16).contains(&key_id.len()) && key_id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// True for a name that can appear in a file name and in `local:<digits>@<trunk_id>` callerids:
/// short, without `@`, `/`, spaces or separators.
fn is_label(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_prefix_digits(prefix: &str) -> bool {
    (1..=4).contains(&prefix.len()) && prefix.bytes().all(|b| b.is_ascii_digit())
}

/// Checks the numbering settings of one trunk; returns (field, message) pairs.
fn trunk_numbering_problems(trunk: &TrunkConfig) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    let database = &*phonenumber::metadata::DATABASE;

    let region = trunk.region.as_deref().map(|r| {
        phonenumber::country::Id::from_str(&r.to_ascii_uppercase())
            .ok()
            .and_then(|id| database.by_id(id.as_ref()))
    });
    if let Some(None) = region {
        out.push((
            "region",
            "is not a region known to libphonenumber (use an ISO 3166 code such as \"DE\")",
        ));
    }
    if let Some(code) = trunk.country_code {
        if database.by_code(&code).is_none() {
            out.push(("country_code", "is not a known country calling code"));
        } else if let Some(Some(metadata)) = region {
            if metadata.country_code() != code {
                out.push(("country_code", "does not match the country code of region"));
            }
        }
    }

    let national = trunk.national_prefix.as_deref();
    let international = trunk.international_prefix.as_deref();
    if national.is_some_and(|p| !is_prefix_digits(p)) {
        out.push(("national_prefix", "must be 1 to 4 digits"));
    }
    if international.is_some_and(|p| !is_prefix_digits(p)) {
        out.push(("international_prefix", "must be 1 to 4 digits"));
    }
    // The region's international prefix applies when none is configured.
    let region_international = region
        .flatten()
        .and_then(|m| m.international_prefix())
        .map(|r| r.as_str().trim().to_owned());
    let international = international.or(region_international.as_deref());
    if let (Some(n), Some(i)) = (national, international) {
        if n.starts_with(i) {
            out.push((
                "national_prefix",
                "must not start with international_prefix, or no number would be national",
            ));
        }
    }

    // Without a region, the explicit settings must be complete enough that a national number
    // is never mistaken for an international one or globalised into an unknown country.
    if trunk.region.is_none() {
        if national.is_some() && trunk.country_code.is_none() {
            out.push(("national_prefix", "needs country_code or region"));
        }
        if national.is_some() && international.is_none() {
            out.push((
                "international_prefix",
                "must be set when national_prefix is set",
            ));
        }
    }
    out
}

/// Header names of RFC 3261 section 20 and the identity headers the proxy reads. A stamped
/// header under one of these names would be removed from or mixed into a header the message
/// needs. Every single-letter name is refused too, since those are compact forms.
const SIP_HEADERS: &[&str] = &[
    "accept",
    "accept-encoding",
    "accept-language",
    "alert-info",
    "allow",
    "authentication-info",
    "authorization",
    "call-id",
    "call-info",
    "contact",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-length",
    "content-type",
    "cseq",
    "date",
    "error-info",
    "expires",
    "from",
    "in-reply-to",
    "max-forwards",
    "min-expires",
    "mime-version",
    "organization",
    "priority",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-require",
    "record-route",
    "reply-to",
    "require",
    "retry-after",
    "route",
    "server",
    "subject",
    "supported",
    "timestamp",
    "to",
    "unsupported",
    "user-agent",
    "via",
    "warning",
    "www-authenticate",
    "p-asserted-identity",
    "p-preferred-identity",
    "remote-party-id",
    "privacy",
    "identity",
    "event",
    "refer-to",
];

fn is_sip_header(name: &str) -> bool {
    name.len() == 1 || SIP_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Returns true for an RFC 3261 `token`, the grammar of a header name.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}
