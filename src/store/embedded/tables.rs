//! The redb tables and the write operations on them, each run inside the writer's transaction.
//!
//! Composite keys join their parts with a NUL byte, which ids and names never contain, so a
//! range from `a\0` to `a\x01` lists every entry under `a`.

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use crate::store::codec;
use crate::store::{Conversation, Lifetime, Session, SessionTouch, StoreError, Touch, Variable};

type Bytes = &'static [u8];

/// sessionid -> session record.
pub const SESSIONS: TableDefinition<Bytes, Bytes> = TableDefinition::new("sessions");
/// sessionid NUL name -> variable record.
pub const VARIABLES: TableDefinition<Bytes, Bytes> = TableDefinition::new("variables");
/// conversationid -> conversation record.
pub const CONVERSATIONS: TableDefinition<Bytes, Bytes> = TableDefinition::new("conversations");
/// sessionid NUL conversationid -> empty.
pub const SESSION_CONVERSATIONS: TableDefinition<Bytes, Bytes> =
    TableDefinition::new("session_conversations");
/// tenant NUL sessionid -> empty.
pub const TENANT_SESSIONS: TableDefinition<Bytes, Bytes> = TableDefinition::new("tenant_sessions");
/// tenant NUL conversationid -> empty.
pub const TENANT_CONVERSATIONS: TableDefinition<Bytes, Bytes> =
    TableDefinition::new("tenant_conversations");
/// new-key sessionid -> original sessionid.
pub const ALIASES: TableDefinition<Bytes, Bytes> = TableDefinition::new("aliases");
/// original sessionid NUL new-key sessionid -> empty.
pub const ALIAS_TARGETS: TableDefinition<Bytes, Bytes> = TableDefinition::new("alias_targets");
/// Store metadata, such as the pending-scrub flag.
pub const META: TableDefinition<Bytes, Bytes> = TableDefinition::new("meta");

/// Every table, in the order the scrub copies them.
pub const ALL: [TableDefinition<Bytes, Bytes>; 9] = [
    SESSIONS,
    VARIABLES,
    CONVERSATIONS,
    SESSION_CONVERSATIONS,
    TENANT_SESSIONS,
    TENANT_CONVERSATIONS,
    ALIASES,
    ALIAS_TARGETS,
    META,
];

/// META key set when erased bytes may still sit in free pages of the file.
pub const SCRUB_PENDING: &[u8] = b"scrub_pending";

pub fn backend(error: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("redb: {error}"))
}

pub fn pair(a: &str, b: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(a.len() + 1 + b.len());
    key.extend_from_slice(a.as_bytes());
    key.push(0);
    key.extend_from_slice(b.as_bytes());
    key
}

/// Returns the bounds of every `pair(prefix, _)` key.
fn prefix_bounds(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    let mut start = prefix.as_bytes().to_vec();
    start.push(0);
    let mut end = prefix.as_bytes().to_vec();
    end.push(1);
    (start, end)
}

/// Returns the second part of every `pair(prefix, _)` key in `table`.
pub fn suffixes<T: ReadableTable<Bytes, Bytes>>(
    table: &T,
    prefix: &str,
) -> Result<Vec<String>, StoreError> {
    let (start, end) = prefix_bounds(prefix);
    let mut out = Vec::new();
    for entry in table
        .range(start.as_slice()..end.as_slice())
        .map_err(backend)?
    {
        let (key, _) = entry.map_err(backend)?;
        let suffix = &key.value()[start.len()..];
        out.push(String::from_utf8_lossy(suffix).into_owned());
    }
    Ok(out)
}

/// Returns every variable of a session, sorted by name.
pub fn read_variables<T: ReadableTable<Bytes, Bytes>>(
    table: &T,
    sessionid: &str,
) -> Result<Vec<Variable>, StoreError> {
    let (start, end) = prefix_bounds(sessionid);
    let mut out = Vec::new();
    for entry in table
        .range(start.as_slice()..end.as_slice())
        .map_err(backend)?
    {
        let (_, value) = entry.map_err(backend)?;
        out.push(codec::decode_variable(value.value())?);
    }
    Ok(out)
}

pub fn touch(txn: &WriteTransaction, t: &OwnedTouch) -> Result<Touch, StoreError> {
    let mut sessions = txn.open_table(SESSIONS).map_err(backend)?;
    let existing = match sessions.get(t.sessionid.as_bytes()).map_err(backend)? {
        Some(value) => Some(codec::decode_session(value.value())?),
        None => None,
    };
    let returning = existing.is_some();
    let session = match existing {
        Some(mut session) => {
            session.last_seen_ms = session.last_seen_ms.max(t.now);
            session.call_count += 1;
            session
        }
        None => Session {
            sessionid: t.sessionid.clone(),
            tenant: t.tenant.clone(),
            instance: t.instance.clone(),
            key_id: t.key_id.clone(),
            first_seen_ms: t.now,
            last_seen_ms: t.now,
            call_count: 1,
        },
    };
    sessions
        .insert(
            t.sessionid.as_bytes(),
            codec::encode_session(&session).as_slice(),
        )
        .map_err(backend)?;
    if !returning {
        let mut tenants = txn.open_table(TENANT_SESSIONS).map_err(backend)?;
        tenants
            .insert(
                pair(&session.tenant, &session.sessionid).as_slice(),
                &[][..],
            )
            .map_err(backend)?;
    }
    if !t.other_calls_active {
        delete_variables(txn, &t.sessionid, Some(Lifetime::Session))?;
    }
    Ok(Touch { returning, session })
}

/// An owned copy of [`SessionTouch`], so it can move into the writer thread.
pub struct OwnedTouch {
    pub sessionid: String,
    pub tenant: String,
    pub instance: String,
    pub key_id: String,
    pub now: u64,
    pub other_calls_active: bool,
}

impl From<&SessionTouch<'_>> for OwnedTouch {
    fn from(t: &SessionTouch<'_>) -> Self {
        Self {
            sessionid: t.sessionid.to_owned(),
            tenant: t.tenant.to_owned(),
            instance: t.instance.to_owned(),
            key_id: t.key_id.to_owned(),
            now: t.now,
            other_calls_active: t.other_calls_active,
        }
    }
}

/// Deletes the variables of a session, only those of `lifetime` when it is given, and returns
/// how many it deleted.
pub fn delete_variables(
    txn: &WriteTransaction,
    sessionid: &str,
    lifetime: Option<Lifetime>,
) -> Result<u64, StoreError> {
    let mut variables = txn.open_table(VARIABLES).map_err(backend)?;
    let doomed: Vec<Variable> = read_variables(&variables, sessionid)?
        .into_iter()
        .filter(|v| lifetime.is_none_or(|l| v.lifetime == l))
        .collect();
    for variable in &doomed {
        variables
            .remove(pair(sessionid, &variable.name).as_slice())
            .map_err(backend)?;
    }
    Ok(doomed.len() as u64)
}

pub fn put_variable(
    txn: &WriteTransaction,
    sessionid: &str,
    variable: &Variable,
) -> Result<(), StoreError> {
    let sessions = txn.open_table(SESSIONS).map_err(backend)?;
    if sessions
        .get(sessionid.as_bytes())
        .map_err(backend)?
        .is_none()
    {
        return Err(StoreError::NotFound("session"));
    }
    let mut variables = txn.open_table(VARIABLES).map_err(backend)?;
    variables
        .insert(
            pair(sessionid, &variable.name).as_slice(),
            codec::encode_variable(variable).as_slice(),
        )
        .map_err(backend)?;
    Ok(())
}

pub fn start_conversation(txn: &WriteTransaction, c: &Conversation) -> Result<(), StoreError> {
    let mut conversations = txn.open_table(CONVERSATIONS).map_err(backend)?;
    let id = c.conversationid.as_bytes();
    let previous = match conversations.get(id).map_err(backend)? {
        Some(value) => Some(codec::decode_conversation(value.value())?),
        None => None,
    };
    conversations
        .insert(id, codec::encode_conversation(c).as_slice())
        .map_err(backend)?;
    drop(conversations);
    if let Some(previous) = previous {
        remove_conversation_indexes(txn, &previous)?;
    }
    let mut by_session = txn.open_table(SESSION_CONVERSATIONS).map_err(backend)?;
    by_session
        .insert(pair(&c.sessionid, &c.conversationid).as_slice(), &[][..])
        .map_err(backend)?;
    let mut by_tenant = txn.open_table(TENANT_CONVERSATIONS).map_err(backend)?;
    by_tenant
        .insert(pair(&c.tenant, &c.conversationid).as_slice(), &[][..])
        .map_err(backend)?;
    Ok(())
}

fn remove_conversation_indexes(txn: &WriteTransaction, c: &Conversation) -> Result<(), StoreError> {
    let mut by_session = txn.open_table(SESSION_CONVERSATIONS).map_err(backend)?;
    by_session
        .remove(pair(&c.sessionid, &c.conversationid).as_slice())
        .map_err(backend)?;
    let mut by_tenant = txn.open_table(TENANT_CONVERSATIONS).map_err(backend)?;
    by_tenant
        .remove(pair(&c.tenant, &c.conversationid).as_slice())
        .map_err(backend)?;
    Ok(())
}

/// Applies `change` to a stored conversation; fails with `NotFound` when there is none.
pub fn update_conversation(
    txn: &WriteTransaction,
    conversationid: &str,
    change: impl FnOnce(&mut Conversation),
) -> Result<(), StoreError> {
    let mut conversations = txn.open_table(CONVERSATIONS).map_err(backend)?;
    let id = conversationid.as_bytes();
    let mut conversation = match conversations.get(id).map_err(backend)? {
        Some(value) => codec::decode_conversation(value.value())?,
        None => return Err(StoreError::NotFound("conversation")),
    };
    change(&mut conversation);
    conversations
        .insert(id, codec::encode_conversation(&conversation).as_slice())
        .map_err(backend)?;
    Ok(())
}

fn delete_conversation(txn: &WriteTransaction, conversationid: &str) -> Result<(), StoreError> {
    let mut conversations = txn.open_table(CONVERSATIONS).map_err(backend)?;
    let removed = match conversations
        .remove(conversationid.as_bytes())
        .map_err(backend)?
    {
        Some(value) => Some(codec::decode_conversation(value.value())?),
        None => None,
    };
    drop(conversations);
    if let Some(conversation) = removed {
        remove_conversation_indexes(txn, &conversation)?;
    }
    Ok(())
}

/// Returns the exclusive upper bound of the keys of time-ordered conversation ids (see
/// `crate::pseudonym::time_ordered_id`) whose start time is before `cutoff`.
pub fn conversation_key_bound(cutoff: u64) -> Vec<u8> {
    // The id has 48 bits of milliseconds, enough until the year 10889.
    format!("cv{:012x}", cutoff.min(0xffff_ffff_ffff)).into_bytes()
}

/// The outcome of one [`delete_conversations_started_before`] call.
#[derive(Debug)]
pub struct RetentionChunk {
    pub deleted: u64,
    /// First key of the next chunk, or `None` when the scanned range is exhausted.
    pub next: Option<Vec<u8>>,
}

/// Scans up to `limit` conversation records with keys in `from..end`, and deletes those whose
/// `started_at_ms` is before `cutoff`, with their index rows. Retention is not an erasure, so
/// the scrub is not marked pending and the bytes stay in free pages until redb reuses them.
pub fn delete_conversations_started_before(
    txn: &WriteTransaction,
    from: &[u8],
    end: &[u8],
    cutoff: u64,
    limit: usize,
) -> Result<RetentionChunk, StoreError> {
    if from >= end {
        return Ok(RetentionChunk {
            deleted: 0,
            next: None,
        });
    }
    let mut expired = Vec::new();
    let mut scanned = 0;
    let mut last_key = None;
    {
        let conversations = txn.open_table(CONVERSATIONS).map_err(backend)?;
        for entry in conversations.range(from..end).map_err(backend)?.take(limit) {
            let (key, value) = entry.map_err(backend)?;
            scanned += 1;
            if codec::decode_conversation(value.value())?.started_at_ms < cutoff {
                expired.push(String::from_utf8_lossy(key.value()).into_owned());
            }
            last_key = Some(key.value().to_vec());
        }
    }
    for conversationid in &expired {
        delete_conversation(txn, conversationid)?;
    }
    // Appending a NUL byte gives the smallest key after the last one scanned.
    let next = match last_key {
        Some(mut key) if scanned == limit => {
            key.push(0);
            Some(key)
        }
        _ => None,
    };
    Ok(RetentionChunk {
        deleted: expired.len() as u64,
        next,
    })
}

/// Deletes a session with everything attached to it and returns whether the session existed.
pub fn erase_session(txn: &WriteTransaction, sessionid: &str) -> Result<bool, StoreError> {
    let mut sessions = txn.open_table(SESSIONS).map_err(backend)?;
    let removed = match sessions.remove(sessionid.as_bytes()).map_err(backend)? {
        Some(value) => Some(codec::decode_session(value.value())?),
        None => None,
    };
    drop(sessions);
    if let Some(session) = &removed {
        let mut tenants = txn.open_table(TENANT_SESSIONS).map_err(backend)?;
        tenants
            .remove(pair(&session.tenant, sessionid).as_slice())
            .map_err(backend)?;
    }
    let variables = delete_variables(txn, sessionid, None)?;
    let mut changed = removed.is_some() || variables > 0;

    let conversationids = {
        let by_session = txn.open_table(SESSION_CONVERSATIONS).map_err(backend)?;
        suffixes(&by_session, sessionid)?
    };
    for conversationid in &conversationids {
        delete_conversation(txn, conversationid)?;
    }
    changed |= !conversationids.is_empty();

    let mut aliases = txn.open_table(ALIASES).map_err(backend)?;
    let mut targets = txn.open_table(ALIAS_TARGETS).map_err(backend)?;
    if let Some(original) = aliases.remove(sessionid.as_bytes()).map_err(backend)? {
        changed = true;
        let original = String::from_utf8_lossy(original.value()).into_owned();
        targets
            .remove(pair(&original, sessionid).as_slice())
            .map_err(backend)?;
    }
    for alias in suffixes(&targets, sessionid)? {
        changed = true;
        aliases.remove(alias.as_bytes()).map_err(backend)?;
        targets
            .remove(pair(sessionid, &alias).as_slice())
            .map_err(backend)?;
    }
    drop((aliases, targets));

    // Only a deletion leaves bytes behind, so erasing an unknown id costs no file rewrite.
    if changed {
        mark_scrub_pending(txn)?;
    }
    Ok(removed.is_some())
}

/// Erases every session and conversation of a tenant and returns the number of sessions.
pub fn purge_tenant(txn: &WriteTransaction, tenant: &str) -> Result<u64, StoreError> {
    let sessionids = {
        let tenants = txn.open_table(TENANT_SESSIONS).map_err(backend)?;
        suffixes(&tenants, tenant)?
    };
    for sessionid in &sessionids {
        erase_session(txn, sessionid)?;
    }
    let conversationids = {
        let by_tenant = txn.open_table(TENANT_CONVERSATIONS).map_err(backend)?;
        suffixes(&by_tenant, tenant)?
    };
    for conversationid in &conversationids {
        delete_conversation(txn, conversationid)?;
    }
    if !conversationids.is_empty() {
        mark_scrub_pending(txn)?;
    }
    Ok(sessionids.len() as u64)
}

pub fn put_alias(txn: &WriteTransaction, new: &str, original: &str) -> Result<(), StoreError> {
    let mut aliases = txn.open_table(ALIASES).map_err(backend)?;
    let mut targets = txn.open_table(ALIAS_TARGETS).map_err(backend)?;
    if let Some(previous) = aliases
        .insert(new.as_bytes(), original.as_bytes())
        .map_err(backend)?
    {
        let previous = String::from_utf8_lossy(previous.value()).into_owned();
        targets
            .remove(pair(&previous, new).as_slice())
            .map_err(backend)?;
    }
    targets
        .insert(pair(original, new).as_slice(), &[][..])
        .map_err(backend)?;
    Ok(())
}

pub fn mark_scrub_pending(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META).map_err(backend)?;
    meta.insert(SCRUB_PENDING, &[1u8][..]).map_err(backend)?;
    Ok(())
}

/// Deletes the `session` variables of each listed session whose last call and latest session
/// variable are both older than `cutoff`, and returns how many variables it deleted. The
/// condition is checked again here because the candidates come from an earlier read.
pub fn sweep_sessions(
    txn: &WriteTransaction,
    sessionids: &[String],
    cutoff: u64,
) -> Result<u64, StoreError> {
    let mut deleted = 0;
    for sessionid in sessionids {
        let last_seen = {
            let sessions = txn.open_table(SESSIONS).map_err(backend)?;
            let last_seen = match sessions.get(sessionid.as_bytes()).map_err(backend)? {
                Some(value) => codec::decode_session(value.value())?.last_seen_ms,
                None => 0,
            };
            last_seen
        };
        let latest_update = {
            let variables = txn.open_table(VARIABLES).map_err(backend)?;
            read_variables(&variables, sessionid)?
                .iter()
                .filter(|v| v.lifetime == Lifetime::Session)
                .map(|v| v.updated_at_ms)
                .max()
        };
        let Some(latest_update) = latest_update else {
            continue;
        };
        if last_seen < cutoff && latest_update < cutoff {
            deleted += delete_variables(txn, sessionid, Some(Lifetime::Session))?;
        }
    }
    if deleted > 0 {
        mark_scrub_pending(txn)?;
    }
    Ok(deleted)
}
