//! The admin HTTP listener. The session API reads and changes session variables, reads
//! conversations, looks up the sessionids of a caller, and erases sessions or whole tenants.
//! The operations routes serve metrics and the health and readiness probes.
//!
//! Every session API route requires `Authorization: Bearer <token>`; the operations routes
//! need none. Request bodies and callerids are never logged.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;

use crate::store::SessionStore;

mod auth;
mod handlers;
mod health;
mod lookup;
mod token;

pub use health::{
    ops_routes, OpsState, Readiness, ReadinessReport, StorePing, METRICS_CONTENT_TYPE,
    STORE_PING_TIMEOUT,
};
pub use lookup::CoreLookup;
pub use token::{load_or_create_admin_token, AdminToken, TokenError, TOKEN_FILE_NAME};

/// A failure to bind the admin listener. The message names the address, so an operator can
/// tell it from a SIP listener's bind failure.
#[derive(Debug, thiserror::Error)]
#[error("cannot bind admin listener on {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// Binds the admin listener's TCP socket on `addr` (`[admin] listen`).
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, BindError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })
}

/// The reason a lookup returned no sessionids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupError {
    /// No release has this instance id.
    UnknownInstance,
    /// No trunk has this id.
    UnknownTrunk,
    /// The callerid is not a number that normalisation accepts.
    InvalidCallerid,
}

/// Maps a release's instance id and a callerid to the sessionids under every live key of that
/// release (more than one during a key rotation). A trunk id selects the numbering plan for
/// national numbers. Implemented for matching closures.
pub trait SessionLookup: Send + Sync {
    fn sessionids(
        &self,
        instance: &str,
        trunk: Option<&str>,
        callerid: &str,
    ) -> Result<Vec<String>, LookupError>;
}

impl<F> SessionLookup for F
where
    F: Fn(&str, Option<&str>, &str) -> Result<Vec<String>, LookupError> + Send + Sync,
{
    fn sessionids(
        &self,
        instance: &str,
        trunk: Option<&str>,
        callerid: &str,
    ) -> Result<Vec<String>, LookupError> {
        self(instance, trunk, callerid)
    }
}

/// The shared state of the session routes.
#[derive(Clone)]
pub struct AdminState {
    pub store: Arc<dyn SessionStore>,
    pub lookup: Arc<dyn SessionLookup>,
    pub token: AdminToken,
}

/// Maximum size of a request body that the session API reads, in bytes. A larger one gets 413.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Builds the session API routes under `/v1`, all behind bearer-token authentication. Every
/// error response, also for an unknown path or method, is JSON `{"error": "..."}`, and an
/// unknown path needs the token too, so that probing without it learns nothing.
pub fn session_routes(state: AdminState) -> Router {
    let token = state.token.clone();
    Router::new()
        .route(
            "/v1/sessions/{sessionid}",
            get(handlers::get_session).delete(handlers::erase_session),
        )
        .route(
            "/v1/sessions/{sessionid}/variables/{name}",
            get(handlers::get_variable)
                .put(handlers::put_variable)
                .delete(handlers::delete_variable),
        )
        .route("/v1/sessions/lookup", post(handlers::lookup))
        .route(
            "/v1/conversations/{conversationid}",
            get(handlers::get_conversation),
        )
        .route("/v1/tenants/{tenant}", delete(handlers::purge_tenant))
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .fallback(handlers::unknown_path)
        .with_state(state)
        .layer(axum::middleware::map_response(handlers::json_errors))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            token,
            auth::require_token,
        ))
}

#[cfg(test)]
mod health_tests;
#[cfg(test)]
mod tests;
