//! The proxy's own addresses as written into Via and Record-Route, the Via branch, and the
//! checks that recognise the proxy's own entries in received headers.

use std::net::{IpAddr, SocketAddr};

use sha2::{Digest, Sha256};

use crate::message::uri::Uri;
use crate::message::{Transport, Via};

/// Prefix of every branch the proxy writes: the RFC 3261 magic cookie plus a marker.
pub const BRANCH_PREFIX: &[u8] = b"z9hG4bKss";

/// Name of the Via parameter that carries the TCP flow a request arrived on, so the response
/// can go back over the same connection without per-transaction state.
pub const FLOW_PARAM: &[u8] = b"ssf";

/// One listening address as it appears in headers.
#[derive(Debug, Clone)]
pub struct LocalAddr {
    /// Host text for Via sent-by and Record-Route (IPv6 in brackets).
    pub host: String,
    /// Host without brackets, for comparisons with parsed URIs and Vias.
    pub bare_host: String,
    pub port: u16,
}

impl LocalAddr {
    fn new(addr: SocketAddr, advertised: Option<&str>) -> Self {
        let bare_host = match advertised {
            Some(host) => host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            None => addr.ip().to_string(),
        };
        let host = if bare_host.contains(':') {
            format!("[{bare_host}]")
        } else {
            bare_host.clone()
        };
        Self {
            host,
            bare_host,
            port: addr.port(),
        }
    }

    fn matches(&self, host: &[u8], port: Option<u16>) -> bool {
        host.eq_ignore_ascii_case(self.bare_host.as_bytes()) && port.unwrap_or(5060) == self.port
    }
}

/// The proxy's identity on each transport.
#[derive(Debug, Clone)]
pub struct Local {
    udp: Option<LocalAddr>,
    tcp: Option<LocalAddr>,
    branch_key: [u8; 32],
}

impl Local {
    pub fn new(
        udp: Option<SocketAddr>,
        tcp: Option<SocketAddr>,
        advertised: Option<&str>,
        branch_key: [u8; 32],
    ) -> Self {
        Self {
            udp: udp.map(|a| LocalAddr::new(a, advertised)),
            tcp: tcp.map(|a| LocalAddr::new(a, advertised)),
            branch_key,
        }
    }

    /// Returns the address written for a transport, falling back to the other transport's.
    pub fn addr(&self, transport: Transport) -> &LocalAddr {
        let (first, second) = match transport {
            Transport::Udp => (&self.udp, &self.tcp),
            Transport::Tcp => (&self.tcp, &self.udp),
        };
        first
            .as_ref()
            .or(second.as_ref())
            .expect("configuration validation requires at least one listener")
    }

    fn is_local(&self, host: &[u8], port: Option<u16>) -> bool {
        self.udp
            .iter()
            .chain(&self.tcp)
            .any(|a| a.matches(host, port))
    }

    /// Returns true when a Via value was written by this proxy.
    pub fn is_own_via(&self, via: &Via<'_>) -> bool {
        via.branch().is_some_and(|b| b.starts_with(BRANCH_PREFIX))
            && self.is_local(via.host, via.port)
    }

    /// Returns true when a Route entry (`<uri>` with parameters) points at this proxy.
    pub fn is_own_route(&self, entry: &[u8]) -> bool {
        Uri::parse_name_addr(entry)
            .is_some_and(|uri| uri.user.is_none() && self.is_local(uri.host, uri.port))
    }

    /// Returns true when a Request-URI addresses the proxy itself rather than a user behind it.
    pub fn is_own_uri(&self, uri: &Uri<'_>) -> bool {
        uri.user.is_none() && self.is_local(uri.host, uri.port)
    }

    /// Computes the branch for a forwarded request (RFC 3261 section 16.11): a keyed hash of
    /// the incoming top Via's branch and sent-by when that branch carries the magic cookie,
    /// otherwise of the fields that identify the transaction. A retransmission and the CANCEL
    /// for an INVITE get the same branch as the INVITE. The TCP flow token, when there is one,
    /// is hashed too, so a response cannot redirect it.
    pub fn branch(&self, top_via: &[u8], fallback: &[&[u8]], flow: Option<&[u8]>) -> [u8; 22] {
        let via = Via::parse(top_via);
        let cookie = via.as_ref().and_then(|v| {
            v.branch()
                .filter(|b| b.starts_with(b"z9hG4bK"))
                .map(|b| (v, b))
        });
        if let Some((via, branch)) = cookie {
            return self.keyed_branch(branch, via.host, via.port, flow);
        }
        let mut hasher = self.hasher();
        hasher.update(top_via);
        for field in fallback {
            hasher.update([0]);
            hasher.update(field);
        }
        hasher.update([1]);
        hasher.update(flow.unwrap_or_default());
        encode_branch(hasher)
    }

    /// Returns false when a response's top Via (the proxy's) cannot have been written for the
    /// Via below it, which marks a forged response. Branches computed without the magic
    /// cookie cannot be checked this way and pass.
    pub fn branch_matches(&self, own: &Via<'_>, next: &Via<'_>) -> bool {
        let Some(next_branch) = next.branch().filter(|b| b.starts_with(b"z9hG4bK")) else {
            return true;
        };
        let expected = self.keyed_branch(next_branch, next.host, next.port, own.param(FLOW_PARAM));
        own.branch() == Some(&expected[..])
    }

    fn keyed_branch(
        &self,
        branch: &[u8],
        host: &[u8],
        port: Option<u16>,
        flow: Option<&[u8]>,
    ) -> [u8; 22] {
        let mut hasher = self.hasher();
        hasher.update(branch);
        hasher.update([0]);
        hasher.update(host);
        hasher.update(port.unwrap_or(0).to_be_bytes());
        hasher.update([1]);
        hasher.update(flow.unwrap_or_default());
        encode_branch(hasher)
    }

    fn hasher(&self) -> Sha256 {
        let mut hasher = Sha256::new();
        hasher.update(self.branch_key);
        hasher
    }
}

/// Writes the branch: the prefix, then hex digits of the hash up to 22 bytes in all.
fn encode_branch(hasher: Sha256) -> [u8; 22] {
    let digest = hasher.finalize();
    let mut out = [0u8; 22];
    out[..BRANCH_PREFIX.len()].copy_from_slice(BRANCH_PREFIX);
    let room = out.len() - BRANCH_PREFIX.len();
    let hex = hex::encode(&digest[..room.div_ceil(2)]);
    out[BRANCH_PREFIX.len()..].copy_from_slice(&hex.as_bytes()[..room]);
    out
}

/// Encodes a TCP peer address as a Via parameter token: hex address, `-`, decimal port.
pub fn encode_flow(addr: SocketAddr, out: &mut Vec<u8>) {
    match addr.ip() {
        IpAddr::V4(ip) => out.extend_from_slice(hex::encode(ip.octets()).as_bytes()),
        IpAddr::V6(ip) => out.extend_from_slice(hex::encode(ip.octets()).as_bytes()),
    }
    out.push(b'-');
    out.extend_from_slice(addr.port().to_string().as_bytes());
}

/// Decodes a flow token written by [`encode_flow`].
pub fn decode_flow(token: &[u8]) -> Option<SocketAddr> {
    let dash = memchr::memchr(b'-', token)?;
    let ip_bytes = hex::decode(&token[..dash]).ok()?;
    let port: u16 = std::str::from_utf8(&token[dash + 1..]).ok()?.parse().ok()?;
    let ip = match ip_bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(ip_bytes.as_slice()).ok()?),
        16 => IpAddr::from(<[u8; 16]>::try_from(ip_bytes.as_slice()).ok()?),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> Local {
        Local::new(
            Some("127.0.0.1:5060".parse().unwrap()),
            Some("127.0.0.1:5060".parse().unwrap()),
            None,
            [1; 32],
        )
    }

    #[test]
    fn branch_is_stable_and_distinct() {
        let l = local();
        let a = l.branch(b"SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1", &[], None);
        let b = l.branch(
            b"SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1;rport",
            &[],
            None,
        );
        let c = l.branch(b"SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-2", &[], None);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.starts_with(BRANCH_PREFIX));
        assert!(a.iter().all(|b| b.is_ascii_alphanumeric()));
        let old = l.branch(b"SIP/2.0/UDP 127.0.0.1:5070", &[b"call-1", b"1"], None);
        let old2 = l.branch(b"SIP/2.0/UDP 127.0.0.1:5070", &[b"call-2", b"1"], None);
        assert_ne!(old, old2);
        let with_flow = l.branch(
            b"SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1",
            &[],
            Some(b"7f000001-4000"),
        );
        assert_ne!(a, with_flow);
    }

    #[test]
    fn branch_matches_only_its_own_via() {
        let l = local();
        let incoming = b"SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK-7";
        let branch = l.branch(incoming, &[], None);
        let own_text = format!(
            "SIP/2.0/UDP 127.0.0.1:5060;branch={}",
            std::str::from_utf8(&branch).unwrap()
        );
        let own = Via::parse(own_text.as_bytes()).unwrap();
        let next =
            Via::parse(b"SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK-7;received=192.0.2.1").unwrap();
        assert!(l.branch_matches(&own, &next));
        let other = Via::parse(b"SIP/2.0/UDP 198.51.100.9:5070;branch=z9hG4bK-7").unwrap();
        assert!(!l.branch_matches(&own, &other));
        let forged = Via::parse(b"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKssforged").unwrap();
        assert!(!l.branch_matches(&forged, &next));
    }

    #[test]
    fn own_via_and_route() {
        let l = local();
        let via = Via::parse(b"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKss0123").unwrap();
        assert!(l.is_own_via(&via));
        let other = Via::parse(b"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK0123").unwrap();
        assert!(!l.is_own_via(&other));
        assert!(l.is_own_route(b"<sip:127.0.0.1:5060;lr>"));
        assert!(l.is_own_route(b"<sip:127.0.0.1;transport=tcp;lr>"));
        assert!(!l.is_own_route(b"<sip:127.0.0.1:5090;lr>"));
        assert!(!l.is_own_route(b"<sip:bob@127.0.0.1:5060;lr>"));
    }

    #[test]
    fn flow_round_trip() {
        for addr in ["127.0.0.1:40000", "[2001:db8::1]:5060"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let mut token = Vec::new();
            encode_flow(addr, &mut token);
            assert!(token
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-'));
            assert_eq!(decode_flow(&token), Some(addr));
        }
        assert_eq!(decode_flow(b"zz-1"), None);
        assert_eq!(decode_flow(b"7f000001"), None);
    }
}
