//! The core's state and the entry point that classifies and validates each message.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use sha2::{Digest, Sha256};

use super::calls::{CallLimits, CallTable, Returning, Sweep};
use super::flood::FloodGuard;
use super::local::Local;
use super::outcome::{DropReason, Inbound, NewCall, Outcome, Scratch};
use super::reply::{reply_target, write_reply, ReplySpec};
use super::stamp::StampNames;
use crate::config::{Config, FloodAction, UpstreamTransport};
use crate::identity::{Identity, TrustMap};
use crate::message::uri::Uri;
use crate::message::{
    scan, HeaderName, Message, Method, ScanError, ScanLimits, StartLine, Transport, Via,
};
use crate::pseudonym::KeyRing;

/// The I/O-free proxy: the settings that a reload can replace, the proxy's own addresses, the
/// draining flag and the table of calls in progress. Shared by all workers.
#[derive(Debug)]
pub struct Core {
    settings: ArcSwap<CoreSettings>,
    local: Local,
    calls: CallTable,
    draining: AtomicBool,
    /// Per-source request rate limit; `None` when it is off.
    flood: Option<FloodGuard>,
}

/// The part of the core's configuration that `Core::reload` swaps at run time. Each message
/// reads one snapshot of it, so a reload never mixes old and new settings within a message.
#[derive(Debug)]
pub struct CoreSettings {
    pub(super) limits: ScanLimits,
    pub(super) max_via: usize,
    pub(super) upstream: SocketAddr,
    /// Upstreams that earlier reloads replaced, newest last, so that requests and responses
    /// of calls still running through them keep their direction.
    pub(super) previous_upstreams: Vec<SocketAddr>,
    pub(super) upstream_transport: UpstreamTransport,
    pub(super) stamps: StampNames,
    pub(super) keys: Arc<KeyRing>,
    pub(super) trust: TrustMap,
}

/// Upstreams remembered after a reload replaced them. Beyond it the oldest is forgotten, and
/// messages from it count as coming from the edge.
const MAX_PREVIOUS_UPSTREAMS: usize = 8;

impl CoreSettings {
    /// Returns whether `source` is the configured upstream or one that a reload replaced.
    pub(super) fn is_upstream(&self, source: SocketAddr) -> bool {
        source == self.upstream || self.previous_upstreams.contains(&source)
    }

    /// Prepares the run-time settings from a validated configuration and loaded keys.
    pub fn new(config: &Config, keys: KeyRing, trust: TrustMap) -> Self {
        Self {
            limits: ScanLimits {
                max_message_bytes: config.limits.max_message_bytes,
                max_body_bytes: config.limits.max_body_bytes,
                max_headers: config.limits.max_headers,
                max_header_bytes: config.limits.max_header_bytes,
            },
            max_via: config.limits.max_via,
            upstream: config.sip.upstream,
            previous_upstreams: Vec::new(),
            upstream_transport: config.sip.upstream_transport,
            stamps: StampNames::new(&config.headers),
            keys: Arc::new(keys),
            trust,
        }
    }
}

/// The core for one message: one settings snapshot next to the state that outlives
/// reloads. The message handlers are methods of this view.
pub(super) struct View<'a> {
    settings: &'a CoreSettings,
    pub(super) local: &'a Local,
    pub(super) calls: &'a CallTable,
    /// Whether new calls are rejected because the process is shutting down.
    pub(super) draining: bool,
    flood: Option<&'a FloodGuard>,
}

impl std::ops::Deref for View<'_> {
    type Target = CoreSettings;

    fn deref(&self) -> &CoreSettings {
        self.settings
    }
}

/// A request the proxy responds to itself instead of forwarding.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reject<'a> {
    pub status: u16,
    pub phrase: &'static str,
    /// Stable label for metrics.
    pub reason: &'static str,
    /// Extra header lines, each ending in CRLF.
    pub extra: &'a [u8],
}

impl Reject<'static> {
    pub const fn new(status: u16, phrase: &'static str, reason: &'static str) -> Self {
        Self {
            status,
            phrase,
            reason,
            extra: b"",
        }
    }
}

impl Core {
    /// Prepares the core from a validated configuration and loaded keys.
    pub fn new(config: &Config, keys: KeyRing, trust: TrustMap) -> Self {
        let branch_key = branch_key(&keys);
        Self {
            settings: ArcSwap::from_pointee(CoreSettings::new(config, keys, trust)),
            local: Local::new(
                config.sip.udp.first().copied(),
                config.sip.tcp.first().copied(),
                config.sip.advertised_host.as_deref(),
                branch_key,
            ),
            calls: CallTable::new(CallLimits::from_config(&config.calls)),
            draining: AtomicBool::new(false),
            flood: FloodGuard::new(&config.flood),
        }
    }

    /// Replaces the run-time settings. Messages already being handled finish with the old
    /// settings, and the call table, the proxy's addresses and its Via branch key stay.
    pub fn reload(&self, mut settings: CoreSettings) {
        let old = self.settings.load();
        let mut previous = old.previous_upstreams.clone();
        previous.push(old.upstream);
        previous.retain(|addr| *addr != settings.upstream);
        let excess = previous.len().saturating_sub(MAX_PREVIOUS_UPSTREAMS);
        previous.drain(..excess);
        settings.previous_upstreams = previous;
        self.settings.store(Arc::new(settings));
    }

    /// Starts or stops rejecting new calls with 503, while the messages of calls in progress
    /// keep flowing.
    pub fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Decides what to do with one framed message; the bytes to send end up in `scratch.out`.
    pub fn handle(&self, inbound: Inbound<'_>, scratch: &mut Scratch) -> Outcome {
        let settings = self.settings.load();
        self.view(&settings).handle(inbound, scratch)
    }

    /// Returns the identity an initial INVITE would get, without creating a call. For the
    /// `inspect` command; `None` for any other message.
    pub fn inspect_identity(&self, inbound: Inbound<'_>) -> Option<Identity> {
        let settings = self.settings.load();
        self.view(&settings).inspect_identity(inbound)
    }

    fn view<'a>(&'a self, settings: &'a CoreSettings) -> View<'a> {
        View {
            settings,
            local: &self.local,
            calls: &self.calls,
            draining: self.is_draining(),
            flood: self.flood.as_ref(),
        }
    }

    /// Adds the returning-caller header to a new call's INVITE in `out` and remembers the
    /// value for the call's retransmissions. When [`Core::rebind_session`] replaced the
    /// call's sessionid, the stamped headers in `out` are replaced too.
    pub fn finish_new_call(&self, new_call: &NewCall, out: &mut Vec<u8>, returning: Returning) {
        let entry = &new_call.entry;
        let mut at = new_call.stamp_at.min(out.len());
        if entry.is_rebound() {
            let initial = entry.initial_stamps();
            let start = at.saturating_sub(initial.len());
            if out.get(start..at) == Some(initial) {
                let stamps = entry.stamps();
                out.splice(start..at, stamps.iter().copied());
                at = start + stamps.len();
            }
        }
        let settings = self.settings.load();
        let line = settings.stamps.returning_line(returning);
        out.splice(at..at, line.iter().copied());
        // Set last: a retransmission is forwarded only once this is set, and must then see
        // the rebound stamps.
        let _ = entry.returning.set(returning);
    }

    /// Replaces a new call's sessionid before its INVITE is sent, after the store found the
    /// caller's session under an older sessionid (see [`NewCall::previous_sessionids`]).
    /// Every later request of the call carries `sessionid`, and the call counts as active in
    /// that session. Call before [`Core::finish_new_call`], at most once per call; returns
    /// false when the call was already rebound or finished.
    pub fn rebind_session(&self, new_call: &NewCall, sessionid: Arc<str>) -> bool {
        let entry = &new_call.entry;
        if entry.returning.get().is_some() {
            return false;
        }
        let settings = self.settings.load();
        let stamps = settings
            .stamps
            .with_sessionid(entry.initial_stamps(), &entry.ids, &sessionid);
        self.calls.rebind(entry, sessionid, stamps)
    }

    /// Removes expired calls (see [`CallTable::sweep`]) and rate-limit buckets that have
    /// refilled; call about once a second.
    pub fn tick(&self, now: Instant) -> Sweep {
        if let Some(flood) = &self.flood {
            flood.sweep(now);
        }
        self.calls.sweep(now)
    }

    /// Source addresses the rate limiter tracks; 0 when the limit is off.
    pub fn rate_limited_sources(&self) -> usize {
        self.flood.as_ref().map_or(0, FloodGuard::tracked_sources)
    }

    /// Calls that have not ended.
    pub fn active_calls(&self) -> usize {
        self.calls.active()
    }

    /// Calls in the table, including ended calls still in their grace period.
    pub fn tracked_calls(&self) -> usize {
        self.calls.len()
    }

    /// Active calls of one session, including the one asking.
    pub fn active_calls_in_session(&self, sessionid: &str) -> usize {
        self.calls.active_in_session(sessionid)
    }

    /// Returns the key ring of the current settings.
    pub fn keys(&self) -> Arc<KeyRing> {
        Arc::clone(&self.settings.load().keys)
    }

    /// Returns a copy of the settings of the trunk with this id in the current settings.
    pub fn trunk_policy(&self, id: &str) -> Option<crate::identity::TrunkPolicy> {
        self.settings.load().trust.by_id(id).cloned()
    }
}

impl View<'_> {
    fn handle(&self, inbound: Inbound<'_>, scratch: &mut Scratch) -> Outcome {
        let buf = inbound.bytes;
        if buf
            .iter()
            .all(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\t' | 0))
        {
            return Outcome::Drop {
                reason: DropReason::KeepAlive,
            };
        }
        if self.is_rate_limited(inbound) {
            return self.on_rate_limited(inbound, scratch);
        }
        let scanned = match scan(buf, &self.limits, &mut scratch.headers) {
            Ok(scanned) => scanned,
            Err(error) => return self.on_scan_error(inbound, scratch, error),
        };
        let headers = std::mem::take(&mut scratch.headers);
        let msg = Message {
            buf,
            scanned: &scanned,
            headers: &headers,
        };
        let outcome = match scanned.start {
            StartLine::Request { method, .. } => self.on_request(inbound, msg, method, scratch),
            StartLine::Response { status } => self.on_response(inbound, msg, status, scratch),
        };
        scratch.headers = headers;
        outcome
    }

    /// Takes a token for a request from an edge source. Responses, the upstream gateway and,
    /// when configured, trusted peers are never limited.
    fn is_rate_limited(&self, inbound: Inbound<'_>) -> bool {
        let Some(flood) = self.flood else {
            return false;
        };
        if inbound.bytes.starts_with(b"SIP/") || self.is_upstream(inbound.source) {
            return false;
        }
        if flood.exempt_trusted && self.trust.classify(inbound.source.ip()).trusted {
            return false;
        }
        !flood.allow(inbound.source.ip(), inbound.now)
    }

    /// Drops a request over the rate, or replies 503 with Retry-After when configured.
    /// ACKs and requests that do not scan are always dropped.
    fn on_rate_limited(&self, inbound: Inbound<'_>, scratch: &mut Scratch) -> Outcome {
        let dropped = Outcome::Drop {
            reason: DropReason::RateLimited,
        };
        if self.flood.map(|f| f.action) != Some(FloodAction::Reply503) {
            return dropped;
        }
        let Ok(scanned) = scan(inbound.bytes, &self.limits, &mut scratch.headers) else {
            return dropped;
        };
        let method = match scanned.start {
            StartLine::Request { method, .. } if method != Method::Ack => method,
            _ => return dropped,
        };
        let reject = Reject {
            extra: b"Retry-After: 1\r\n",
            ..Reject::new(503, "Service Unavailable", RATE_LIMITED)
        };
        let headers = std::mem::take(&mut scratch.headers);
        let outcome = self.reject(
            inbound,
            inbound.bytes,
            &headers,
            method,
            reject,
            &mut scratch.out,
        );
        scratch.headers = headers;
        outcome
    }

    /// Replies to a request that failed to scan, when enough of it was read to build a response.
    fn on_scan_error(
        &self,
        inbound: Inbound<'_>,
        scratch: &mut Scratch,
        error: ScanError,
    ) -> Outcome {
        let buf = inbound.bytes;
        if buf.starts_with(b"SIP/") {
            return Outcome::Drop {
                reason: DropReason::BadResponse,
            };
        }
        let method_token = buf.split(|b| *b == b' ').next().unwrap_or_default();
        if method_token == b"ACK" {
            return Outcome::Drop {
                reason: DropReason::BadAck,
            };
        }
        let (status, phrase) = error.status();
        let reject = Reject::new(status, phrase, error.as_str());
        let method = match method_token {
            b"INVITE" => Method::Invite,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"OPTIONS" => Method::Options,
            _ => Method::Other,
        };
        let headers = std::mem::take(&mut scratch.headers);
        let outcome = self.reject(inbound, buf, &headers, method, reject, &mut scratch.out);
        scratch.headers = headers;
        outcome
    }

    /// Writes a proxy-generated response into `out`, or drops the request when it lacks the
    /// headers a response needs.
    pub(super) fn reject(
        &self,
        inbound: Inbound<'_>,
        buf: &[u8],
        headers: &[crate::message::Header],
        method: Method,
        reject: Reject<'_>,
        out: &mut Vec<u8>,
    ) -> Outcome {
        if method == Method::Ack {
            return Outcome::Drop {
                reason: DropReason::BadAck,
            };
        }
        let top_via = headers
            .iter()
            .find(|h| h.name == HeaderName::Via)
            .map(|h| &buf[h.value.clone()]);
        let via =
            top_via.and_then(|v| Via::parse(&v[..crate::message::value::first_element_end(v)]));
        let call_id = headers
            .iter()
            .find(|h| h.name == HeaderName::CallId)
            .map_or(&b""[..], |h| &buf[h.value.clone()]);
        let branch = self
            .local
            .branch(top_via.unwrap_or_default(), &[call_id], None);
        let to_tag = &branch[9..];
        let spec = ReplySpec {
            status: reject.status,
            phrase: reject.phrase,
            extra: reject.extra,
        };
        if !write_reply(buf, headers, spec, to_tag, inbound.source, out) {
            return Outcome::Drop {
                reason: DropReason::Unparsable,
            };
        }
        Outcome::Reply {
            transport: inbound.transport,
            dest: reply_target(inbound.transport, inbound.source, via.as_ref()),
            method,
            status: reject.status,
            reason: reject.reason,
        }
    }

    /// Checks a request against RFC 3261 section 16.3 and the configured limits. Returns the
    /// Max-Forwards value when present.
    pub(super) fn validate_request(
        &self,
        msg: &Message<'_>,
        method: Method,
    ) -> Result<Option<u32>, Reject<'static>> {
        let Some(_) = msg.top_via() else {
            return Err(Reject::new(400, "Malformed Via", "bad_via"));
        };
        for (name, phrase, reason) in [
            (HeaderName::From, "Missing From", "missing_from"),
            (HeaderName::To, "Missing To", "missing_to"),
            (HeaderName::CallId, "Missing Call-ID", "missing_call_id"),
        ] {
            if msg.value(name).is_none_or(|v| v.is_empty()) {
                return Err(Reject::new(400, phrase, reason));
            }
        }
        for (name, phrase, reason) in [
            (HeaderName::From, "Malformed From", "bad_from"),
            (HeaderName::To, "Malformed To", "bad_to"),
        ] {
            if msg.value(name).is_some_and(|v| !is_balanced_name_addr(v)) {
                return Err(Reject::new(400, phrase, reason));
            }
        }
        let Some((_, cseq_method)) = msg.cseq() else {
            return Err(Reject::new(400, "Malformed CSeq", "bad_cseq"));
        };
        let method_token = match msg.scanned.start {
            StartLine::Request {
                ref method_range, ..
            } => &msg.buf[method_range.clone()],
            StartLine::Response { .. } => &[][..],
        };
        if cseq_method != method_token {
            return Err(Reject::new(
                400,
                "CSeq Method Does Not Match",
                "cseq_mismatch",
            ));
        }
        if msg.via_count() > self.max_via {
            return Err(Reject::new(400, "Too Many Via Headers", "too_many_via"));
        }
        if let StartLine::Request { ref uri, .. } = msg.scanned.start {
            let text = &msg.buf[uri.clone()];
            if Uri::parse(text).is_none() {
                let has_scheme = memchr::memchr(b':', text).is_some_and(|c| {
                    c > 0
                        && text[..c]
                            .iter()
                            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(b))
                });
                return Err(if has_scheme && !looks_like_sip(text) {
                    Reject::new(416, "Unsupported URI Scheme", "unsupported_uri_scheme")
                } else {
                    Reject::new(400, "Malformed Request-URI", "bad_request_uri")
                });
            }
        }
        let max_forwards = match msg.value(HeaderName::MaxForwards) {
            None => None,
            Some(value) => {
                let value = crate::message::value::trim_slice(value);
                if value.is_empty() || value.len() > 3 || !value.iter().all(u8::is_ascii_digit) {
                    return Err(Reject::new(
                        400,
                        "Malformed Max-Forwards",
                        "bad_max_forwards",
                    ));
                }
                let n: u32 = value.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0'));
                if n > 255 {
                    return Err(Reject::new(
                        400,
                        "Malformed Max-Forwards",
                        "bad_max_forwards",
                    ));
                }
                Some(n)
            }
        };
        if msg.first(HeaderName::ProxyRequire).is_some()
            && method != Method::Ack
            && method != Method::Cancel
        {
            // The Unsupported header listing the options is added by the caller.
            return Err(Reject::new(420, "Bad Extension", PROXY_REQUIRE));
        }
        Ok(max_forwards)
    }

    /// Returns the transport toward the upstream for a request that arrived on `inbound`.
    pub(super) fn upstream_transport(&self, inbound: Transport) -> Transport {
        match self.upstream_transport {
            UpstreamTransport::Same => inbound,
            UpstreamTransport::Udp => Transport::Udp,
            UpstreamTransport::Tcp => Transport::Tcp,
        }
    }
}

/// Reason label of the 503 answer to a request over the per-source rate.
pub(super) const RATE_LIMITED: &str = "rate_limited";

/// Checks that a From or To value closes every quoted string (with backslash escapes) and every
/// `<` it opens, as the name-addr grammar of RFC 3261 section 25.1 requires. RFC 4475 section
/// 3.1.2.4 expects an unterminated quote to be answered 400.
fn is_balanced_name_addr(value: &[u8]) -> bool {
    let mut in_quotes = false;
    let mut in_angle = false;
    let mut i = 0;
    while i < value.len() {
        match value[i] {
            b'\\' if in_quotes => i += 1,
            b'"' if !in_angle => in_quotes = !in_quotes,
            b'<' if !in_quotes && !in_angle => in_angle = true,
            b'>' if !in_quotes && in_angle => in_angle = false,
            _ => {}
        }
        i += 1;
    }
    !in_quotes && !in_angle
}

/// Reason label of the 420 answer to a Proxy-Require the proxy does not support.
pub(super) const PROXY_REQUIRE: &str = "proxy_require";

fn looks_like_sip(uri: &[u8]) -> bool {
    let lower = |p: &[u8]| uri.len() >= p.len() && uri[..p.len()].eq_ignore_ascii_case(p);
    lower(b"sip:") || lower(b"sips:") || lower(b"tel:")
}

/// Derives the key that keys Via branch hashes from the first release's key, so branches stay
/// the same across restarts and across instances that share the key, and reveal nothing.
fn branch_key(keys: &KeyRing) -> [u8; 32] {
    let label = keys
        .releases()
        .first()
        .map(|release| release.sessionid("via-branch/v1"))
        .unwrap_or_default();
    Sha256::digest(label.as_bytes()).into()
}
