//! The behaviour suite, erasure and crash durability against the embedded store.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::suite::{self, Expiry};
use crate::pseudonym::{random_id, time_ordered_id, IdKind};
use crate::store::{
    Conversation, EmbeddedStore, Lifetime, SessionStore, SessionTouch, StoreConfig, Swept,
    Variable, DAY_MS,
};

fn config() -> StoreConfig {
    StoreConfig {
        op_budget_ms: 5_000,
        ..StoreConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), &config()).await.unwrap();
    suite::run(Arc::new(store), "embedded", Expiry::Sweep).await;
}

#[tokio::test]
async fn embedded_keeps_conversations_forever() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        conversation_retention_days: 0,
        ..config()
    };
    let store = EmbeddedStore::open(dir.path(), &config).await.unwrap();
    suite::conversations_kept_forever(&store).await;
}

fn touch(sessionid: &str, now: u64) -> SessionTouch<'_> {
    SessionTouch {
        sessionid,
        tenant: "default",
        instance: "default",
        key_id: "k1",
        now,
        other_calls_active: false,
    }
}

#[tokio::test]
async fn embedded_reopen_keeps_records() {
    let dir = tempfile::tempdir().unwrap();
    let sid = format!("k1_{}", random_id(IdKind::Call));
    {
        let store = EmbeddedStore::open(dir.path(), &config()).await.unwrap();
        store.touch_session(touch(&sid, 1_000)).await.unwrap();
    }
    let store = EmbeddedStore::open(dir.path(), &config()).await.unwrap();
    let touched = store.touch_session(touch(&sid, 2_000)).await.unwrap();
    assert!(touched.returning);
    assert_eq!(touched.session.call_count, 2);
}

/// Returns the files under `dir` that contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        if bytes.windows(needle.len()).any(|w| w == needle) {
            found.push(path.display().to_string());
        }
    }
    found
}

#[tokio::test]
async fn erasure_leaves_no_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), &config()).await.unwrap();
    let sid = format!("k1_{}", random_id(IdKind::Call));
    let secret = format!("secret-{}", random_id(IdKind::Call));
    let now = crate::store::now_ms();

    // Neighbours on the same pages, so erasure cannot simply drop a whole page.
    for _ in 0..50 {
        let other = format!("k1_{}", random_id(IdKind::Call));
        store.touch_session(touch(&other, now)).await.unwrap();
    }
    store.touch_session(touch(&sid, now)).await.unwrap();
    for (name, lifetime) in [("s", Lifetime::Session), ("u", Lifetime::User)] {
        let variable = Variable {
            name: name.into(),
            value: secret.clone(),
            lifetime,
            updated_at_ms: now,
        };
        store.put_variable(&sid, variable).await.unwrap();
    }
    // Overwrite once so an older copy of the value sits in a freed page too.
    let overwrite = Variable {
        name: "u".into(),
        value: format!("{secret}-v2"),
        lifetime: Lifetime::User,
        updated_at_ms: now,
    };
    store.put_variable(&sid, overwrite).await.unwrap();

    // The check can fail: before erasure both byte strings are on disk.
    assert!(!files_containing(dir.path(), secret.as_bytes()).is_empty());
    assert!(!files_containing(dir.path(), sid.as_bytes()).is_empty());

    assert!(store.erase_session(&sid).await.unwrap());
    let value_files = files_containing(dir.path(), secret.as_bytes());
    assert!(value_files.is_empty(), "value found in {value_files:?}");
    let id_files = files_containing(dir.path(), sid.as_bytes());
    assert!(id_files.is_empty(), "sessionid found in {id_files:?}");

    // The store keeps working on the rewritten file, and after a reopen.
    let other = format!("k1_{}", random_id(IdKind::Call));
    store.touch_session(touch(&other, now)).await.unwrap();
    drop(store);
    let store = EmbeddedStore::open(dir.path(), &config()).await.unwrap();
    assert!(store.session(&other).await.unwrap().is_some());
    assert!(store.session(&sid).await.unwrap().is_none());
}

/// Environment variable that turns `crash_child` into the writing child process.
const CRASH_CHILD_DIR: &str = "SIPSTAMP_TEST_CRASH_CHILD_DIR";
/// Acknowledged writes the parent waits for before it kills the child.
const CRASH_ACKS: usize = 300;

/// The child half of `embedded_survives_kill_9`: writes sessions and prints each sessionid
/// after the store acknowledged it, until it is killed. Does nothing in a normal test run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_CHILD_DIR) else {
        return;
    };
    let store = Arc::new(
        EmbeddedStore::open(Path::new(&dir), &config())
            .await
            .unwrap(),
    );
    // Several writers at once, so acknowledged writes come from batched commits too.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let sid = format!("k1_{}", random_id(IdKind::Call));
                store.touch_session(touch(&sid, i)).await.unwrap();
                println!("acked {sid}");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// Kills the child process if the test fails before it does.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn embedded_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store::tests::embedded::crash_child",
            "--nocapture",
        ])
        .args(["--test-threads", "1"])
        .env(CRASH_CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);

    let stdout = child.0.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut acked = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(sid) = line.strip_prefix("acked ") {
                acked.push(sid.to_owned());
                if acked.len() == CRASH_ACKS {
                    break;
                }
            }
        }
        acked
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    while !reader.is_finished() {
        assert!(
            Instant::now() < deadline,
            "child acknowledged too few writes in 120 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Child::kill sends SIGKILL on Unix: no destructor or flush runs in the child.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let acked = reader.join().unwrap();
    assert_eq!(
        acked.len(),
        CRASH_ACKS,
        "child stopped before {CRASH_ACKS} writes"
    );

    let store = EmbeddedStore::open(dir.path(), &config()).await.unwrap();
    let mut missing = 0;
    for sid in &acked {
        if store.session(sid).await.unwrap().is_none() {
            missing += 1;
        }
    }
    assert_eq!(
        missing, 0,
        "{missing} of {CRASH_ACKS} acknowledged writes lost"
    );
}

#[tokio::test]
async fn interrupted_scrub_resumes_on_open() {
    use crate::store::embedded::tables;
    use redb::{Database, Durability};
    use std::os::unix::fs::MetadataExt;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(crate::store::embedded::FILE_NAME);
    drop(EmbeddedStore::open(dir.path(), &config()).await.unwrap());
    let secret = format!("secret-{}", random_id(IdKind::Call));

    // What a crash between the erasing commit and the rewrite leaves behind: the record
    // deleted, its bytes in a freed page, and the pending flag set.
    {
        let database = Database::create(&path).unwrap();
        let mut txn = database.begin_write().unwrap();
        txn.set_durability(Durability::Immediate).unwrap();
        txn.open_table(tables::VARIABLES)
            .unwrap()
            .insert(b"k1_x\0v".as_slice(), secret.as_bytes())
            .unwrap();
        txn.commit().unwrap();
        let mut txn = database.begin_write().unwrap();
        txn.set_durability(Durability::Immediate).unwrap();
        txn.open_table(tables::VARIABLES)
            .unwrap()
            .remove(b"k1_x\0v".as_slice())
            .unwrap();
        tables::mark_scrub_pending(&txn).unwrap();
        txn.commit().unwrap();
    }
    // redb may already have reused the freed page, so the rewrite is detected by the new inode
    // that the rename leaves, and by the cleared flag.
    let inode_before = std::fs::metadata(&path).unwrap().ino();

    let store = EmbeddedStore::open(dir.path(), &config()).await.unwrap();
    let inode_after = std::fs::metadata(&path).unwrap().ino();
    assert_ne!(inode_before, inode_after, "file was not rewritten");
    let files = files_containing(dir.path(), secret.as_bytes());
    assert!(files.is_empty(), "value found in {files:?}");
    drop(store);

    let database = Database::open(&path).unwrap();
    assert!(!crate::store::embedded::scrub_pending(&database).unwrap());
}

#[tokio::test]
async fn sweeper_task_deletes_expired() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn SessionStore> =
        Arc::new(EmbeddedStore::open(dir.path(), &config()).await.unwrap());
    let sid = format!("k1_{}", random_id(IdKind::Call));
    let long_ago = crate::store::now_ms() - 40 * crate::store::DAY_MS;
    store.touch_session(touch(&sid, long_ago)).await.unwrap();
    let variable = Variable {
        name: "s".into(),
        value: "x".into(),
        lifetime: Lifetime::Session,
        updated_at_ms: long_ago,
    };
    store.put_variable(&sid, variable).await.unwrap();

    let sweeper = crate::store::spawn_sweeper(store.clone(), Duration::from_millis(20));
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.variable(&sid, "s").await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "sweeper did not delete the variable in 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sweeper.abort();
    assert!(store.session(&sid).await.unwrap().is_some(), "session kept");
}

#[tokio::test]
async fn open_store_from_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::config::Config::parse("", "test").unwrap();
    let store = crate::store::open_store(&config.store, dir.path())
        .await
        .unwrap();
    let sid = format!("k1_{}", random_id(IdKind::Call));
    assert!(!store.touch_session(touch(&sid, 1)).await.unwrap().returning);
    assert!(dir.path().join(crate::store::embedded::FILE_NAME).exists());
}

#[tokio::test]
async fn erase_unknown_skips_rewrite() {
    use std::os::unix::fs::MetadataExt;

    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), &config()).await.unwrap();
    let inode_before = std::fs::metadata(store.path()).unwrap().ino();
    let unknown = format!("k1_{}", random_id(IdKind::Call));
    assert!(!store.erase_session(&unknown).await.unwrap());
    assert_eq!(store.purge_tenant("nobody").await.unwrap(), 0);
    let inode_after = std::fs::metadata(store.path()).unwrap().ino();
    assert_eq!(inode_before, inode_after, "file rewritten for nothing");
}

/// Returns a conversation of the tenant "default" with the given id.
fn conversation_record(conversationid: String, sessionid: &str, started: u64) -> Conversation {
    Conversation {
        conversationid,
        ..suite::conversation(sessionid, "default", started)
    }
}

/// Returns the number of rows in `table` of the database file at `path`.
fn row_count(path: &Path, table: redb::TableDefinition<&[u8], &[u8]>) -> u64 {
    use redb::{ReadableDatabase, ReadableTableMetadata};
    let database = redb::Database::open(path).unwrap();
    let txn = database.begin_read().unwrap();
    txn.open_table(table).unwrap().len().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_in_chunks_without_rewrite() {
    use crate::store::embedded::tables;
    use redb::TableHandle;
    use std::os::unix::fs::MetadataExt;

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path(), &config()).await.unwrap());
    let now = crate::store::now_ms();
    // More than two chunks of 1000, so the sweep has to resume after a chunk.
    const OLD: u64 = 2_100;
    let sessionids: Vec<String> = (0..10)
        .map(|_| format!("k1_{}", random_id(IdKind::Call)))
        .collect();
    let mut records = Vec::new();
    for i in 0..OLD {
        let started = now - 200 * DAY_MS + i * 1_000;
        let id = time_ordered_id(IdKind::Conversation, started);
        records.push(conversation_record(
            id,
            &sessionids[i as usize % 10],
            started,
        ));
    }
    let recent_started = now - 89 * DAY_MS;
    let recent: Vec<Conversation> = (0..5)
        .map(|i| {
            let id = time_ordered_id(IdKind::Conversation, recent_started);
            conversation_record(id, &sessionids[i], recent_started)
        })
        .collect();
    records.extend(recent.iter().cloned());
    // Concurrent starts, so the writer commits them in batches.
    let mut tasks = Vec::new();
    for record in records {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.start_conversation(record).await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let inode_before = std::fs::metadata(store.path()).unwrap().ino();

    let swept = store.sweep(now).await.unwrap();
    assert_eq!(
        swept,
        Swept {
            variables: 0,
            conversations: OLD,
        }
    );
    for conversation in &recent {
        let stored = store.conversation(&conversation.conversationid).await;
        assert!(stored.unwrap().is_some(), "recent conversation kept");
    }
    let inode_after = std::fs::metadata(store.path()).unwrap().ino();
    assert_eq!(inode_before, inode_after, "retention rewrote the file");

    // The index rows went with the records.
    let path = store.path().to_owned();
    drop(store);
    for table in [
        tables::CONVERSATIONS,
        tables::SESSION_CONVERSATIONS,
        tables::TENANT_CONVERSATIONS,
    ] {
        assert_eq!(row_count(&path, table), 5, "rows left in {}", table.name());
    }
}

#[tokio::test]
async fn retention_checks_id_and_start_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), &config()).await.unwrap();
    let now = crate::store::now_ms();
    let long_ago = now - 200 * DAY_MS;
    let sid = format!("k1_{}", random_id(IdKind::Call));
    // An id that does not start with its start time, like the random ids of older releases.
    let legacy = conversation_record(format!("cv{}", "f".repeat(32)), &sid, long_ago);
    let timed = conversation_record(
        time_ordered_id(IdKind::Conversation, long_ago),
        &sid,
        long_ago,
    );
    // An id in the scanned range whose record started recently: the record decides.
    let restarted = conversation_record(time_ordered_id(IdKind::Conversation, long_ago), &sid, now);
    for conversation in [&legacy, &timed, &restarted] {
        store
            .start_conversation(conversation.clone())
            .await
            .unwrap();
    }

    let swept = store.sweep(now).await.unwrap();
    assert_eq!(swept.conversations, 1);
    assert_eq!(
        store.conversation(&timed.conversationid).await.unwrap(),
        None
    );
    assert_eq!(
        store.conversation(&legacy.conversationid).await.unwrap(),
        Some(legacy)
    );
    assert_eq!(
        store.conversation(&restarted.conversationid).await.unwrap(),
        Some(restarted)
    );
}
