//! Store work that must not hold up forwarding: conversation records and retried session
//! updates, queued by the driver and written by one task in batches.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, error, warn};

use super::sessions;
use crate::proxy::{CallEvent, CallEventKind, CallIds, NewCall};
use crate::store::{Conversation, SessionStore, SessionTouch, StoreError};
use crate::telemetry::{Metrics, RateLimiter, StoreOp, Verdict};

/// Each kind of store warning is logged at most once per interval, because under overload it
/// would otherwise come once per call. The suppressed count is logged with the next one.
const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Store problems on the call path that are logged at a limited rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum StoreWarning {
    /// The write queue was full, so a write was dropped.
    QueueFull,
    /// Too many new calls were waiting for the store, so one went on without waiting.
    TooManyWaiting,
    /// A session update did not finish within the op budget.
    TimedOut,
    /// A session update failed and was queued for a retry.
    Failed,
}

impl StoreWarning {
    fn message(self) -> &'static str {
        match self {
            Self::QueueFull => "store write queue full; a store write was dropped",
            Self::TooManyWaiting => {
                "too many calls waiting for the store; forwarding with returning caller unknown"
            }
            Self::TimedOut => "session store timed out; returning caller unknown",
            Self::Failed => "session store failed; the session update is queued for retry",
        }
    }
}

/// The sending side of the store queue, shared by the transports' threads and call tasks. It
/// counts dropped writes and rate-limits the store warnings.
#[derive(Clone)]
pub(super) struct StoreQueue {
    jobs: mpsc::Sender<StoreJob>,
    metrics: Arc<Metrics>,
    warnings: Arc<RateLimiter<StoreWarning>>,
}

impl StoreQueue {
    pub fn new(jobs: mpsc::Sender<StoreJob>, metrics: Arc<Metrics>) -> Self {
        Self {
            jobs,
            metrics,
            warnings: Arc::new(RateLimiter::new(WARNING_INTERVAL, 4)),
        }
    }

    /// Queues a job without waiting; when the queue is full the job is dropped and counted.
    pub fn push(&self, job: StoreJob) {
        if self.jobs.try_send(job).is_err() {
            self.metrics.store_write_dropped();
            self.warn(StoreWarning::QueueFull, None);
        }
    }

    /// Logs `warning` with the error behind it, unless it was logged within the interval.
    pub fn warn(&self, warning: StoreWarning, error: Option<&StoreError>) {
        if let Verdict::Log { suppressed } = self.warnings.check(warning, Instant::now()) {
            match error {
                Some(error) => warn!(%error, suppressed, "{}", warning.message()),
                None => warn!(suppressed, "{}", warning.message()),
            }
        }
    }
}

/// Work for the store that must not hold up forwarding.
pub(super) enum StoreJob {
    /// Counts a call in its session, after resolving a retired-key session as a new call does.
    Touch {
        sessionid: Arc<str>,
        previous_sessionids: Vec<Arc<str>>,
        tenant: Arc<str>,
        instance: Arc<str>,
        key_id: Arc<str>,
        at: u64,
    },
    Start(Conversation),
    Event(CallEvent, u64),
}

/// Returns the start record of a new call's conversation, under the sessionid the call uses.
pub(super) fn conversation_start(ids: &CallIds, sessionid: &str, at: u64) -> StoreJob {
    StoreJob::Start(Conversation {
        conversationid: ids.conversationid.to_string(),
        sessionid: sessionid.to_owned(),
        tenant: ids.tenant.to_string(),
        callid: ids.callid.to_string(),
        release: ids.instance_id.to_string(),
        started_at_ms: at,
        answered_at_ms: None,
        ended_at_ms: None,
        final_status: None,
        anonymous: ids.anonymous,
        identity_source: ids.source.as_str().to_owned(),
    })
}

pub(super) fn touch_job(new_call: &NewCall, at: u64) -> StoreJob {
    let ids = &new_call.ids;
    StoreJob::Touch {
        sessionid: Arc::clone(&ids.sessionid),
        previous_sessionids: new_call.previous_sessionids.clone(),
        tenant: Arc::clone(&ids.tenant),
        instance: Arc::clone(&ids.instance_id),
        key_id: Arc::clone(&ids.key_id),
        at,
    }
}

/// Writes conversation records and retries failed session updates off the call path.
///
/// Jobs are taken in batches and run concurrently, so a store that batches commits can group
/// them. Conversation starts of a batch complete before its other jobs, so the answer time or end
/// of a conversation is never written before its start. When a start, its answer and its end are
/// queued in one batch, as they are for short calls under load, they become one write.
pub(super) async fn store_writer(
    store: Arc<dyn SessionStore>,
    metrics: Arc<Metrics>,
    mut jobs: mpsc::Receiver<StoreJob>,
) {
    const BATCH: usize = 512;
    let mut batch = Vec::with_capacity(BATCH);
    while jobs.recv_many(&mut batch, BATCH).await > 0 {
        fold_events_into_starts(&mut batch);
        let (starts, rest): (Vec<_>, Vec<_>) = batch
            .drain(..)
            .partition(|job| matches!(job, StoreJob::Start(_)));
        for group in [starts, rest] {
            let mut tasks = tokio::task::JoinSet::new();
            for job in group {
                tasks.spawn(run_job(Arc::clone(&store), Arc::clone(&metrics), job));
            }
            while tasks.join_next().await.is_some() {}
        }
    }
}

/// Runs one store job, retrying transient failures with growing pauses.
async fn run_job(store: Arc<dyn SessionStore>, metrics: Arc<Metrics>, job: StoreJob) {
    const ATTEMPTS: u32 = 5;
    for attempt in 1..=ATTEMPTS {
        let result = match &job {
            StoreJob::Touch {
                sessionid,
                previous_sessionids,
                tenant,
                instance,
                key_id,
                at,
            } => {
                let resolved =
                    sessions::resolve_sessionid(&*store, &metrics, sessionid, previous_sessionids)
                        .await;
                match resolved {
                    Ok(resolved) => {
                        let touch = SessionTouch {
                            sessionid: &resolved,
                            tenant,
                            instance,
                            key_id,
                            now: *at,
                            other_calls_active: true,
                        };
                        metrics
                            .timed_store_op(StoreOp::TouchSession, store.touch_session(touch))
                            .await
                            .map(|_| ())
                    }
                    Err(error) => Err(error),
                }
            }
            StoreJob::Start(conversation) => {
                let started = store.start_conversation(conversation.clone());
                metrics
                    .timed_store_op(StoreOp::StartConversation, started)
                    .await
            }
            StoreJob::Event(event, at) => match event.kind {
                CallEventKind::Answered => {
                    let answered = store.answer_conversation(&event.conversationid, *at);
                    metrics
                        .timed_store_op(StoreOp::AnswerConversation, answered)
                        .await
                }
                CallEventKind::Ended { status } => {
                    let status = status.unwrap_or(200);
                    let ended = store.end_conversation(&event.conversationid, *at, status);
                    metrics
                        .timed_store_op(StoreOp::EndConversation, ended)
                        .await
                }
            },
        };
        // A session touch is not idempotent (it counts the call), and one that timed out is
        // still applied later, so only a backend failure is retried for it.
        let retry = match (&job, &result) {
            (_, Ok(())) => return,
            (StoreJob::Touch { .. }, Err(error)) => matches!(error, StoreError::Backend(_)),
            (_, Err(error)) => matches!(error, StoreError::Timeout(_) | StoreError::Backend(_)),
        };
        match result {
            Ok(()) => return,
            Err(error) if retry && attempt < ATTEMPTS => {
                debug!(%error, attempt, "store write failed; retrying");
                tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
            }
            Err(error) => {
                error!(%error, attempt, "store write failed; giving up on it");
                return;
            }
        }
    }
}

/// Applies answer and end events to the start records of the same batch and removes them, so a
/// conversation that starts and ends while the writer is busy costs one write instead of three.
/// The events keep the store's rules: the first answer and the first end win.
///
/// A start is queued before its INVITE is forwarded, so it always precedes the call's events.
fn fold_events_into_starts(batch: &mut Vec<StoreJob>) {
    let mut starts: HashMap<&str, usize> = HashMap::new();
    let mut folded = Vec::new();
    for (i, job) in batch.iter().enumerate() {
        match job {
            StoreJob::Start(conversation) => {
                starts.insert(&conversation.conversationid, i);
            }
            StoreJob::Event(event, at) => {
                if let Some(&start) = starts.get(&*event.conversationid) {
                    folded.push((start, event.kind, *at, i));
                }
            }
            StoreJob::Touch { .. } => {}
        }
    }
    if folded.is_empty() {
        return;
    }
    let mut remove = vec![false; batch.len()];
    for (start, kind, at, event) in folded {
        if let StoreJob::Start(conversation) = &mut batch[start] {
            apply_event(conversation, kind, at);
        }
        remove[event] = true;
    }
    let mut index = 0;
    batch.retain(|_| {
        let keep = !remove[index];
        index += 1;
        keep
    });
}

/// Changes a conversation record as the store's answer and end operations do.
fn apply_event(conversation: &mut Conversation, kind: CallEventKind, at: u64) {
    match kind {
        CallEventKind::Answered => {
            conversation.answered_at_ms.get_or_insert(at);
        }
        CallEventKind::Ended { status } => {
            if conversation.ended_at_ms.is_none() {
                conversation.ended_at_ms = Some(at);
                conversation.final_status = Some(status.unwrap_or(200));
            }
        }
    }
}

#[cfg(test)]
mod tests;
