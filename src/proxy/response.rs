//! Relaying responses: pop the proxy's own Via and send the response to the next one.

use std::sync::Arc;

use super::calls::{CallTable, Transition};
use super::core::View;
use super::local::{decode_flow, FLOW_PARAM};
use super::outcome::{
    CallEvent, CallEventKind, Direction, DropReason, Inbound, MessageKind, Outcome, Scratch,
};
use crate::message::value::{elements, first_element_end};
use crate::message::{HeaderName, Message, Transport, Via};

impl View<'_> {
    pub(super) fn on_response(
        &self,
        inbound: Inbound<'_>,
        msg: Message<'_>,
        status: u16,
        scratch: &mut Scratch,
    ) -> Outcome {
        let drop = |reason| Outcome::Drop { reason };
        if super::request::check_framing(inbound, &msg).is_err() {
            return drop(DropReason::BadResponse);
        }
        let Some((own_via, _)) = msg.top_via() else {
            return drop(DropReason::BadResponse);
        };
        if !self.local.is_own_via(&own_via) {
            return drop(DropReason::ViaNotOurs);
        }
        let (Some(call_id), Some((_, cseq_method))) = (msg.value(HeaderName::CallId), msg.cseq())
        else {
            return drop(DropReason::BadResponse);
        };

        // The first Via header contains the proxy's value. The next value is either the second
        // element of that header or the first element of the next Via header.
        let mut vias = msg.all(HeaderName::Via);
        let first = vias.next().expect("top_via found a Via header");
        let first_value = msg.bytes(first);
        let own_end = first_element_end(first_value);
        let rest_of_first = elements(&first_value[(own_end + 1).min(first_value.len())..]).next();
        let next_via = match rest_of_first.clone() {
            Some(range) => {
                let offset = own_end + 1;
                Via::parse(&first_value[offset + range.start..offset + range.end])
            }
            None => vias.next().and_then(|header| {
                let value = msg.bytes(header);
                Via::parse(&value[..first_element_end(value)])
            }),
        };
        let Some(next_via) = next_via else {
            return drop(DropReason::NoNextHop);
        };
        if !self.local.branch_matches(&own_via, &next_via) {
            return drop(DropReason::ViaNotOurs);
        }

        let target = match own_via.param(FLOW_PARAM).and_then(decode_flow) {
            Some(flow) => Some((Transport::Tcp, flow)),
            None => next_via.known_transport().zip(next_via.response_target()),
        };
        let Some((transport, dest)) = target else {
            return drop(DropReason::NoNextHop);
        };

        let from_upstream = self.is_upstream(inbound.source);
        let mut event = None;
        if from_upstream && cseq_method == b"INVITE" {
            let from_tag = msg.tag(HeaderName::From).unwrap_or_default();
            CallTable::key_into(&mut scratch.key, call_id, from_tag);
            if let Some(entry) = self.calls.get(&scratch.key) {
                let (transition, kind) = match status {
                    200..=299 => (self.calls.answer(&entry), CallEventKind::Answered),
                    300..=699 => (
                        self.calls.end(&entry, inbound.now),
                        CallEventKind::Ended {
                            status: Some(status),
                        },
                    ),
                    _ => (Transition::Unchanged, CallEventKind::Answered),
                };
                if transition != Transition::Unchanged {
                    event = Some(CallEvent {
                        conversationid: Arc::clone(&entry.ids.conversationid),
                        kind,
                    });
                }
            }
        }

        let editor = &mut scratch.editor;
        editor.clear();
        if rest_of_first.is_some() {
            // Remove the proxy's element and the comma after it; keep the rest of the line.
            let start = first.value.start;
            let next_start = start + own_end + 1 + rest_of_first.as_ref().map_or(0, |r| r.start);
            editor.remove(start..next_start);
        } else {
            editor.remove(first.line.clone());
        }
        // Stamped headers never leave the proxy toward the edge, and copies that the edge puts
        // in its responses to the upstream's requests are forgeries, so both directions drop
        // them.
        for header in msg.headers {
            if header.name == HeaderName::Other
                && self.stamps.is_stamped(&msg.buf[header.name_range.clone()])
            {
                editor.remove(header.line.clone());
            }
        }
        editor.render(&msg.buf[..msg.scanned.body.end], &mut scratch.out);

        Outcome::Forward {
            transport,
            dest,
            kind: MessageKind::Response(status),
            direction: if from_upstream {
                Direction::ToEdge
            } else {
                Direction::ToUpstream
            },
            new_call: None,
            event,
        }
    }
}
