//! The versioned binary encoding of stored records.
//!
//! Layout: one version byte, one record-kind byte, then fields as `tag (u8) | length (u32 LE) |
//! bytes`. Integers are little-endian, strings UTF-8, booleans one byte (0 or 1). A decoder skips
//! tags it does not know and treats a missing optional field as absent. So later versions can
//! read records written by this one, and this one can read records that a later writer extended
//! with new fields. A change that cannot be expressed that way must raise the version byte and
//! keep a decoder for version 1.

use super::{Conversation, Lifetime, Session, StoreError, Variable};

/// The version byte this build writes.
pub const VERSION: u8 = 1;

const KIND_SESSION: u8 = b'S';
const KIND_VARIABLE: u8 = b'V';
const KIND_CONVERSATION: u8 = b'C';

struct Writer(Vec<u8>);

impl Writer {
    fn new(kind: u8) -> Self {
        let mut bytes = Vec::with_capacity(96);
        bytes.push(VERSION);
        bytes.push(kind);
        Self(bytes)
    }

    fn bytes(&mut self, tag: u8, value: &[u8]) {
        self.0.push(tag);
        self.0
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.0.extend_from_slice(value);
    }

    fn str(&mut self, tag: u8, value: &str) {
        self.bytes(tag, value.as_bytes());
    }

    fn u64(&mut self, tag: u8, value: u64) {
        self.bytes(tag, &value.to_le_bytes());
    }

    fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// The fields of one record, by tag, borrowed from the encoded bytes.
struct Fields<'a> {
    kind: &'static str,
    slots: [Option<&'a [u8]>; 16],
}

impl<'a> Fields<'a> {
    fn parse(bytes: &'a [u8], kind: u8, kind_name: &'static str) -> Result<Self, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("{kind_name} record: {what}"));
        match bytes {
            [VERSION, k, ..] if *k == kind => {}
            [VERSION, ..] => return Err(corrupt("wrong record kind")),
            [] => return Err(corrupt("empty value")),
            [v, ..] => return Err(corrupt(&format!("unsupported version {v}"))),
        }
        let mut slots = [None; 16];
        let mut rest = &bytes[2..];
        while !rest.is_empty() {
            if rest.len() < 5 {
                return Err(corrupt("truncated field header"));
            }
            let tag = rest[0];
            let len = u32::from_le_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            let body = rest
                .get(5..5 + len)
                .ok_or_else(|| corrupt("truncated field"))?;
            if let Some(slot) = slots.get_mut(usize::from(tag)) {
                *slot = Some(body);
            }
            rest = &rest[5 + len..];
        }
        Ok(Self {
            kind: kind_name,
            slots,
        })
    }

    fn corrupt(&self, tag: u8, what: &str) -> StoreError {
        StoreError::Corrupt(format!("{} record: field {tag} {what}", self.kind))
    }

    fn opt_str(&self, tag: u8) -> Result<Option<String>, StoreError> {
        match self.slots[usize::from(tag)] {
            None => Ok(None),
            Some(body) => String::from_utf8(body.to_vec())
                .map(Some)
                .map_err(|_| self.corrupt(tag, "is not UTF-8")),
        }
    }

    fn str(&self, tag: u8) -> Result<String, StoreError> {
        self.opt_str(tag)?
            .ok_or_else(|| self.corrupt(tag, "is missing"))
    }

    fn opt_u64(&self, tag: u8) -> Result<Option<u64>, StoreError> {
        match self.slots[usize::from(tag)] {
            None => Ok(None),
            Some(body) => <[u8; 8]>::try_from(body)
                .map(|b| Some(u64::from_le_bytes(b)))
                .map_err(|_| self.corrupt(tag, "is not 8 bytes")),
        }
    }

    fn u64(&self, tag: u8) -> Result<u64, StoreError> {
        self.opt_u64(tag)?
            .ok_or_else(|| self.corrupt(tag, "is missing"))
    }

    fn byte(&self, tag: u8) -> Result<Option<u8>, StoreError> {
        match self.slots[usize::from(tag)] {
            None => Ok(None),
            Some([b]) => Ok(Some(*b)),
            Some(_) => Err(self.corrupt(tag, "is not 1 byte")),
        }
    }
}

pub fn encode_session(session: &Session) -> Vec<u8> {
    let mut w = Writer::new(KIND_SESSION);
    w.str(1, &session.sessionid);
    w.str(2, &session.tenant);
    w.str(3, &session.instance);
    w.str(4, &session.key_id);
    w.u64(5, session.first_seen_ms);
    w.u64(6, session.last_seen_ms);
    w.u64(7, session.call_count);
    w.finish()
}

pub fn decode_session(bytes: &[u8]) -> Result<Session, StoreError> {
    let f = Fields::parse(bytes, KIND_SESSION, "session")?;
    Ok(Session {
        sessionid: f.str(1)?,
        tenant: f.str(2)?,
        instance: f.str(3)?,
        key_id: f.str(4)?,
        first_seen_ms: f.u64(5)?,
        last_seen_ms: f.u64(6)?,
        call_count: f.u64(7)?,
    })
}

pub fn encode_variable(variable: &Variable) -> Vec<u8> {
    let mut w = Writer::new(KIND_VARIABLE);
    w.str(1, &variable.name);
    w.str(2, &variable.value);
    w.bytes(3, &[lifetime_byte(variable.lifetime)]);
    w.u64(4, variable.updated_at_ms);
    w.finish()
}

pub fn decode_variable(bytes: &[u8]) -> Result<Variable, StoreError> {
    let f = Fields::parse(bytes, KIND_VARIABLE, "variable")?;
    let lifetime = match f.byte(3)? {
        Some(b'S') => Lifetime::Session,
        Some(b'U') => Lifetime::User,
        _ => return Err(f.corrupt(3, "is not a lifetime")),
    };
    Ok(Variable {
        name: f.str(1)?,
        value: f.str(2)?,
        lifetime,
        updated_at_ms: f.u64(4)?,
    })
}

pub fn lifetime_byte(lifetime: Lifetime) -> u8 {
    match lifetime {
        Lifetime::Session => b'S',
        Lifetime::User => b'U',
    }
}

pub fn encode_conversation(c: &Conversation) -> Vec<u8> {
    let mut w = Writer::new(KIND_CONVERSATION);
    w.str(1, &c.conversationid);
    w.str(2, &c.sessionid);
    w.str(3, &c.tenant);
    w.str(4, &c.callid);
    w.str(5, &c.release);
    w.u64(6, c.started_at_ms);
    if let Some(at) = c.answered_at_ms {
        w.u64(7, at);
    }
    if let Some(at) = c.ended_at_ms {
        w.u64(8, at);
    }
    if let Some(status) = c.final_status {
        w.bytes(9, &status.to_le_bytes());
    }
    w.bytes(10, &[u8::from(c.anonymous)]);
    w.str(11, &c.identity_source);
    w.finish()
}

pub fn decode_conversation(bytes: &[u8]) -> Result<Conversation, StoreError> {
    let f = Fields::parse(bytes, KIND_CONVERSATION, "conversation")?;
    let final_status = match f.slots[9] {
        None => None,
        Some(body) => Some(u16::from_le_bytes(
            <[u8; 2]>::try_from(body).map_err(|_| f.corrupt(9, "is not 2 bytes"))?,
        )),
    };
    Ok(Conversation {
        conversationid: f.str(1)?,
        sessionid: f.str(2)?,
        tenant: f.str(3)?,
        callid: f.str(4)?,
        release: f.str(5)?,
        started_at_ms: f.u64(6)?,
        answered_at_ms: f.opt_u64(7)?,
        ended_at_ms: f.opt_u64(8)?,
        final_status,
        anonymous: f.byte(10)? == Some(1),
        identity_source: f.opt_str(11)?.unwrap_or_default(),
    })
}
