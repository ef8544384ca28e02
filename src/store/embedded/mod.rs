//! The embedded store: one redb file, `sessions.redb`, in the data folder.
//!
//! Reads run on the calling task against a snapshot. Writes go to the single writer thread
//! (see `writer`), which acknowledges only after a durable commit. Erasure rewrites the file
//! (see `scrub`) so that erased bytes do not stay in free pages.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use super::validate::{
    validate_conversation, validate_conversationid, validate_sessionid, validate_tenant,
    validate_touch, validate_variable, validate_variable_name,
};
use super::{
    codec, within_budget, Conversation, Lifetime, Session, SessionStore, SessionTouch, StoreConfig,
    StoreError, StoreFuture, StoreResult, Swept, Touch, UnixMillis, Variable,
};

mod scrub;

#[cfg(test)]
pub(in crate::store) use scrub::is_pending as scrub_pending;
pub(in crate::store) mod tables;
mod writer;

use tables::{backend, OwnedTouch};
use writer::{Command, SharedDb};

/// File name of the database inside the data folder.
pub const FILE_NAME: &str = "sessions.redb";

/// Capacity of the writer's queue; callers wait for space when it is full.
const QUEUE_CAPACITY: usize = 4096;

/// Most conversation records that retention scans in one write transaction, so that a sweep
/// does not hold the writer thread, and the calls queued behind it, for a whole large range.
const RETENTION_CHUNK: usize = 1000;

/// The redb-backed [`SessionStore`].
pub struct EmbeddedStore {
    db: SharedDb,
    /// `None` only while dropping.
    commands: Option<mpsc::Sender<Command>>,
    writer: Option<std::thread::JoinHandle<()>>,
    budget: Duration,
    retention_ms: u64,
    conversation_retention_ms: Option<u64>,
    path: PathBuf,
}

impl EmbeddedStore {
    /// Opens or creates `data_dir/sessions.redb`, finishes a scrub that a crash interrupted,
    /// and starts the writer thread.
    pub async fn open(data_dir: &Path, config: &StoreConfig) -> StoreResult<Self> {
        let path = data_dir.join(FILE_NAME);
        let file = StoreFile {
            path: path.clone(),
            cache_bytes: config.embedded_cache_bytes(),
        };
        let (open_file, dir) = (file.clone(), data_dir.to_owned());
        let database = tokio::task::spawn_blocking(move || open_database(&dir, &open_file))
            .await
            .map_err(|e| StoreError::Backend(format!("store open task failed: {e}")))??;
        let db: SharedDb = Arc::new(RwLock::new(Arc::new(database)));
        if scrub::is_pending(&current(&db))? {
            let (db, file) = (db.clone(), file.clone());
            tokio::task::spawn_blocking(move || scrub::run(&db, &file))
                .await
                .map_err(|e| StoreError::Backend(format!("store scrub task failed: {e}")))??;
        }

        let (commands, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let writer = writer::spawn(db.clone(), file, receiver)?;
        Ok(Self {
            db,
            commands: Some(commands),
            writer: Some(writer),
            budget: config.op_budget(),
            retention_ms: config.retention_ms(),
            conversation_retention_ms: config.conversation_retention_ms(),
            path,
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn write<T: Send + 'static>(
        &self,
        op: impl FnOnce(&WriteTransaction) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (job, reply) = writer::job(op);
        self.sender()?
            .send(Command::Write(job))
            .await
            .map_err(|_| StoreError::Closed)?;
        reply.await.map_err(|_| StoreError::Closed)?
    }

    async fn scrub(&self) -> StoreResult<()> {
        let (reply, receiver) = oneshot::channel();
        self.sender()?
            .send(Command::Scrub(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        receiver.await.map_err(|_| StoreError::Closed)?
    }

    fn sender(&self) -> StoreResult<&mpsc::Sender<Command>> {
        self.commands.as_ref().ok_or(StoreError::Closed)
    }

    /// Runs `read` on a snapshot of the database.
    fn read<T>(
        &self,
        read: impl FnOnce(&redb::ReadTransaction) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let database = current(&self.db);
        let txn = database.begin_read().map_err(backend)?;
        read(&txn)
    }

    fn get_record<T>(
        &self,
        table: redb::TableDefinition<&'static [u8], &'static [u8]>,
        key: &str,
        decode: fn(&[u8]) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        self.read(|txn| {
            let table = txn.open_table(table).map_err(backend)?;
            let record = match table.get(key.as_bytes()).map_err(backend)? {
                Some(value) => Some(decode(value.value())?),
                None => None,
            };
            Ok(record)
        })
    }

    /// Deletes the `session` variables of sessions idle for the retention period, then
    /// rewrites the file when it deleted any.
    async fn sweep_variables(&self, now: UnixMillis) -> StoreResult<u64> {
        let cutoff = now.saturating_sub(self.retention_ms);
        let candidates = self.sweep_candidates(cutoff)?;
        if candidates.is_empty() {
            return Ok(0);
        }
        let deleted = self
            .write(move |txn| tables::sweep_sessions(txn, &candidates, cutoff))
            .await?;
        if deleted > 0 {
            self.scrub().await?;
        }
        Ok(deleted)
    }

    /// Deletes the conversations that started before `cutoff` and returns how many it deleted.
    ///
    /// Only keys below `cv` + 12 hex digits of `cutoff` are scanned, because ids from
    /// `time_ordered_id` start with their start time. The proxy takes `started_at_ms` after it
    /// creates the id, so every such conversation started before `cutoff` lies in that range,
    /// unless the system clock stepped back in between. A record whose id does not follow that
    /// format, such as a random id from a release before time-ordered ids, is deleted only when
    /// its id happens to sort in that range. The file is not rewritten: see
    /// [`tables::delete_conversations_started_before`].
    async fn delete_old_conversations(&self, cutoff: UnixMillis) -> StoreResult<u64> {
        let end = tables::conversation_key_bound(cutoff);
        let mut from = b"cv".to_vec();
        let mut deleted = 0;
        loop {
            let (chunk_from, chunk_end) = (from, end.clone());
            let chunk = self
                .write(move |txn| {
                    tables::delete_conversations_started_before(
                        txn,
                        &chunk_from,
                        &chunk_end,
                        cutoff,
                        RETENTION_CHUNK,
                    )
                })
                .await?;
            deleted += chunk.deleted;
            match chunk.next {
                Some(next) => from = next,
                None => return Ok(deleted),
            }
        }
    }

    /// Returns the sessions whose `session` variables may be due for deletion.
    fn sweep_candidates(&self, cutoff: UnixMillis) -> StoreResult<Vec<String>> {
        self.read(|txn| {
            let variables = txn.open_table(tables::VARIABLES).map_err(backend)?;
            let sessions = txn.open_table(tables::SESSIONS).map_err(backend)?;
            let mut latest: BTreeMap<String, UnixMillis> = BTreeMap::new();
            // NOTE: each sweep scans the whole variables table, so its cost grows with the
            // number of variables. It has not been measured on large stores.
            for entry in variables.iter().map_err(backend)? {
                let (key, value) = entry.map_err(backend)?;
                let variable = codec::decode_variable(value.value())?;
                if variable.lifetime != Lifetime::Session {
                    continue;
                }
                let key = key.value();
                let split = key.iter().position(|b| *b == 0).unwrap_or(key.len());
                let sessionid = String::from_utf8_lossy(&key[..split]).into_owned();
                let slot = latest.entry(sessionid).or_default();
                *slot = (*slot).max(variable.updated_at_ms);
            }
            let mut out = Vec::new();
            for (sessionid, updated) in latest {
                if updated >= cutoff {
                    continue;
                }
                let last_seen = match sessions.get(sessionid.as_bytes()).map_err(backend)? {
                    Some(value) => codec::decode_session(value.value())?.last_seen_ms,
                    None => 0,
                };
                if last_seen < cutoff {
                    out.push(sessionid);
                }
            }
            Ok(out)
        })
    }
}

impl Drop for EmbeddedStore {
    /// Closes the queue and waits for the writer to commit what is queued and release the
    /// file, so that the store can be opened again right away. This blocks the dropping
    /// thread for at most one batch.
    fn drop(&mut self) {
        self.commands.take();
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!("the store writer thread panicked");
            }
        }
    }
}

/// The database file and how it is opened, shared by the first open and the scrub's copy.
#[derive(Debug, Clone)]
pub(in crate::store::embedded) struct StoreFile {
    pub path: PathBuf,
    /// Page cache size in bytes. redb's own default (1 GiB) is far more than a sidecar needs.
    pub cache_bytes: usize,
}

impl StoreFile {
    /// Opens or creates a database at `path` with this file's cache size.
    pub fn create(&self, path: &Path) -> StoreResult<Database> {
        Database::builder()
            .set_cache_size(self.cache_bytes)
            .create(path)
            .map_err(backend)
    }
}

fn current(db: &SharedDb) -> Arc<Database> {
    db.read().unwrap_or_else(|e| e.into_inner()).clone()
}

fn open_database(dir: &Path, file: &StoreFile) -> StoreResult<Database> {
    let path = file.path.as_path();
    std::fs::create_dir_all(dir)
        .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
    // A leftover copy from an interrupted scrub holds only live records; the scrub restarts.
    scrub::remove_if_present(&scrub::scrub_path(path))?;
    let database = file.create(path)?;
    let txn = database.begin_write().map_err(backend)?;
    for definition in tables::ALL {
        txn.open_table(definition).map_err(backend)?;
    }
    txn.commit().map_err(backend)?;
    Ok(database)
}

impl SessionStore for EmbeddedStore {
    fn touch_session<'a>(&'a self, touch: SessionTouch<'a>) -> StoreFuture<'a, Touch> {
        Box::pin(async move {
            validate_touch(&touch)?;
            let touch = OwnedTouch::from(&touch);
            within_budget(
                self.budget,
                self.write(move |txn| tables::touch(txn, &touch)),
            )
            .await
        })
    }

    fn session<'a>(&'a self, sessionid: &'a str) -> StoreFuture<'a, Option<Session>> {
        Box::pin(async move {
            validate_sessionid(sessionid)?;
            self.get_record(tables::SESSIONS, sessionid, codec::decode_session)
        })
    }

    fn start_conversation(&self, conversation: Conversation) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            validate_conversation(&conversation)?;
            let op = self.write(move |txn| tables::start_conversation(txn, &conversation));
            within_budget(self.budget, op).await
        })
    }

    fn answer_conversation<'a>(
        &'a self,
        conversationid: &'a str,
        at: UnixMillis,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            validate_conversationid(conversationid)?;
            let id = conversationid.to_owned();
            let op = self.write(move |txn| {
                tables::update_conversation(txn, &id, |c| {
                    c.answered_at_ms.get_or_insert(at);
                })
            });
            within_budget(self.budget, op).await
        })
    }

    fn end_conversation<'a>(
        &'a self,
        conversationid: &'a str,
        at: UnixMillis,
        final_status: u16,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            validate_conversationid(conversationid)?;
            let id = conversationid.to_owned();
            let op = self.write(move |txn| {
                tables::update_conversation(txn, &id, |c| {
                    if c.ended_at_ms.is_none() {
                        c.ended_at_ms = Some(at);
                        c.final_status = Some(final_status);
                    }
                })
            });
            within_budget(self.budget, op).await
        })
    }

    fn conversation<'a>(
        &'a self,
        conversationid: &'a str,
    ) -> StoreFuture<'a, Option<Conversation>> {
        Box::pin(async move {
            validate_conversationid(conversationid)?;
            self.get_record(
                tables::CONVERSATIONS,
                conversationid,
                codec::decode_conversation,
            )
        })
    }

    fn variable<'a>(
        &'a self,
        sessionid: &'a str,
        name: &'a str,
    ) -> StoreFuture<'a, Option<Variable>> {
        Box::pin(async move {
            validate_sessionid(sessionid)?;
            validate_variable_name(name)?;
            let key = tables::pair(sessionid, name);
            self.read(|txn| {
                let table = txn.open_table(tables::VARIABLES).map_err(backend)?;
                let variable = match table.get(key.as_slice()).map_err(backend)? {
                    Some(value) => Some(codec::decode_variable(value.value())?),
                    None => None,
                };
                Ok(variable)
            })
        })
    }

    fn variables<'a>(&'a self, sessionid: &'a str) -> StoreFuture<'a, Vec<Variable>> {
        Box::pin(async move {
            validate_sessionid(sessionid)?;
            self.read(|txn| {
                let table = txn.open_table(tables::VARIABLES).map_err(backend)?;
                tables::read_variables(&table, sessionid)
            })
        })
    }

    fn put_variable<'a>(&'a self, sessionid: &'a str, variable: Variable) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            validate_sessionid(sessionid)?;
            validate_variable(&variable)?;
            let id = sessionid.to_owned();
            self.write(move |txn| tables::put_variable(txn, &id, &variable))
                .await
        })
    }

    fn delete_variable<'a>(&'a self, sessionid: &'a str, name: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            validate_sessionid(sessionid)?;
            validate_variable_name(name)?;
            let key = tables::pair(sessionid, name);
            self.write(move |txn| {
                let mut table = txn.open_table(tables::VARIABLES).map_err(backend)?;
                let removed = table.remove(key.as_slice()).map_err(backend)?.is_some();
                Ok(removed)
            })
            .await
        })
    }

    fn erase_session<'a>(&'a self, sessionid: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            validate_sessionid(sessionid)?;
            let id = sessionid.to_owned();
            let existed = self
                .write(move |txn| tables::erase_session(txn, &id))
                .await?;
            self.scrub().await?;
            Ok(existed)
        })
    }

    fn purge_tenant<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            validate_tenant(tenant)?;
            let tenant = tenant.to_owned();
            let erased = self
                .write(move |txn| tables::purge_tenant(txn, &tenant))
                .await?;
            self.scrub().await?;
            Ok(erased)
        })
    }

    fn sweep(&self, now: UnixMillis) -> StoreFuture<'_, Swept> {
        Box::pin(async move {
            let conversations = match self.conversation_retention_ms {
                Some(retention) => {
                    self.delete_old_conversations(now.saturating_sub(retention))
                        .await?
                }
                None => 0,
            };
            let variables = self.sweep_variables(now).await?;
            Ok(Swept {
                variables,
                conversations,
            })
        })
    }

    fn put_alias<'a>(&'a self, new_sessionid: &'a str, original: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            validate_sessionid(new_sessionid)?;
            validate_sessionid(original)?;
            let (new, original) = (new_sessionid.to_owned(), original.to_owned());
            let op = self.write(move |txn| tables::put_alias(txn, &new, &original));
            within_budget(self.budget, op).await
        })
    }

    fn resolve_alias<'a>(&'a self, sessionid: &'a str) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move {
            validate_sessionid(sessionid)?;
            self.get_record(tables::ALIASES, sessionid, |bytes| {
                Ok(String::from_utf8_lossy(bytes).into_owned())
            })
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let writer_running = self.writer.as_ref().is_some_and(|w| !w.is_finished());
            if !writer_running || self.sender()?.is_closed() {
                return Err(StoreError::Closed);
            }
            self.read(|txn| {
                txn.open_table(tables::SESSIONS).map_err(backend)?;
                Ok(())
            })
        })
    }
}
