//! Key names and the Redis-hash form of sessions and conversations.
//!
//! Sessions and conversations are Redis hashes so that scripts can update single fields; field
//! `v` holds the format version ("1"). Variables are stored in the binary codec.

use std::collections::HashMap;

use crate::store::{Conversation, Session, StoreError};

/// Format version written into field `v` of session and conversation hashes.
const HASH_VERSION: &str = "1";

/// Key names under one prefix. Keys of a session share the hash tag `{sessionid}`.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub fn session(&self, sessionid: &str) -> String {
        format!("{}:{{{sessionid}}}:s", self.prefix)
    }

    pub fn session_variables(&self, sessionid: &str) -> String {
        format!("{}:{{{sessionid}}}:sv", self.prefix)
    }

    pub fn user_variables(&self, sessionid: &str) -> String {
        format!("{}:{{{sessionid}}}:uv", self.prefix)
    }

    pub fn session_conversations(&self, sessionid: &str) -> String {
        format!("{}:{{{sessionid}}}:cv", self.prefix)
    }

    /// String key: the original sessionid that this (new-key) sessionid stands for.
    pub fn alias(&self, sessionid: &str) -> String {
        format!("{}:{{{sessionid}}}:alias", self.prefix)
    }

    /// Set key: the new-key sessionids that are aliases of this sessionid.
    pub fn aliased_by(&self, sessionid: &str) -> String {
        format!("{}:{{{sessionid}}}:aliased", self.prefix)
    }

    pub fn conversation(&self, conversationid: &str) -> String {
        format!("{}:cv:{{{conversationid}}}", self.prefix)
    }

    pub fn tenant_sessions(&self, tenant: &str) -> String {
        format!("{}:tenant:{{{tenant}}}:s", self.prefix)
    }

    pub fn tenant_conversations(&self, tenant: &str) -> String {
        format!("{}:tenant:{{{tenant}}}:cv", self.prefix)
    }

    /// Every key of a session, for deletion.
    pub fn all_of_session(&self, sessionid: &str) -> [String; 6] {
        [
            self.session(sessionid),
            self.session_variables(sessionid),
            self.user_variables(sessionid),
            self.session_conversations(sessionid),
            self.alias(sessionid),
            self.aliased_by(sessionid),
        ]
    }
}

fn field<'a>(
    map: &'a HashMap<String, String>,
    kind: &str,
    name: &str,
) -> Result<&'a str, StoreError> {
    map.get(name)
        .map(String::as_str)
        .ok_or_else(|| StoreError::Corrupt(format!("{kind} hash: field {name} is missing")))
}

fn number<T: std::str::FromStr>(
    map: &HashMap<String, String>,
    kind: &str,
    name: &str,
) -> Result<T, StoreError> {
    field(map, kind, name)?
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("{kind} hash: field {name} is not a number")))
}

fn optional_number<T: std::str::FromStr>(
    map: &HashMap<String, String>,
    kind: &str,
    name: &str,
) -> Result<Option<T>, StoreError> {
    match map.get(name) {
        None => Ok(None),
        Some(_) => number(map, kind, name).map(Some),
    }
}

fn check_version(map: &HashMap<String, String>, kind: &str) -> Result<(), StoreError> {
    match map.get("v").map(String::as_str) {
        Some(HASH_VERSION) => Ok(()),
        Some(other) => Err(StoreError::Corrupt(format!(
            "{kind} hash: unsupported version {other}"
        ))),
        None => Err(StoreError::Corrupt(format!(
            "{kind} hash: version is missing"
        ))),
    }
}

pub fn session_from_hash(
    sessionid: &str,
    map: &HashMap<String, String>,
) -> Result<Session, StoreError> {
    const KIND: &str = "session";
    check_version(map, KIND)?;
    Ok(Session {
        sessionid: sessionid.to_owned(),
        tenant: field(map, KIND, "tenant")?.to_owned(),
        instance: field(map, KIND, "instance")?.to_owned(),
        key_id: field(map, KIND, "key_id")?.to_owned(),
        first_seen_ms: number(map, KIND, "first_seen")?,
        last_seen_ms: number(map, KIND, "last_seen")?,
        call_count: number(map, KIND, "calls")?,
    })
}

pub fn conversation_to_hash(c: &Conversation) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("v", HASH_VERSION.to_owned()),
        ("sessionid", c.sessionid.clone()),
        ("tenant", c.tenant.clone()),
        ("callid", c.callid.clone()),
        ("release", c.release.clone()),
        ("started_at", c.started_at_ms.to_string()),
        ("anonymous", u8::from(c.anonymous).to_string()),
        ("identity_source", c.identity_source.clone()),
    ];
    if let Some(at) = c.answered_at_ms {
        fields.push(("answered_at", at.to_string()));
    }
    if let Some(at) = c.ended_at_ms {
        fields.push(("ended_at", at.to_string()));
    }
    if let Some(status) = c.final_status {
        fields.push(("final_status", status.to_string()));
    }
    fields
}

pub fn conversation_from_hash(
    conversationid: &str,
    map: &HashMap<String, String>,
) -> Result<Conversation, StoreError> {
    const KIND: &str = "conversation";
    check_version(map, KIND)?;
    Ok(Conversation {
        conversationid: conversationid.to_owned(),
        sessionid: field(map, KIND, "sessionid")?.to_owned(),
        tenant: field(map, KIND, "tenant")?.to_owned(),
        callid: field(map, KIND, "callid")?.to_owned(),
        release: field(map, KIND, "release")?.to_owned(),
        started_at_ms: number(map, KIND, "started_at")?,
        answered_at_ms: optional_number(map, KIND, "answered_at")?,
        ended_at_ms: optional_number(map, KIND, "ended_at")?,
        final_status: optional_number(map, KIND, "final_status")?,
        anonymous: field(map, KIND, "anonymous")? == "1",
        identity_source: field(map, KIND, "identity_source")?.to_owned(),
    })
}
