//! The table of calls in progress, keyed by SIP Call-ID and the edge side's From tag, so that
//! retransmissions, CANCEL, ACK and in-dialog requests get the identifiers of their call.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use super::outcome::CallIds;
use crate::message::Transport;

/// Whether the store recognised the caller, as stamped into the INVITE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returning {
    Yes,
    No,
    /// The store did not respond within its budget, or the call is anonymous.
    Unknown,
}

impl Returning {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Yes => "true",
            Self::No => "false",
            Self::Unknown => "unknown",
        }
    }
}

/// One call in progress.
#[derive(Debug)]
pub struct CallEntry {
    /// The identifiers computed for the first INVITE. After a key rotation the driver may
    /// replace the sessionid with the one the caller had under a retired key. The stamps then
    /// carry that sessionid, while `ids.sessionid` keeps the current-key value.
    pub ids: CallIds,
    /// The stamped header lines, rendered once for the first INVITE and reused.
    stamps: Box<[u8]>,
    /// The stamped header lines with the sessionid the store resolved, set at most once
    /// before the first INVITE is sent.
    rebound_stamps: OnceLock<Box<[u8]>>,
    /// The sessionid under which the call counts as active in its session. The lock orders a
    /// rebind against the end of the call, so the count moves exactly once.
    counted_session: Mutex<Arc<str>>,
    /// Identity headers to remove from every request of the call sent upstream.
    pub strip: StripHeaders,
    /// Transport and address the call's first INVITE came from.
    pub edge: (Transport, SocketAddr),
    /// The upstream the first INVITE went to. Later requests of the call go there too, also
    /// after a reload changed the configured upstream.
    pub upstream: SocketAddr,
    pub created: Instant,
    /// Set once the store responded (or timed out) for the first INVITE.
    pub returning: OnceLock<Returning>,
    /// Milliseconds after `created` at which the call ended, plus one; zero while active.
    ended: AtomicU64,
    answered: AtomicBool,
}

/// Identity headers removed before forwarding, decided once per call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StripHeaders {
    pub pai: bool,
    pub rpid: bool,
    pub ppi: bool,
}

impl CallEntry {
    pub fn new(
        ids: CallIds,
        stamps: Box<[u8]>,
        strip: StripHeaders,
        edge: (Transport, SocketAddr),
        upstream: SocketAddr,
        now: Instant,
    ) -> Self {
        Self {
            counted_session: Mutex::new(Arc::clone(&ids.sessionid)),
            ids,
            stamps,
            rebound_stamps: OnceLock::new(),
            strip,
            edge,
            upstream,
            created: now,
            returning: OnceLock::new(),
            ended: AtomicU64::new(0),
            answered: AtomicBool::new(false),
        }
    }

    /// Returns the stamped header lines of the call's requests toward the upstream.
    pub fn stamps(&self) -> &[u8] {
        self.rebound_stamps.get().unwrap_or(&self.stamps)
    }

    /// Returns the stamped header lines as rendered for the first INVITE, before any rebind.
    pub fn initial_stamps(&self) -> &[u8] {
        &self.stamps
    }

    /// Returns true once the sessionid was replaced by [`CallTable::rebind`].
    pub fn is_rebound(&self) -> bool {
        self.rebound_stamps.get().is_some()
    }

    /// Returns true once a 2xx to the INVITE passed.
    pub fn is_answered(&self) -> bool {
        self.answered.load(Ordering::Relaxed)
    }

    pub fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Relaxed) != 0
    }

    fn ended_at(&self) -> Option<Instant> {
        match self.ended.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.created + Duration::from_millis(ms - 1)),
        }
    }
}

/// Change in a call's state caused by one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Answered,
    Ended,
    Unchanged,
}

/// Errors inserting a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertError {
    Full,
}

/// Calls in progress, with a bound on their number.
#[derive(Debug)]
pub struct CallTable {
    calls: DashMap<Box<[u8]>, Arc<CallEntry>>,
    /// Active calls per sessionid, so a new call can tell whether others of its session run.
    per_session: DashMap<Arc<str>, usize>,
    active: AtomicUsize,
    limits: CallLimits,
}

/// The size of the call table and how long each call stays in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    pub max_entries: usize,
    /// Time an ended call stays, for retransmissions and the ACK.
    pub grace: Duration,
    /// Time a call may go without a 2xx to its INVITE, like Timer C of RFC 3261.
    pub setup: Duration,
    /// Time after which any call leaves.
    pub max_age: Duration,
}

impl CallLimits {
    pub fn from_config(config: &crate::config::CallsConfig) -> Self {
        Self {
            max_entries: config.max_active,
            grace: Duration::from_secs(config.grace_secs),
            setup: Duration::from_secs(config.setup_timeout_secs),
            max_age: Duration::from_secs(config.max_age_secs),
        }
    }
}

impl CallTable {
    pub fn new(limits: CallLimits) -> Self {
        Self {
            calls: DashMap::new(),
            per_session: DashMap::new(),
            active: AtomicUsize::new(0),
            limits,
        }
    }

    /// Builds the lookup key `Call-ID NUL tag` into `key`.
    pub fn key_into(key: &mut Vec<u8>, call_id: &[u8], tag: &[u8]) {
        key.clear();
        key.extend_from_slice(call_id);
        key.push(0);
        key.extend_from_slice(tag);
    }

    pub fn get(&self, key: &[u8]) -> Option<Arc<CallEntry>> {
        self.calls.get(key).map(|e| Arc::clone(e.value()))
    }

    /// Inserts a new call unless one with the key exists; returns the call in the table and
    /// whether it is the one passed in.
    pub fn insert(
        &self,
        key: &[u8],
        entry: CallEntry,
    ) -> Result<(Arc<CallEntry>, bool), InsertError> {
        if self.calls.len() >= self.limits.max_entries {
            return Err(InsertError::Full);
        }
        let mut inserted = false;
        let stored = self
            .calls
            .entry(key.into())
            .or_insert_with(|| {
                inserted = true;
                Arc::new(entry)
            })
            .value()
            .clone();
        if inserted {
            self.active.fetch_add(1, Ordering::Relaxed);
            *self
                .per_session
                .entry(Arc::clone(&stored.ids.sessionid))
                .or_insert(0) += 1;
        }
        Ok((stored, inserted))
    }

    /// Records a final 2xx to the call's INVITE.
    pub fn answer(&self, entry: &CallEntry) -> Transition {
        if entry.is_ended() || entry.answered.swap(true, Ordering::Relaxed) {
            Transition::Unchanged
        } else {
            Transition::Answered
        }
    }

    /// Marks the call ended (BYE, or a failed final response); it stays for the grace period.
    pub fn end(&self, entry: &CallEntry, now: Instant) -> Transition {
        let ms = now.saturating_duration_since(entry.created).as_millis() as u64 + 1;
        if entry
            .ended
            .compare_exchange(0, ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.release(entry);
            Transition::Ended
        } else {
            Transition::Unchanged
        }
    }

    fn release(&self, entry: &CallEntry) {
        self.active.fetch_sub(1, Ordering::Relaxed);
        let counted = entry
            .counted_session
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.decrement_session(&counted);
    }

    fn decrement_session(&self, sessionid: &Arc<str>) {
        if let dashmap::Entry::Occupied(mut count) = self.per_session.entry(Arc::clone(sessionid)) {
            *count.get_mut() -= 1;
            if *count.get() == 0 {
                count.remove();
            }
        }
    }

    /// Moves a call to another sessionid: its later requests carry `stamps`, and it counts as
    /// active in the session of `sessionid` instead of the old one. Only the first rebind of
    /// a call takes effect; returns whether this one did. A call that already ended keeps
    /// the count where it was, because its end released the old sessionid.
    pub fn rebind(&self, entry: &CallEntry, sessionid: Arc<str>, stamps: Box<[u8]>) -> bool {
        let mut counted = entry
            .counted_session
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if entry.rebound_stamps.set(stamps).is_err() {
            return false;
        }
        if !entry.is_ended() && *counted != sessionid {
            *self.per_session.entry(Arc::clone(&sessionid)).or_insert(0) += 1;
            self.decrement_session(&counted);
            *counted = sessionid;
        }
        true
    }

    /// Returns how many calls of a session are active.
    pub fn active_in_session(&self, sessionid: &str) -> usize {
        self.per_session.get(sessionid).map_or(0, |c| *c)
    }

    /// Calls that have not ended.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Calls in the table, including ended ones in their grace period.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Removes calls whose grace period has passed, calls that went unanswered for the setup
    /// time, and calls that exceeded the maximum age.
    pub fn sweep(&self, now: Instant) -> Sweep {
        let mut sweep = Sweep::default();
        self.calls.retain(|_, entry| {
            let (expired, unanswered) = match entry.ended_at() {
                Some(ended) => (
                    now.saturating_duration_since(ended) >= self.limits.grace,
                    false,
                ),
                None => {
                    let age = now.saturating_duration_since(entry.created);
                    if entry.answered.load(Ordering::Relaxed) {
                        // NOTE: an answered call removed here keeps no end time in its
                        // conversation, because the proxy cannot tell whether it still runs.
                        (age >= self.limits.max_age, false)
                    } else {
                        let expired = age >= self.limits.setup.min(self.limits.max_age);
                        (expired, expired)
                    }
                }
            };
            if expired {
                if !entry.is_ended() {
                    self.release(entry);
                }
                if unanswered {
                    sweep.unanswered.push(Arc::clone(&entry.ids.conversationid));
                }
                sweep.removed += 1;
            }
            !expired
        });
        sweep
    }
}

/// The calls one [`CallTable::sweep`] removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    pub removed: usize,
    /// Conversation ids of the calls removed because no 2xx came within the setup time.
    pub unanswered: Vec<Arc<str>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Assurance, IdentitySource};

    fn ids(sessionid: &str) -> CallIds {
        CallIds {
            callid: "ca1".into(),
            sessionid: sessionid.into(),
            conversationid: "cv1".into(),
            anonymous: false,
            source: IdentitySource::From,
            assurance: Assurance::Low,
            instance_id: "default".into(),
            tenant: "default".into(),
            key_id: "k1".into(),
        }
    }

    /// Creates a table of `max_entries` calls with a grace of 32 s, a setup time of 180 s and a
    /// maximum age of one hour.
    fn table(max_entries: usize) -> CallTable {
        CallTable::new(CallLimits {
            max_entries,
            grace: Duration::from_secs(32),
            setup: Duration::from_secs(180),
            max_age: Duration::from_secs(3600),
        })
    }

    fn entry(sessionid: &str, now: Instant) -> CallEntry {
        CallEntry::new(
            ids(sessionid),
            Box::default(),
            StripHeaders::default(),
            (Transport::Udp, "127.0.0.1:5070".parse().unwrap()),
            "127.0.0.1:5090".parse().unwrap(),
            now,
        )
    }

    #[test]
    fn insert_is_idempotent_per_key() {
        let table = table(10);
        let now = Instant::now();
        let (first, inserted) = table.insert(b"a\0t", entry("s1", now)).unwrap();
        assert!(inserted);
        let (second, inserted) = table.insert(b"a\0t", entry("s2", now)).unwrap();
        assert!(!inserted);
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(table.active(), 1);
        assert_eq!(table.active_in_session("s1"), 1);
    }

    #[test]
    fn full_table_rejects() {
        let table = table(1);
        let now = Instant::now();
        table.insert(b"a", entry("s1", now)).unwrap();
        assert_eq!(
            table.insert(b"b", entry("s1", now)).unwrap_err(),
            InsertError::Full
        );
    }

    #[test]
    fn ended_calls_leave_after_grace() {
        let table = table(10);
        let now = Instant::now();
        let (call, _) = table.insert(b"a", entry("s1", now)).unwrap();
        table.insert(b"b", entry("s1", now)).unwrap();
        assert_eq!(table.active_in_session("s1"), 2);
        assert_eq!(
            table.end(&call, now + Duration::from_secs(1)),
            Transition::Ended
        );
        assert_eq!(
            table.end(&call, now + Duration::from_secs(2)),
            Transition::Unchanged
        );
        assert_eq!(table.active(), 1);
        assert_eq!(table.active_in_session("s1"), 1);
        assert_eq!(table.sweep(now + Duration::from_secs(20)).removed, 0);
        assert_eq!(table.sweep(now + Duration::from_secs(34)).removed, 1);
        assert!(table.get(b"a").is_none());
        assert!(table.get(b"b").is_some());
    }

    #[test]
    fn unanswered_calls_leave_after_setup_time() {
        let table = table(10);
        let now = Instant::now();
        table.insert(b"ringing", entry("s1", now)).unwrap();
        let (answered, _) = table.insert(b"answered", entry("s1", now)).unwrap();
        table.answer(&answered);
        assert_eq!(table.sweep(now + Duration::from_secs(179)).removed, 0);
        let sweep = table.sweep(now + Duration::from_secs(180));
        assert_eq!(sweep.removed, 1);
        assert_eq!(sweep.unanswered, vec![Arc::<str>::from("cv1")]);
        assert!(table.get(b"ringing").is_none());
        assert!(table.get(b"answered").is_some());
        assert_eq!(table.active(), 1);
        assert_eq!(table.active_in_session("s1"), 1);
    }

    #[test]
    fn max_age_removes_active_calls() {
        let table = table(10);
        let now = Instant::now();
        let (call, _) = table.insert(b"a", entry("s1", now)).unwrap();
        table.answer(&call);
        assert_eq!(table.sweep(now + Duration::from_secs(3599)).removed, 0);
        let sweep = table.sweep(now + Duration::from_secs(3601));
        assert_eq!(sweep.removed, 1);
        assert!(
            sweep.unanswered.is_empty(),
            "an answered call is not unanswered"
        );
        assert_eq!(table.active(), 0);
        assert_eq!(table.active_in_session("s1"), 0);
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn answer_once() {
        let table = table(10);
        let now = Instant::now();
        let (call, _) = table.insert(b"a", entry("s1", now)).unwrap();
        assert_eq!(table.answer(&call), Transition::Answered);
        assert_eq!(table.answer(&call), Transition::Unchanged);
    }
}
