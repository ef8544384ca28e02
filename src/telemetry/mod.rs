//! Telemetry: Prometheus metrics with handles created at start-up, log set-up, and helpers that
//! keep user data out of logs.

mod labels;
pub mod logging;
mod metrics;

pub use labels::{
    Returning, StoreOp, BOOLEANS, DROP_REASONS, IDENTITY_SOURCES, MESSAGE_KINDS, METHODS,
    REPLY_CLASSES, REPLY_REASONS, RETURNING, STATUS_CLASSES, STORE_BACKENDS, STORE_ERRORS,
    STORE_OPS, TRANSPORTS,
};
pub use logging::{RateLimiter, Redacted, Verdict};
pub use metrics::{backend_label, Metrics, ScrapeReader, ScrapeSources};

#[cfg(test)]
mod tests;
