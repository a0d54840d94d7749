//! Bounds repeated log lines: a page that fires refused requests in a loop wrote 1,534 WARN
//! lines in 8 s. A [`LogLimiter`] lets at most a few lines per key (say, a destination) and a
//! few in all through per period, counts the rest, and says how many were left out on the next
//! line it lets through and at the end.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The decision for one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Log it; `suppressed` lines were left out since the last line logged (say so).
    Log {
        /// Lines counted but not logged before this one.
        suppressed: u64,
    },
    /// Leave it out (it is counted).
    Suppress,
}

/// The limiter's state, as a pure step function over explicit time (see [`LogLimiter`]).
#[derive(Debug)]
struct Window {
    start: Option<Instant>,
    per_key: HashMap<String, u32>,
    logged: u32,
    suppressed: u64,
}

/// At most `per_key` lines per key and `total` lines in all per `period`.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    period: Duration,
    per_key: u32,
    total: u32,
    window: Mutex<Window>,
}

impl LogLimiter {
    /// A limiter letting `per_key` lines of one key and `total` lines in all through per
    /// `period`.
    pub(crate) fn new(period: Duration, per_key: u32, total: u32) -> Self {
        Self {
            period,
            per_key,
            total,
            window: Mutex::new(Window {
                start: None,
                per_key: HashMap::new(),
                logged: 0,
                suppressed: 0,
            }),
        }
    }

    /// Whether a line about `key` may be logged now.
    pub(crate) fn admit(&self, key: &str) -> Admit {
        self.admit_at(key, Instant::now())
    }

    /// [`LogLimiter::admit`] at `now`.
    pub(crate) fn admit_at(&self, key: &str, now: Instant) -> Admit {
        let Ok(mut w) = self.window.lock() else {
            return Admit::Log { suppressed: 0 };
        };
        if w.start.is_none_or(|s| now.duration_since(s) >= self.period) {
            // A new period: the counts start again (the left-out lines stay counted until a
            // line says so).
            w.start = Some(now);
            w.per_key.clear();
            w.logged = 0;
        }
        let of_key = w.per_key.get(key).copied().unwrap_or(0);
        if w.logged >= self.total || of_key >= self.per_key {
            w.suppressed += 1;
            return Admit::Suppress;
        }
        w.per_key.insert(key.to_string(), of_key + 1);
        w.logged += 1;
        Admit::Log {
            suppressed: std::mem::take(&mut w.suppressed),
        }
    }

    /// Lines left out and not yet reported (for a last line when the source ends).
    pub(crate) fn take_suppressed(&self) -> u64 {
        self.window
            .lock()
            .map(|mut w| std::mem::take(&mut w.suppressed))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_bounded_per_key_and_in_all_and_the_rest_is_counted() {
        let l = LogLimiter::new(Duration::from_secs(10), 2, 3);
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(l.admit_at("a", at(0)), Admit::Log { suppressed: 0 });
        assert_eq!(l.admit_at("a", at(1)), Admit::Log { suppressed: 0 });
        for i in 0..100 {
            assert_eq!(l.admit_at("a", at(2 + i)), Admit::Suppress);
        }
        // Another key still gets through, and says what was left out...
        assert_eq!(l.admit_at("b", at(200)), Admit::Log { suppressed: 100 });
        // ...until the total is reached.
        assert_eq!(l.admit_at("c", at(201)), Admit::Suppress);
        assert_eq!(l.admit_at("b", at(202)), Admit::Suppress);
        // The next period starts afresh.
        assert_eq!(l.admit_at("a", at(10_000)), Admit::Log { suppressed: 2 });
        assert_eq!(l.admit_at("a", at(10_001)), Admit::Log { suppressed: 0 });
        assert_eq!(l.admit_at("a", at(10_002)), Admit::Suppress);
        assert_eq!(l.take_suppressed(), 1);
        assert_eq!(l.take_suppressed(), 0);
    }
}
