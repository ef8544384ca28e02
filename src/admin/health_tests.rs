//! The operations routes over real loopback HTTP.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::store::{EmbeddedStore, StoreBackend, StoreConfig, StoreError};
use crate::telemetry::{Metrics, ScrapeSources};

struct Server {
    address: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(state: OpsState) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = ops_routes(state);
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    Server { address, task }
}

/// Sends one GET and returns the status, the content type and the body.
async fn get(address: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut raw),
    )
    .await
    .expect("response within 10 s")
    .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("response has a head");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

fn metrics() -> Arc<Metrics> {
    Arc::new(Metrics::new(StoreBackend::Embedded, ScrapeSources::default()).unwrap())
}

/// Builds a readiness whose store ping fails while `store_down` is set.
fn switchable_readiness(store_down: Arc<AtomicBool>) -> Arc<Readiness> {
    Arc::new(Readiness::with_ping(Arc::new(move || {
        let down = store_down.load(Ordering::Relaxed);
        Box::pin(async move {
            if down {
                Err(StoreError::Backend("connection refused".into()))
            } else {
                Ok(())
            }
        })
    })))
}

#[tokio::test]
async fn healthz_answers_ok() {
    let store_down = Arc::new(AtomicBool::new(true));
    let server = serve(OpsState {
        metrics: metrics(),
        readiness: switchable_readiness(store_down),
    })
    .await;
    let (status, _, body) = get(server.address, "/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(body, "ok\n");
}

#[tokio::test]
async fn metrics_served_as_text() {
    let metrics = metrics();
    metrics.returning(crate::telemetry::Returning::No);
    let server = serve(OpsState {
        metrics,
        readiness: switchable_readiness(Arc::new(AtomicBool::new(false))),
    })
    .await;
    let (status, content_type, body) = get(server.address, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(content_type, METRICS_CONTENT_TYPE);
    assert!(
        body.contains("sipstamp_calls_returning_total{returning=\"false\"} 1"),
        "{body}"
    );
}

#[tokio::test]
async fn readyz_follows_each_check() {
    let store_down = Arc::new(AtomicBool::new(false));
    let readiness = switchable_readiness(store_down.clone());
    let metrics = metrics();
    let server = serve(OpsState {
        metrics: metrics.clone(),
        readiness: readiness.clone(),
    })
    .await;

    let (status, content_type, body) = get(server.address, "/readyz").await;
    assert_eq!(status, 503, "listeners not bound yet");
    assert_eq!(content_type, "application/json");
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["ready"], false);
    assert_eq!(report["failed"], serde_json::json!(["listeners"]));
    assert_eq!(report["checks"]["listeners"], "not bound");

    readiness.set_listeners_bound(true);
    let (status, _, body) = get(server.address, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["ready"], true);
    assert_eq!(report["failed"], serde_json::json!([]));

    store_down.store(true, Ordering::Relaxed);
    let (status, _, body) = get(server.address, "/readyz").await;
    assert_eq!(status, 503);
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["failed"], serde_json::json!(["store"]));
    assert_eq!(report["checks"]["store"], "failed");
    assert!(
        !body.contains("connection refused"),
        "backend error text stays in the log: {body}"
    );

    store_down.store(false, Ordering::Relaxed);
    readiness.set_draining(true);
    let (status, _, body) = get(server.address, "/readyz").await;
    assert_eq!(status, 503);
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["failed"], serde_json::json!(["draining"]));
    assert_eq!(report["checks"]["draining"], "draining");

    let text = metrics.render();
    let pings = "sipstamp_store_operations_total{backend=\"embedded\",operation=\"ping\"} 4";
    assert!(text.contains(pings), "every probe pings the store once");
    let failed =
        "sipstamp_store_errors_total{backend=\"embedded\",error=\"backend\",operation=\"ping\"} 1";
    assert!(text.contains(failed), "the failed ping is counted");
}

#[tokio::test]
async fn readyz_times_out_slow_store() {
    let readiness = Arc::new(Readiness::with_ping(Arc::new(|| {
        Box::pin(async {
            tokio::time::sleep(STORE_PING_TIMEOUT * 5).await;
            Ok(())
        })
    })));
    readiness.set_listeners_bound(true);
    let report = readiness.check(&metrics()).await;
    assert!(!report.ready());
    assert!(
        matches!(report.store, Some(StoreError::Timeout(_))),
        "{report:?}"
    );
}

#[tokio::test]
async fn readyz_with_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn crate::store::SessionStore> = Arc::new(
        EmbeddedStore::open(dir.path(), &StoreConfig::default())
            .await
            .unwrap(),
    );
    let readiness = Arc::new(Readiness::new(store));
    readiness.set_listeners_bound(true);
    let server = serve(OpsState {
        metrics: metrics(),
        readiness,
    })
    .await;
    let (status, _, body) = get(server.address, "/readyz").await;
    assert_eq!(status, 200, "{body}");
}
