//! Log set-up with `tracing-subscriber`, a per-key rate limiter for repeated lines, and a
//! wrapper that keeps user data out of log lines.

use std::collections::HashMap;
use std::hash::Hash;
use std::io::IsTerminal;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Environment variable whose filter, when set and not empty, replaces `log.level`.
pub const FILTER_ENV: &str = "RUST_LOG";

/// Errors setting up logging.
#[derive(Debug, thiserror::Error)]
pub enum LogInitError {
    #[error("invalid log filter {value:?} from {origin}: {message}")]
    InvalidFilter {
        origin: &'static str,
        value: String,
        message: String,
    },
    #[error("a global log subscriber is already installed")]
    AlreadyInstalled,
}

impl FromStr for LogFormat {
    type Err = String;

    /// Parses a `--log-format` value: `text` or `json`.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "invalid log format {other:?}: expected \"text\" or \"json\""
            )),
        }
    }
}

/// Builds the filter: `rust_log` when it is set and not empty, else `level` from the config.
pub fn build_filter(level: &str, rust_log: Option<&str>) -> Result<EnvFilter, LogInitError> {
    let (origin, value) = match rust_log.map(str::trim) {
        Some(value) if !value.is_empty() => (FILTER_ENV, value),
        _ => ("log.level", level),
    };
    EnvFilter::try_new(value).map_err(|error| LogInitError::InvalidFilter {
        origin,
        value: value.to_owned(),
        message: error.to_string(),
    })
}

/// Installs the global subscriber, writing to standard error. `format_flag` (the value of
/// `--log-format`) overrides `log.format`, and `RUST_LOG` overrides `log.level`.
pub fn init(config: &LogConfig, format_flag: Option<LogFormat>) -> Result<(), LogInitError> {
    let rust_log = std::env::var(FILTER_ENV).ok();
    let format = format_flag.unwrap_or(config.format);
    let colour = std::io::stderr().is_terminal();
    let subscriber = build_subscriber(
        &config.level,
        rust_log.as_deref(),
        format,
        colour,
        std::io::stderr,
    )?;
    // try_init also forwards the `log` crate's records from dependencies into tracing.
    subscriber
        .try_init()
        .map_err(|_| LogInitError::AlreadyInstalled)
}

/// Builds the subscriber that [`init`] installs, writing to `writer`. `colour` enables ANSI
/// colours in the text format; `init` sets it only when standard error is a terminal, so files
/// and the journal get plain text.
pub fn build_subscriber<W>(
    level: &str,
    rust_log: Option<&str>,
    format: LogFormat,
    colour: bool,
    writer: W,
) -> Result<Box<dyn tracing::Subscriber + Send + Sync>, LogInitError>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = build_filter(level, rust_log)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(writer);
    let subscriber: Box<dyn tracing::Subscriber + Send + Sync> = match format {
        LogFormat::Text => Box::new(builder.finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .finish(),
        ),
    };
    Ok(subscriber)
}

/// A value that may carry user data (a number, a URI, a header value). It prints as
/// `<redacted>` in `Display` and `Debug`, so it can be passed to a log macro by mistake and
/// still leak nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Redacted<T>(pub T);

impl<T> std::fmt::Display for Redacted<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<T> std::fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The decision of [`RateLimiter::check`] for one occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log the line, and mention `suppressed` if it is not 0: the number of lines with this
    /// key dropped since the last one logged.
    Log { suppressed: u64 },
    /// Do not log.
    Suppress,
}

struct Window {
    /// Time the last line with this key was logged.
    logged_at: Instant,
    suppressed: u64,
}

struct Windows<K> {
    by_key: HashMap<K, Window>,
    /// Occurrences suppressed because the table was full of keys still inside their interval.
    overflow: u64,
}

/// Limits repeated log lines to one per key and interval, counting the rest.
///
/// The first occurrence of a key is logged. Later ones within `interval` are suppressed and
/// counted, and the first one after the interval is logged with that count. Call
/// [`RateLimiter::flush`] periodically so that the count of a key that went quiet is reported
/// too. At most `max_keys` keys are tracked. A new key that finds the table full first evicts
/// the keys whose interval has passed. If none has, the new key is suppressed and counted as
/// overflow.
///
/// ```
/// # use std::time::{Duration, Instant};
/// # use sipstamp::telemetry::{RateLimiter, Verdict};
/// let limiter = RateLimiter::new(Duration::from_secs(10), 1024);
/// let source: std::net::IpAddr = [127, 0, 0, 1].into();
/// if let Verdict::Log { suppressed } = limiter.check((source, "unparsable"), Instant::now()) {
///     tracing::warn!(%source, suppressed, "dropped an unparsable message");
/// }
/// ```
pub struct RateLimiter<K> {
    interval: Duration,
    max_keys: usize,
    windows: Mutex<Windows<K>>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    pub fn new(interval: Duration, max_keys: usize) -> Self {
        Self {
            interval,
            max_keys: max_keys.max(1),
            windows: Mutex::new(Windows {
                by_key: HashMap::new(),
                overflow: 0,
            }),
        }
    }

    /// Decides whether to log one occurrence of `key` at `now`.
    pub fn check(&self, key: K, now: Instant) -> Verdict {
        let mut windows = self.lock();
        if let Some(window) = windows.by_key.get_mut(&key) {
            if now.saturating_duration_since(window.logged_at) < self.interval {
                window.suppressed += 1;
                return Verdict::Suppress;
            }
            let suppressed = std::mem::take(&mut window.suppressed);
            window.logged_at = now;
            return Verdict::Log { suppressed };
        }

        if windows.by_key.len() >= self.max_keys {
            // Expired keys make room. Their suppressed lines move to the overflow count, so
            // flush still reports them, without the key.
            let interval = self.interval;
            let mut expired_suppressed = 0;
            windows.by_key.retain(|_, w| {
                let live = now.saturating_duration_since(w.logged_at) < interval;
                if !live {
                    expired_suppressed += w.suppressed;
                }
                live
            });
            windows.overflow += expired_suppressed;
            if windows.by_key.len() >= self.max_keys {
                windows.overflow += 1;
                return Verdict::Suppress;
            }
        }
        windows.by_key.insert(
            key,
            Window {
                logged_at: now,
                suppressed: 0,
            },
        );
        Verdict::Log { suppressed: 0 }
    }

    /// Removes every key whose interval has passed and returns those that had suppressed
    /// lines, with their counts, plus the overflow count. Log one summary for each.
    pub fn flush(&self, now: Instant) -> (Vec<(K, u64)>, u64) {
        let mut windows = self.lock();
        let mut summaries = Vec::new();
        let interval = self.interval;
        windows.by_key.retain(|key, window| {
            if now.saturating_duration_since(window.logged_at) < interval {
                return true;
            }
            if window.suppressed > 0 {
                summaries.push((key.clone(), window.suppressed));
            }
            false
        });
        let overflow = std::mem::take(&mut windows.overflow);
        (summaries, overflow)
    }

    /// Returns the number of keys tracked now.
    pub fn len(&self) -> usize {
        self.lock().by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Windows<K>> {
        // A panic while holding the lock leaves the counts usable, so poisoning is ignored.
        self.windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
