//! sipstamp: a SIP proxy sidecar that stamps call, session and conversation identifiers into
//! inbound INVITEs before they reach a voice gateway.

pub mod admin;
pub mod cli;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod identity;
pub mod message;
pub mod proxy;
pub mod pseudonym;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod transport;

pub use pseudonym::session_id_command;
