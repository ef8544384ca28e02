//! The single writer thread of the embedded store.
//!
//! Writes arrive through a bounded channel. The thread drains what is queued (up to
//! `MAX_BATCH` jobs), runs the jobs in one write transaction, commits it with
//! `Durability::Immediate`, and only then answers each job. A write that was answered is
//! therefore on disk and survives a kill -9 of the process.

use std::sync::{Arc, RwLock};

use redb::{Database, Durability, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use super::tables::backend;
use super::{scrub, StoreFile};
use crate::store::StoreError;

/// Most jobs committed in one transaction.
const MAX_BATCH: usize = 256;

/// A job's second half: receives the commit outcome and answers the caller.
pub type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;

/// A write job: runs inside the shared transaction and returns its completion, plus a message
/// when it failed in a way that may have left partial writes, so the batch must not commit.
pub type Job = Box<dyn FnOnce(&WriteTransaction) -> (Completion, Option<String>) + Send>;

pub enum Command {
    Write(Job),
    /// Rewrites the file without erased bytes; answered when the new file is in place.
    Scrub(oneshot::Sender<Result<(), StoreError>>),
}

/// The database handle shared between the writer and readers. The scrub replaces it.
pub type SharedDb = Arc<RwLock<Arc<Database>>>;

/// Wraps a typed write operation into a job and the receiver of its result.
pub fn job<T: Send + 'static>(
    op: impl FnOnce(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
) -> (Job, oneshot::Receiver<Result<T, StoreError>>) {
    let (reply, receiver) = oneshot::channel();
    let job: Job = Box::new(move |txn| {
        let result = op(txn);
        let fatal = match &result {
            Err(error @ (StoreError::Backend(_) | StoreError::Corrupt(_))) => {
                Some(error.to_string())
            }
            _ => None,
        };
        let completion: Completion = Box::new(move |commit: Result<(), String>| {
            let outcome = match commit {
                Ok(()) => result,
                Err(message) => Err(StoreError::Backend(message)),
            };
            // The caller may have stopped waiting (op budget); the write stands either way.
            let _ = reply.send(outcome);
        });
        (completion, fatal)
    });
    (job, receiver)
}

/// Starts the writer thread. It ends when every sender is dropped.
pub fn spawn(
    db: SharedDb,
    file: StoreFile,
    mut commands: mpsc::Receiver<Command>,
) -> Result<std::thread::JoinHandle<()>, StoreError> {
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || {
            while let Some(first) = commands.blocking_recv() {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match commands.try_recv() {
                        Ok(command) => batch.push(command),
                        Err(_) => break,
                    }
                }
                run_batch(&db, &file, batch);
            }
        })
        .map_err(|e| StoreError::Backend(format!("cannot start the store writer thread: {e}")))
}

fn run_batch(db: &SharedDb, file: &StoreFile, batch: Vec<Command>) {
    let mut jobs = Vec::new();
    for command in batch {
        match command {
            Command::Write(job) => jobs.push(job),
            Command::Scrub(reply) => {
                commit_jobs(db, std::mem::take(&mut jobs));
                let _ = reply.send(scrub::run(db, file));
            }
        }
    }
    commit_jobs(db, jobs);
}

fn commit_jobs(db: &SharedDb, jobs: Vec<Job>) {
    if jobs.is_empty() {
        return;
    }
    let database = db.read().unwrap_or_else(|e| e.into_inner()).clone();
    let mut txn = match database.begin_write() {
        Ok(txn) => txn,
        Err(error) => {
            fail_all(jobs, &backend(error).to_string());
            return;
        }
    };
    if let Err(error) = txn.set_durability(Durability::Immediate) {
        fail_all(jobs, &backend(error).to_string());
        return;
    }
    let mut completions = Vec::with_capacity(jobs.len());
    let mut fatal = None;
    for job in jobs {
        let (completion, error) = job(&txn);
        completions.push(completion);
        fatal = fatal.or(error);
    }
    let outcome = match fatal {
        // A failed job may have written part of its change: roll the whole batch back.
        Some(message) => {
            let _ = txn.abort();
            Err(format!("write batch rolled back: {message}"))
        }
        None => txn.commit().map_err(|e| backend(e).to_string()),
    };
    if let Err(message) = &outcome {
        tracing::error!(error = %message, jobs = completions.len(), "store commit failed");
    }
    for completion in completions {
        completion(outcome.clone());
    }
}

/// Drops the jobs unrun; their callers receive `StoreError::Closed` from the dropped reply.
fn fail_all(jobs: Vec<Job>, message: &str) {
    tracing::error!(error = %message, jobs = jobs.len(), "store write transaction failed");
    drop(jobs);
}
