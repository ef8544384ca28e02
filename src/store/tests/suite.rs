//! The behaviour suite that every backend must pass. Each case uses fresh random ids, so the
//! cases can share one store.

use std::sync::Arc;

use crate::pseudonym::{random_id, time_ordered_id, IdKind};
use crate::store::{
    Conversation, Lifetime, SessionStore, SessionTouch, StoreError, Swept, Variable, DAY_MS,
};

/// How a backend applies retention periods, which decides what `sweep` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// `sweep` deletes the expired records and counts them (embedded).
    Sweep,
    /// The backend expires records itself, and `sweep` returns zero counts (Redis).
    Native,
}

/// Runs every case against `store`, naming the backend and case in each failure. The store
/// must use the default retention periods.
pub async fn run(store: Arc<dyn SessionStore>, backend: &str, expiry: Expiry) {
    println!("{backend}: ping");
    store.ping().await.expect("ping of a working store");
    println!("{backend}: touch");
    touch_creates_then_counts(&*store).await;
    println!("{backend}: parallel touch");
    parallel_touch_creates_once(store.clone()).await;
    println!("{backend}: new call clears session variables");
    new_call_clears_session_variables(&*store).await;
    println!("{backend}: variables");
    variables_round_trip(&*store).await;
    println!("{backend}: conversations");
    conversation_lifecycle(&*store).await;
    println!("{backend}: aliases");
    aliases_resolve(&*store).await;
    println!("{backend}: erase");
    erase_removes_everything(&*store).await;
    println!("{backend}: purge tenant");
    purge_tenant_keeps_other_tenants(&*store).await;
    println!("{backend}: retention");
    retention_deletes_idle_session_variables(&*store).await;
    println!("{backend}: conversation retention");
    retention_deletes_old_conversations(&*store, expiry).await;
    println!("{backend}: invalid input");
    invalid_ids_rejected(&*store).await;
}

fn sessionid() -> String {
    format!("k1_{}", random_id(IdKind::Call))
}

fn tenant() -> String {
    format!("tenant-{}", &random_id(IdKind::Call)[2..10])
}

fn touch<'a>(sessionid: &'a str, tenant: &'a str, now: u64, others: bool) -> SessionTouch<'a> {
    SessionTouch {
        sessionid,
        tenant,
        instance: "release-a",
        key_id: "k1",
        now,
        other_calls_active: others,
    }
}

fn variable(name: &str, value: &str, lifetime: Lifetime, at: u64) -> Variable {
    Variable {
        name: name.into(),
        value: value.into(),
        lifetime,
        updated_at_ms: at,
    }
}

/// Returns a conversation record with a random id, as releases before time-ordered ids made.
pub fn conversation(sessionid: &str, tenant: &str, started: u64) -> Conversation {
    Conversation {
        conversationid: random_id(IdKind::Conversation),
        sessionid: sessionid.into(),
        tenant: tenant.into(),
        callid: random_id(IdKind::Call),
        release: "release-a".into(),
        started_at_ms: started,
        answered_at_ms: None,
        ended_at_ms: None,
        final_status: None,
        anonymous: false,
        identity_source: "pai".into(),
    }
}

/// Returns a conversation whose id starts with its start time, as the proxy creates them.
pub fn timed_conversation(sessionid: &str, tenant: &str, started: u64) -> Conversation {
    Conversation {
        conversationid: time_ordered_id(IdKind::Conversation, started),
        ..conversation(sessionid, tenant, started)
    }
}

const T0: u64 = 1_800_000_000_000;

async fn touch_creates_then_counts(store: &dyn SessionStore) {
    let (sid, tenant) = (sessionid(), tenant());
    let first = store
        .touch_session(touch(&sid, &tenant, T0, false))
        .await
        .unwrap();
    assert!(!first.returning, "first contact must not be returning");
    assert_eq!(first.session.call_count, 1);
    assert_eq!(first.session.first_seen_ms, T0);
    assert_eq!(first.session.tenant, tenant);
    assert_eq!(first.session.key_id, "k1");

    let second = store
        .touch_session(touch(&sid, &tenant, T0 + 5_000, false))
        .await
        .unwrap();
    assert!(second.returning, "second contact must be returning");
    assert_eq!(second.session.call_count, 2);
    assert_eq!(second.session.first_seen_ms, T0);
    assert_eq!(second.session.last_seen_ms, T0 + 5_000);

    let stored = store.session(&sid).await.unwrap().expect("session stored");
    assert_eq!(stored, second.session);
    assert_eq!(store.session(&sessionid()).await.unwrap(), None);
}

async fn parallel_touch_creates_once(store: Arc<dyn SessionStore>) {
    let (sid, tenant) = (sessionid(), tenant());
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (store, sid, tenant) = (store.clone(), sid.clone(), tenant.clone());
        tasks.push(tokio::spawn(async move {
            store
                .touch_session(touch(&sid, &tenant, T0 + i, true))
                .await
                .map(|t| t.returning)
        }));
    }
    let mut created = 0;
    for task in tasks {
        if !task.await.unwrap().unwrap() {
            created += 1;
        }
    }
    assert_eq!(created, 1, "exactly one parallel call creates the session");
    let session = store.session(&sid).await.unwrap().unwrap();
    assert_eq!(session.call_count, 16);
    assert_eq!(
        session.last_seen_ms,
        T0 + 15,
        "last_seen is the latest call's time"
    );
}

async fn new_call_clears_session_variables(store: &dyn SessionStore) {
    let (sid, tenant) = (sessionid(), tenant());
    store
        .touch_session(touch(&sid, &tenant, T0, false))
        .await
        .unwrap();
    let now = crate::store::now_ms();
    store
        .put_variable(&sid, variable("topic", "billing", Lifetime::Session, now))
        .await
        .unwrap();
    store
        .put_variable(&sid, variable("language", "de", Lifetime::User, now))
        .await
        .unwrap();

    // A parallel call keeps the session variables.
    store
        .touch_session(touch(&sid, &tenant, now, true))
        .await
        .unwrap();
    assert!(store.variable(&sid, "topic").await.unwrap().is_some());

    // A call while no other call is active starts with fresh session variables.
    store
        .touch_session(touch(&sid, &tenant, now, false))
        .await
        .unwrap();
    assert_eq!(store.variable(&sid, "topic").await.unwrap(), None);
    let language = store.variable(&sid, "language").await.unwrap();
    assert_eq!(language.map(|v| v.value), Some("de".to_owned()));
}

async fn variables_round_trip(store: &dyn SessionStore) {
    let (sid, tenant) = (sessionid(), tenant());
    let now = crate::store::now_ms();
    let missing = store
        .put_variable(&sid, variable("a", "1", Lifetime::User, now))
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound("session"))),
        "{missing:?}"
    );

    store
        .touch_session(touch(&sid, &tenant, now, false))
        .await
        .unwrap();
    let b = variable("b", "two", Lifetime::Session, now);
    let a = variable("a", "one", Lifetime::User, now);
    store.put_variable(&sid, b.clone()).await.unwrap();
    store.put_variable(&sid, a.clone()).await.unwrap();
    assert_eq!(store.variable(&sid, "b").await.unwrap(), Some(b.clone()));
    assert_eq!(store.variables(&sid).await.unwrap(), vec![a.clone(), b]);

    // Writing a name again with the other lifetime replaces it.
    let b_user = variable("b", "owned", Lifetime::User, now + 1);
    store.put_variable(&sid, b_user.clone()).await.unwrap();
    assert_eq!(store.variables(&sid).await.unwrap(), vec![a, b_user]);

    assert!(store.delete_variable(&sid, "b").await.unwrap());
    assert!(!store.delete_variable(&sid, "b").await.unwrap());
    assert_eq!(store.variable(&sid, "b").await.unwrap(), None);
}

async fn conversation_lifecycle(store: &dyn SessionStore) {
    let (sid, tenant) = (sessionid(), tenant());
    let c = conversation(&sid, &tenant, T0);
    store.start_conversation(c.clone()).await.unwrap();
    assert_eq!(
        store.conversation(&c.conversationid).await.unwrap(),
        Some(c.clone())
    );

    store
        .answer_conversation(&c.conversationid, T0 + 10)
        .await
        .unwrap();
    store
        .answer_conversation(&c.conversationid, T0 + 20)
        .await
        .unwrap();
    store
        .end_conversation(&c.conversationid, T0 + 90, 200)
        .await
        .unwrap();
    store
        .end_conversation(&c.conversationid, T0 + 99, 487)
        .await
        .unwrap();
    let stored = store
        .conversation(&c.conversationid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.answered_at_ms, Some(T0 + 10));
    assert_eq!(stored.ended_at_ms, Some(T0 + 90));
    assert_eq!(stored.final_status, Some(200));

    let unknown = random_id(IdKind::Conversation);
    let answered = store.answer_conversation(&unknown, T0).await;
    assert!(
        matches!(answered, Err(StoreError::NotFound(_))),
        "{answered:?}"
    );
    let ended = store.end_conversation(&unknown, T0, 200).await;
    assert!(matches!(ended, Err(StoreError::NotFound(_))), "{ended:?}");
    assert_eq!(store.conversation(&unknown).await.unwrap(), None);
}

async fn aliases_resolve(store: &dyn SessionStore) {
    let (original, new) = (sessionid(), sessionid());
    assert_eq!(store.resolve_alias(&new).await.unwrap(), None);
    store.put_alias(&new, &original).await.unwrap();
    assert_eq!(store.resolve_alias(&new).await.unwrap(), Some(original));
}

async fn erase_removes_everything(store: &dyn SessionStore) {
    let (sid, tenant, alias) = (sessionid(), tenant(), sessionid());
    let now = crate::store::now_ms();
    store
        .touch_session(touch(&sid, &tenant, now, false))
        .await
        .unwrap();
    store
        .put_variable(&sid, variable("s", "1", Lifetime::Session, now))
        .await
        .unwrap();
    store
        .put_variable(&sid, variable("u", "2", Lifetime::User, now))
        .await
        .unwrap();
    let c = conversation(&sid, &tenant, now);
    store.start_conversation(c.clone()).await.unwrap();
    store.put_alias(&alias, &sid).await.unwrap();

    assert!(store.erase_session(&sid).await.unwrap());
    assert_eq!(store.session(&sid).await.unwrap(), None);
    assert_eq!(store.variables(&sid).await.unwrap(), vec![]);
    assert_eq!(store.conversation(&c.conversationid).await.unwrap(), None);
    assert_eq!(store.resolve_alias(&alias).await.unwrap(), None);
    assert!(!store.erase_session(&sid).await.unwrap());
}

async fn purge_tenant_keeps_other_tenants(store: &dyn SessionStore) {
    let (purged, kept) = (tenant(), tenant());
    let (a, b, c) = (sessionid(), sessionid(), sessionid());
    store
        .touch_session(touch(&a, &purged, T0, false))
        .await
        .unwrap();
    store
        .touch_session(touch(&b, &purged, T0, false))
        .await
        .unwrap();
    store
        .touch_session(touch(&c, &kept, T0, false))
        .await
        .unwrap();
    let mut anonymous = conversation(&random_id(IdKind::AnonymousSession), &purged, T0);
    anonymous.anonymous = true;
    store.start_conversation(anonymous.clone()).await.unwrap();
    let kept_conversation = conversation(&c, &kept, T0);
    store
        .start_conversation(kept_conversation.clone())
        .await
        .unwrap();

    assert_eq!(store.purge_tenant(&purged).await.unwrap(), 2);
    assert_eq!(store.session(&a).await.unwrap(), None);
    assert_eq!(store.session(&b).await.unwrap(), None);
    assert_eq!(
        store.conversation(&anonymous.conversationid).await.unwrap(),
        None
    );
    assert!(store.session(&c).await.unwrap().is_some());
    assert!(store
        .conversation(&kept_conversation.conversationid)
        .await
        .unwrap()
        .is_some());
    assert_eq!(store.purge_tenant(&purged).await.unwrap(), 0);
}

async fn retention_deletes_idle_session_variables(store: &dyn SessionStore) {
    // The store's retention is 30 days; both backends follow the `now` the caller passes.
    let now = crate::store::now_ms();
    let tenant = tenant();
    let (idle, recent) = (sessionid(), sessionid());
    for (sid, age_days) in [(&idle, 31), (&recent, 29)] {
        let at = now - age_days * DAY_MS;
        store
            .touch_session(touch(sid, &tenant, at, false))
            .await
            .unwrap();
        store
            .put_variable(sid, variable("s", "x", Lifetime::Session, at))
            .await
            .unwrap();
        store
            .put_variable(sid, variable("u", "y", Lifetime::User, at))
            .await
            .unwrap();
    }

    store.sweep(now).await.unwrap();
    assert_eq!(store.variable(&idle, "s").await.unwrap(), None);
    assert!(store.variable(&idle, "u").await.unwrap().is_some());
    assert!(
        store.session(&idle).await.unwrap().is_some(),
        "session kept"
    );
    assert!(store.variable(&recent, "s").await.unwrap().is_some());
}

async fn retention_deletes_old_conversations(store: &dyn SessionStore, expiry: Expiry) {
    // The store keeps conversations 90 days and session variables 30 days.
    let now = crate::store::now_ms();
    // Delete what earlier cases left due, so the counts below are this case's alone.
    store.sweep(now).await.unwrap();

    let (sid, tenant) = (sessionid(), tenant());
    let long_ago = now - 100 * DAY_MS;
    store
        .touch_session(touch(&sid, &tenant, long_ago, false))
        .await
        .unwrap();
    for name in ["s1", "s2"] {
        store
            .put_variable(&sid, variable(name, "x", Lifetime::Session, long_ago))
            .await
            .unwrap();
    }
    let old = timed_conversation(&sid, &tenant, now - 91 * DAY_MS);
    let recent = timed_conversation(&sid, &tenant, now - 89 * DAY_MS);
    store.start_conversation(old.clone()).await.unwrap();
    store.start_conversation(recent.clone()).await.unwrap();
    let started = recent.started_at_ms;
    store
        .answer_conversation(&recent.conversationid, started + 1_000)
        .await
        .unwrap();
    store
        .end_conversation(&recent.conversationid, started + 60_000, 200)
        .await
        .unwrap();

    let swept = store.sweep(now).await.unwrap();
    let expected = match expiry {
        Expiry::Sweep => Swept {
            variables: 2,
            conversations: 1,
        },
        Expiry::Native => Swept::default(),
    };
    assert_eq!(swept, expected, "records counted by the sweep");
    assert_eq!(
        store.conversation(&old.conversationid).await.unwrap(),
        None,
        "conversation older than 90 days deleted"
    );
    let kept = store.conversation(&recent.conversationid).await.unwrap();
    assert_eq!(
        kept.and_then(|c| c.final_status),
        Some(200),
        "conversation younger than 90 days kept with its end"
    );
    assert!(store.session(&sid).await.unwrap().is_some(), "session kept");
    assert_eq!(store.sweep(now).await.unwrap(), Swept::default());
}

/// Checks a store whose `conversation_retention_days` is 0: a conversation started more than
/// ten years ago stays after a sweep.
pub async fn conversations_kept_forever(store: &dyn SessionStore) {
    let now = crate::store::now_ms();
    let ancient = timed_conversation(&sessionid(), &tenant(), now - 4_000 * DAY_MS);
    store.start_conversation(ancient.clone()).await.unwrap();
    let swept = store.sweep(now).await.unwrap();
    assert_eq!(swept.conversations, 0);
    assert_eq!(
        store.conversation(&ancient.conversationid).await.unwrap(),
        Some(ancient)
    );
}

async fn invalid_ids_rejected(store: &dyn SessionStore) {
    for bad in ["", "has{brace}", "has space", "k1_\u{e9}"] {
        let result = store.session(bad).await;
        assert!(
            matches!(result, Err(StoreError::Invalid { .. })),
            "{bad:?}: {result:?}"
        );
    }
    let sid = sessionid();
    let result = store.variable(&sid, "bad name").await;
    assert!(
        matches!(result, Err(StoreError::Invalid { .. })),
        "{result:?}"
    );
    let result = store.purge_tenant("a{b}").await;
    assert!(
        matches!(result, Err(StoreError::Invalid { .. })),
        "{result:?}"
    );
}
