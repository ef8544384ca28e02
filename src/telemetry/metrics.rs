//! Prometheus metrics of the proxy, on a registry of their own.
//!
//! Every labelled handle is created in [`Metrics::new`] and kept in arrays indexed by the label
//! enums of [`super::labels`], so recording a message costs a few atomic increments and never
//! looks up a label. Values that other layers keep in their own atomics (active calls, TCP
//! connections, framing errors) are read through [`ScrapeSources`] when the registry is
//! rendered.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use super::labels::{
    drop_reason_index, identity_source_index, method_index, reply_class_index, reply_reason_index,
    returning_index, status_class_index, store_error_index, transport_index, Returning, StoreOp,
    BOOLEANS, DROP_REASONS, IDENTITY_SOURCES, MESSAGE_KINDS, METHODS, REPLY_CLASSES, REPLY_REASONS,
    RETURNING, STATUS_CLASSES, STORE_ERRORS, STORE_OPS, TRANSPORTS,
};
use crate::message::Transport;
use crate::proxy::{CallIds, MessageKind, Outcome};
use crate::store::{StoreBackend, StoreResult};

/// Upper bounds, in seconds, of the buckets for the time a message spends inside sipstamp:
/// 5 µs to 250 ms. A forwarded request normally takes microseconds, and a new INVITE that waits
/// on the store falls in the millisecond buckets.
const MESSAGE_BUCKETS: [f64; 15] = [
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25,
];

/// Upper bounds, in seconds, of the buckets for store operations: 50 µs (an embedded read) to
/// 2.5 s (an admin purge on Redis).
const STORE_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    2.5,
];

const METHOD_COUNT: usize = METHODS.len();
const TRANSPORT_COUNT: usize = TRANSPORTS.len();
const CLASS_COUNT: usize = STATUS_CLASSES.len();
const OP_COUNT: usize = STORE_OPS.len();

/// A value read when the metrics are rendered.
pub type ScrapeReader = Box<dyn Fn() -> u64 + Send + Sync>;

/// Counts read when the metrics are rendered, each with its label value from a fixed list.
pub type LabelledScrapeReader = Box<dyn Fn() -> Vec<(&'static str, u64)> + Send + Sync>;

/// Readers of values that other layers count in their own atomics.
pub struct ScrapeSources {
    /// Calls in the active-call table.
    pub active_calls: ScrapeReader,
    /// TCP connections open now, both directions.
    pub tcp_connections: ScrapeReader,
    /// TCP streams closed because their framing was invalid, since start-up.
    pub tcp_framing_errors: ScrapeReader,
    /// Messages the transport could not send since start-up, by reason.
    pub send_errors: LabelledScrapeReader,
}

impl Default for ScrapeSources {
    /// Sources that always read 0, for tests and for a process without those layers.
    fn default() -> Self {
        Self {
            active_calls: Box::new(|| 0),
            tcp_connections: Box::new(|| 0),
            tcp_framing_errors: Box::new(|| 0),
            send_errors: Box::new(Vec::new),
        }
    }
}

/// Every metric of the process. Build one at start-up and share it as `Arc<Metrics>`.
pub struct Metrics {
    registry: Registry,
    requests_received: [[IntCounter; TRANSPORT_COUNT]; METHOD_COUNT],
    requests_forwarded: [[IntCounter; TRANSPORT_COUNT]; METHOD_COUNT],
    responses_received: [[IntCounter; TRANSPORT_COUNT]; CLASS_COUNT],
    responses_relayed: [[IntCounter; TRANSPORT_COUNT]; CLASS_COUNT],
    requests_rejected: [[IntCounter; REPLY_REASONS.len()]; REPLY_CLASSES.len()],
    messages_dropped: [[IntCounter; TRANSPORT_COUNT]; DROP_REASONS.len()],
    calls_started: [[IntCounter; BOOLEANS.len()]; IDENTITY_SOURCES.len()],
    calls_returning: [IntCounter; RETURNING.len()],
    store_operations: [IntCounter; OP_COUNT],
    store_errors: [[IntCounter; STORE_ERRORS.len()]; OP_COUNT],
    store_duration: [Histogram; OP_COUNT],
    store_writes_dropped: IntCounter,
    message_duration: [Histogram; MESSAGE_KINDS.len()],
    active_calls: IntGauge,
    tcp_connections: IntGauge,
    tcp_framing_errors: IntCounter,
    send_errors: IntCounterVec,
    sources: ScrapeSources,
    /// Serialises renders, so two scrapes at once cannot both add the same framing errors.
    render_lock: Mutex<()>,
}

impl Metrics {
    /// Creates and registers every metric. `store_backend` is the value of the `backend`
    /// label of the store metrics. Fails only on an invalid or duplicate metric name, which is
    /// a bug.
    pub fn new(
        store_backend: StoreBackend,
        sources: ScrapeSources,
    ) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let r = &registry;
        let backend = backend_label(store_backend);

        let requests_received = counter_vec(
            r,
            "sipstamp_requests_received_total",
            "SIP requests received and scanned, by method and transport.",
            &["method", "transport"],
        )?;
        let requests_forwarded = counter_vec(
            r,
            "sipstamp_requests_forwarded_total",
            "SIP requests sent on, by method and outgoing transport.",
            &["method", "transport"],
        )?;
        let responses_received = counter_vec(
            r,
            "sipstamp_responses_received_total",
            "SIP responses received and scanned, by status class and transport.",
            &["status_class", "transport"],
        )?;
        let responses_relayed = counter_vec(
            r,
            "sipstamp_responses_relayed_total",
            "SIP responses sent on, by status class and outgoing transport.",
            &["status_class", "transport"],
        )?;
        let requests_rejected = counter_vec(
            r,
            "sipstamp_requests_rejected_total",
            "Requests answered by sipstamp itself instead of being forwarded, by status class and cause.",
            &["status_class", "reason"],
        )?;
        let messages_dropped = counter_vec(
            r,
            "sipstamp_messages_dropped_total",
            "Messages dropped without an answer, by cause and incoming transport.",
            &["reason", "transport"],
        )?;
        let calls_started = counter_vec(
            r,
            "sipstamp_calls_started_total",
            "New calls stamped, by the header the callerid came from and whether the call is anonymous.",
            &["identity_source", "anonymous"],
        )?;
        let calls_returning = counter_vec(
            r,
            "sipstamp_calls_returning_total",
            "New calls by whether the caller's session existed before (unknown: anonymous, or the store did not answer).",
            &["returning"],
        )?;
        let store_operations = counter_vec(
            r,
            "sipstamp_store_operations_total",
            "Session store operations finished, successful or not.",
            &["backend", "operation"],
        )?;
        let store_errors = counter_vec(
            r,
            "sipstamp_store_errors_total",
            "Session store operations that failed, by kind of failure.",
            &["backend", "operation", "error"],
        )?;
        let store_duration = histogram_vec(
            r,
            "sipstamp_store_operation_duration_seconds",
            "Time a session store operation took, failures included.",
            &["backend", "operation"],
            &STORE_BUCKETS,
        )?;
        let store_writes_dropped = counter_vec(
            r,
            "sipstamp_store_writes_dropped_total",
            "Store writes (conversation records, retried session updates) dropped because the write queue was full.",
            &["backend"],
        )?;
        let message_duration = histogram_vec(
            r,
            "sipstamp_message_duration_seconds",
            "Time from receiving a message to handing the message or sipstamp's reply to the socket.",
            &["kind"],
            &MESSAGE_BUCKETS,
        )?;

        let active_calls = gauge(
            r,
            "sipstamp_active_calls",
            "Calls in the active-call table.",
        )?;
        let tcp_connections = gauge(r, "sipstamp_tcp_connections", "TCP connections open now.")?;
        let tcp_framing_errors = IntCounter::new(
            "sipstamp_tcp_framing_errors_total",
            "TCP streams closed because a message in them could not be framed.",
        )?;
        r.register(Box::new(tcp_framing_errors.clone()))?;
        let send_errors = counter_vec(
            r,
            "sipstamp_send_errors_total",
            "Messages the proxy could not send, by reason.",
            &["reason"],
        )?;
        let start_time = gauge(
            r,
            "sipstamp_start_time_seconds",
            "Start time of the process, in seconds since the Unix epoch.",
        )?;
        start_time.set(unix_seconds());

        Ok(Self {
            requests_received: grid(|m, t| {
                requests_received.with_label_values(&[METHODS[m], TRANSPORTS[t]])
            }),
            requests_forwarded: grid(|m, t| {
                requests_forwarded.with_label_values(&[METHODS[m], TRANSPORTS[t]])
            }),
            responses_received: grid(|c, t| {
                responses_received.with_label_values(&[STATUS_CLASSES[c], TRANSPORTS[t]])
            }),
            responses_relayed: grid(|c, t| {
                responses_relayed.with_label_values(&[STATUS_CLASSES[c], TRANSPORTS[t]])
            }),
            requests_rejected: grid(|c, reason| {
                requests_rejected.with_label_values(&[REPLY_CLASSES[c], REPLY_REASONS[reason]])
            }),
            messages_dropped: grid(|reason, t| {
                messages_dropped.with_label_values(&[DROP_REASONS[reason], TRANSPORTS[t]])
            }),
            calls_started: grid(|s, a| {
                calls_started.with_label_values(&[IDENTITY_SOURCES[s], BOOLEANS[a]])
            }),
            calls_returning: std::array::from_fn(|i| {
                calls_returning.with_label_values(&[RETURNING[i]])
            }),
            store_operations: std::array::from_fn(|op| {
                store_operations.with_label_values(&[backend, STORE_OPS[op]])
            }),
            store_errors: grid(|op, e| {
                store_errors.with_label_values(&[backend, STORE_OPS[op], STORE_ERRORS[e]])
            }),
            store_duration: std::array::from_fn(|op| {
                store_duration.with_label_values(&[backend, STORE_OPS[op]])
            }),
            store_writes_dropped: store_writes_dropped.with_label_values(&[backend]),
            message_duration: std::array::from_fn(|k| {
                message_duration.with_label_values(&[MESSAGE_KINDS[k]])
            }),
            active_calls,
            tcp_connections,
            tcp_framing_errors,
            send_errors,
            sources,
            render_lock: Mutex::new(()),
            registry,
        })
    }

    /// Counts a message that scanned as a request or a response. Call it before the core
    /// decides, so messages that are later rejected or dropped are counted too.
    pub fn received(&self, kind: MessageKind, transport: Transport) {
        let t = transport_index(transport);
        match kind {
            MessageKind::Request(method) => self.requests_received[method_index(method)][t].inc(),
            MessageKind::Response(status) => {
                self.responses_received[status_class_index(status)][t].inc()
            }
        }
    }

    /// Counts the core's decision for one message and, unless it was dropped, the time since
    /// the message was received. Call it after the bytes were handed to the socket.
    ///
    /// A new call is not counted here: call [`Metrics::call_started`] once the session is known.
    pub fn observe(&self, outcome: &Outcome, inbound: Transport, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        match outcome {
            Outcome::Forward {
                transport, kind, ..
            } => {
                let t = transport_index(*transport);
                match kind {
                    MessageKind::Request(method) => {
                        self.requests_forwarded[method_index(*method)][t].inc();
                        self.message_duration[0].observe(seconds);
                    }
                    MessageKind::Response(status) => {
                        self.responses_relayed[status_class_index(*status)][t].inc();
                        self.message_duration[1].observe(seconds);
                    }
                }
            }
            Outcome::Reply { status, reason, .. } => {
                self.requests_rejected[reply_class_index(*status)][reply_reason_index(reason)]
                    .inc();
                self.message_duration[2].observe(seconds);
            }
            Outcome::Drop { reason } => {
                self.messages_dropped[drop_reason_index(*reason)][transport_index(inbound)].inc();
            }
        }
    }

    /// Counts a new call by identity source and anonymity.
    pub fn call_started(&self, call: &CallIds) {
        let source = identity_source_index(call.source);
        self.calls_started[source][usize::from(call.anonymous)].inc();
    }

    /// Counts whether the caller of a new call had a session before it.
    pub fn returning(&self, returning: Returning) {
        self.calls_returning[returning_index(returning)].inc();
    }

    /// Counts one finished store operation and its duration. `Invalid` and `NotFound` results
    /// count as completed operations, not as errors.
    pub fn store_op<T>(&self, op: StoreOp, elapsed: Duration, result: &StoreResult<T>) {
        let i = op as usize;
        self.store_operations[i].inc();
        self.store_duration[i].observe(elapsed.as_secs_f64());
        if let Err(error) = result {
            if let Some(kind) = store_error_index(error) {
                self.store_errors[i][kind].inc();
            }
        }
    }

    /// Counts a store write dropped because the write queue was full.
    pub fn store_write_dropped(&self) {
        self.store_writes_dropped.inc();
    }

    /// Runs one store operation and records it with [`Metrics::store_op`].
    pub async fn timed_store_op<T>(
        &self,
        op: StoreOp,
        operation: impl std::future::Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        let started = std::time::Instant::now();
        let result = operation.await;
        self.store_op(op, started.elapsed(), &result);
        result
    }

    /// Renders every metric in the Prometheus text format, version 0.0.4.
    pub fn render(&self) -> String {
        let _serialised = self
            .render_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.active_calls
            .set(saturate((self.sources.active_calls)()));
        self.tcp_connections
            .set(saturate((self.sources.tcp_connections)()));
        // The counter only moves forward: a source that went down (a restarted transport)
        // leaves the counter where it was.
        let framing_errors = (self.sources.tcp_framing_errors)();
        let counted = self.tcp_framing_errors.get();
        if framing_errors > counted {
            self.tcp_framing_errors.inc_by(framing_errors - counted);
        }
        for (reason, total) in (self.sources.send_errors)() {
            let counter = self.send_errors.with_label_values(&[reason]);
            let counted = counter.get();
            if total > counted {
                counter.inc_by(total - counted);
            }
        }

        let mut out = String::with_capacity(64 * 1024);
        if let Err(error) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out) {
            tracing::error!(%error, "rendering the metrics failed; the scrape is incomplete");
        }
        out
    }
}

/// Returns the `backend` label value of a store backend.
pub fn backend_label(backend: StoreBackend) -> &'static str {
    match backend {
        StoreBackend::Embedded => "embedded",
        StoreBackend::Redis => "redis",
        StoreBackend::RedisCluster => "redis-cluster",
    }
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    let vec = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(vec.clone()))?;
    Ok(vec)
}

fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> Result<HistogramVec, prometheus::Error> {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    let vec = HistogramVec::new(opts, labels)?;
    registry.register(Box::new(vec.clone()))?;
    Ok(vec)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
    let gauge = IntGauge::new(name, help)?;
    registry.register(Box::new(gauge.clone()))?;
    Ok(gauge)
}

/// Builds a two-dimensional array of handles; `make(row, column)` creates one.
fn grid<T, const R: usize, const C: usize>(mut make: impl FnMut(usize, usize) -> T) -> [[T; C]; R] {
    std::array::from_fn(|row| std::array::from_fn(|column| make(row, column)))
}

fn saturate(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| saturate(d.as_secs()))
        .unwrap_or(0)
}
