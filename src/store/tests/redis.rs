//! The behaviour suite against real redis-server processes: one node and a three-node cluster.

use std::sync::Arc;

use super::redis_server::{self, Servers};
use super::suite;
use crate::pseudonym::{random_id, IdKind};
use crate::store::{
    Conversation, Lifetime, RedisStore, SessionStore, SessionTouch, StoreBackend, StoreConfig,
    Variable,
};

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
        .map(Arc::new)
        .unwrap();
    suite::run(store.clone(), "redis").await;
    erase_leaves_no_keys(&store, &servers).await;
    two_proxies_create_once(&config(StoreBackend::Redis, &servers)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_suite() {
    if !redis_server::available() {
        return;
    }
    let servers = Servers::cluster();
    let store = RedisStore::connect(&config(StoreBackend::RedisCluster, &servers))
        .await
        .map(Arc::new)
        .unwrap();
    suite::run(store.clone(), "redis-cluster").await;
    erase_leaves_no_keys(&store, &servers).await;
    two_proxies_create_once(&config(StoreBackend::RedisCluster, &servers)).await;
}

/// Checks that two proxies, each with its own connection, touching one new sessionid at the
/// same time create it once.
async fn two_proxies_create_once(config: &StoreConfig) {
    let first = Arc::new(RedisStore::connect(config).await.unwrap());
    let second = Arc::new(RedisStore::connect(config).await.unwrap());
    let sid = format!("k1_{}", random_id(IdKind::Call));
    let mut tasks = Vec::new();
    for i in 0..32u64 {
        let store = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        let sid = sid.clone();
        tasks.push(tokio::spawn(async move {
            let touch = SessionTouch {
                sessionid: &sid,
                tenant: "parallel",
                instance: "release-a",
                key_id: "k1",
                now: 1_000 + i,
                other_calls_active: true,
            };
            store.touch_session(touch).await.unwrap().returning
        }));
    }
    let mut created = 0;
    for task in tasks {
        if !task.await.unwrap() {
            created += 1;
        }
    }
    assert_eq!(
        created, 1,
        "exactly one of 32 parallel touches creates the session"
    );
    let session = first.session(&sid).await.unwrap().unwrap();
    assert_eq!(session.call_count, 32);
    assert_eq!(
        session.last_seen_ms, 1_031,
        "last_seen is the latest call's time"
    );
}

/// Checks that after erasure no key name and no value on any node contains the sessionid, the
/// conversationid or the variable's value.
async fn erase_leaves_no_keys(store: &RedisStore, servers: &Servers) {
    let sid = format!("k1_{}", random_id(IdKind::Call));
    let alias = format!("k2_{}", random_id(IdKind::Call));
    let secret = format!("secret-{}", random_id(IdKind::Call));
    let now = crate::store::now_ms();
    let touch = SessionTouch {
        sessionid: &sid,
        tenant: "erasure",
        instance: "release-a",
        key_id: "k1",
        now,
        other_calls_active: false,
    };
    store.touch_session(touch).await.unwrap();
    for (name, lifetime) in [("s", Lifetime::Session), ("u", Lifetime::User)] {
        let variable = Variable {
            name: name.into(),
            value: secret.clone(),
            lifetime,
            updated_at_ms: now,
        };
        store.put_variable(&sid, variable).await.unwrap();
    }
    let conversation = Conversation {
        conversationid: random_id(IdKind::Conversation),
        sessionid: sid.clone(),
        tenant: "erasure".into(),
        callid: random_id(IdKind::Call),
        release: "release-a".into(),
        started_at_ms: now,
        answered_at_ms: None,
        ended_at_ms: None,
        final_status: None,
        anonymous: false,
        identity_source: "pai".into(),
    };
    store
        .start_conversation(conversation.clone())
        .await
        .unwrap();
    store.put_alias(&alias, &sid).await.unwrap();

    // The checks can fail: before erasure the data is there.
    assert!(!servers.keys_matching(&format!("*{sid}*")).is_empty());
    assert!(servers.any_value_contains(&secret));

    assert!(store.erase_session(&sid).await.unwrap());
    for id in [&sid, &alias, &conversation.conversationid] {
        let keys = servers.keys_matching(&format!("*{id}*"));
        assert!(keys.is_empty(), "keys left: {keys:?}");
    }
    for needle in [&sid, &alias, &conversation.conversationid, &secret] {
        assert!(
            !servers.any_value_contains(needle),
            "a value still contains {needle}"
        );
    }
}
