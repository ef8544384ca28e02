//! sipstamp: a SIP proxy sidecar that stamps call, session and conversation identifiers into
//! inbound INVITEs before they reach a voice gateway.

pub mod admin;
pub mod config;
pub mod identity;
pub mod pseudonym;
pub mod store;
