//! The store side of a new call after a key rotation: finding the sessionid under which the
//! caller's history is kept, so a caller first seen under a retired key stays recognised.

use std::sync::Arc;

use tracing::{debug, warn};

use crate::store::{SessionStore, StoreResult};
use crate::telemetry::{Metrics, StoreOp};

/// Returns the sessionid a call of this caller is recorded under: `sessionid` (computed under
/// the current key) unless the store keeps the caller's session under an older sessionid.
///
/// With no retired keys this reads nothing. Otherwise it checks, in order: an alias written by
/// an earlier call, a session under `sessionid` itself, then for each retired-key sessionid in
/// `previous` a session or an alias of it. When an older session is found, it writes the alias
/// `sessionid -> original` so the next call needs one read. A failed alias write is logged and
/// the original is still returned, because the next call repeats the search.
pub(super) async fn resolve_sessionid(
    store: &dyn SessionStore,
    metrics: &Metrics,
    sessionid: &Arc<str>,
    previous: &[Arc<str>],
) -> StoreResult<Arc<str>> {
    if previous.is_empty() {
        return Ok(Arc::clone(sessionid));
    }
    let alias = metrics
        .timed_store_op(StoreOp::ResolveAlias, store.resolve_alias(sessionid))
        .await?;
    if let Some(original) = alias {
        return Ok(original.into());
    }
    let current = metrics
        .timed_store_op(StoreOp::Session, store.session(sessionid))
        .await?;
    if current.is_some() {
        return Ok(Arc::clone(sessionid));
    }
    for older in previous {
        let Some(original) = original_of(store, metrics, older).await? else {
            continue;
        };
        let written = metrics
            .timed_store_op(StoreOp::PutAlias, store.put_alias(sessionid, &original))
            .await;
        match written {
            Ok(()) => {
                debug!(%sessionid, %original, "caller found under a retired key, alias written")
            }
            Err(error) => {
                warn!(%error, %sessionid, %original, "caller found under a retired key, but the alias write failed; the next call searches again");
            }
        }
        return Ok(original);
    }
    Ok(Arc::clone(sessionid))
}

/// Returns the sessionid whose session `older` refers to: `older` when a session exists under
/// it, else the original it is an alias of (a caller already carried over by an earlier
/// rotation), else `None`.
async fn original_of(
    store: &dyn SessionStore,
    metrics: &Metrics,
    older: &Arc<str>,
) -> StoreResult<Option<Arc<str>>> {
    let session = metrics
        .timed_store_op(StoreOp::Session, store.session(older))
        .await?;
    if session.is_some() {
        return Ok(Some(Arc::clone(older)));
    }
    let alias = metrics
        .timed_store_op(StoreOp::ResolveAlias, store.resolve_alias(older))
        .await?;
    Ok(alias.map(Arc::from))
}

#[cfg(test)]
mod tests;
