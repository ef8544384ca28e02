//! The stamped headers: their configured names, recognising incoming copies, and rendering
//! the header block a call carries.

use super::calls::Returning;
use super::outcome::CallIds;
use crate::config::HeaderNames;

/// Configured stamped-header names, prepared once.
#[derive(Debug, Clone)]
pub struct StampNames {
    names: HeaderNames,
    /// Every stamped name, for recognising copies that arrive from outside.
    all: Vec<Box<[u8]>>,
    returning_lines: [Box<[u8]>; 3],
}

impl StampNames {
    pub fn new(names: &HeaderNames) -> Self {
        let line = |value: &str| -> Box<[u8]> {
            format!("{}: {}\r\n", names.returning_caller, value)
                .into_bytes()
                .into_boxed_slice()
        };
        Self {
            names: names.clone(),
            all: names
                .all()
                .iter()
                .map(|n| n.as_bytes().to_vec().into_boxed_slice())
                .collect(),
            returning_lines: [
                line(Returning::Yes.as_str()),
                line(Returning::No.as_str()),
                line(Returning::Unknown.as_str()),
            ],
        }
    }

    /// Returns true when a header name is one sipstamp stamps (any case).
    pub fn is_stamped(&self, name: &[u8]) -> bool {
        self.all
            .iter()
            .any(|n| n.len() == name.len() && n.eq_ignore_ascii_case(name))
    }

    /// Returns the returning-caller header line for a value.
    pub fn returning_line(&self, returning: Returning) -> &[u8] {
        match returning {
            Returning::Yes => &self.returning_lines[0],
            Returning::No => &self.returning_lines[1],
            Returning::Unknown => &self.returning_lines[2],
        }
    }

    /// Renders the header lines stamped into every request of a call. The callerid is written
    /// only for calls that are not anonymous, and only when it is plain visible ASCII.
    pub fn render(&self, ids: &CallIds, callerid: Option<&str>) -> Box<[u8]> {
        let n = &self.names;
        let mut out = String::with_capacity(320);
        let mut line = |name: &str, value: &str| {
            out.push_str(name);
            out.push_str(": ");
            out.push_str(value);
            out.push_str("\r\n");
        };
        line(&n.callid, &ids.callid);
        line(&n.sessionid, &ids.sessionid);
        line(&n.conversationid, &ids.conversationid);
        line(&n.anonymous, if ids.anonymous { "true" } else { "false" });
        if let Some(callerid) = callerid.filter(|c| !ids.anonymous && is_header_safe(c)) {
            line(&n.callerid, callerid);
        }
        line(&n.identity_source, ids.source.as_str());
        line(&n.identity_assurance, ids.assurance.as_str());
        out.into_bytes().into_boxed_slice()
    }

    /// Returns a copy of a header block from [`StampNames::render`] for `ids` whose
    /// sessionid line carries `sessionid` instead of `ids.sessionid`.
    pub fn with_sessionid(&self, stamps: &[u8], ids: &CallIds, sessionid: &str) -> Box<[u8]> {
        let n = &self.names;
        // `render` writes the callid line first and the sessionid line second.
        let start = n.callid.len() + 2 + ids.callid.len() + 2 + n.sessionid.len() + 2;
        let end = start + ids.sessionid.len();
        debug_assert_eq!(stamps.get(start..end), Some(ids.sessionid.as_bytes()));
        let mut out = Vec::with_capacity(stamps.len() - ids.sessionid.len() + sessionid.len());
        out.extend_from_slice(&stamps[..start]);
        out.extend_from_slice(sessionid.as_bytes());
        out.extend_from_slice(&stamps[end..]);
        out.into_boxed_slice()
    }
}

fn is_header_safe(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic())
}
