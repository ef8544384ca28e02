//! Signal handling for `sipstamp run`: SIGHUP reloads the configuration file, and SIGTERM or
//! SIGINT start a drain that lets calls in progress end before the process exits.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::admin::Readiness;
use crate::config::{Config, ConfigError};
use crate::identity::TrustMap;
use crate::proxy::{Core, CoreSettings};
use crate::pseudonym::KeyRing;

/// Time the drain waits after the last call ended, so that the final response of its BYE
/// transaction is still relayed before the listeners close.
const FINAL_TRANSACTION_LINGER: Duration = Duration::from_secs(1);

/// Time the store writer gets at exit to write the conversation records still queued.
const STORE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Interval between checks of the active-call count during a drain.
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// Interval between progress lines in the log during a drain.
const DRAIN_REPORT: Duration = Duration::from_secs(5);

/// The signal streams, registered before the listeners open so that an early SIGHUP does not
/// end the process with the default action.
pub(super) struct Signals {
    terminate: Signal,
    interrupt: Signal,
    hangup: Signal,
}

impl Signals {
    pub(super) fn install() -> std::io::Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }
}

/// The state the signal loop reads and changes: the core, readiness and the configuration.
pub(super) struct Lifecycle {
    pub core: Arc<Core>,
    pub readiness: Arc<Readiness>,
    /// The file given with `--config`, or `None` for the embedded default, which cannot change.
    pub config_path: Option<PathBuf>,
    /// The configuration the process started with, to tell which changed keys need a restart.
    pub started: Config,
    /// The drain timeout of the last configuration loaded.
    pub drain_timeout: Duration,
}

impl Lifecycle {
    /// Reloads on each SIGHUP until SIGTERM or SIGINT, then drains. Returns when the process
    /// should stop.
    pub(super) async fn run(mut self, mut signals: Signals) {
        loop {
            tokio::select! {
                _ = signals.terminate.recv() => {
                    info!("SIGTERM received");
                    break;
                }
                _ = signals.interrupt.recv() => {
                    info!("SIGINT received");
                    break;
                }
                _ = signals.hangup.recv() => self.reload(),
            }
        }
        self.drain(&mut signals).await;
    }

    /// Rejects new calls, marks the process not ready and waits until no call is active, the
    /// drain timeout passes or a second SIGTERM or SIGINT arrives.
    async fn drain(&self, signals: &mut Signals) {
        self.readiness.set_draining(true);
        self.core.set_draining(true);
        let started = Instant::now();
        let deadline = started + self.drain_timeout;
        let active = self.core.active_calls();
        info!(
            active_calls = active,
            timeout_secs = self.drain_timeout.as_secs(),
            "drain started: new calls get 503, calls in progress continue"
        );
        if active == 0 {
            info!("drain finished: no call was active");
            return;
        }

        let mut poll = tokio::time::interval(DRAIN_POLL);
        let mut last_report = started;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    warn!(
                        active_calls = self.core.active_calls(),
                        timeout_secs = self.drain_timeout.as_secs(),
                        "drain timed out; stopping with calls still active"
                    );
                    return;
                }
                _ = signals.terminate.recv() => {
                    warn!(active_calls = self.core.active_calls(), "second SIGTERM received; stopping without waiting for active calls");
                    return;
                }
                _ = signals.interrupt.recv() => {
                    warn!(active_calls = self.core.active_calls(), "SIGINT received during the drain; stopping without waiting for active calls");
                    return;
                }
                _ = signals.hangup.recv() => {
                    warn!("SIGHUP ignored: the process is draining");
                }
                _ = poll.tick() => {
                    let active = self.core.active_calls();
                    if active == 0 {
                        break;
                    }
                    if last_report.elapsed() >= DRAIN_REPORT {
                        let remaining = deadline.saturating_duration_since(Instant::now());
                        info!(active_calls = active, remaining_secs = remaining.as_secs(), "draining");
                        last_report = Instant::now();
                    }
                }
            }
        }
        info!(
            waited_ms = started.elapsed().as_millis() as u64,
            "drain finished: every call has ended"
        );
        let linger_end = deadline.min(Instant::now() + FINAL_TRANSACTION_LINGER);
        tokio::select! {
            _ = tokio::time::sleep_until(linger_end) => {}
            _ = signals.terminate.recv() => {}
            _ = signals.interrupt.recv() => {}
        }
    }

    /// Re-reads the configuration file and swaps the settings the core reads at run time. An
    /// invalid file changes nothing.
    fn reload(&mut self) {
        let Some(path) = self.config_path.clone() else {
            warn!("SIGHUP ignored: sipstamp runs with the embedded default configuration, which cannot change; start it with --config FILE to reload");
            return;
        };
        info!(config = %path.display(), "SIGHUP received: reloading the configuration");
        let Some(config) = load_valid(&path) else {
            return;
        };
        let keys = match KeyRing::load_or_create(&config) {
            Ok((keys, created)) => {
                for tenant in created {
                    warn!(
                        tenant = %tenant,
                        data_dir = %config.data_dir.display(),
                        "no secret key configured: created a random one in the data folder; back it up, or sessionids change when it is lost"
                    );
                }
                keys
            }
            Err(error) => {
                error!(%error, "config reload failed: cannot load the tenant keys; the running configuration stays");
                return;
            }
        };
        for key in restart_only_changes(&self.started, &config) {
            warn!(
                key,
                "config reload: this setting changed but takes effect only after a restart"
            );
        }
        let trust = TrustMap::from_config(&config);
        self.core.reload(CoreSettings::new(&config, keys, trust));
        self.drain_timeout = Duration::from_secs(config.lifecycle.drain_timeout_secs);
        info!(
            config = %path.display(),
            trunks = config.trunks.len(),
            releases = config.releases.len(),
            upstream = %config.sip.upstream,
            "configuration reloaded"
        );
    }
}

/// Waits up to `STORE_FLUSH_TIMEOUT` for the store writer to finish the queued conversation
/// records, which it does once the listeners, and with them every sender of the queue, are gone.
pub(super) async fn flush_store_writes(writer: tokio::task::JoinHandle<()>) {
    match tokio::time::timeout(STORE_FLUSH_TIMEOUT, writer).await {
        Ok(Ok(())) => info!("queued store writes finished"),
        Ok(Err(error)) => error!(%error, "the store writer task failed"),
        Err(_) => warn!(
            timeout_secs = STORE_FLUSH_TIMEOUT.as_secs(),
            "store writes still queued at exit were dropped"
        ),
    }
}

/// Loads and validates a configuration file, logging each problem when it is invalid.
fn load_valid(path: &Path) -> Option<Config> {
    match Config::load(Some(path)) {
        Ok(config) => Some(config),
        Err(ConfigError::Invalid { problems, .. }) => {
            for problem in &problems {
                error!(key = %problem.key, problem = %problem.message, "config reload: invalid setting");
            }
            error!(
                problems = problems.len(),
                "config reload failed; the running configuration stays"
            );
            None
        }
        Err(error) => {
            error!(%error, "config reload failed; the running configuration stays");
            None
        }
    }
}

/// Returns the keys that differ between two configurations but are read only at start-up:
/// listener and admin addresses, worker count, data folder, store, logging, the call table
/// sizes and the transport limits.
pub(super) fn restart_only_changes(running: &Config, new: &Config) -> Vec<&'static str> {
    // Debug output compares the sections without requiring PartialEq on every config type.
    fn differs<T: std::fmt::Debug>(a: &T, b: &T) -> bool {
        format!("{a:?}") != format!("{b:?}")
    }
    let (old_limits, new_limits) = (&running.limits, &new.limits);
    let checks: [(&'static str, bool); 14] = [
        ("data_dir", running.data_dir != new.data_dir),
        ("sip.udp", running.sip.udp != new.sip.udp),
        ("sip.tcp", running.sip.tcp != new.sip.tcp),
        ("sip.workers", running.sip.workers != new.sip.workers),
        (
            "sip.advertised_host",
            running.sip.advertised_host != new.sip.advertised_host,
        ),
        ("admin.listen", running.admin.listen != new.admin.listen),
        ("store", differs(&running.store, &new.store)),
        ("log", differs(&running.log, &new.log)),
        ("calls", differs(&running.calls, &new.calls)),
        (
            // The core applies the new value, but TCP framing and UDP buffers keep the old.
            "limits.max_message_bytes",
            old_limits.max_message_bytes != new_limits.max_message_bytes
                || old_limits.max_body_bytes != new_limits.max_body_bytes,
        ),
        (
            "limits.max_tcp_connections",
            old_limits.max_tcp_connections != new_limits.max_tcp_connections,
        ),
        (
            "limits.max_tcp_connections_per_source",
            old_limits.max_tcp_connections_per_source != new_limits.max_tcp_connections_per_source,
        ),
        (
            "limits.tcp_idle_timeout_secs",
            old_limits.tcp_idle_timeout_secs != new_limits.tcp_idle_timeout_secs,
        ),
        (
            "limits.tcp_header_timeout_secs",
            old_limits.tcp_header_timeout_secs != new_limits.tcp_header_timeout_secs,
        ),
    ];
    checks
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse(text, "test").expect("test config is valid")
    }

    #[test]
    fn restart_only_changes_lists_listeners_and_store() {
        let running = parse("");
        let new = parse(
            "[sip]\nudp = [\"127.0.0.1:5070\"]\n[store]\nop_budget_ms = 20\n[admin]\nlisten = \"127.0.0.1:9191\"\n",
        );
        assert_eq!(
            restart_only_changes(&running, &new),
            vec!["sip.udp", "admin.listen", "store"]
        );
    }

    #[test]
    fn restart_only_changes_ignores_reloadable_keys() {
        let running = parse("");
        let new = parse(
            "[sip]\nupstream = \"127.0.0.1:5099\"\n[headers]\nsessionid = \"X-Session-Id\"\n[lifecycle]\ndrain_timeout_secs = 5\n[[trunks]]\nid = \"t1\"\ntrusted_cidrs = [\"127.0.0.1/32\"]\n",
        );
        assert!(restart_only_changes(&running, &new).is_empty());
    }
}
