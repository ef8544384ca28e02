//! The parts of a SIP URI the proxy routes on: scheme, host, port and a few parameters.

use std::net::{IpAddr, SocketAddr};

use super::value::{find_param, trim_slice};

/// URI schemes the proxy accepts in a Request-URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
}

/// A borrowed view of a SIP or tel URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri<'a> {
    pub scheme: Scheme,
    pub user: Option<&'a [u8]>,
    /// Host without IPv6 brackets; empty for tel URIs.
    pub host: &'a [u8],
    pub port: Option<u16>,
    /// The `;`-separated URI parameters, starting with `;`, without any `?headers` part.
    pub params: &'a [u8],
}

impl<'a> Uri<'a> {
    /// Parses a bare URI (no angle brackets). Returns `None` for anything malformed.
    pub fn parse(text: &'a [u8]) -> Option<Self> {
        let text = trim_slice(text);
        let colon = memchr::memchr(b':', text)?;
        let scheme = &text[..colon];
        let rest = &text[colon + 1..];
        let scheme = if scheme.eq_ignore_ascii_case(b"sip") {
            Scheme::Sip
        } else if scheme.eq_ignore_ascii_case(b"sips") {
            Scheme::Sips
        } else if scheme.eq_ignore_ascii_case(b"tel") {
            Scheme::Tel
        } else {
            return None;
        };
        if scheme == Scheme::Tel {
            let end = memchr::memchr(b';', rest).unwrap_or(rest.len());
            if end == 0 {
                return None;
            }
            return Some(Self {
                scheme,
                user: Some(&rest[..end]),
                host: &[],
                port: None,
                params: &rest[end..],
            });
        }
        let rest = match memchr::memchr(b'?', rest) {
            Some(q) => &rest[..q],
            None => rest,
        };
        let (user, hostport_and_params) = match memchr::memrchr(b'@', rest) {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let params_at =
            memchr::memchr(b';', hostport_and_params).unwrap_or(hostport_and_params.len());
        let hostport = &hostport_and_params[..params_at];
        let params = &hostport_and_params[params_at..];
        let (host, port) = split_host_port(hostport)?;
        Some(Self {
            scheme,
            user,
            host,
            port,
            params,
        })
    }

    /// Parses the URI of a name-addr (`"Name" <uri>;params`) or addr-spec value.
    pub fn parse_name_addr(value: &'a [u8]) -> Option<Self> {
        match memchr::memchr(b'<', value) {
            Some(lt) => {
                let end = memchr::memchr(b'>', &value[lt..])? + lt;
                Self::parse(&value[lt + 1..end])
            }
            None => {
                // In an addr-spec every `;` parameter belongs to the header, not the URI.
                let end = memchr::memchr(b';', value).unwrap_or(value.len());
                Self::parse(&value[..end])
            }
        }
    }

    /// Returns a URI parameter's value (empty for a parameter without `=`).
    pub fn param(&self, name: &[u8]) -> Option<&'a [u8]> {
        find_param(self.params, name)
    }

    /// Returns the socket address when the host is an IP literal, with the scheme's default port.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        let ip: IpAddr = std::str::from_utf8(self.host).ok()?.parse().ok()?;
        let default_port = if self.scheme == Scheme::Sips {
            5061
        } else {
            5060
        };
        Some(SocketAddr::new(ip, self.port.unwrap_or(default_port)))
    }
}

/// Splits `host[:port]`, where host may be an IPv6 reference in brackets.
pub fn split_host_port(hostport: &[u8]) -> Option<(&[u8], Option<u16>)> {
    let (host, port_text) = if hostport.first() == Some(&b'[') {
        let close = memchr::memchr(b']', hostport)?;
        let after = &hostport[close + 1..];
        let port = match after {
            [] => None,
            [b':', digits @ ..] => Some(digits),
            _ => return None,
        };
        (&hostport[1..close], port)
    } else {
        match memchr::memchr(b':', hostport) {
            Some(c) => (&hostport[..c], Some(&hostport[c + 1..])),
            None => (hostport, None),
        }
    };
    if host.is_empty()
        || !host
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(b))
    {
        return None;
    }
    let port = match port_text {
        None => None,
        Some(digits) => Some(parse_port(digits)?),
    };
    Some((host, port))
}

fn parse_port(digits: &[u8]) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    u16::try_from(n).ok().filter(|p| *p != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uri_parts() {
        let uri = Uri::parse(b"sip:+4930@192.0.2.1:5070;transport=tcp;lr?Subject=x").unwrap();
        assert_eq!(uri.scheme, Scheme::Sip);
        assert_eq!(uri.user, Some(&b"+4930"[..]));
        assert_eq!(uri.host, b"192.0.2.1");
        assert_eq!(uri.port, Some(5070));
        assert_eq!(uri.param(b"transport"), Some(&b"tcp"[..]));
        assert_eq!(uri.param(b"lr"), Some(&b""[..]));
        assert_eq!(uri.socket_addr(), Some("192.0.2.1:5070".parse().unwrap()));
    }

    #[test]
    fn ipv6_and_default_port() {
        let uri = Uri::parse(b"sips:bob@[2001:db8::20]").unwrap();
        assert_eq!(uri.host, b"2001:db8::20");
        assert_eq!(
            uri.socket_addr(),
            Some("[2001:db8::20]:5061".parse().unwrap())
        );
        let uri = Uri::parse(b"sip:[2001:db8::20]:5080;lr").unwrap();
        assert_eq!(uri.port, Some(5080));
    }

    #[test]
    fn tel_uri_and_rejects() {
        let uri = Uri::parse(b"tel:+49-30-1234;phone-context=+49").unwrap();
        assert_eq!(uri.scheme, Scheme::Tel);
        assert_eq!(uri.user, Some(&b"+49-30-1234"[..]));
        assert!(Uri::parse(b"http://example.com").is_none());
        assert!(Uri::parse(b"sip:a@host:99999").is_none());
        assert!(Uri::parse(b"sip:a@host:0").is_none());
        assert!(Uri::parse(b"sip:a@[2001:db8::1").is_none());
        assert!(Uri::parse(b"sip:").is_none());
    }

    #[test]
    fn name_addr_forms() {
        let uri = Uri::parse_name_addr(b"\"A\" <sip:a@h;user=phone>;tag=1").unwrap();
        assert_eq!(uri.param(b"user"), Some(&b"phone"[..]));
        let uri = Uri::parse_name_addr(b"sip:a@h;tag=1").unwrap();
        assert_eq!(uri.param(b"tag"), None);
    }
}
