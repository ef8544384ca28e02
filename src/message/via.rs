//! A typed view of one Via value (RFC 3261 section 20.42, RFC 3581 `rport`).

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use super::uri::split_host_port;
use super::value::{find_param, trim_slice};

/// Transport protocols the proxy speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
        }
    }

    /// Returns the upper-case name written in Via headers.
    pub fn via_name(self) -> &'static str {
        match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
        }
    }
}

/// One parsed Via value, borrowing from the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via<'a> {
    /// The transport as written (`UDP`, `TCP`, `TLS`, ...).
    pub transport: &'a [u8],
    pub host: &'a [u8],
    pub port: Option<u16>,
    /// The parameters, starting at the first `;`.
    pub params: &'a [u8],
}

impl<'a> Via<'a> {
    /// Parses a single Via value, such as `SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1`.
    pub fn parse(value: &'a [u8]) -> Option<Self> {
        let value = trim_slice(value);
        let mut parts = value.splitn(3, |b| *b == b'/');
        let protocol = trim_slice(parts.next()?);
        let version = trim_slice(parts.next()?);
        let rest = trim_slice(parts.next()?);
        if !protocol.eq_ignore_ascii_case(b"SIP") || version != b"2.0" {
            return None;
        }
        let transport_end = rest
            .iter()
            .position(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))?;
        let transport = &rest[..transport_end];
        let sent_by_and_params = trim_slice(&rest[transport_end..]);
        let params_at =
            memchr::memchr(b';', sent_by_and_params).unwrap_or(sent_by_and_params.len());
        let sent_by = trim_slice(&sent_by_and_params[..params_at]);
        let (host, port) = split_host_port(sent_by)?;
        if transport.is_empty() {
            return None;
        }
        Some(Self {
            transport,
            host,
            port,
            params: &sent_by_and_params[params_at..],
        })
    }

    pub fn param(&self, name: &[u8]) -> Option<&'a [u8]> {
        find_param(self.params, name)
    }

    pub fn branch(&self) -> Option<&'a [u8]> {
        self.param(b"branch")
    }

    /// Returns the transport when it is one the proxy speaks.
    pub fn known_transport(&self) -> Option<Transport> {
        if self.transport.eq_ignore_ascii_case(b"UDP") {
            Some(Transport::Udp)
        } else if self.transport.eq_ignore_ascii_case(b"TCP") {
            Some(Transport::Tcp)
        } else {
            None
        }
    }

    /// Returns where a response to this Via goes (RFC 3261 section 18.2.2, RFC 3581 section 4).
    /// The address is `received` when present, else the sent-by host. The port is the `rport`
    /// value when present, else the sent-by port, else 5060.
    pub fn response_target(&self) -> Option<SocketAddr> {
        let ip_text = self.param(b"received").unwrap_or(self.host);
        let ip: IpAddr = std::str::from_utf8(ip_text).ok()?.parse().ok()?;
        let rport = self
            .param(b"rport")
            .filter(|v| !v.is_empty())
            .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u16>().ok());
        Some(SocketAddr::new(ip, rport.or(self.port).unwrap_or(5060)))
    }
}

/// The RFC 3581 and RFC 3261 section 18.2.1 edit of the sender's top Via: `received` set to
/// the source address and an `rport` parameter set to the source port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViaEdit<'a> {
    /// The top Via value as received.
    text: &'a [u8],
    /// Offset of `text` in the message.
    offset: usize,
    source: SocketAddr,
}

/// The text that replaces the range of one [`ViaEdit`] splice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViaParam {
    /// `;received=` and the source address.
    Received,
    /// `;rport=` and the source port.
    Rport,
    /// Nothing: a repeated `received` or `rport` parameter is removed.
    Removed,
}

/// Plans the edit of the top Via, whose first value spans `value` in `buf`, for a request from
/// `source`. Returns `None` when the Via does not parse or needs no change.
///
/// `received` is set when the sent-by host is not the source address, when `rport` is present
/// (RFC 3581 section 4) and when the sender supplied a `received` of its own. An existing
/// `received` or `rport` parameter is replaced in place, whatever its value, so a sender cannot
/// steer responses elsewhere. Repeated copies are removed, and a missing `received` is
/// appended.
pub fn plan_received(buf: &[u8], value: Range<usize>, source: SocketAddr) -> Option<ViaEdit<'_>> {
    let text = &buf[value.clone()];
    let via = Via::parse(text)?;
    let host_is_source = std::str::from_utf8(via.host)
        .ok()
        .and_then(|h| h.parse::<IpAddr>().ok())
        .is_some_and(|ip| ip == source.ip());
    let needed =
        !host_is_source || via.param(b"rport").is_some() || via.param(b"received").is_some();
    needed.then_some(ViaEdit {
        text,
        offset: value.start,
        source,
    })
}

impl ViaEdit<'_> {
    /// Returns the splices in order of offset: each range of the message and what replaces it.
    /// An appended `received` has an empty range at the end of the Via value.
    pub fn splices(&self) -> impl Iterator<Item = (Range<usize>, ViaParam)> + '_ {
        let text = self.text;
        let mut next = memchr::memchr(b';', text);
        let mut received_seen = false;
        let mut rport_seen = false;
        let mut appended = false;
        std::iter::from_fn(move || {
            while let Some(start) = next {
                let end =
                    memchr::memchr(b';', &text[start + 1..]).map_or(text.len(), |i| start + 1 + i);
                next = (end < text.len()).then_some(end);
                let param = &text[start + 1..end];
                let name = trim_slice(param.split(|b| *b == b'=').next().unwrap_or_default());
                let (seen, kind) = if name.eq_ignore_ascii_case(b"received") {
                    (&mut received_seen, ViaParam::Received)
                } else if name.eq_ignore_ascii_case(b"rport") {
                    (&mut rport_seen, ViaParam::Rport)
                } else {
                    continue;
                };
                let kind = if *seen { ViaParam::Removed } else { kind };
                *seen = true;
                return Some((self.offset + start..self.offset + end, kind));
            }
            if received_seen || appended {
                return None;
            }
            appended = true;
            let end = self.offset + text.len();
            Some((end..end, ViaParam::Received))
        })
    }

    /// Returns the text that replaces a splice's range.
    pub fn text(&self, param: ViaParam) -> impl std::fmt::Display {
        ParamText {
            param,
            source: self.source,
        }
    }

    /// Appends `buf[range]`, which contains the Via value, to `out` with the edit applied.
    pub fn write_edited(&self, buf: &[u8], range: Range<usize>, out: &mut Vec<u8>) {
        use std::io::Write;
        let mut pos = range.start;
        for (splice, param) in self.splices() {
            out.extend_from_slice(&buf[pos..splice.start]);
            let _ = write!(out, "{}", self.text(param));
            pos = splice.end;
        }
        out.extend_from_slice(&buf[pos..range.end]);
    }
}

struct ParamText {
    param: ViaParam,
    source: SocketAddr,
}

impl std::fmt::Display for ParamText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.param {
            ViaParam::Received => write!(f, ";received={}", self.source.ip()),
            ViaParam::Rport => write!(f, ";rport={}", self.source.port()),
            ViaParam::Removed => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_udp_via_with_params() {
        let via = Via::parse(b"SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK77;rport").unwrap();
        assert_eq!(via.known_transport(), Some(Transport::Udp));
        assert_eq!(via.host, b"192.0.2.1");
        assert_eq!(via.port, Some(5070));
        assert_eq!(via.branch(), Some(&b"z9hG4bK77"[..]));
        assert_eq!(via.param(b"rport"), Some(&b""[..]));
    }

    #[test]
    fn parses_lws_and_ipv6() {
        let via = Via::parse(b"SIP / 2.0 / TCP   [2001:db8::10]:5060 ;branch=z9hG4bKx").unwrap();
        assert_eq!(via.known_transport(), Some(Transport::Tcp));
        assert_eq!(via.host, b"2001:db8::10");
        assert_eq!(via.branch(), Some(&b"z9hG4bKx"[..]));
    }

    #[test]
    fn rejects_bad_vias() {
        assert!(Via::parse(b"SIP/3.0/UDP h").is_none());
        assert!(Via::parse(b"SIP/2.0/UDP").is_none());
        assert!(Via::parse(b"garbage").is_none());
        assert!(Via::parse(b"SIP/2.0/UDP h:70000").is_none());
    }

    #[test]
    fn response_target_honours_received_and_rport() {
        let via = Via::parse(b"SIP/2.0/UDP h.example:5070;received=192.0.2.9;rport=6000").unwrap();
        assert_eq!(
            via.response_target(),
            Some("192.0.2.9:6000".parse().unwrap())
        );
        let via = Via::parse(b"SIP/2.0/UDP 192.0.2.1").unwrap();
        assert_eq!(
            via.response_target(),
            Some("192.0.2.1:5060".parse().unwrap())
        );
        let via = Via::parse(b"SIP/2.0/UDP host.example:5070").unwrap();
        assert_eq!(via.response_target(), None);
    }

    fn edited(via: &[u8], source: &str) -> Option<String> {
        let edit = plan_received(via, 0..via.len(), source.parse().unwrap())?;
        let mut out = Vec::new();
        edit.write_edited(via, 0..via.len(), &mut out);
        Some(String::from_utf8(out).unwrap())
    }

    #[test]
    fn plan_received_fills_empty_rport() {
        assert_eq!(
            edited(
                b"SIP/2.0/UDP 192.0.2.1:5070;rport;branch=z9hG4bK1",
                "192.0.2.1:5070"
            )
            .unwrap(),
            "SIP/2.0/UDP 192.0.2.1:5070;rport=5070;branch=z9hG4bK1;received=192.0.2.1"
        );
        let plain = b"SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1";
        assert_eq!(edited(plain, "192.0.2.1:5070"), None);
    }

    #[test]
    fn plan_received_replaces_client_values() {
        assert_eq!(
            edited(
                b"SIP/2.0/UDP 192.0.2.1:5070;rport=1;branch=z9hG4bK1",
                "192.0.2.1:6000"
            )
            .unwrap(),
            "SIP/2.0/UDP 192.0.2.1:5070;rport=6000;branch=z9hG4bK1;received=192.0.2.1"
        );
        assert_eq!(
            edited(
                b"SIP/2.0/UDP 192.0.2.1;received=10.9.9.9;branch=z9hG4bK1",
                "192.0.2.1:5060"
            )
            .unwrap(),
            "SIP/2.0/UDP 192.0.2.1;received=192.0.2.1;branch=z9hG4bK1"
        );
        assert_eq!(
            edited(
                b"SIP/2.0/TCP h.example;Received=1;rport = 7;received=2;RPORT;branch=z9hG4bK1",
                "[2001:db8::9]:6000"
            )
            .unwrap(),
            "SIP/2.0/TCP h.example;received=2001:db8::9;rport=6000;branch=z9hG4bK1"
        );
    }

    #[test]
    fn plan_received_adds_received_for_other_hosts() {
        assert_eq!(
            edited(
                b"SIP/2.0/UDP h.example:5070;branch=z9hG4bK1",
                "192.0.2.1:5070"
            )
            .unwrap(),
            "SIP/2.0/UDP h.example:5070;branch=z9hG4bK1;received=192.0.2.1"
        );
        assert_eq!(
            edited(b"SIP/2.0/UDP 192.0.2.1", "192.0.2.2:5060").unwrap(),
            "SIP/2.0/UDP 192.0.2.1;received=192.0.2.2"
        );
        assert_eq!(edited(b"garbage", "192.0.2.2:5060"), None);
    }
}
