//! The persistent session store: sessions, their variables, conversations and key-rotation
//! aliases, behind one async trait with an embedded (redb) and a Redis/Valkey implementation.
//!
//! The store receives sessionids, never callerids. Operations that record a time take it from the
//! caller (Unix milliseconds), so retention behaves the same on both backends and in tests.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub(crate) mod codec;
mod config;
pub(crate) mod embedded;
mod redis;
mod sweeper;
mod validate;

pub use config::{StoreBackend, StoreConfig};
pub use embedded::{EmbeddedStore, FILE_NAME as EMBEDDED_FILE_NAME};
pub use redis::RedisStore;
pub use sweeper::spawn_sweeper;
pub use validate::{validate_conversationid, validate_sessionid, validate_variable_name};

/// Milliseconds since the Unix epoch.
pub type UnixMillis = u64;

/// One day in milliseconds.
pub const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// A session: everything the store keeps about one sessionid apart from variables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub sessionid: String,
    pub tenant: String,
    /// Instance id of the release whose key produced the sessionid.
    pub instance: String,
    /// Id of the tenant key that produced the sessionid.
    pub key_id: String,
    pub first_seen_ms: UnixMillis,
    pub last_seen_ms: UnixMillis,
    /// Number of calls that touched the session, the first one included.
    pub call_count: u64,
}

/// How long a variable lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lifetime {
    /// Deleted when a call starts while no other call of the session is active, and by the
    /// sweeper after the retention period without activity.
    Session,
    /// Kept until the session is erased or its tenant purged.
    User,
}

/// A named value attached to a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variable {
    pub name: String,
    pub value: String,
    pub lifetime: Lifetime,
    pub updated_at_ms: UnixMillis,
}

/// One conversation: the legs, re-INVITEs and transfers that share a conversationid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    pub conversationid: String,
    pub sessionid: String,
    /// Tenant of the release, kept so that purging a tenant also removes anonymous calls.
    pub tenant: String,
    pub callid: String,
    /// Instance id of the release that handled the call.
    pub release: String,
    pub started_at_ms: UnixMillis,
    pub answered_at_ms: Option<UnixMillis>,
    pub ended_at_ms: Option<UnixMillis>,
    /// SIP status code of the final response, or 200 for an answered call ended by BYE.
    pub final_status: Option<u16>,
    pub anonymous: bool,
    pub identity_source: String,
}

/// The input of [`SessionStore::touch_session`].
#[derive(Debug, Clone)]
pub struct SessionTouch<'a> {
    pub sessionid: &'a str,
    pub tenant: &'a str,
    pub instance: &'a str,
    pub key_id: &'a str,
    pub now: UnixMillis,
    /// True when another call of this session is in progress, so session variables are kept.
    pub other_calls_active: bool,
}

/// The result of [`SessionStore::touch_session`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touch {
    /// True when the session existed before this call.
    pub returning: bool,
    /// The session after the update.
    pub session: Session,
}

/// The records one [`SessionStore::sweep`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// `session` variables of sessions without activity for their retention period.
    pub variables: u64,
    /// Conversations that started before the conversation retention period.
    pub conversations: u64,
}

/// Errors of store operations. Messages name the failing field or record kind but never
/// contain a callerid (the store never receives one).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: &'static str,
    },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("store operation timed out after {0} ms")]
    Timeout(u64),
    #[error("store backend failed: {0}")]
    Backend(String),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("store is closed")]
    Closed,
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The boxed future every store operation returns, so the trait stays usable as `dyn`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = StoreResult<T>> + Send + 'a>>;

/// The persistent session store. Implementations are cheap to share as `Arc<dyn SessionStore>`.
///
/// The operations the proxy calls per SIP message (`touch_session`, `put_alias`, the
/// conversation writes and, on Redis, `resolve_alias`) fail with [`StoreError::Timeout`] when
/// they exceed the configured op budget. A timed-out write may still be applied later. Embedded
/// reads run on the calling task and take microseconds, so they are not timed.
pub trait SessionStore: Send + Sync {
    /// Creates the session on first contact or counts one more call, atomically: parallel
    /// calls with the same sessionid never create two sessions. When `other_calls_active` is
    /// false, the session's `session` variables are deleted because a new call starts.
    fn touch_session<'a>(&'a self, touch: SessionTouch<'a>) -> StoreFuture<'a, Touch>;

    fn session<'a>(&'a self, sessionid: &'a str) -> StoreFuture<'a, Option<Session>>;

    /// Stores a new conversation, replacing one with the same conversationid.
    fn start_conversation(&self, conversation: Conversation) -> StoreFuture<'_, ()>;

    /// Records the answer time; a second answer keeps the first time.
    fn answer_conversation<'a>(
        &'a self,
        conversationid: &'a str,
        at: UnixMillis,
    ) -> StoreFuture<'a, ()>;

    /// Records the end time and final status; a second end keeps the first values.
    fn end_conversation<'a>(
        &'a self,
        conversationid: &'a str,
        at: UnixMillis,
        final_status: u16,
    ) -> StoreFuture<'a, ()>;

    fn conversation<'a>(&'a self, conversationid: &'a str)
        -> StoreFuture<'a, Option<Conversation>>;

    fn variable<'a>(
        &'a self,
        sessionid: &'a str,
        name: &'a str,
    ) -> StoreFuture<'a, Option<Variable>>;

    /// Returns every variable of the session, sorted by name.
    fn variables<'a>(&'a self, sessionid: &'a str) -> StoreFuture<'a, Vec<Variable>>;

    /// Creates or replaces a variable. Fails with `NotFound` when the session does not exist.
    fn put_variable<'a>(&'a self, sessionid: &'a str, variable: Variable) -> StoreFuture<'a, ()>;

    /// Deletes a variable and returns whether it existed.
    fn delete_variable<'a>(&'a self, sessionid: &'a str, name: &'a str) -> StoreFuture<'a, bool>;

    /// Deletes the session, its variables, its conversations and its aliases, and removes
    /// their bytes from the backing files. Returns whether the session existed.
    fn erase_session<'a>(&'a self, sessionid: &'a str) -> StoreFuture<'a, bool>;

    /// Erases every session and conversation of a tenant and returns the number of sessions.
    fn purge_tenant<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a, u64>;

    /// Deletes `session` variables of sessions without activity for their retention period,
    /// and conversations that started before the conversation retention period, and returns
    /// how many of each it deleted. Session records are kept. Redis expires both itself, so
    /// there it deletes nothing and returns zero counts.
    fn sweep(&self, now: UnixMillis) -> StoreFuture<'_, Swept>;

    /// Records that `new_sessionid` (computed under a newer key) stands for `original`.
    fn put_alias<'a>(&'a self, new_sessionid: &'a str, original: &'a str) -> StoreFuture<'a, ()>;

    /// Returns the original sessionid that `sessionid` is an alias of, if any.
    fn resolve_alias<'a>(&'a self, sessionid: &'a str) -> StoreFuture<'a, Option<String>>;

    /// Checks that the backend can serve requests, for the readiness probe. It writes nothing.
    /// The embedded store checks that its writer thread runs and that a read transaction
    /// opens. Redis sends PING under the op budget.
    fn ping(&self) -> StoreFuture<'_, ()>;
}

/// Opens the store that `config` selects. The embedded store lives in `data_dir`.
pub async fn open_store(
    config: &StoreConfig,
    data_dir: &std::path::Path,
) -> StoreResult<Arc<dyn SessionStore>> {
    match config.backend {
        StoreBackend::Embedded => {
            let store = EmbeddedStore::open(data_dir, config).await?;
            Ok(Arc::new(store))
        }
        StoreBackend::Redis | StoreBackend::RedisCluster => {
            let store = RedisStore::connect(config).await?;
            Ok(Arc::new(store))
        }
    }
}

/// Runs `op` under the op budget, mapping an overrun to [`StoreError::Timeout`].
async fn within_budget<T>(
    budget: Duration,
    op: impl Future<Output = StoreResult<T>>,
) -> StoreResult<T> {
    match tokio::time::timeout(budget, op).await {
        Ok(result) => result,
        Err(_) => Err(StoreError::Timeout(budget.as_millis() as u64)),
    }
}

/// Returns the current time in Unix milliseconds.
pub fn now_ms() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
