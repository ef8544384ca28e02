//! `sipstamp run`: wires configuration, keys, store, proxy core, transports and the admin
//! listener together, and runs until SIGTERM or SIGINT. Signal handling, reload and drain are
//! in `lifecycle`.

mod lifecycle;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Semaphore};
use tracing::{debug, error, info, info_span, warn, Instrument};

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

use crate::admin::{self, AdminState, OpsState, Readiness};
use crate::cli::LogFormatArg;
use crate::config::Config;
use crate::identity::TrustMap;
use crate::message::Method;
use crate::message::Transport;
use crate::proxy::MessageKind;
use crate::proxy::{
    CallEvent, CallEventKind, Core, DropReason, Inbound, NewCall, Outcome, Returning, Scratch,
};
use crate::pseudonym::KeyRing;
use crate::store::{self, SessionStore, SessionTouch, StoreError};
use crate::telemetry::{Metrics, RateLimiter, ScrapeSources, StoreOp, Verdict};
use crate::transport::{
    FramingError, Listeners, MessageHandler, SendErrorKind, Sender, TransportStats,
};

mod sessions;
mod store_jobs;

use store_jobs::{conversation_start, store_writer, touch_job, StoreJob, StoreQueue, StoreWarning};

/// Most store writes (conversation records and retried session updates) queued at once.
const STORE_QUEUE: usize = 65_536;
/// Most new calls waiting for the store at once; beyond it calls go on with an unknown
/// returning-caller value instead of waiting.
const MAX_PENDING_TOUCHES: usize = 8_192;

/// One warning per rate-limited source and interval; the rest are counted in the next one.
const FLOOD_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Most sources whose rate-limit warnings are tracked at once.
const FLOOD_LOG_SOURCES: usize = 1_024;

pub fn run(config_path: Option<&Path>, log_format: Option<LogFormatArg>) -> ExitCode {
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let format = log_format.map(|f| match f {
        LogFormatArg::Text => crate::config::LogFormat::Text,
        LogFormatArg::Json => crate::config::LogFormat::Json,
    });
    if let Err(error) = crate::telemetry::logging::init(&config.log, format) {
        eprintln!("cannot set up logging: {error}");
        return ExitCode::FAILURE;
    }
    let origin = config_path.map_or("(embedded default)".to_owned(), |p| p.display().to_string());
    info!(config = %origin, "sipstamp starting");

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sipstamp-rt")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config, config_path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error!(%error, "sipstamp stopped with an error");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    config: Config,
    config_path: Option<&Path>,
) -> Result<(), Box<dyn std::error::Error>> {
    let signals = lifecycle::Signals::install()?;
    crate::identity::warm_up();
    let (keys, created) = KeyRing::load_or_create(&config)?;
    for tenant in created {
        let path = config
            .tenants
            .iter()
            .find(|t| t.name == tenant)
            .map(|t| crate::pseudonym::generated_key_path(t, &config.data_dir));
        warn!(
            tenant = %tenant,
            key_file = %path.unwrap_or_default().display(),
            "no secret key configured: created a random one; back the file up, or sessionids change when it is lost"
        );
    }

    let store = store::open_store(&config.store, &config.data_dir).await?;
    info!(
        backend = crate::telemetry::backend_label(config.store.backend),
        "session store open"
    );
    let sweeper = store::spawn_sweeper(Arc::clone(&store), Duration::from_secs(3600));

    let core = Arc::new(Core::new(&config, keys, TrustMap::from_config(&config)));
    let transport_stats: Arc<OnceLock<Arc<TransportStats>>> = Arc::new(OnceLock::new());
    let metrics = Arc::new(Metrics::new(
        config.store.backend,
        scrape_sources(Arc::clone(&core), Arc::clone(&transport_stats)),
    )?);
    let readiness = Arc::new(Readiness::new(Arc::clone(&store)));

    let (jobs, job_rx) = mpsc::channel(STORE_QUEUE);
    let writer = tokio::spawn(store_writer(
        Arc::clone(&store),
        Arc::clone(&metrics),
        job_rx,
    ));
    let driver = Arc::new(Driver {
        core: Arc::clone(&core),
        store: Arc::clone(&store),
        metrics: Arc::clone(&metrics),
        runtime: tokio::runtime::Handle::current(),
        budget: Duration::from_millis(config.store.op_budget_ms),
        pending: Arc::new(Semaphore::new(MAX_PENDING_TOUCHES)),
        jobs: StoreQueue::new(jobs, Arc::clone(&metrics)),
        flood_log: RateLimiter::new(FLOOD_LOG_INTERVAL, FLOOD_LOG_SOURCES),
        send_log: Arc::new(RateLimiter::new(
            FLOOD_LOG_INTERVAL,
            SendErrorKind::ALL.len(),
        )),
    });
    let listeners = Listeners::start(&config, Arc::clone(&driver) as Arc<dyn MessageHandler>)?;
    let _ = transport_stats.set(listeners.stats());
    readiness.set_listeners_bound(true);

    let ticker_core = Arc::clone(&core);
    let ticker_driver = Arc::clone(&driver);
    let ticker = tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        loop {
            interval.tick().await;
            let sweep = ticker_core.tick(Instant::now());
            if sweep.removed > 0 {
                debug!(
                    removed = sweep.removed,
                    unanswered = sweep.unanswered.len(),
                    "call table swept"
                );
            }
            ticker_driver.end_unanswered(sweep.unanswered);
        }
    });

    let ops = OpsState {
        metrics: Arc::clone(&metrics),
        readiness: Arc::clone(&readiness),
    };
    let admin = start_admin(&config, Arc::clone(&store), Arc::clone(&core), ops).await?;

    lifecycle::Lifecycle {
        core: Arc::clone(&core),
        readiness: Arc::clone(&readiness),
        config_path: config_path.map(Path::to_path_buf),
        drain_timeout: Duration::from_secs(config.lifecycle.drain_timeout_secs),
        started: config,
    }
    .run(signals)
    .await;
    info!("shutting down");
    admin.abort();
    ticker.abort();
    sweeper.abort();
    tokio::task::spawn_blocking(move || listeners.shutdown()).await?;
    // The store writer stops once every handle to its queue is gone: the listeners' driver,
    // this one and the ticker's, which the abort above releases once the task ends.
    drop(driver);
    let _ = ticker.await;
    lifecycle::flush_store_writes(writer).await;
    info!("sipstamp stopped");
    Ok(())
}

async fn start_admin(
    config: &Config,
    store: Arc<dyn SessionStore>,
    core: Arc<Core>,
    ops: OpsState,
) -> Result<tokio::task::JoinHandle<()>, Box<dyn std::error::Error>> {
    let (token, token_path) = match &config.admin.token_file {
        Some(path) => (admin::AdminToken::read_file(path)?, path.clone()),
        None => admin::load_or_create_admin_token(&config.data_dir)?,
    };
    info!(token_file = %token_path.display(), "admin API token file");
    let router = admin::ops_routes(ops).merge(admin::session_routes(AdminState {
        store,
        lookup: Arc::new(admin::CoreLookup::new(core)),
        token,
    }));
    let listener = admin::bind(config.admin.listen).await?;
    info!(addr = %listener.local_addr()?, "admin listener started");
    Ok(tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            error!(%error, "admin listener failed");
        }
    }))
}

/// Builds the readers that metrics call at scrape time for values other layers keep.
fn scrape_sources(core: Arc<Core>, stats: Arc<OnceLock<Arc<TransportStats>>>) -> ScrapeSources {
    let connections = Arc::clone(&stats);
    let framing = Arc::clone(&stats);
    ScrapeSources {
        active_calls: Box::new(move || core.active_calls() as u64),
        tcp_connections: Box::new(move || {
            connections.get().map_or(0, |s| {
                s.tcp_connections.load(std::sync::atomic::Ordering::Relaxed)
            })
        }),
        tcp_framing_errors: Box::new(move || {
            framing.get().map_or(0, |s| {
                FramingError::ALL
                    .iter()
                    .map(|reason| s.framing_errors(*reason))
                    .sum()
            })
        }),
        send_errors: Box::new(move || {
            stats.get().map_or_else(Vec::new, |s| {
                SendErrorKind::ALL
                    .iter()
                    .map(|kind| (kind.as_str(), s.send_errors(*kind)))
                    .collect()
            })
        }),
    }
}

/// Connects the transports to the core and the store.
struct Driver {
    core: Arc<Core>,
    store: Arc<dyn SessionStore>,
    metrics: Arc<Metrics>,
    runtime: tokio::runtime::Handle,
    budget: Duration,
    pending: Arc<Semaphore>,
    jobs: StoreQueue,
    /// Logs a rate-limited source at most once per interval.
    flood_log: RateLimiter<IpAddr>,
    /// Logs each kind of send failure at most once per interval.
    send_log: Arc<RateLimiter<SendErrorKind>>,
}

impl MessageHandler for Driver {
    fn on_message(&self, inbound: Inbound<'_>, scratch: &mut Scratch, sender: &Sender) {
        let received = Instant::now();
        if let Some(kind) = peek_kind(inbound.bytes) {
            self.metrics.received(kind, inbound.transport);
        }
        let outcome = self.core.handle(inbound, scratch);
        match &outcome {
            Outcome::Forward {
                transport,
                dest,
                new_call: Some(new_call),
                ..
            } => {
                self.metrics.call_started(&new_call.ids);
                let out = std::mem::take(&mut scratch.out);
                self.start_call(new_call, *transport, *dest, out, sender, received);
                return;
            }
            Outcome::Forward {
                transport,
                dest,
                event,
                ..
            } => {
                self.send(sender, *transport, *dest, &scratch.out);
                if let Some(event) = event {
                    self.queue(StoreJob::Event(event.clone(), store::now_ms()));
                }
            }
            Outcome::Reply {
                transport,
                dest,
                status,
                reason,
                ..
            } => {
                if *reason == "rate_limited" {
                    self.log_rate_limited(inbound.source.ip(), received);
                }
                debug!(source = %inbound.source, status, reason, "request rejected by the proxy");
                self.send(sender, *transport, *dest, &scratch.out);
            }
            Outcome::Drop { reason } => {
                if *reason == DropReason::RateLimited {
                    self.log_rate_limited(inbound.source.ip(), received);
                }
                debug!(source = %inbound.source, reason = reason.as_str(), bytes = inbound.bytes.len(), "message dropped");
            }
        }
        self.metrics
            .observe(&outcome, inbound.transport, received.elapsed());
    }
}

/// Classifies a message by its first bytes for the received counters, without scanning it.
fn peek_kind(bytes: &[u8]) -> Option<MessageKind> {
    if let Some(rest) = bytes.strip_prefix(b"SIP/2.0 ") {
        let code = rest.get(..3)?;
        let status = std::str::from_utf8(code).ok()?.parse().ok()?;
        return Some(MessageKind::Response(status));
    }
    let end = memchr::memchr(b' ', bytes)?;
    Some(MessageKind::Request(Method::classify(&bytes[..end])))
}

impl Driver {
    fn log_rate_limited(&self, source: IpAddr, now: Instant) {
        if let Verdict::Log { suppressed } = self.flood_log.check(source, now) {
            warn!(%source, suppressed, "source over its request rate limit, requests rejected or dropped");
        }
    }

    /// Registers a new call with the store within the time budget, stamps whether the caller
    /// returns and sends the INVITE. Anonymous calls create no session.
    fn start_call(
        &self,
        new_call: &NewCall,
        transport: Transport,
        dest: SocketAddr,
        mut out: Vec<u8>,
        sender: &Sender,
        received: Instant,
    ) {
        let ids = new_call.ids.clone();
        let outcome_kind = MessageKind::Request(Method::Invite);
        let now = store::now_ms();
        // Sends the INVITE at once, without waiting for the store.
        let send_now = |out: &mut Vec<u8>, returning: Returning| {
            self.core.finish_new_call(new_call, out, returning);
            self.metrics.returning(returning);
            self.send(sender, transport, dest, out);
            self.metrics.observe(
                &forwarded(transport, dest, outcome_kind),
                transport,
                received.elapsed(),
            );
        };
        if ids.anonymous {
            self.queue(conversation_start(&ids, &ids.sessionid, now));
            send_now(&mut out, Returning::No);
            return;
        }
        let Ok(permit) = Arc::clone(&self.pending).try_acquire_owned() else {
            self.jobs.warn(StoreWarning::TooManyWaiting, None);
            self.queue(conversation_start(&ids, &ids.sessionid, now));
            self.queue(touch_job(new_call, now));
            send_now(&mut out, Returning::Unknown);
            return;
        };
        let core = Arc::clone(&self.core);
        let store = Arc::clone(&self.store);
        let metrics = Arc::clone(&self.metrics);
        let new_call = new_call.clone();
        let jobs = self.jobs.clone();
        let sender = sender.clone();
        let send_log = Arc::clone(&self.send_log);
        let budget = self.budget;
        let span = info_span!("call", callid = %ids.callid, sessionid = %ids.sessionid, conversationid = %ids.conversationid);
        self.runtime.spawn(
            async move {
                let _permit = permit;
                // The sessionid the call ends up with: the current-key one unless the store
                // keeps the caller under a retired key's sessionid.
                let mut sessionid = Arc::clone(&ids.sessionid);
                let resolved_and_touched = async {
                    sessionid = sessions::resolve_sessionid(
                        &*store,
                        &metrics,
                        &ids.sessionid,
                        &new_call.previous_sessionids,
                    )
                    .await?;
                    if sessionid != ids.sessionid {
                        core.rebind_session(&new_call, Arc::clone(&sessionid));
                    }
                    let other_calls_active = core.active_calls_in_session(&sessionid) > 1;
                    let touch = SessionTouch {
                        sessionid: &sessionid,
                        tenant: &ids.tenant,
                        instance: &ids.instance_id,
                        key_id: &ids.key_id,
                        now,
                        other_calls_active,
                    };
                    metrics
                        .timed_store_op(StoreOp::TouchSession, store.touch_session(touch))
                        .await
                };
                let result = tokio::time::timeout(budget, resolved_and_touched).await;
                let returning = match result {
                    Ok(Ok(touch)) => {
                        // A caller whose identity could be spoofed is never reported as
                        // returning, so a forged From cannot reach another caller's history.
                        if touch.returning && ids.assurance >= crate::identity::Assurance::Medium {
                            Returning::Yes
                        } else {
                            Returning::No
                        }
                    }
                    // A timed-out write stays queued in the store and is applied later, so
                    // retrying it would count the call twice.
                    Ok(Err(error @ StoreError::Timeout(_))) => {
                        jobs.warn(StoreWarning::TimedOut, Some(&error));
                        Returning::Unknown
                    }
                    Ok(Err(error)) => {
                        jobs.warn(StoreWarning::Failed, Some(&error));
                        jobs.push(touch_job(&new_call, now));
                        Returning::Unknown
                    }
                    Err(_) => {
                        let error = StoreError::Timeout(budget.as_millis() as u64);
                        jobs.warn(StoreWarning::TimedOut, Some(&error));
                        Returning::Unknown
                    }
                };
                jobs.push(conversation_start(&ids, &sessionid, now));
                core.finish_new_call(&new_call, &mut out, returning);
                metrics.returning(returning);
                send(&send_log, &sender, transport, dest, &out);
                metrics.observe(
                    &forwarded(transport, dest, outcome_kind),
                    transport,
                    received.elapsed(),
                );
                debug!(returning = returning.as_str(), "new call forwarded");
            }
            .instrument(span),
        );
    }

    fn queue(&self, job: StoreJob) {
        self.jobs.push(job);
    }

    fn send(&self, sender: &Sender, transport: Transport, dest: SocketAddr, bytes: &[u8]) {
        send(&self.send_log, sender, transport, dest, bytes);
    }

    /// Records the end of calls that left the call table without a 2xx, with status 408
    /// (Request Timeout) as a proxy's Timer C gives them.
    fn end_unanswered(&self, conversationids: Vec<Arc<str>>) {
        for conversationid in conversationids {
            let event = CallEvent {
                conversationid,
                kind: CallEventKind::Ended { status: Some(408) },
            };
            self.queue(StoreJob::Event(event, store::now_ms()));
        }
    }
}

/// Builds the outcome of a new call's INVITE, as counted once it is sent.
fn forwarded(transport: Transport, dest: SocketAddr, kind: MessageKind) -> Outcome {
    Outcome::Forward {
        transport,
        dest,
        kind,
        direction: crate::proxy::Direction::ToUpstream,
        new_call: None,
        event: None,
    }
}

/// Sends `bytes` and logs a failure at most once per interval for each kind of error.
fn send(
    log: &RateLimiter<SendErrorKind>,
    sender: &Sender,
    transport: Transport,
    dest: SocketAddr,
    bytes: &[u8],
) {
    let Err(error) = sender.send(transport, dest, bytes.to_vec()) else {
        return;
    };
    if let Verdict::Log { suppressed } = log.check(error.kind, Instant::now()) {
        warn!(%error, suppressed, "send failed");
    }
}
