//! The operations routes: `/metrics`, `/healthz` and `/readyz`. They need no token, so that
//! Prometheus and the orchestrator's probes can reach them. None of them returns user data.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::store::{SessionStore, StoreError, StoreFuture};
use crate::telemetry::{Metrics, StoreOp};

/// Content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Maximum time a readiness probe waits for the store, whatever the store's own op budget.
pub const STORE_PING_TIMEOUT: Duration = Duration::from_secs(1);

/// A check that the store responds, run once per readiness probe.
pub type StorePing = Arc<dyn Fn() -> StoreFuture<'static, ()> + Send + Sync>;

/// The process state that decides readiness. The driver sets the flags; `/readyz` reads them
/// and pings the store.
pub struct Readiness {
    listeners_bound: AtomicBool,
    draining: AtomicBool,
    ping: StorePing,
    /// The last reported result (0 unknown, 1 ready, 2 not ready), so that only changes are
    /// logged rather than every probe.
    last: AtomicU8,
}

impl Readiness {
    /// Starts not ready: the listeners are not bound yet.
    pub fn new(store: Arc<dyn SessionStore>) -> Self {
        Self::with_ping(Arc::new(move || {
            let store = store.clone();
            Box::pin(async move { store.ping().await })
        }))
    }

    /// Starts not ready, with a custom store check.
    pub fn with_ping(ping: StorePing) -> Self {
        Self {
            listeners_bound: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            ping,
            last: AtomicU8::new(0),
        }
    }

    /// Records that every configured SIP listener is bound (or, with `false`, that one is
    /// not anymore).
    pub fn set_listeners_bound(&self, bound: bool) {
        self.listeners_bound.store(bound, Ordering::Release);
    }

    /// Records that the proxy is draining: it finishes the calls it has and takes no new ones.
    pub fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn listeners_bound(&self) -> bool {
        self.listeners_bound.load(Ordering::Acquire)
    }

    /// Runs every check. The store is pinged even when another check failed, so the report
    /// is complete.
    pub async fn check(&self, metrics: &Metrics) -> ReadinessReport {
        let started = Instant::now();
        let result = match tokio::time::timeout(STORE_PING_TIMEOUT, (self.ping)()).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout(STORE_PING_TIMEOUT.as_millis() as u64)),
        };
        metrics.store_op(StoreOp::Ping, started.elapsed(), &result);

        let report = ReadinessReport {
            listeners_bound: self.listeners_bound(),
            draining: self.is_draining(),
            store: result.err(),
        };
        self.log_change(&report);
        report
    }

    fn log_change(&self, report: &ReadinessReport) {
        let now = if report.ready() { 1 } else { 2 };
        if self.last.swap(now, Ordering::AcqRel) == now {
            return;
        }
        if report.ready() {
            tracing::info!("ready: listeners bound, store reachable, not draining");
        } else {
            let store_error = report.store.as_ref().map(|e| e.to_string());
            tracing::warn!(
                listeners_bound = report.listeners_bound,
                draining = report.draining,
                store_error,
                "not ready"
            );
        }
    }
}

/// The result of the readiness checks.
#[derive(Debug)]
pub struct ReadinessReport {
    pub listeners_bound: bool,
    pub draining: bool,
    /// The error of the store ping, if it failed.
    pub store: Option<StoreError>,
}

impl ReadinessReport {
    pub fn ready(&self) -> bool {
        self.listeners_bound && !self.draining && self.store.is_none()
    }

    /// Builds the JSON body. A store failure is reported by kind only, because the error text
    /// of a backend may name hosts; the full error goes to the log.
    fn to_json(&self) -> serde_json::Value {
        let listeners = if self.listeners_bound {
            "ok"
        } else {
            "not bound"
        };
        let store = match &self.store {
            None => "ok",
            Some(StoreError::Timeout(_)) => "timed out",
            Some(StoreError::Closed) => "closed",
            Some(_) => "failed",
        };
        let draining = if self.draining { "draining" } else { "ok" };
        let failed: Vec<&str> = [
            ("listeners", !self.listeners_bound),
            ("store", self.store.is_some()),
            ("draining", self.draining),
        ]
        .into_iter()
        .filter(|(_, failed)| *failed)
        .map(|(name, _)| name)
        .collect();
        json!({
            "ready": self.ready(),
            "failed": failed,
            "checks": {"listeners": listeners, "store": store, "draining": draining},
        })
    }
}

/// The shared state of the operations routes.
#[derive(Clone)]
pub struct OpsState {
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
}

/// Builds `/metrics`, `/healthz` and `/readyz`, without authentication. Merge it with
/// [`super::session_routes`], whose token check applies only to its own routes.
pub fn ops_routes(state: OpsState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(state): State<OpsState>) -> Response {
    let body = state.metrics.render();
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], body).into_response()
}

/// Returns 200 while the process serves HTTP at all.
async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<OpsState>) -> Response {
    let report = state.readiness.check(&state.metrics).await;
    let status = if report.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report.to_json())).into_response()
}
