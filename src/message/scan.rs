//! The zero-copy scanner: finds the start line, every header line and the body of one framed
//! message by offsets into the received bytes.
//!
//! Lines may end in CRLF or a bare LF. A line that starts with a space or tab continues the
//! previous header (folding, RFC 3261 section 7.3.1). Whitespace around the colon is allowed.

use std::ops::Range;

use super::names::HeaderName;

/// One header: its kind and byte ranges into the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: HeaderName,
    /// The name as written.
    pub name_range: Range<usize>,
    /// The value without leading and trailing whitespace; continuation lines included.
    pub value: Range<usize>,
    /// The whole header including its line ending and any continuation lines.
    pub line: Range<usize>,
}

/// The request methods the proxy treats specially.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Subscribe,
    Other,
}

impl Method {
    pub fn classify(token: &[u8]) -> Self {
        match token {
            b"INVITE" => Self::Invite,
            b"ACK" => Self::Ack,
            b"BYE" => Self::Bye,
            b"CANCEL" => Self::Cancel,
            b"OPTIONS" => Self::Options,
            b"SUBSCRIBE" => Self::Subscribe,
            _ => Self::Other,
        }
    }

    /// Returns the label used in metrics and logs; unknown methods share one label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invite => "INVITE",
            Self::Ack => "ACK",
            Self::Bye => "BYE",
            Self::Cancel => "CANCEL",
            Self::Options => "OPTIONS",
            Self::Subscribe => "SUBSCRIBE",
            Self::Other => "other",
        }
    }
}

/// The first line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request {
        method: Method,
        method_range: Range<usize>,
        uri: Range<usize>,
    },
    Response {
        status: u16,
    },
}

/// A scanned message. Header entries live in the caller's scratch vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    pub start: StartLine,
    /// The start line including its line ending.
    pub start_line: Range<usize>,
    /// Offset of the empty line that ends the head.
    pub head_end: usize,
    /// The body, cut to Content-Length when the header is present.
    pub body: Range<usize>,
    /// Content-Length as declared, if present.
    pub content_length: Option<usize>,
}

/// Limits enforced while scanning.
#[derive(Debug, Clone, Copy)]
pub struct ScanLimits {
    pub max_message_bytes: usize,
    pub max_body_bytes: usize,
    pub max_headers: usize,
    pub max_header_bytes: usize,
}

/// Why a message could not be scanned. Each variant maps to the status the RFC requires when
/// the message is a request; responses that fail to scan are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("message too large")]
    MessageTooLarge,
    #[error("body too large")]
    BodyTooLarge,
    #[error("too many headers")]
    TooManyHeaders,
    #[error("header too long")]
    HeaderTooLong,
    #[error("malformed start line")]
    BadStartLine,
    #[error("unsupported SIP version")]
    BadVersion,
    #[error("malformed header line")]
    BadHeader,
    #[error("no empty line after the headers")]
    Unterminated,
    #[error("malformed Content-Length")]
    BadContentLength,
    #[error("Content-Length larger than the message")]
    Truncated,
    #[error("{} header repeated", single_valued_name(*.0))]
    RepeatedHeader(HeaderName),
}

impl ScanError {
    /// Returns the status and reason phrase of the response to a request that failed this way.
    pub fn status(self) -> (u16, &'static str) {
        match self {
            Self::MessageTooLarge => (513, "Message Too Large"),
            Self::BodyTooLarge => (413, "Request Entity Too Large"),
            Self::TooManyHeaders => (400, "Too Many Headers"),
            Self::HeaderTooLong => (400, "Header Too Long"),
            Self::BadStartLine => (400, "Malformed Request Line"),
            Self::BadVersion => (505, "Version Not Supported"),
            Self::BadHeader => (400, "Malformed Header Line"),
            Self::Unterminated => (400, "Missing Empty Line After Headers"),
            Self::BadContentLength => (400, "Malformed Content-Length"),
            Self::Truncated => (400, "Content-Length Exceeds Message"),
            Self::RepeatedHeader(name) => (
                400,
                match name {
                    HeaderName::From => "Repeated From",
                    HeaderName::To => "Repeated To",
                    HeaderName::CallId => "Repeated Call-ID",
                    HeaderName::CSeq => "Repeated CSeq",
                    HeaderName::MaxForwards => "Repeated Max-Forwards",
                    _ => "Repeated Header",
                },
            ),
        }
    }

    /// Returns a short, stable label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MessageTooLarge => "message_too_large",
            Self::BodyTooLarge => "body_too_large",
            Self::TooManyHeaders => "too_many_headers",
            Self::HeaderTooLong => "header_too_long",
            Self::BadStartLine => "bad_start_line",
            Self::BadVersion => "bad_version",
            Self::BadHeader => "bad_header",
            Self::Unterminated => "unterminated",
            Self::BadContentLength => "bad_content_length",
            Self::Truncated => "truncated",
            Self::RepeatedHeader(_) => "repeated_header",
        }
    }
}

/// Returns the full name of a header that RFC 3261 allows only once, for error messages.
fn single_valued_name(name: HeaderName) -> &'static str {
    match name {
        HeaderName::From => "From",
        HeaderName::To => "To",
        HeaderName::CallId => "Call-ID",
        HeaderName::CSeq => "CSeq",
        HeaderName::MaxForwards => "Max-Forwards",
        HeaderName::ContentLength => "Content-Length",
        _ => "single-valued",
    }
}

/// Scans `buf` as one complete message, filling `headers` (cleared first).
pub fn scan(
    buf: &[u8],
    limits: &ScanLimits,
    headers: &mut Vec<Header>,
) -> Result<Scanned, ScanError> {
    headers.clear();

    // A request with a malformed request line, an unsupported version or an oversized message
    // is still scanned to the end of its headers, so the caller can build the error response
    // from them (RFC 4475 section 3.1.2 expects 400 or 505, not silence).
    let (line, next) = next_line(buf, 0).ok_or(ScanError::Unterminated)?;
    let (start, version_error) = match parse_start_line(buf, line.clone()) {
        Ok(start) => (start, None),
        Err(error @ (ScanError::BadVersion | ScanError::BadStartLine))
            if !buf.starts_with(b"SIP/") =>
        {
            (placeholder_request(line), Some(error))
        }
        Err(e) => return Err(e),
    };
    let start_line = 0..next;

    let mut pos = next;
    let head_end;
    loop {
        let (line, next) = next_line(buf, pos).ok_or(ScanError::Unterminated)?;
        if line.is_empty() {
            head_end = pos;
            pos = next;
            break;
        }
        let first = buf[line.start];
        if first == b' ' || first == b'\t' {
            let last = headers.last_mut().ok_or(ScanError::BadHeader)?;
            let value_end = trim_end(buf, line.clone());
            if value_end > line.start && !is_blank(&buf[line.clone()]) {
                if last.value.is_empty() {
                    last.value.start = skip_ws(buf, line.start, line.end);
                }
                last.value.end = value_end;
            }
            last.line.end = next;
            if last.line.len() > limits.max_header_bytes {
                return Err(ScanError::HeaderTooLong);
            }
            pos = next;
            continue;
        }
        if headers.len() >= limits.max_headers {
            return Err(ScanError::TooManyHeaders);
        }
        if next - pos > limits.max_header_bytes {
            return Err(ScanError::HeaderTooLong);
        }
        headers.push(parse_header_line(buf, pos, line, next)?);
        pos = next;
    }

    if let Some(error) = version_error {
        return Err(error);
    }
    if buf.len() > limits.max_message_bytes {
        return Err(ScanError::MessageTooLarge);
    }

    // From, To, Call-ID, CSeq, Max-Forwards and Content-Length take one value (RFC 3261
    // sections 7.3 and 20). A second copy of any of them is rejected (RFC 4475 section
    // 3.1.2.19), because the proxy would read the first copy while the next hop may read the
    // other. Equal Content-Length copies frame the message the same way, so only conflicting
    // ones fail.
    let mut content_length = None;
    let mut seen = 0u8;
    for header in headers.iter() {
        let bit = match header.name {
            HeaderName::From => 1,
            HeaderName::To => 2,
            HeaderName::CallId => 4,
            HeaderName::CSeq => 8,
            HeaderName::MaxForwards => 16,
            HeaderName::ContentLength => {
                let value = parse_content_length(&buf[header.value.clone()])?;
                if content_length.is_some_and(|seen| seen != value) {
                    return Err(ScanError::BadContentLength);
                }
                content_length = Some(value);
                continue;
            }
            _ => continue,
        };
        if seen & bit != 0 {
            return Err(ScanError::RepeatedHeader(header.name));
        }
        seen |= bit;
    }

    // NUL is not allowed anywhere in a head (RFC 3261 section 25.1), and forwarding it would
    // hand the next hop a message it may cut short.
    if memchr::memchr(0, &buf[..head_end]).is_some() {
        return Err(ScanError::BadHeader);
    }

    // A declared length over the limit is answered 413 even when the body has not arrived
    // in full: the TCP transport hands over only the head of a frame that is too large.
    if content_length.is_some_and(|declared| declared > limits.max_body_bytes) {
        return Err(ScanError::BodyTooLarge);
    }

    let available = buf.len() - pos;
    let body_len = match content_length {
        Some(declared) if declared > available => return Err(ScanError::Truncated),
        Some(declared) => declared,
        None => available,
    };
    if body_len > limits.max_body_bytes {
        return Err(ScanError::BodyTooLarge);
    }

    Ok(Scanned {
        start,
        start_line,
        head_end,
        body: pos..pos + body_len,
        content_length,
    })
}

fn placeholder_request(line: Range<usize>) -> StartLine {
    StartLine::Request {
        method: Method::Other,
        method_range: line.start..line.start,
        uri: line.start..line.start,
    }
}

/// Returns the content range of the line starting at `pos` (without CR LF) and the offset of
/// the next line, or `None` when no line ending follows.
fn next_line(buf: &[u8], pos: usize) -> Option<(Range<usize>, usize)> {
    let lf = pos + memchr::memchr(b'\n', buf.get(pos..)?)?;
    let end = if lf > pos && buf[lf - 1] == b'\r' {
        lf - 1
    } else {
        lf
    };
    Some((pos..end, lf + 1))
}

fn parse_start_line(buf: &[u8], line: Range<usize>) -> Result<StartLine, ScanError> {
    let text = &buf[line.clone()];
    if let Some(rest) = text.strip_prefix(b"SIP/") {
        let mut parts = rest.splitn(3, |b| *b == b' ');
        let version = parts.next().unwrap_or_default();
        let code = parts.next().ok_or(ScanError::BadStartLine)?;
        if version != b"2.0" {
            return Err(ScanError::BadVersion);
        }
        if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) || code[0] == b'0' {
            return Err(ScanError::BadStartLine);
        }
        let status = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        return Ok(StartLine::Response { status });
    }

    let sp1 = memchr::memchr(b' ', text).ok_or(ScanError::BadStartLine)?;
    let sp2 = memchr::memrchr(b' ', text).ok_or(ScanError::BadStartLine)?;
    if sp2 <= sp1 + 1 {
        return Err(ScanError::BadStartLine);
    }
    let method = &text[..sp1];
    let uri = &text[sp1 + 1..sp2];
    let version = &text[sp2 + 1..];
    if method.is_empty() || !method.iter().all(|b| is_token_byte(*b)) {
        return Err(ScanError::BadStartLine);
    }
    if uri.iter().any(|b| *b == b' ' || b.is_ascii_control()) {
        return Err(ScanError::BadStartLine);
    }
    if !version.starts_with(b"SIP/") {
        return Err(ScanError::BadStartLine);
    }
    if !version.eq_ignore_ascii_case(b"SIP/2.0") {
        return Err(ScanError::BadVersion);
    }
    Ok(StartLine::Request {
        method: Method::classify(method),
        method_range: line.start..line.start + sp1,
        uri: line.start + sp1 + 1..line.start + sp2,
    })
}

fn parse_header_line(
    buf: &[u8],
    start: usize,
    line: Range<usize>,
    next: usize,
) -> Result<Header, ScanError> {
    let text = &buf[line.clone()];
    let colon = memchr::memchr(b':', text).ok_or(ScanError::BadHeader)?;
    let mut name_end = colon;
    while name_end > 0 && matches!(text[name_end - 1], b' ' | b'\t') {
        name_end -= 1;
    }
    let name = &text[..name_end];
    if name.is_empty() || !name.iter().all(|b| is_token_byte(*b)) {
        return Err(ScanError::BadHeader);
    }
    let value_start = skip_ws(buf, line.start + colon + 1, line.end);
    let value_end = trim_end(buf, value_start..line.end);
    Ok(Header {
        name: HeaderName::classify(name),
        name_range: line.start..line.start + name_end,
        value: value_start..value_end,
        line: start..next,
    })
}

fn parse_content_length(value: &[u8]) -> Result<usize, ScanError> {
    if value.is_empty() || value.len() > 9 || !value.iter().all(u8::is_ascii_digit) {
        return Err(ScanError::BadContentLength);
    }
    Ok(value
        .iter()
        .fold(0usize, |n, d| n * 10 + usize::from(d - b'0')))
}

fn skip_ws(buf: &[u8], mut pos: usize, end: usize) -> usize {
    while pos < end && matches!(buf[pos], b' ' | b'\t') {
        pos += 1;
    }
    pos
}

fn trim_end(buf: &[u8], range: Range<usize>) -> usize {
    let mut end = range.end;
    while end > range.start && matches!(buf[end - 1], b' ' | b'\t') {
        end -= 1;
    }
    end
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| matches!(b, b' ' | b'\t'))
}

/// Returns true for the characters of an RFC 3261 `token`.
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

#[cfg(test)]
#[path = "scan_tests.rs"]
mod tests;
