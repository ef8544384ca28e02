//! The fixed label values of every metric, and the index of each value in the handle arrays.
//!
//! Every label value is one of the constants here, so a scrape can never carry a number, a
//! URI, a Call-ID or an id, and the number of series is known at start-up.

use crate::identity::IdentitySource;
use crate::message::{Method, Transport};
use crate::proxy::DropReason;
use crate::store::StoreError;

pub const METHODS: [&str; 7] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "SUBSCRIBE",
    "other",
];

pub fn method_index(method: Method) -> usize {
    match method {
        Method::Invite => 0,
        Method::Ack => 1,
        Method::Bye => 2,
        Method::Cancel => 3,
        Method::Options => 4,
        Method::Subscribe => 5,
        Method::Other => 6,
    }
}

pub const TRANSPORTS: [&str; 2] = ["udp", "tcp"];

pub fn transport_index(transport: Transport) -> usize {
    match transport {
        Transport::Udp => 0,
        Transport::Tcp => 1,
    }
}

/// Status classes. The scanner accepts any three-digit code from 100 to 999, and codes of
/// 700 and above share the `other` class.
pub const STATUS_CLASSES: [&str; 7] = ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx", "other"];

pub fn status_class_index(status: u16) -> usize {
    match status {
        100..=699 => usize::from(status / 100 - 1),
        _ => 6,
    }
}

/// Status classes of proxy-generated replies: 4xx, 5xx, 6xx, and `other` for anything else.
pub const REPLY_CLASSES: [&str; 4] = ["4xx", "5xx", "6xx", "other"];

pub fn reply_class_index(status: u16) -> usize {
    match status {
        400..=499 => 0,
        500..=599 => 1,
        600..=699 => 2,
        _ => 3,
    }
}

/// Causes of proxy-generated replies. The scan failures use the labels of
/// [`crate::message::ScanError::as_str`]; a reason the proxy reports that is not listed here is
/// counted as `other`.
pub const REPLY_REASONS: [&str; 34] = [
    "message_too_large",
    "body_too_large",
    "too_many_headers",
    "header_too_long",
    "bad_start_line",
    "bad_version",
    "bad_header",
    "unterminated",
    "bad_content_length",
    "truncated",
    "repeated_header",
    "bad_via",
    "missing_from",
    "missing_to",
    "missing_call_id",
    "bad_from",
    "bad_to",
    "bad_cseq",
    "cseq_mismatch",
    "too_many_via",
    "unsupported_uri_scheme",
    "bad_request_uri",
    "bad_max_forwards",
    "proxy_require",
    "options_probe",
    "max_forwards",
    "call_table_full",
    "no_route",
    "draining",
    "rate_limited",
    "missing_content_length",
    "bare_lf",
    "bare_cr",
    "other",
];

/// Returns the index of `reason` in [`REPLY_REASONS`], or that of `other`. Replies are rare,
/// so a linear search over these short strings is cheap enough here.
pub fn reply_reason_index(reason: &str) -> usize {
    REPLY_REASONS
        .iter()
        .position(|known| *known == reason)
        .unwrap_or(REPLY_REASONS.len() - 1)
}

pub const DROP_REASONS: [&str; 9] = [
    "unparsable",
    "bad_response",
    "via_not_ours",
    "bad_ack",
    "keepalive",
    "no_next_hop",
    "pending",
    "no_route",
    "rate_limited",
];

pub fn drop_reason_index(reason: DropReason) -> usize {
    match reason {
        DropReason::Unparsable => 0,
        DropReason::BadResponse => 1,
        DropReason::ViaNotOurs => 2,
        DropReason::BadAck => 3,
        DropReason::KeepAlive => 4,
        DropReason::NoNextHop => 5,
        DropReason::Pending => 6,
        DropReason::NoRoute => 7,
        DropReason::RateLimited => 8,
    }
}

pub const IDENTITY_SOURCES: [&str; 5] = ["pai-tel", "pai-sip", "rpid", "from", "none"];

pub fn identity_source_index(source: IdentitySource) -> usize {
    match source {
        IdentitySource::PaiTel => 0,
        IdentitySource::PaiSip => 1,
        IdentitySource::Rpid => 2,
        IdentitySource::From => 3,
        IdentitySource::None => 4,
    }
}

pub const BOOLEANS: [&str; 2] = ["false", "true"];

pub use crate::proxy::Returning;

pub const RETURNING: [&str; 3] = ["true", "false", "unknown"];

pub fn returning_index(returning: Returning) -> usize {
    match returning {
        Returning::Yes => 0,
        Returning::No => 1,
        Returning::Unknown => 2,
    }
}

/// The kinds of message whose time inside sipstamp is measured.
pub const MESSAGE_KINDS: [&str; 3] = ["request", "response", "reply"];

pub const STORE_BACKENDS: [&str; 3] = ["embedded", "redis", "redis-cluster"];

/// One operation of [`crate::store::SessionStore`], as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    TouchSession,
    Session,
    StartConversation,
    AnswerConversation,
    EndConversation,
    Conversation,
    Variable,
    Variables,
    PutVariable,
    DeleteVariable,
    EraseSession,
    PurgeTenant,
    Sweep,
    PutAlias,
    ResolveAlias,
    Ping,
}

pub const STORE_OPS: [&str; 16] = [
    "touch_session",
    "session",
    "start_conversation",
    "answer_conversation",
    "end_conversation",
    "conversation",
    "variable",
    "variables",
    "put_variable",
    "delete_variable",
    "erase_session",
    "purge_tenant",
    "sweep",
    "put_alias",
    "resolve_alias",
    "ping",
];

impl StoreOp {
    /// Every operation, in the order of [`STORE_OPS`].
    pub const ALL: [StoreOp; 16] = [
        Self::TouchSession,
        Self::Session,
        Self::StartConversation,
        Self::AnswerConversation,
        Self::EndConversation,
        Self::Conversation,
        Self::Variable,
        Self::Variables,
        Self::PutVariable,
        Self::DeleteVariable,
        Self::EraseSession,
        Self::PurgeTenant,
        Self::Sweep,
        Self::PutAlias,
        Self::ResolveAlias,
        Self::Ping,
    ];

    pub fn as_str(self) -> &'static str {
        STORE_OPS[self as usize]
    }
}

/// Kinds of store failure that count as errors. `Invalid` and `NotFound` are results about the
/// input, not failures of the store, so they are not counted.
pub const STORE_ERRORS: [&str; 4] = ["timeout", "backend", "corrupt", "closed"];

pub fn store_error_index(error: &StoreError) -> Option<usize> {
    match error {
        StoreError::Timeout(_) => Some(0),
        StoreError::Backend(_) => Some(1),
        StoreError::Corrupt(_) => Some(2),
        StoreError::Closed => Some(3),
        StoreError::Invalid { .. } | StoreError::NotFound(_) => None,
    }
}
