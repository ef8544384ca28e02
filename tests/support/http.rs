//! A minimal HTTP/1.1 client for the proxy's admin listener on 127.0.0.1: one request per
//! connection (`Connection: close`), bounded by timeouts.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// How long a request waits for the admin listener to accept, which it does only after the
/// SIP listeners are open.
const CONNECT_DEADLINE: Duration = Duration::from_secs(10);

/// Read and write timeout of one request.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A response: status code and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

impl Response {
    /// Parses the body as JSON, panicking with the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("response body is not JSON ({err}): {}", self.body))
    }
}

/// Sends one request to 127.0.0.1:`port` and returns the response. `token` adds a bearer
/// `Authorization` header and `body` a JSON body.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Response {
    let mut stream = connect(port);
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("set the read timeout");
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .expect("set the write timeout");

    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()))
        .unwrap_or_else(|err| panic!("send {method} {path}: {err}"));

    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .unwrap_or_else(|err| panic!("read the response to {method} {path}: {err}"));
    parse(&raw).unwrap_or_else(|| {
        panic!(
            "malformed response to {method} {path}: {}",
            String::from_utf8_lossy(&raw)
        )
    })
}

/// Connects, retrying refused connections until [`CONNECT_DEADLINE`].
fn connect(port: u16) -> TcpStream {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + CONNECT_DEADLINE;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(stream) => return stream,
            Err(err) if err.kind() == ErrorKind::ConnectionRefused && Instant::now() < deadline => {
                sleep(Duration::from_millis(50));
            }
            Err(err) => panic!("connect to the admin listener on {addr}: {err}"),
        }
    }
}

/// Parses a whole response read until the connection closed. Handles `Content-Length` and
/// chunked bodies.
fn parse(raw: &[u8]) -> Option<Response> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..head_end]).ok()?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|line| {
        line.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let rest = &raw[head_end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Some(Response {
        status,
        body: String::from_utf8(body).ok()?,
    })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}
