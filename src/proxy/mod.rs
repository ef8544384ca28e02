//! The proxy core: free of I/O, it turns one received message into one decision.

mod outcome;

pub use outcome::{CallIds, Direction, DropReason, Inbound, MessageKind, Outcome, Scratch};
