//! Throughput of `touch_session` with many concurrent callers. Ignored by default; run with
//! `cargo test --lib store::tests::measure -- --ignored --nocapture`.

use std::sync::Arc;
use std::time::Instant;

use super::redis_server::{self, Servers};
use crate::pseudonym::{random_id, IdKind};
use crate::store::{
    EmbeddedStore, RedisStore, SessionStore, SessionTouch, StoreBackend, StoreConfig,
};

const TASKS: usize = 32;
const TOUCHES_PER_TASK: usize = 100;

/// Runs `TASKS` tasks that each touch `TOUCHES_PER_TASK` new sessions and prints the rate and
/// the slowest single touch.
async fn measure(store: Arc<dyn SessionStore>, label: &str) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut slowest = std::time::Duration::ZERO;
            for i in 0..TOUCHES_PER_TASK {
                let sid = format!("k1_{}", random_id(IdKind::Call));
                let touch = SessionTouch {
                    sessionid: &sid,
                    tenant: "bench",
                    instance: "bench",
                    key_id: "k1",
                    now: i as u64,
                    other_calls_active: false,
                };
                let one = Instant::now();
                store.touch_session(touch).await.unwrap();
                slowest = slowest.max(one.elapsed());
            }
            slowest
        }));
    }
    let mut slowest = std::time::Duration::ZERO;
    for task in tasks {
        slowest = slowest.max(task.await.unwrap());
    }
    let total = TASKS * TOUCHES_PER_TASK;
    let elapsed = started.elapsed();
    println!(
        "{label}: {total} touches by {TASKS} tasks in {elapsed:?} = {:.0}/s, slowest {slowest:?}",
        total as f64 / elapsed.as_secs_f64()
    );
}

fn config(backend: StoreBackend, urls: Vec<String>) -> StoreConfig {
    StoreConfig {
        backend,
        redis_urls: urls,
        op_budget_ms: 10_000,
        ..StoreConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check"]
async fn touch_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = EmbeddedStore::open(dir.path(), &config(StoreBackend::Embedded, vec![]))
        .await
        .unwrap();
    measure(Arc::new(embedded), "embedded").await;

    if !redis_server::available() {
        return;
    }
    let single = Servers::single();
    let store = RedisStore::connect(&config(StoreBackend::Redis, single.urls()))
        .await
        .unwrap();
    measure(Arc::new(store), "redis").await;

    let cluster = Servers::cluster();
    let store = RedisStore::connect(&config(StoreBackend::RedisCluster, cluster.urls()))
        .await
        .unwrap();
    measure(Arc::new(store), "redis-cluster").await;
}
