//! Rate limiting of repeated error logs, so one misbehaving peer cannot flood the log.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Logs allowed per source slot and second; later ones in the same second are suppressed.
const LOGS_PER_SECOND: u64 = 5;
const SLOTS: usize = 64;

/// A fixed table of per-second counters, indexed by a hash of the source address. Sources that
/// share a slot share its budget, which keeps memory bounded whatever the number of peers.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    /// Each slot packs the current second (high 40 bits) and the count in it (low 24 bits).
    slots: [AtomicU64; SLOTS],
}

impl Default for LogLimiter {
    fn default() -> Self {
        Self {
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl LogLimiter {
    /// Returns true when a log line about `source` may be written now.
    pub fn allow(&self, source: IpAddr) -> bool {
        let second = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            & ((1 << 40) - 1);
        let slot = &self.slots[slot_index(source)];
        let current = slot.load(Ordering::Relaxed);
        let (slot_second, count) = (current >> 24, current & 0xff_ffff);
        let next = if slot_second == second {
            if count >= LOGS_PER_SECOND {
                return false;
            }
            current + 1
        } else {
            (second << 24) | 1
        };
        // A lost race only means one line more or fewer in this second.
        let _ = slot.compare_exchange(current, next, Ordering::Relaxed, Ordering::Relaxed);
        true
    }
}

fn slot_index(source: IpAddr) -> usize {
    let hash = match source {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            (bits as u64) ^ ((bits >> 64) as u64)
        }
    };
    (hash.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_caps_per_second() {
        let limiter = LogLimiter::default();
        let source: IpAddr = [192, 0, 2, 7].into();
        let allowed = (0..20).filter(|_| limiter.allow(source)).count();
        // Twenty calls may straddle a second boundary, which allows a second batch.
        assert!(allowed >= LOGS_PER_SECOND as usize);
        assert!(allowed <= 2 * LOGS_PER_SECOND as usize);
    }
}
