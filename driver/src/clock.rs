//! The clock mapping: the only place a runtime reads time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Maps the runtime's monotonic clock ([`std::time::Instant`]) to the core's
/// [`grapevine::Instant`], counted from the moment the clock was created.
///
/// This is the only place a Grapevine runtime reads the clock.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub(crate) origin: std::time::Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A clock whose origin ([`grapevine::Instant::ZERO`]) is now.
    #[allow(clippy::disallowed_methods, reason = "the runtime owns the clock")]
    pub fn new() -> Self {
        Clock {
            origin: std::time::Instant::now(),
        }
    }

    /// The current time on the core's clock.
    #[allow(clippy::disallowed_methods, reason = "the runtime owns the clock")]
    pub fn now(&self) -> grapevine::Instant {
        self.to_core(std::time::Instant::now())
    }

    /// Converts a runtime instant to the core's clock (instants before the origin map to zero).
    pub fn to_core(&self, t: std::time::Instant) -> grapevine::Instant {
        let nanos = t.saturating_duration_since(self.origin).as_nanos();
        grapevine::Instant::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Converts a core instant to the runtime's clock, or `None` if it is too far
    /// in the future to represent (treat that as "never").
    pub fn to_std(&self, t: grapevine::Instant) -> Option<std::time::Instant> {
        self.origin.checked_add(Duration::from_nanos(t.as_nanos()))
    }

    /// A fresh generation for a node identity: wall-clock microseconds since the
    /// Unix epoch, so a restarted process at the same address is a new life.
    #[allow(clippy::disallowed_methods, reason = "the runtime owns the clock")]
    pub fn generation() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}
