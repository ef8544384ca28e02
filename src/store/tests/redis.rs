//! The behaviour suite against real redis-server processes: one node and a three-node cluster.

use std::sync::Arc;

use super::redis_server::{self, Servers};
use super::suite::{self, Expiry};
use crate::pseudonym::{random_id, time_ordered_id, IdKind};
use crate::store::{
    Conversation, Lifetime, RedisStore, SessionStore, SessionTouch, StoreBackend, StoreConfig,
    Variable, DAY_MS,
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
    suite::run(store.clone(), "redis", Expiry::Native).await;
    redis_only_cases(&store, &servers, StoreBackend::Redis).await;
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
    suite::run(store.clone(), "redis-cluster", Expiry::Native).await;
    redis_only_cases(&store, &servers, StoreBackend::RedisCluster).await;
}

/// Runs the cases that need a Redis server's view of keys and expiry times.
async fn redis_only_cases(store: &RedisStore, servers: &Servers, backend: StoreBackend) {
    erase_leaves_no_keys(store, servers).await;
    two_proxies_create_once(&config(backend, servers)).await;
    conversation_expiry_follows_start(store, servers).await;
    let forever = StoreConfig {
        conversation_retention_days: 0,
        ..config(backend, servers)
    };
    let forever = RedisStore::connect(&forever).await.unwrap();
    suite::conversations_kept_forever(&forever).await;
}

fn conversation_at(sessionid: &str, started: u64, anonymous: bool) -> Conversation {
    Conversation {
        anonymous,
        ..suite::timed_conversation(sessionid, "expiry", started)
    }
}

/// Checks that a conversation hash expires at its start plus the default 90 days, that answer,
/// end and a repeated start keep that time, and that only an anonymous session's
/// conversation set gets the same expiry.
async fn conversation_expiry_follows_start(store: &RedisStore, servers: &Servers) {
    let started = crate::store::now_ms() - DAY_MS;
    let expected = (started + 90 * DAY_MS) as i64;
    let sid = format!("k1_{}", random_id(IdKind::Call));
    let c = conversation_at(&sid, started, false);
    let key = format!("sipstamp:cv:{{{}}}", c.conversationid);
    store.start_conversation(c.clone()).await.unwrap();
    assert_eq!(servers.expire_time_ms(&key), expected, "after start");

    store
        .answer_conversation(&c.conversationid, started + 1_000)
        .await
        .unwrap();
    assert_eq!(servers.expire_time_ms(&key), expected, "after answer");
    store
        .end_conversation(&c.conversationid, started + 9_000, 200)
        .await
        .unwrap();
    assert_eq!(servers.expire_time_ms(&key), expected, "after end");
    store.start_conversation(c.clone()).await.unwrap();
    assert_eq!(
        servers.expire_time_ms(&key),
        expected,
        "after a repeated start"
    );

    let session_set = format!("sipstamp:{{{sid}}}:cv");
    assert_eq!(servers.expire_time_ms(&session_set), -1, "session set kept");
    let anonymous_sid = random_id(IdKind::AnonymousSession);
    let anonymous = conversation_at(&anonymous_sid, started, true);
    store.start_conversation(anonymous).await.unwrap();
    let anonymous_set = format!("sipstamp:{{{anonymous_sid}}}:cv");
    assert_eq!(
        servers.expire_time_ms(&anonymous_set),
        expected,
        "anonymous session set"
    );
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
    // Started more than 90 days ago, so Redis deletes the hash at once and only the index
    // entries name it.
    let expired = Conversation {
        conversationid: time_ordered_id(IdKind::Conversation, now - 100 * DAY_MS),
        started_at_ms: now - 100 * DAY_MS,
        ..conversation.clone()
    };
    store.start_conversation(expired.clone()).await.unwrap();
    store.put_alias(&alias, &sid).await.unwrap();

    // The checks can fail: before erasure the data is there.
    assert!(!servers.keys_matching(&format!("*{sid}*")).is_empty());
    assert!(servers.any_value_contains(&secret));
    assert_eq!(
        store.conversation(&expired.conversationid).await.unwrap(),
        None
    );
    assert!(servers.any_value_contains(&expired.conversationid));

    assert!(store.erase_session(&sid).await.unwrap());
    for id in [&sid, &alias, &conversation.conversationid] {
        let keys = servers.keys_matching(&format!("*{id}*"));
        assert!(keys.is_empty(), "keys left: {keys:?}");
    }
    for needle in [
        &sid,
        &alias,
        &conversation.conversationid,
        &expired.conversationid,
        &secret,
    ] {
        assert!(
            !servers.any_value_contains(needle),
            "a value still contains {needle}"
        );
    }
}
