//! The behaviour suite against real redis-server processes: one node and a three-node cluster.

use std::sync::Arc;

use super::redis_server::{self, Servers};
use super::suite;
use crate::store::{RedisStore, StoreBackend, StoreConfig};

fn config(backend: StoreBackend, servers: &Servers) -> StoreConfig {
    StoreConfig {
        backend,
        redis_urls: servers.urls(),
        // Loaded debug builds on a shared machine need more than the production default.
        op_budget_ms: 2_000,
        ..StoreConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_single_node_suite() {
    if !redis_server::available() {
        return;
    }
    let servers = Servers::single();
    let store = RedisStore::connect(&config(StoreBackend::Redis, &servers))
        .await
        .unwrap();
    suite::run(Arc::new(store), "redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_suite() {
    if !redis_server::available() {
        return;
    }
    let servers = Servers::cluster();
    let store = RedisStore::connect(&config(StoreBackend::RedisCluster, &servers))
        .await
        .unwrap();
    suite::run(Arc::new(store), "redis-cluster").await;
}
