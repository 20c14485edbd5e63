//! Where the time comes from: the system clock in production, a hand-set
//! one in tests, so time-driven logic (schedules) is tested without waiting.

use chrono::{DateTime, Utc};

/// The source of "now" for code that must be testable across dates.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}
