//! Stream framing for SIP over TCP (RFC 3261 section 18.3): a message is its head, ended by an
//! empty line, followed by exactly Content-Length bytes of body. This module is a pure function
//! over the bytes received so far, so every read split can be tested without sockets.

use crate::message::HeaderName;

/// Size limits for one framed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Maximum head size in bytes, start line and empty line included.
    pub max_head_bytes: usize,
    /// Maximum Content-Length value.
    pub max_body_bytes: usize,
    /// Maximum head plus body size in bytes.
    pub max_message_bytes: usize,
}

impl FrameLimits {
    /// Derives the stream limits from the configured message limits. The head limit is
    /// `max_message_bytes`, because the core rejects any larger message anyway, while
    /// `max_header_bytes * max_headers` would allow a megabyte with the defaults.
    pub fn from_config(limits: &crate::config::Limits) -> Self {
        Self {
            max_head_bytes: limits.max_message_bytes,
            max_body_bytes: limits.max_body_bytes,
            max_message_bytes: limits.max_message_bytes,
        }
    }
}

/// The kind of data at the start of a stream buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// More bytes are needed before anything can be taken from the buffer.
    Incomplete,
    /// `len` bytes of CR and LF between messages. `ping` marks a double CRLF, which requires a
    /// single CRLF in response (RFC 5626 section 4.4.1).
    KeepAlive { len: usize, ping: bool },
    /// One complete message of `len` bytes, head and body.
    Message { len: usize },
    /// The stream cannot be framed any further. `head_len` is the size of the complete head when
    /// one was found, so the core can still send a response before the connection is closed.
    Invalid {
        reason: FramingError,
        head_len: Option<usize>,
    },
}

/// The reason a stream lost its framing. Labels are stable metric label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FramingError {
    /// No empty line within the head limit, or a complete head larger than the limit.
    HeadTooLarge,
    /// Content-Length above the body limit, or head plus body above the message limit.
    BodyTooLarge,
    /// Content-Length that is not a number, or two Content-Length headers that differ.
    BadContentLength,
    /// A head without Content-Length: the end of the body cannot be known on a stream.
    MissingContentLength,
}

impl FramingError {
    pub const ALL: [FramingError; 4] = [
        Self::HeadTooLarge,
        Self::BodyTooLarge,
        Self::BadContentLength,
        Self::MissingContentLength,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::HeadTooLarge => "head_too_large",
            Self::BodyTooLarge => "body_too_large",
            Self::BadContentLength => "bad_content_length",
            Self::MissingContentLength => "missing_content_length",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Returns the first frame at the start of `buf`.
pub fn next_frame(buf: &[u8], limits: &FrameLimits) -> Frame {
    next_frame_resumed(buf, limits, &mut Progress::default())
}

/// State a connection reader keeps about the incomplete frame at the start of its buffer,
/// so that a message arriving in many small reads is not scanned again from its first byte on
/// every read. Reset it to the default whenever bytes are taken from the front of the buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes already searched without finding the end of the head.
    head_searched: usize,
    /// Length of a message whose head is complete but whose body is not.
    message_len: Option<usize>,
}

/// Returns the same frame as [`next_frame`], resuming from `progress` and updating it.
pub fn next_frame_resumed(buf: &[u8], limits: &FrameLimits, progress: &mut Progress) -> Frame {
    if let Some(len) = progress.message_len {
        return if buf.len() < len {
            Frame::Incomplete
        } else {
            Frame::Message { len }
        };
    }
    if let Some(frame) = keep_alive(buf) {
        return frame;
    }

    // An LF within the last two searched bytes may not have been followed by enough bytes to
    // decide, so the search restarts there.
    let head_len = match head_end(buf, progress.head_searched.saturating_sub(2)) {
        Some(end) => end,
        None if buf.len() > limits.max_head_bytes => {
            return invalid(FramingError::HeadTooLarge, None)
        }
        None => {
            progress.head_searched = buf.len();
            return Frame::Incomplete;
        }
    };
    if head_len > limits.max_head_bytes {
        return invalid(FramingError::HeadTooLarge, Some(head_len));
    }

    let body_len = match content_length(&buf[..head_len]) {
        Ok(Some(len)) => len,
        Ok(None) => return invalid(FramingError::MissingContentLength, Some(head_len)),
        Err(reason) => return invalid(reason, Some(head_len)),
    };
    if body_len > limits.max_body_bytes || head_len + body_len > limits.max_message_bytes {
        return invalid(FramingError::BodyTooLarge, Some(head_len));
    }

    let len = head_len + body_len;
    if buf.len() < len {
        progress.message_len = Some(len);
        Frame::Incomplete
    } else {
        Frame::Message { len }
    }
}

fn invalid(reason: FramingError, head_len: Option<usize>) -> Frame {
    Frame::Invalid { reason, head_len }
}

/// Recognises line endings before a message. A lone CRLF at the end of the buffer may be the
/// first half of a ping, so it stays `Incomplete` until the next byte shows which it is.
fn keep_alive(buf: &[u8]) -> Option<Frame> {
    match buf {
        [b'\r', b'\n', b'\r', b'\n', ..] => Some(Frame::KeepAlive { len: 4, ping: true }),
        [b'\r'] | [b'\r', b'\n'] | [b'\r', b'\n', b'\r'] => Some(Frame::Incomplete),
        [b'\r', b'\n', ..] => Some(Frame::KeepAlive {
            len: 2,
            ping: false,
        }),
        [b'\r', ..] | [b'\n', ..] => Some(Frame::KeepAlive {
            len: 1,
            ping: false,
        }),
        _ => None,
    }
}

/// Returns the length of the head including its empty line. Lines end in LF with an optional
/// CR, as the scanner accepts them.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut pos = from.min(buf.len());
    while let Some(offset) = memchr::memchr(b'\n', &buf[pos..]) {
        let lf = pos + offset;
        match &buf[lf + 1..] {
            [b'\n', ..] => return Some(lf + 2),
            [b'\r', b'\n', ..] => return Some(lf + 3),
            _ => pos = lf + 1,
        }
    }
    None
}

/// Reads the Content-Length of a complete head, full or compact name, any case, with spaces or
/// tabs around the colon. Returns `Ok(None)` when the head has none.
fn content_length(head: &[u8]) -> Result<Option<usize>, FramingError> {
    let mut found = None;
    // The first line is the start line, never a header.
    let mut lines = head.split(|b| *b == b'\n').skip(1).peekable();
    while let Some(line) = lines.next() {
        // Continuation lines of other headers are skipped with their header.
        if matches!(line.first(), Some(b' ' | b'\t')) {
            continue;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = trim(&line[..colon]);
        if HeaderName::classify(name) != HeaderName::ContentLength {
            continue;
        }

        let mut value = trim(&line[colon + 1..]);
        // A value folded onto the next line (RFC 3261 section 7.3.1) continues the header.
        while let Some(next) = lines.next_if(|l| matches!(l.first(), Some(b' ' | b'\t'))) {
            let next = trim(next);
            if value.is_empty() {
                value = next;
            } else if !next.is_empty() {
                return Err(FramingError::BadContentLength);
            }
        }

        let len = parse_length(value)?;
        if found.is_some_and(|seen| seen != len) {
            return Err(FramingError::BadContentLength);
        }
        found = Some(len);
    }
    Ok(found)
}

/// Parses decimal digits, saturating so that a huge value reads as too large, not invalid.
fn parse_length(value: &[u8]) -> Result<usize, FramingError> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(FramingError::BadContentLength);
    }
    Ok(value.iter().fold(0usize, |n, d| {
        n.saturating_mul(10).saturating_add(usize::from(d - b'0'))
    }))
}

fn trim(bytes: &[u8]) -> &[u8] {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\r');
    let start = bytes
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

#[cfg(test)]
#[path = "framing_tests.rs"]
mod tests;
