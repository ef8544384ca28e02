//! The background task that applies the retention periods of session variables and
//! conversations.

use std::sync::Arc;
use std::time::Duration;

use super::{now_ms, SessionStore, Swept};

/// Starts a task that calls [`SessionStore::sweep`] every `interval` until the returned handle
/// is aborted or the runtime shuts down. Errors are logged and the next round runs as planned.
pub fn spawn_sweeper(
    store: Arc<dyn SessionStore>,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failures: u64 = 0;
        loop {
            ticker.tick().await;
            match store.sweep(now_ms()).await {
                Ok(swept) if swept == Swept::default() => {}
                Ok(swept) => tracing::info!(
                    variables = swept.variables,
                    conversations = swept.conversations,
                    "swept expired session variables and conversations"
                ),
                Err(error) => {
                    failures += 1;
                    tracing::warn!(%error, failures, "store sweep failed");
                }
            }
        }
    })
}
