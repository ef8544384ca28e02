//! `resolve_sessionid` against a real embedded store in a temporary folder.

use std::sync::Arc;

use super::resolve_sessionid;
use crate::store::{EmbeddedStore, SessionStore, SessionTouch, StoreBackend, StoreConfig};
use crate::telemetry::{Metrics, ScrapeSources};

const CURRENT: &str = "k2_currentcaller";
const RETIRED: &str = "k1_retiredcaller";
const OLDEST: &str = "k0_oldestcaller";

struct Fixture {
    _dir: tempfile::TempDir,
    store: EmbeddedStore,
    metrics: Metrics,
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temporary folder");
        let config = StoreConfig {
            op_budget_ms: 5_000,
            ..StoreConfig::default()
        };
        let store = EmbeddedStore::open(dir.path(), &config)
            .await
            .expect("open the embedded store");
        let metrics = Metrics::new(StoreBackend::Embedded, ScrapeSources::default())
            .expect("register metrics");
        Fixture {
            _dir: dir,
            store,
            metrics,
        }
    }

    async fn create_session(&self, sessionid: &str) {
        let touch = SessionTouch {
            sessionid,
            tenant: "default",
            instance: "default",
            key_id: "k0",
            now: 1_000,
            other_calls_active: false,
        };
        self.store
            .touch_session(touch)
            .await
            .expect("create a session");
    }

    async fn resolve(&self, previous: &[&str]) -> String {
        let previous: Vec<Arc<str>> = previous.iter().map(|s| Arc::from(*s)).collect();
        resolve_sessionid(&self.store, &self.metrics, &Arc::from(CURRENT), &previous)
            .await
            .expect("store lookups succeed")
            .to_string()
    }

    /// Returns how many store operations the metrics counted, over all operations.
    fn operations(&self) -> f64 {
        self.metrics
            .render()
            .lines()
            .filter(|line| line.starts_with("sipstamp_store_operations_total{"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

#[tokio::test]
async fn without_retired_keys_reads_nothing() {
    let fixture = Fixture::new().await;
    fixture.create_session(RETIRED).await;

    assert_eq!(fixture.resolve(&[]).await, CURRENT);
    assert_eq!(fixture.operations(), 0.0);
}

#[tokio::test]
async fn retired_session_found_and_aliased() {
    let fixture = Fixture::new().await;
    fixture.create_session(RETIRED).await;

    assert_eq!(fixture.resolve(&[RETIRED]).await, RETIRED);
    let alias = fixture.store.resolve_alias(CURRENT).await.unwrap();
    assert_eq!(alias.as_deref(), Some(RETIRED));

    // The next call finds the alias with one read.
    let before = fixture.operations();
    assert_eq!(fixture.resolve(&[RETIRED]).await, RETIRED);
    assert_eq!(fixture.operations() - before, 1.0);
}

#[tokio::test]
async fn current_session_takes_precedence() {
    let fixture = Fixture::new().await;
    fixture.create_session(CURRENT).await;
    fixture.create_session(RETIRED).await;

    assert_eq!(fixture.resolve(&[RETIRED]).await, CURRENT);
    let alias = fixture.store.resolve_alias(CURRENT).await.unwrap();
    assert_eq!(alias, None);
}

#[tokio::test]
async fn alias_of_retired_sessionid_followed() {
    let fixture = Fixture::new().await;
    fixture.create_session(OLDEST).await;
    fixture.store.put_alias(RETIRED, OLDEST).await.unwrap();

    assert_eq!(fixture.resolve(&[RETIRED]).await, OLDEST);
    let alias = fixture.store.resolve_alias(CURRENT).await.unwrap();
    assert_eq!(alias.as_deref(), Some(OLDEST));
}

#[tokio::test]
async fn later_retired_key_found() {
    let fixture = Fixture::new().await;
    fixture.create_session(OLDEST).await;

    assert_eq!(fixture.resolve(&[RETIRED, OLDEST]).await, OLDEST);
}

#[tokio::test]
async fn unknown_caller_keeps_current() {
    let fixture = Fixture::new().await;

    assert_eq!(fixture.resolve(&[RETIRED, OLDEST]).await, CURRENT);
    let alias = fixture.store.resolve_alias(CURRENT).await.unwrap();
    assert_eq!(alias, None);
}
