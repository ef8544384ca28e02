//! The proxy core: free of I/O, it turns one received message into one decision.
//!
//! A stateless proxy in the sense of RFC 3261 section 16.11, plus a table of calls in progress
//! so every message of a call carries the identifiers stamped into its first INVITE.

mod calls;
mod core;
mod flood;
mod local;
mod outcome;
mod reply;
mod request;
mod response;
mod stamp;

pub use self::core::{Core, CoreSettings};
pub use calls::{Returning, Sweep};
pub use outcome::{
    CallEvent, CallEventKind, CallIds, Direction, DropReason, Inbound, MessageKind, NewCall,
    Outcome, Scratch,
};

#[cfg(test)]
mod tests;
