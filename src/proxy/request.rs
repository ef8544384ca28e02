//! Forwarding requests: edge to upstream with stamping, upstream back to the edge by the call's
//! flow or the Route set.

use std::net::SocketAddr;
use std::sync::Arc;

use tracing::debug;

use super::calls::{CallEntry, CallTable, InsertError, Returning, StripHeaders, Transition};
use super::core::{Reject, View, PROXY_REQUIRE};
use super::local::{encode_flow, FLOW_PARAM};
use super::outcome::{
    CallEvent, CallEventKind, CallIds, Direction, DropReason, Inbound, MessageKind, NewCall,
    Outcome, Scratch,
};
use crate::identity::{self, Identity, IdentityInput};
use crate::message::edit::Editor;
use crate::message::uri::Uri;
use crate::message::value::{elements, trim};
use crate::message::via::plan_received;
use crate::message::{HeaderName, Message, Method, StartLine, Transport};
use crate::pseudonym::{random_id, time_ordered_id, IdKind};

/// The edits that turn one received request into the forwarded one.
struct Plan<'a> {
    out_transport: Transport,
    record_route: bool,
    strip: StripHeaders,
    stamps: Option<&'a [u8]>,
    returning: Option<Returning>,
}

/// The result of [`Core::create_call`].
struct CreatedCall {
    /// The call in the table under the key.
    entry: Arc<CallEntry>,
    /// False when another worker inserted a call with the same key first.
    inserted: bool,
    /// The caller's sessionids under the tenant's retired keys.
    previous_sessionids: Vec<Arc<str>>,
}

impl View<'_> {
    pub(super) fn on_request(
        &self,
        inbound: Inbound<'_>,
        msg: Message<'_>,
        method: Method,
        scratch: &mut Scratch,
    ) -> Outcome {
        if let Err(reject) = check_framing(inbound, &msg) {
            return self.reject_request(inbound, &msg, method, reject, scratch);
        }
        let max_forwards = match self.validate_request(&msg, method) {
            Ok(value) => value,
            Err(reject) => return self.reject_request(inbound, &msg, method, reject, scratch),
        };
        let uri = match msg.scanned.start {
            StartLine::Request { ref uri, .. } => &msg.buf[uri.clone()],
            StartLine::Response { .. } => &[][..],
        };
        let to_self = Uri::parse(uri).is_some_and(|u| self.local.is_own_uri(&u));
        if method == Method::Options
            && (max_forwards == Some(0) || to_self)
            && msg.tag(HeaderName::To).is_none()
        {
            // A load balancer probing a draining proxy must see it as unavailable, so it stops
            // sending new calls while the calls in progress finish.
            let reject = if self.draining {
                Reject {
                    extra: b"Retry-After: 5\r\n",
                    ..Reject::new(503, "Service Unavailable", "draining")
                }
            } else {
                Reject {
                    extra: b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n",
                    ..Reject::new(200, "OK", "options_probe")
                }
            };
            return self.reject_request(inbound, &msg, method, reject, scratch);
        }
        if max_forwards == Some(0) {
            let reject = Reject::new(483, "Too Many Hops", "max_forwards");
            return self.reject_request(inbound, &msg, method, reject, scratch);
        }

        if self.is_upstream(inbound.source) {
            self.forward_to_edge(inbound, msg, method, max_forwards, scratch)
        } else {
            self.forward_to_upstream(inbound, msg, method, max_forwards, scratch)
        }
    }

    fn reject_request(
        &self,
        inbound: Inbound<'_>,
        msg: &Message<'_>,
        method: Method,
        reject: Reject<'_>,
        scratch: &mut Scratch,
    ) -> Outcome {
        let mut extra = reject.extra.to_vec();
        if reject.reason == PROXY_REQUIRE {
            for header in msg.all(HeaderName::ProxyRequire) {
                extra.extend_from_slice(b"Unsupported: ");
                extra.extend_from_slice(msg.bytes(header));
                extra.extend_from_slice(b"\r\n");
            }
        }
        let reject = Reject {
            extra: &extra,
            ..reject
        };
        self.reject(
            inbound,
            msg.buf,
            msg.headers,
            method,
            reject,
            &mut scratch.out,
        )
    }

    fn forward_to_upstream(
        &self,
        inbound: Inbound<'_>,
        msg: Message<'_>,
        method: Method,
        max_forwards: Option<u32>,
        scratch: &mut Scratch,
    ) -> Outcome {
        let call_id = msg.value(HeaderName::CallId).unwrap_or_default();
        let from_tag = msg.tag(HeaderName::From).unwrap_or_default();
        let initial = msg.tag(HeaderName::To).is_none();
        CallTable::key_into(&mut scratch.key, call_id, from_tag);

        let mut new_call = None;
        let mut event = None;
        let entry = if method == Method::Invite && initial {
            match self.calls.get(&scratch.key) {
                Some(entry) if entry.returning.get().is_none() => {
                    return Outcome::Drop {
                        reason: DropReason::Pending,
                    };
                }
                Some(entry) => Some(entry),
                None if self.draining => {
                    let reject = Reject {
                        extra: b"Retry-After: 5\r\n",
                        ..Reject::new(503, "Service Unavailable", "draining")
                    };
                    return self.reject_request(inbound, &msg, method, reject, scratch);
                }
                None => match self.create_call(inbound, &msg, &scratch.key) {
                    Ok(CreatedCall {
                        entry,
                        inserted: true,
                        previous_sessionids,
                    }) => {
                        new_call = Some((entry.clone(), previous_sessionids));
                        Some(entry)
                    }
                    Ok(CreatedCall {
                        inserted: false, ..
                    }) => {
                        return Outcome::Drop {
                            reason: DropReason::Pending,
                        };
                    }
                    Err(InsertError::Full) => {
                        let reject = Reject {
                            extra: b"Retry-After: 5\r\n",
                            ..Reject::new(503, "Service Unavailable", "call_table_full")
                        };
                        return self.reject_request(inbound, &msg, method, reject, scratch);
                    }
                },
            }
        } else {
            self.calls.get(&scratch.key)
        };

        if method == Method::Bye {
            event = entry
                .as_deref()
                .and_then(|e| self.end_by_bye(e, inbound.now));
        }

        let out_transport = self.upstream_transport(inbound.transport);
        // NOTE: a CANCEL or BYE that arrives while the first INVITE still waits for the store is
        // forwarded at once, ahead of that INVITE. It carries the sessionid as it is then, which
        // may be the current-key one that a key-rotation rebind replaces a moment later.
        let plan = Plan {
            out_transport,
            record_route: initial && matches!(method, Method::Invite | Method::Subscribe),
            strip: entry.as_ref().map(|e| e.strip).unwrap_or_default(),
            stamps: entry.as_deref().map(CallEntry::stamps),
            returning: entry.as_ref().and_then(|e| e.returning.get().copied()),
        };
        let stamp_at = self.write_request(inbound, &msg, max_forwards, &plan, scratch);
        let new_call = new_call.map(|(entry, previous_sessionids)| {
            Box::new(NewCall {
                ids: entry.ids.clone(),
                previous_sessionids,
                stamp_at,
                entry,
            })
        });
        Outcome::Forward {
            transport: out_transport,
            dest: entry.as_ref().map_or(self.upstream, |e| e.upstream),
            kind: MessageKind::Request(method),
            direction: Direction::ToUpstream,
            new_call,
            event,
        }
    }

    fn forward_to_edge(
        &self,
        inbound: Inbound<'_>,
        msg: Message<'_>,
        method: Method,
        max_forwards: Option<u32>,
        scratch: &mut Scratch,
    ) -> Outcome {
        let call_id = msg.value(HeaderName::CallId).unwrap_or_default();
        let to_tag = msg.tag(HeaderName::To);
        let mut event = None;
        let entry = to_tag.and_then(|tag| {
            CallTable::key_into(&mut scratch.key, call_id, tag);
            self.calls.get(&scratch.key)
        });
        if method == Method::Bye {
            event = entry
                .as_deref()
                .and_then(|e| self.end_by_bye(e, inbound.now));
        }
        let target = match &entry {
            Some(entry) => Some(entry.edge),
            None => self.route_target(&msg),
        };
        let Some((out_transport, dest)) = target else {
            if method == Method::Ack {
                return Outcome::Drop {
                    reason: DropReason::NoRoute,
                };
            }
            let reject = Reject::new(404, "No Route To Destination", "no_route");
            return self.reject_request(inbound, &msg, method, reject, scratch);
        };
        let plan = Plan {
            out_transport,
            record_route: to_tag.is_none() && matches!(method, Method::Invite | Method::Subscribe),
            strip: StripHeaders::default(),
            stamps: None,
            returning: None,
        };
        self.write_request(inbound, &msg, max_forwards, &plan, scratch);
        Outcome::Forward {
            transport: out_transport,
            dest,
            kind: MessageKind::Request(method),
            direction: Direction::ToEdge,
            new_call: None,
            event,
        }
    }

    /// Ends a call on BYE and returns the event to record, unless it had ended already.
    fn end_by_bye(&self, entry: &CallEntry, now: std::time::Instant) -> Option<CallEvent> {
        // A BYE in an early dialog (RFC 3261 section 15) ends a call that was never answered.
        // Its UAS is to answer the pending INVITE with 487, so that is the status recorded.
        let status = (!entry.is_answered()).then_some(487);
        (self.calls.end(entry, now) == Transition::Ended).then(|| CallEvent {
            conversationid: Arc::clone(&entry.ids.conversationid),
            kind: CallEventKind::Ended { status },
        })
    }

    /// Finds where a request from the upstream goes without a known call: the first Route
    /// entry that is not the proxy's own, else the Request-URI. Only IP-literal hosts route.
    fn route_target(&self, msg: &Message<'_>) -> Option<(Transport, SocketAddr)> {
        let next_route = msg.all(HeaderName::Route).find_map(|header| {
            let value = msg.bytes(header);
            elements(value)
                .map(|r| &value[r])
                .find(|entry| !self.local.is_own_route(entry))
        });
        let uri = match next_route {
            Some(entry) => Uri::parse_name_addr(entry)?,
            None => match msg.scanned.start {
                StartLine::Request { ref uri, .. } => Uri::parse(&msg.buf[uri.clone()])?,
                StartLine::Response { .. } => return None,
            },
        };
        let transport = match uri.param(b"transport") {
            Some(t) if t.eq_ignore_ascii_case(b"tcp") => Transport::Tcp,
            _ => Transport::Udp,
        };
        // NOTE: host names are not resolved; only IP-literal Route and Request-URI hosts route.
        Some((transport, uri.socket_addr()?))
    }

    /// Derives the caller identity of an INVITE from its headers and the sender's trunk.
    fn derive_identity(&self, inbound: Inbound<'_>, msg: &Message<'_>) -> Identity {
        let mut input = IdentityInput::default();
        for header in msg.headers {
            let value = msg.bytes(header);
            match header.name {
                HeaderName::From => {
                    input.from.get_or_insert(value);
                }
                HeaderName::PAssertedIdentity => input.pai.push(value),
                HeaderName::PPreferredIdentity => input.ppi.push(value),
                HeaderName::RemotePartyId => input.rpid.push(value),
                HeaderName::Privacy => input.privacy.push(value),
                _ => {}
            }
        }
        let trunk = self.trust.classify(inbound.source.ip());
        identity::derive(&input, trunk)
    }

    /// Returns the identity an initial INVITE would get, without creating a call.
    pub(super) fn inspect_identity(&self, inbound: Inbound<'_>) -> Option<Identity> {
        let mut headers = Vec::new();
        let scanned = crate::message::scan(inbound.bytes, &self.limits, &mut headers).ok()?;
        let msg = Message {
            buf: inbound.bytes,
            scanned: &scanned,
            headers: &headers,
        };
        let initial_invite =
            msg.method() == Some(Method::Invite) && msg.tag(HeaderName::To).is_none();
        initial_invite.then(|| self.derive_identity(inbound, &msg))
    }

    /// Creates the identifiers of a new call from its first INVITE and adds it to the table.
    fn create_call(
        &self,
        inbound: Inbound<'_>,
        msg: &Message<'_>,
        key: &[u8],
    ) -> Result<CreatedCall, InsertError> {
        let identity = self.derive_identity(inbound, msg);
        let request_user = match msg.scanned.start {
            StartLine::Request { ref uri, .. } => {
                Uri::parse(&msg.buf[uri.clone()]).and_then(|u| u.user)
            }
            StartLine::Response { .. } => None,
        };
        let release = self.keys.select(request_user);
        let (sessionid, previous_sessionids) = match (&identity.callerid, identity.anonymous) {
            (Some(callerid), false) => {
                let previous = if release.has_previous_keys() {
                    release
                        .previous_sessionids(callerid)
                        .into_iter()
                        .map(Arc::from)
                        .collect()
                } else {
                    Vec::new()
                };
                (release.sessionid(callerid), previous)
            }
            _ => (random_id(IdKind::AnonymousSession), Vec::new()),
        };
        let ids = CallIds {
            callid: random_id(IdKind::Call).into(),
            sessionid: sessionid.into(),
            conversationid: time_ordered_id(IdKind::Conversation, crate::store::now_ms()).into(),
            anonymous: identity.anonymous,
            source: identity.source,
            assurance: identity.assurance,
            instance_id: release.instance_id().into(),
            tenant: release.tenant().into(),
            key_id: release.key().key_id().into(),
        };
        let stamps = self.stamps.render(&ids, identity.callerid.as_deref());
        let strip = StripHeaders {
            pai: identity.strip_pai,
            rpid: identity.strip_rpid,
            ppi: identity.strip_ppi,
        };
        debug!(
            callid = %ids.callid,
            sessionid = %ids.sessionid,
            conversationid = %ids.conversationid,
            source = ids.source.as_str(),
            assurance = ids.assurance.as_str(),
            anon_reason = identity.anon_reason.as_str(),
            "new call"
        );
        let entry = CallEntry::new(
            ids,
            stamps,
            strip,
            (inbound.transport, inbound.source),
            self.upstream,
            inbound.now,
        );
        let (entry, inserted) = self.calls.insert(key, entry)?;
        Ok(CreatedCall {
            entry,
            inserted,
            previous_sessionids,
        })
    }

    /// Writes the forwarded request into `scratch.out` and returns the offset where stamped
    /// headers end, for the returning-caller header.
    fn write_request(
        &self,
        inbound: Inbound<'_>,
        msg: &Message<'_>,
        max_forwards: Option<u32>,
        plan: &Plan<'_>,
        scratch: &mut Scratch,
    ) -> usize {
        let editor = &mut scratch.editor;
        editor.clear();
        let after_start = msg.scanned.start_line.end;

        let (_, top_via_range) = msg.top_via().expect("validated before forwarding");
        let call_id = msg.value(HeaderName::CallId).unwrap_or_default();
        let cseq = msg.value(HeaderName::CSeq).unwrap_or_default();
        let flow_token = (inbound.transport == Transport::Tcp).then(|| {
            let mut token = Vec::with_capacity(48);
            encode_flow(inbound.source, &mut token);
            token
        });
        let flow = flow_token.as_deref();
        let branch = self
            .local
            .branch(&msg.buf[top_via_range.clone()], &[call_id, cseq], flow);
        let local = self.local.addr(plan.out_transport);
        {
            let mut via = editor.insert_with(after_start);
            via.push(b"Via: SIP/2.0/")
                .push(plan.out_transport.via_name().as_bytes())
                .push(b" ")
                .push(local.host.as_bytes())
                .push(b":")
                .push_display(local.port)
                .push(b";branch=")
                .push(&branch);
            if let Some(flow) = flow {
                via.push(b";").push(FLOW_PARAM).push(b"=").push(flow);
            }
            via.push(b"\r\n");
        }

        if plan.record_route {
            if plan.out_transport != inbound.transport {
                write_record_route(
                    editor,
                    after_start,
                    self.local.addr(plan.out_transport),
                    plan.out_transport,
                );
            }
            write_record_route(
                editor,
                after_start,
                self.local.addr(inbound.transport),
                inbound.transport,
            );
        }

        match (max_forwards, msg.first(HeaderName::MaxForwards)) {
            (Some(n), Some(header)) => {
                let value = trim(msg.buf, header.value.clone());
                editor
                    .insert_with(value.start)
                    .push_display(n.saturating_sub(1));
                editor.remove(value);
            }
            _ => editor.insert(after_start, &[b"Max-Forwards: 70\r\n"]),
        }

        if let Some(edit) = plan_received(msg.buf, top_via_range, inbound.source) {
            // Written straight into the editor's buffer, so the edit allocates nothing.
            for (range, param) in edit.splices() {
                editor.replace_with(range).push_display(edit.text(param));
            }
        }

        self.pop_own_routes(msg, editor);

        for header in msg.headers {
            let remove = match header.name {
                HeaderName::Other => self.stamps.is_stamped(&msg.buf[header.name_range.clone()]),
                HeaderName::PAssertedIdentity => plan.strip.pai,
                HeaderName::RemotePartyId => plan.strip.rpid,
                HeaderName::PPreferredIdentity => plan.strip.ppi,
                _ => false,
            };
            if remove {
                editor.remove(header.line.clone());
            }
        }

        let head_end = msg.scanned.head_end;
        if let Some(stamps) = plan.stamps {
            editor.insert(head_end, &[stamps]);
            if let Some(returning) = plan.returning {
                // NOTE: this name comes from the current settings, so after a reload that renames
                // it, a call in progress carries the new name here and the old names above.
                editor.insert(head_end, &[self.stamps.returning_line(returning)]);
            }
        }

        let body_end = msg.scanned.body.end;
        editor.render(&msg.buf[..body_end], &mut scratch.out);
        scratch.out.len() - (body_end - head_end)
    }

    /// Removes the leading Route entries that point at this proxy (loose routing, RFC 3261
    /// section 16.4).
    fn pop_own_routes(&self, msg: &Message<'_>, editor: &mut Editor) {
        for header in msg.all(HeaderName::Route) {
            let value = msg.bytes(header);
            let mut first_foreign = None;
            for range in elements(value) {
                if !self.local.is_own_route(&value[range.clone()]) {
                    first_foreign = Some(range.start);
                    break;
                }
            }
            match first_foreign {
                None => editor.remove(header.line.clone()),
                Some(0) => return,
                Some(start) => {
                    editor.remove(header.value.start..header.value.start + start);
                    return;
                }
            }
        }
    }
}

/// Rejects requests whose framing the proxy cannot forward faithfully: a stream message
/// without Content-Length (RFC 3261 section 18.3 makes it mandatory there, so the next hop
/// could not find the end of the body), and lines ending in a bare LF, which would reach the
/// next hop mixed with the proxy's CRLF lines.
pub(super) fn check_framing(
    inbound: Inbound<'_>,
    msg: &Message<'_>,
) -> Result<(), Reject<'static>> {
    if inbound.transport == Transport::Tcp && msg.scanned.content_length.is_none() {
        return Err(Reject::new(
            400,
            "Missing Content-Length",
            "missing_content_length",
        ));
    }
    // Every line of the head, the empty line that ends it included, must end in CRLF, and a
    // CR may appear only there. A next hop that ends lines at a lone CR would otherwise read a
    // header hidden inside another, which the proxy did not strip.
    let head = &msg.buf[..msg.scanned.body.start];
    for at in memchr::memchr2_iter(b'\r', b'\n', head) {
        if head[at] == b'\n' && (at == 0 || head[at - 1] != b'\r') {
            return Err(Reject::new(400, "Bare LF Line Ending", "bare_lf"));
        }
        if head[at] == b'\r' && head.get(at + 1) != Some(&b'\n') {
            return Err(Reject::new(400, "Bare CR in Header", "bare_cr"));
        }
    }
    Ok(())
}

fn write_record_route(
    editor: &mut Editor,
    at: usize,
    local: &super::local::LocalAddr,
    transport: Transport,
) {
    let mut line = editor.insert_with(at);
    line.push(b"Record-Route: <sip:")
        .push(local.host.as_bytes())
        .push(b":")
        .push_display(local.port);
    if transport == Transport::Tcp {
        line.push(b";transport=tcp");
    }
    line.push(b";lr>\r\n");
}
