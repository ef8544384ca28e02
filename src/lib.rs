//! sipstamp: a SIP proxy sidecar that stamps call, session and conversation identifiers into
//! inbound INVITEs before they reach a voice gateway.

pub mod admin;
pub mod config;
pub mod identity;
pub mod message;
pub mod pseudonym;

pub use pseudonym::session_id_command;
pub mod store;
