//! What the proxy core decides for one received message. The transport layer carries the
//! decision out and the telemetry layer counts it; neither needs to look inside the message.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::calls::CallEntry;
use crate::identity::{Assurance, IdentitySource};
use crate::message::edit::Editor;
use crate::message::{Header, Method, Transport};

/// One message as received by a transport.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    pub now: Instant,
    pub source: SocketAddr,
    pub transport: Transport,
    /// Exactly one framed message (one UDP datagram, or one Content-Length frame of a stream).
    pub bytes: &'a [u8],
}

/// Reusable buffers for handling messages, one per worker, so the hot path does not allocate.
#[derive(Debug, Default)]
pub struct Scratch {
    pub(crate) headers: Vec<Header>,
    pub(crate) editor: Editor,
    pub(crate) key: Vec<u8>,
    /// The bytes to send when the outcome is `Forward` or `Reply`.
    pub out: Vec<u8>,
}

/// Direction of a forwarded message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the edge toward the upstream gateway.
    ToUpstream,
    /// From the upstream gateway back toward the edge.
    ToEdge,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ToUpstream => "to_upstream",
            Self::ToEdge => "to_edge",
        }
    }
}

/// A request by method or a response by status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Request(Method),
    Response(u16),
}

/// The identifiers of a call, created for its first INVITE and reused for every later
/// message of the call. Holds no caller number.
#[derive(Clone, PartialEq, Eq)]
pub struct CallIds {
    pub callid: Arc<str>,
    pub sessionid: Arc<str>,
    pub conversationid: Arc<str>,
    pub anonymous: bool,
    pub source: IdentitySource,
    pub assurance: Assurance,
    /// Instance id of the release the call belongs to.
    pub instance_id: Arc<str>,
    pub tenant: Arc<str>,
    pub key_id: Arc<str>,
}

impl std::fmt::Debug for CallIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallIds")
            .field("callid", &self.callid)
            .field("sessionid", &self.sessionid)
            .field("conversationid", &self.conversationid)
            .field("anonymous", &self.anonymous)
            .field("source", &self.source)
            .field("assurance", &self.assurance)
            .field("instance_id", &self.instance_id)
            .finish()
    }
}

/// Reason a message was dropped without a response. Labels are stable metric label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Bytes that are not a SIP message, or a request too broken to respond to.
    Unparsable,
    /// A response that fails to scan or lacks the headers needed to route it.
    BadResponse,
    /// A response whose top Via is not the proxy's own.
    ViaNotOurs,
    /// A malformed ACK, dropped because ACKs never get a response.
    BadAck,
    /// A keep-alive (empty lines).
    KeepAlive,
    /// A retransmitted INVITE whose original still waits for the store.
    Pending,
    /// An unroutable request that must not be answered (an ACK).
    NoRoute,
    /// A response with no Via left to route it by.
    NoNextHop,
    /// A request over its source's rate limit (the `[flood]` settings).
    RateLimited,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unparsable => "unparsable",
            Self::BadResponse => "bad_response",
            Self::ViaNotOurs => "via_not_ours",
            Self::BadAck => "bad_ack",
            Self::KeepAlive => "keepalive",
            Self::Pending => "pending",
            Self::NoRoute => "no_route",
            Self::NoNextHop => "no_next_hop",
            Self::RateLimited => "rate_limited",
        }
    }
}

/// The first INVITE of a new call, waiting for the store to say whether the caller returns.
#[derive(Debug, Clone)]
pub struct NewCall {
    pub ids: CallIds,
    /// The caller's sessionids under the tenant's retired keys, in configuration order, so
    /// the driver can find a session created before a key rotation. Empty for anonymous calls
    /// and when the tenant has no retired keys.
    pub previous_sessionids: Vec<Arc<str>>,
    /// Offset in the output where the returning-caller header goes.
    pub(crate) stamp_at: usize,
    pub(crate) entry: Arc<CallEntry>,
}

/// A change in a call's state that the conversation history records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEvent {
    pub conversationid: Arc<str>,
    pub kind: CallEventKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEventKind {
    /// A 2xx answered the INVITE.
    Answered,
    /// BYE, or a final failure response with its status.
    Ended { status: Option<u16> },
}

/// The decision for one message. For `Forward` and `Reply` the bytes are in [`Scratch::out`].
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Send the edited message on.
    Forward {
        transport: Transport,
        dest: SocketAddr,
        kind: MessageKind,
        direction: Direction,
        /// Set for the first INVITE of a new call; the caller registers the session and then
        /// calls [`crate::proxy::Core::finish_new_call`] before sending.
        new_call: Option<Box<NewCall>>,
        /// Set when the message answered or ended a call.
        event: Option<CallEvent>,
    },
    /// Send a response generated by the proxy back to the sender.
    Reply {
        transport: Transport,
        dest: SocketAddr,
        /// The request's method.
        method: Method,
        status: u16,
        /// Stable label of the cause, such as `max_forwards` or `bad_request`.
        reason: &'static str,
    },
    /// Send nothing.
    Drop { reason: DropReason },
}
