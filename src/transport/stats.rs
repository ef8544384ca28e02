//! Transport counters as plain atomics, read by the telemetry layer at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};

use super::framing::FramingError;

/// The reason a send failed. Labels are stable metric label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendErrorKind {
    /// No listener of that transport and address family is configured.
    NoSocket,
    /// The UDP send buffer was full.
    UdpWouldBlock,
    /// Any other error from a UDP `send_to`.
    UdpIo,
    /// The connection's write queue was full, so the message was dropped.
    QueueFull,
    /// The connection closed before the message was written.
    Closed,
    /// The connection limit stopped a new outbound connection.
    ConnectionLimit,
    /// An outbound connection could not be opened in time.
    ConnectFailed,
}

impl SendErrorKind {
    pub const ALL: [SendErrorKind; 7] = [
        Self::NoSocket,
        Self::UdpWouldBlock,
        Self::UdpIo,
        Self::QueueFull,
        Self::Closed,
        Self::ConnectionLimit,
        Self::ConnectFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoSocket => "no_socket",
            Self::UdpWouldBlock => "udp_would_block",
            Self::UdpIo => "udp_io",
            Self::QueueFull => "queue_full",
            Self::Closed => "closed",
            Self::ConnectionLimit => "connection_limit",
            Self::ConnectFailed => "connect_failed",
        }
    }
}

/// Counters shared by all listeners and the sender. All use relaxed ordering: each value is
/// read on its own and may be a moment out of date.
#[derive(Debug, Default)]
pub struct TransportStats {
    /// TCP connections open now, accepted and outbound.
    pub tcp_connections: AtomicU64,
    /// TCP connections accepted since start.
    pub tcp_accepted: AtomicU64,
    /// Outbound TCP connections opened since start.
    pub tcp_connected: AtomicU64,
    /// Accepted connections closed at once because a connection limit was reached.
    pub tcp_rejected: AtomicU64,
    /// Connections closed because they sent nothing complete within the idle timeout.
    pub tcp_idle_timeouts: AtomicU64,
    /// Connections closed because a message did not arrive within the header timeout.
    pub tcp_header_timeouts: AtomicU64,
    /// Double-CRLF keep-alive pings received; each gets a CRLF in response.
    pub tcp_pings: AtomicU64,
    framing_errors: [AtomicU64; 4],
    send_errors: [AtomicU64; 7],
}

impl TransportStats {
    pub fn framing_errors(&self, reason: FramingError) -> u64 {
        self.framing_errors[reason.index()].load(Ordering::Relaxed)
    }

    pub fn send_errors(&self, kind: SendErrorKind) -> u64 {
        self.send_errors[kind as usize].load(Ordering::Relaxed)
    }

    pub(crate) fn count_framing_error(&self, reason: FramingError) {
        self.framing_errors[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_send_error(&self, kind: SendErrorKind) {
        self.send_errors[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn sub(counter: &AtomicU64) {
        counter.fetch_sub(1, Ordering::Relaxed);
    }
}
