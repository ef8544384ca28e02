//! The Redis/Valkey store: one node through `ConnectionManager`, or a cluster through
//! `cluster_async::ClusterConnection`. Both reconnect by themselves.
//!
//! All keys of a session carry the hash tag `{sessionid}`, so the scripts that update a session
//! touch one slot. Conversations and the tenant indexes live under their own tags; operations
//! that span tags (conversation start, erasure, purge) are idempotent sequences of commands, and
//! they write an index entry before the record it points to so that erasure always finds it.
//!
//! `session` variables use native expiry (`PEXPIREAT` at the last activity plus the retention
//! period), and so do conversation hashes (`PEXPIREAT` at the start plus the conversation
//! retention period), so `sweep` has nothing to do here.
//!
//! NOTE: an expired conversation's id stays in the index sets `P:{sessionid}:cv` and
//! `P:tenant:{tenant}:cv` until its session is erased or its tenant purged, because pruning
//! them would mean reading every member of every set. Anonymous calls are the exception: their
//! one-call session set expires with the conversation.
//!
//! NOTE: Redis deletes erased keys from memory, but an append-only file keeps the old commands
//! until it is rewritten (BGREWRITEAOF), and older RDB snapshots keep the old values.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};

use super::validate::{
    validate_conversation, validate_conversationid, validate_sessionid, validate_tenant,
    validate_touch, validate_variable, validate_variable_name,
};
use super::{
    codec, within_budget, Conversation, Lifetime, Session, SessionStore, SessionTouch,
    StoreBackend, StoreConfig, StoreError, StoreFuture, StoreResult, Swept, Touch, UnixMillis,
    Variable,
};

mod records;
mod scripts;

use records::Keys;

/// Members handled per round when purging a tenant.
const PURGE_BATCH: usize = 100;

/// A connection to one node or to a cluster; cheap to clone, multiplexed.
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// The Redis-backed [`SessionStore`].
pub struct RedisStore {
    connection: Connection,
    keys: Keys,
    budget: Duration,
    retention_ms: u64,
    conversation_retention_ms: Option<u64>,
    touch: Script,
    put_variable: Script,
    answer: Script,
    end: Script,
}

fn backend(error: redis::RedisError) -> StoreError {
    StoreError::Backend(format!("redis: {error}"))
}

impl RedisStore {
    /// Connects to the node or cluster that `config` names.
    pub async fn connect(config: &StoreConfig) -> StoreResult<Self> {
        // Connecting may take longer than one operation's budget, but not unboundedly.
        let timeout = config.op_budget().max(Duration::from_secs(1));
        let connection = match config.backend {
            StoreBackend::RedisCluster => {
                let client = redis::cluster::ClusterClient::builder(config.redis_urls.clone())
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .build()
                    .map_err(backend)?;
                Connection::Cluster(client.get_async_connection().await.map_err(backend)?)
            }
            StoreBackend::Redis | StoreBackend::Embedded => {
                let url = config.redis_urls.first().ok_or(StoreError::Invalid {
                    field: "store.redis_urls",
                    message: "needs one URL",
                })?;
                let client = redis::Client::open(url.as_str()).map_err(backend)?;
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout));
                let first =
                    ConnectionManager::new_with_config(client.clone(), manager_config.clone());
                let manager = match first.await {
                    Ok(manager) => manager,
                    Err(error) => {
                        // Start anyway, so calls are forwarded (with an unknown returning-caller
                        // value) and the readiness probe reports the store down until Redis
                        // accepts a connection. The manager reconnects on the next operation.
                        tracing::error!(%error, "Redis is not reachable at start-up, so sipstamp runs without a store until it is");
                        ConnectionManager::new_lazy_with_config(client, manager_config)
                            .map_err(backend)?
                    }
                };
                Connection::Single(manager)
            }
        };
        Ok(Self {
            connection,
            keys: Keys::new(&config.redis_key_prefix),
            budget: config.op_budget(),
            retention_ms: config.retention_ms(),
            conversation_retention_ms: config.conversation_retention_ms(),
            touch: Script::new(scripts::TOUCH),
            put_variable: Script::new(scripts::PUT_VARIABLE),
            answer: Script::new(scripts::ANSWER),
            end: Script::new(scripts::END),
        })
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> StoreResult<T> {
        let mut connection = self.connection.clone();
        cmd.query_async(&mut connection).await.map_err(backend)
    }

    async fn hash(&self, key: &str) -> StoreResult<HashMap<String, String>> {
        self.query(redis::cmd("HGETALL").arg(key)).await
    }

    async fn members(&self, key: &str) -> StoreResult<Vec<String>> {
        self.query(redis::cmd("SMEMBERS").arg(key)).await
    }

    async fn load_session(&self, sessionid: &str) -> StoreResult<Option<Session>> {
        let map = self.hash(&self.keys.session(sessionid)).await?;
        if map.is_empty() {
            return Ok(None);
        }
        records::session_from_hash(sessionid, &map).map(Some)
    }

    async fn load_conversation(&self, conversationid: &str) -> StoreResult<Option<Conversation>> {
        let map = self.hash(&self.keys.conversation(conversationid)).await?;
        if map.is_empty() {
            return Ok(None);
        }
        records::conversation_from_hash(conversationid, &map).map(Some)
    }

    async fn touch_inner(&self, touch: &SessionTouch<'_>) -> StoreResult<Touch> {
        // Index first: a crash after it leaves an entry that purge skips, never a session that
        // purge cannot find.
        let tenant_key = self.keys.tenant_sessions(touch.tenant);
        let _: i64 = self
            .query(redis::cmd("SADD").arg(&tenant_key).arg(touch.sessionid))
            .await?;
        let expire_at = touch.now.saturating_add(self.retention_ms);
        let mut connection = self.connection.clone();
        let (returning, fields): (i64, HashMap<String, String>) = self
            .touch
            .key(self.keys.session(touch.sessionid))
            .key(self.keys.session_variables(touch.sessionid))
            .arg(touch.tenant)
            .arg(touch.instance)
            .arg(touch.key_id)
            .arg(touch.now)
            .arg(if touch.other_calls_active { "1" } else { "0" })
            .arg(expire_at)
            .invoke_async(&mut connection)
            .await
            .map_err(backend)?;
        let session = records::session_from_hash(touch.sessionid, &fields)?;
        Ok(Touch {
            returning: returning == 1,
            session,
        })
    }

    async fn start_conversation_inner(&self, c: &Conversation) -> StoreResult<()> {
        let key = self.keys.conversation(&c.conversationid);
        if let Some(previous) = self.load_conversation(&c.conversationid).await? {
            self.remove_conversation_indexes(&previous).await?;
        }
        let expire_at = self
            .conversation_retention_ms
            .map(|retention| c.started_at_ms.saturating_add(retention));
        let by_session = self.keys.session_conversations(&c.sessionid);
        let _: i64 = self
            .query(redis::cmd("SADD").arg(&by_session).arg(&c.conversationid))
            .await?;
        if let (Some(expire_at), true) = (expire_at, c.anonymous) {
            // An anonymous sessionid is random per call, so its set contains this conversation only.
            let _: i64 = self
                .query(redis::cmd("PEXPIREAT").arg(&by_session).arg(expire_at))
                .await?;
        }
        let by_tenant = self.keys.tenant_conversations(&c.tenant);
        let _: i64 = self
            .query(redis::cmd("SADD").arg(&by_tenant).arg(&c.conversationid))
            .await?;
        let mut pipe = redis::pipe();
        pipe.atomic().del(&key).ignore();
        let mut hset = redis::cmd("HSET");
        hset.arg(&key);
        for (name, value) in records::conversation_to_hash(c) {
            hset.arg(name).arg(value);
        }
        pipe.add_command(hset).ignore();
        // The answer and end scripts change fields with HSET and HSETNX, which keep this expiry.
        // A time already past deletes the hash at once.
        if let Some(expire_at) = expire_at {
            pipe.cmd("PEXPIREAT").arg(&key).arg(expire_at).ignore();
        }
        let mut connection = self.connection.clone();
        pipe.query_async::<()>(&mut connection)
            .await
            .map_err(backend)
    }

    async fn remove_conversation_indexes(&self, c: &Conversation) -> StoreResult<()> {
        let by_session = self.keys.session_conversations(&c.sessionid);
        let _: i64 = self
            .query(redis::cmd("SREM").arg(&by_session).arg(&c.conversationid))
            .await?;
        let by_tenant = self.keys.tenant_conversations(&c.tenant);
        let _: i64 = self
            .query(redis::cmd("SREM").arg(&by_tenant).arg(&c.conversationid))
            .await?;
        Ok(())
    }

    /// Deletes a conversation and its index entries, and returns whether it existed.
    async fn delete_conversation(&self, conversationid: &str) -> StoreResult<bool> {
        let Some(conversation) = self.load_conversation(conversationid).await? else {
            return Ok(false);
        };
        let _: i64 = self
            .query(redis::cmd("DEL").arg(self.keys.conversation(conversationid)))
            .await?;
        self.remove_conversation_indexes(&conversation).await?;
        Ok(true)
    }

    async fn erase_inner(&self, sessionid: &str) -> StoreResult<bool> {
        let session = self.load_session(sessionid).await?;
        for conversationid in self
            .members(&self.keys.session_conversations(sessionid))
            .await?
        {
            let existed = self.delete_conversation(&conversationid).await?;
            // An expired conversation left its id in the tenant index. A session's calls run
            // under the session's tenant, so that is the set to clean.
            if let (false, Some(session)) = (existed, &session) {
                let _: i64 = self
                    .query(
                        redis::cmd("SREM")
                            .arg(self.keys.tenant_conversations(&session.tenant))
                            .arg(&conversationid),
                    )
                    .await?;
            }
        }

        let original: Option<String> = self
            .query(redis::cmd("GET").arg(self.keys.alias(sessionid)))
            .await?;
        if let Some(original) = original {
            let _: i64 = self
                .query(
                    redis::cmd("SREM")
                        .arg(self.keys.aliased_by(&original))
                        .arg(sessionid),
                )
                .await?;
        }
        for alias in self.members(&self.keys.aliased_by(sessionid)).await? {
            let _: i64 = self
                .query(redis::cmd("DEL").arg(self.keys.alias(&alias)))
                .await?;
        }

        let _: i64 = self
            .query(redis::cmd("DEL").arg(&self.keys.all_of_session(sessionid)[..]))
            .await?;
        if let Some(session) = &session {
            let _: i64 = self
                .query(
                    redis::cmd("SREM")
                        .arg(self.keys.tenant_sessions(&session.tenant))
                        .arg(sessionid),
                )
                .await?;
        }
        Ok(session.is_some())
    }

    async fn purge_inner(&self, tenant: &str) -> StoreResult<u64> {
        let sessions_key = self.keys.tenant_sessions(tenant);
        let mut erased = 0;
        loop {
            let batch: Vec<String> = self
                .query(
                    redis::cmd("SRANDMEMBER")
                        .arg(&sessions_key)
                        .arg(PURGE_BATCH),
                )
                .await?;
            if batch.is_empty() {
                break;
            }
            for sessionid in &batch {
                if self.erase_inner(sessionid).await? {
                    erased += 1;
                }
                // Also drops entries whose session was never created or already erased.
                let _: i64 = self
                    .query(redis::cmd("SREM").arg(&sessions_key).arg(sessionid))
                    .await?;
            }
        }
        let conversations_key = self.keys.tenant_conversations(tenant);
        loop {
            let batch: Vec<String> = self
                .query(
                    redis::cmd("SRANDMEMBER")
                        .arg(&conversations_key)
                        .arg(PURGE_BATCH),
                )
                .await?;
            if batch.is_empty() {
                break;
            }
            for conversationid in &batch {
                self.delete_conversation(conversationid).await?;
                let _: i64 = self
                    .query(
                        redis::cmd("SREM")
                            .arg(&conversations_key)
                            .arg(conversationid),
                    )
                    .await?;
            }
        }
        Ok(erased)
    }

    async fn variables_inner(&self, sessionid: &str) -> StoreResult<Vec<Variable>> {
        let mut out = Vec::new();
        for key in [
            self.keys.session_variables(sessionid),
            self.keys.user_variables(sessionid),
        ] {
            let map: HashMap<String, Vec<u8>> = self.query(redis::cmd("HGETALL").arg(&key)).await?;
            for bytes in map.values() {
                out.push(codec::decode_variable(bytes)?);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

mod store_impl;
