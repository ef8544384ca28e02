//! The store writer's folding of call events into conversation starts, on its own and against
//! a real embedded store in a temporary folder.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{fold_events_into_starts, store_writer, StoreJob, StoreQueue};
use crate::proxy::{CallEvent, CallEventKind};
use crate::store::{Conversation, EmbeddedStore, SessionStore, StoreBackend, StoreConfig};
use crate::telemetry::{Metrics, ScrapeSources};

fn start(id: &str, at: u64) -> StoreJob {
    StoreJob::Start(Conversation {
        conversationid: id.to_owned(),
        sessionid: "k0_foldtest".to_owned(),
        tenant: "default".to_owned(),
        callid: format!("ca{id}"),
        release: "default".to_owned(),
        started_at_ms: at,
        answered_at_ms: None,
        ended_at_ms: None,
        final_status: None,
        anonymous: false,
        identity_source: "from".to_owned(),
    })
}

fn event(id: &str, kind: CallEventKind, at: u64) -> StoreJob {
    StoreJob::Event(
        CallEvent {
            conversationid: id.into(),
            kind,
        },
        at,
    )
}

fn answered(id: &str, at: u64) -> StoreJob {
    event(id, CallEventKind::Answered, at)
}

fn ended(id: &str, status: Option<u16>, at: u64) -> StoreJob {
    event(id, CallEventKind::Ended { status }, at)
}

/// Describes a batch as (kind, conversationid, answered, ended, status) for comparison.
fn describe(batch: &[StoreJob]) -> Vec<String> {
    batch
        .iter()
        .map(|job| match job {
            StoreJob::Start(c) => format!(
                "start {} {:?} {:?} {:?}",
                c.conversationid, c.answered_at_ms, c.ended_at_ms, c.final_status
            ),
            StoreJob::Event(e, at) => format!("event {} {:?} {at}", e.conversationid, e.kind),
            StoreJob::Touch { sessionid, .. } => format!("touch {sessionid}"),
        })
        .collect()
}

#[test]
fn events_fold_into_batch_start() {
    let mut batch = vec![
        start("cv1", 10),
        answered("cv1", 20),
        ended("cv1", None, 30),
    ];
    fold_events_into_starts(&mut batch);
    assert_eq!(describe(&batch), ["start cv1 Some(20) Some(30) Some(200)"]);
}

#[test]
fn first_answer_and_first_end_win() {
    let mut batch = vec![
        start("cv1", 10),
        answered("cv1", 20),
        answered("cv1", 25),
        ended("cv1", Some(486), 30),
        ended("cv1", None, 40),
    ];
    fold_events_into_starts(&mut batch);
    assert_eq!(describe(&batch), ["start cv1 Some(20) Some(30) Some(486)"]);
}

#[test]
fn unmatched_events_keep_order() {
    let mut batch = vec![
        answered("cv-old", 5),
        start("cv2", 10),
        ended("cv-old", None, 12),
        ended("cv2", Some(603), 15),
    ];
    fold_events_into_starts(&mut batch);
    assert_eq!(
        describe(&batch),
        [
            "event cv-old Answered 5",
            "start cv2 None Some(15) Some(603)",
            "event cv-old Ended { status: None } 12",
        ]
    );
}

#[test]
fn batch_without_events_is_unchanged() {
    let mut batch = vec![start("cv1", 10), start("cv2", 11)];
    fold_events_into_starts(&mut batch);
    assert_eq!(
        describe(&batch),
        ["start cv1 None None None", "start cv2 None None None"]
    );
}

/// Runs the writer over two batches against a real store: the first batch contains a whole call,
/// the second the answer of a conversation started in the first.
#[tokio::test]
async fn writer_records_folded_and_separate_events() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let config = StoreConfig {
        op_budget_ms: 5_000,
        ..StoreConfig::default()
    };
    let store: Arc<dyn SessionStore> = Arc::new(
        EmbeddedStore::open(dir.path(), &config)
            .await
            .expect("open the embedded store"),
    );
    let metrics = Arc::new(
        Metrics::new(StoreBackend::Embedded, ScrapeSources::default()).expect("register metrics"),
    );
    let (jobs, receiver) = mpsc::channel(16);
    for job in [
        start("cvwhole", 100),
        answered("cvwhole", 110),
        ended("cvwhole", None, 120),
        start("cvlater", 200),
    ] {
        jobs.send(job).await.expect("queue");
    }
    let writer = tokio::spawn(store_writer(
        Arc::clone(&store),
        Arc::clone(&metrics),
        receiver,
    ));
    // Wait until the first batch is written, so the answer below lands in a batch of its own.
    let mut written = false;
    for _ in 0..200 {
        if store.conversation("cvlater").await.expect("read").is_some() {
            written = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(written, "first batch not written within 2 s");
    jobs.send(answered("cvlater", 210)).await.expect("queue");
    drop(jobs);
    writer.await.expect("writer task");

    let whole = store
        .conversation("cvwhole")
        .await
        .expect("read")
        .expect("whole call recorded");
    assert_eq!(
        (
            whole.started_at_ms,
            whole.answered_at_ms,
            whole.ended_at_ms,
            whole.final_status
        ),
        (100, Some(110), Some(120), Some(200))
    );
    let later = store
        .conversation("cvlater")
        .await
        .expect("read")
        .expect("later call recorded");
    assert_eq!((later.answered_at_ms, later.ended_at_ms), (Some(210), None));
    // Two starts and one separate answer reached the store; the folded events did not.
    let rendered = metrics.render();
    for (operation, expected) in [
        ("start_conversation", 2),
        ("answer_conversation", 1),
        ("end_conversation", 0),
    ] {
        assert_eq!(
            operation_count(&rendered, operation),
            expected,
            "{operation} operations"
        );
    }
}

/// Reads the embedded backend's operation counter from rendered metrics; 0 when absent.
fn operation_count(rendered: &str, operation: &str) -> u64 {
    let series = format!(
        "sipstamp_store_operations_total{{backend=\"embedded\",operation=\"{operation}\"}} "
    );
    rendered
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |value| value.trim().parse().expect("counter value"))
}

#[test]
fn full_queue_drops_and_counts_writes() {
    let metrics = Arc::new(
        Metrics::new(StoreBackend::Embedded, ScrapeSources::default()).expect("register metrics"),
    );
    let (jobs, mut receiver) = mpsc::channel(1);
    let queue = StoreQueue::new(jobs, Arc::clone(&metrics));
    queue.push(start("cvqueued", 1));
    queue.push(start("cvdropped", 2));
    queue.push(answered("cvqueued", 3));

    let dropped = "sipstamp_store_writes_dropped_total{backend=\"embedded\"} ";
    let rendered = metrics.render();
    let count = rendered.lines().find_map(|line| line.strip_prefix(dropped));
    assert_eq!(count.map(str::trim), Some("2"));
    let queued = receiver.try_recv().expect("first job queued");
    assert_eq!(describe(&[queued]), ["start cvqueued None None None"]);
    assert!(receiver.try_recv().is_err(), "only one job fits");
}
