//! Trunk policies: trust decided by the transport peer's address alone, and the numbering and
//! anonymity settings of each trunk, prepared once at start-up.

use std::net::IpAddr;
use std::str::FromStr;

use phonenumber::country;

use crate::config::{Config, TrunkConfig};

/// Trunk id of the policy applied to peers that belong to no configured trunk. It appears in
/// the `local:` callerids of such peers.
pub const UNTRUSTED_TRUNK_ID: &str = "untrusted";

/// From user parts that mark a call as anonymous unless a trunk configures its own list.
/// `unavailable` and `unknown` give the reason `unavailable`; the others give `withheld`.
pub const DEFAULT_ANONYMOUS_USERS: [&str; 6] = [
    "anonymous",
    "restricted",
    "private",
    "withheld",
    "unavailable",
    "unknown",
];

/// Numbering settings for the numbers a trunk writes without `+`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Numbering {
    /// Country calling code used to globalise national numbers, for example 49.
    pub country_code: Option<u16>,
    /// Region whose libphonenumber metadata parses national numbers, for example DE.
    pub region: Option<country::Id>,
    /// Digits that start a national number, for example `0`.
    pub national_prefix: Option<String>,
    /// Digits that start an international number, for example `00`, or `011` in NANP.
    pub international_prefix: Option<String>,
}

impl Numbering {
    /// Resolves the configured values, filling unset prefixes and the country code from the
    /// region's metadata where the metadata has a plain-digit value.
    fn from_config(trunk: &TrunkConfig) -> Self {
        let region = trunk
            .region
            .as_deref()
            .and_then(|r| country::Id::from_str(&r.to_ascii_uppercase()).ok());
        let metadata = region.and_then(|id| phonenumber::metadata::DATABASE.by_id(id.as_ref()));

        let country_code = trunk
            .country_code
            .or_else(|| metadata.map(|m| m.country_code()));
        let national_prefix = trunk.national_prefix.clone().or_else(|| {
            metadata
                .and_then(|m| m.national_prefix())
                .filter(|p| is_digits(p))
                .map(str::to_owned)
        });
        // The metadata's international prefix is a pattern; it is used when it is plain digits,
        // else the preferred prefix is (Australia: pattern `001[14-689]|...`, preferred `0011`).
        let international_prefix = trunk.international_prefix.clone().or_else(|| {
            let metadata = metadata?;
            let pattern = metadata.international_prefix().map(|r| r.as_str().trim());
            pattern
                .filter(|p| is_digits(p))
                .or(metadata.preferred_international_prefix())
                .filter(|p| is_digits(p))
                .map(str::to_owned)
        });

        Self {
            country_code,
            region,
            national_prefix,
            international_prefix,
        }
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// What the proxy knows of the sender: whether it is a trusted peer and its trunk settings.
#[derive(Debug, Clone)]
pub struct TrunkPolicy {
    /// Stable, non-secret trunk label, used in `local:` callerids.
    pub id: String,
    /// True when the transport peer is on this trunk's trusted address list.
    pub trusted: bool,
    /// Whether P-Asserted-Identity and Remote-Party-ID from this trunk are honoured. Has effect
    /// only when `trusted` is true.
    pub trusted_identity_headers: bool,
    pub numbering: Numbering,
    /// Lowercase From user parts that mark the call as anonymous.
    pub anonymous_users: Vec<String>,
    /// Whether a display name of "Anonymous" alone marks the call as anonymous.
    pub anonymous_display_name: bool,
    /// Whether P-Asserted-Identity and Remote-Party-ID are removed from anonymous calls before
    /// forwarding, so a withheld number does not reach the gateway.
    pub strip_identity_when_anonymous: bool,
}

impl Default for TrunkPolicy {
    /// Returns the policy for a peer outside every trunk: untrusted, no numbering settings and the
    /// default anonymity rules.
    fn default() -> Self {
        Self {
            id: UNTRUSTED_TRUNK_ID.to_owned(),
            trusted: false,
            trusted_identity_headers: true,
            numbering: Numbering::default(),
            anonymous_users: DEFAULT_ANONYMOUS_USERS.map(str::to_owned).to_vec(),
            anonymous_display_name: true,
            strip_identity_when_anonymous: true,
        }
    }
}

impl TrunkPolicy {
    /// Builds the policy applied to the trusted peers of a configured trunk.
    pub fn from_config(trunk: &TrunkConfig) -> Self {
        let anonymous_users = match &trunk.anonymous_users {
            Some(users) => users.iter().map(|u| u.to_ascii_lowercase()).collect(),
            None => DEFAULT_ANONYMOUS_USERS.map(str::to_owned).to_vec(),
        };
        Self {
            id: trunk.id.clone(),
            trusted: true,
            trusted_identity_headers: trunk.trusted_identity_headers,
            numbering: Numbering::from_config(trunk),
            anonymous_users,
            anonymous_display_name: trunk.anonymous_display_name,
            strip_identity_when_anonymous: trunk.strip_identity_when_anonymous,
        }
    }

    /// True when PAI and RPID from this peer may be used as callerid sources.
    pub(crate) fn honours_identity_headers(&self) -> bool {
        self.trusted && self.trusted_identity_headers
    }
}

/// The trusted-peer list: maps a transport peer's address to its trunk policy.
#[derive(Debug, Clone)]
pub struct TrustMap {
    trunks: Vec<TrunkPolicy>,
    /// Every trusted network with the index of its trunk, in configuration order.
    networks: Vec<(ipnet::IpNet, usize)>,
    untrusted: TrunkPolicy,
}

impl TrustMap {
    /// Builds the map from the `[[trunks]]` section. Where networks of several trunks overlap,
    /// the trunk listed first wins.
    pub fn from_config(config: &Config) -> Self {
        let trunks: Vec<TrunkPolicy> = config.trunks.iter().map(TrunkPolicy::from_config).collect();
        let networks = config
            .trunks
            .iter()
            .enumerate()
            .flat_map(|(i, t)| t.trusted_networks().map(move |net| (net.trunc(), i)))
            .collect();
        Self {
            trunks,
            networks,
            untrusted: TrunkPolicy::default(),
        }
    }

    /// Returns the policy of the first trunk whose networks contain `ip`, or the untrusted policy.
    /// An IPv4-mapped IPv6 address (from a dual-stack socket) matches IPv4 networks.
    pub fn classify(&self, ip: IpAddr) -> &TrunkPolicy {
        let ip = match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        self.networks
            .iter()
            .find(|(net, _)| net.contains(&ip))
            .map(|(_, i)| &self.trunks[*i])
            .unwrap_or(&self.untrusted)
    }

    /// Returns the policy of the trunk with this id.
    pub fn by_id(&self, id: &str) -> Option<&TrunkPolicy> {
        self.trunks.iter().find(|t| t.id == id)
    }

    /// Returns the policy applied to peers outside every trunk.
    pub fn untrusted(&self) -> &TrunkPolicy {
        &self.untrusted
    }
}
