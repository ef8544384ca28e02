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

/// Plan for splicing `;received=...;rport=...` into the sender's Via.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViaEdit {
    /// Byte range (in the message) of an empty `;rport` parameter to replace, if any.
    pub replace: Option<Range<usize>>,
    /// Offset where the new parameters are inserted when nothing is replaced.
    pub insert_at: usize,
    pub add_received: bool,
    pub fill_rport: bool,
}

/// Plans the RFC 3581 edit of the top Via, whose first value spans `value` in `buf`.
///
/// `received` is added when the sent-by host differs from the source address or `rport` is
/// present; an empty `rport` is filled with the source port.
pub fn plan_received(buf: &[u8], value: Range<usize>, source: SocketAddr) -> Option<ViaEdit> {
    let text = &buf[value.clone()];
    let via = Via::parse(text)?;
    let rport = via.param(b"rport");
    let host_is_source = std::str::from_utf8(via.host)
        .ok()
        .and_then(|h| h.parse::<IpAddr>().ok())
        .is_some_and(|ip| ip == source.ip());
    let add_received = !host_is_source || rport.is_some();
    let fill_rport = rport.is_some_and(|v| v.is_empty());
    if !add_received && !fill_rport {
        return None;
    }
    let replace = if fill_rport {
        find_empty_rport(text).map(|r| value.start + r.start..value.start + r.end)
    } else {
        None
    };
    Some(ViaEdit {
        replace,
        insert_at: value.end,
        add_received,
        fill_rport,
    })
}

/// Finds `;rport` without a value in a Via value, returning its range relative to `text`.
fn find_empty_rport(text: &[u8]) -> Option<Range<usize>> {
    let mut offset = 0;
    while let Some(found) = memchr::memmem::find(&text[offset..], b";rport") {
        let start = offset + found;
        let end = start + b";rport".len();
        let next = text.get(end).copied();
        if matches!(
            next,
            None | Some(b';') | Some(b' ') | Some(b'\t') | Some(b'\r') | Some(b'\n')
        ) {
            return Some(start..end);
        }
        offset = end;
    }
    None
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

    #[test]
    fn plan_received_fills_empty_rport() {
        let buf = b"SIP/2.0/UDP 192.0.2.1:5070;rport;branch=z9hG4bK1";
        let edit = plan_received(buf, 0..buf.len(), "192.0.2.1:5070".parse().unwrap()).unwrap();
        assert!(edit.add_received);
        assert!(edit.fill_rport);
        assert_eq!(&buf[edit.replace.unwrap()], b";rport");
        let plain = b"SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1";
        let none = plan_received(plain, 0..plain.len(), "192.0.2.1:5070".parse().unwrap());
        assert!(none.is_none());
    }
}
