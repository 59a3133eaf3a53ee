//! `Time` and `Duration`: millisecond counts, as in Spark Streaming.

use serde::{Deserialize, Serialize};

/// A span of time in milliseconds (Spark's `Duration`).
///
/// Unlike Spark, any number of milliseconds is a valid batch interval, down to 1 ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Duration(u64);

impl Duration {
    /// A duration of `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Duration(ms)
    }

    /// A duration of `s` seconds.
    pub const fn from_secs(s: u64) -> Self {
        Duration(s * 1000)
    }

    /// A duration of `m` minutes.
    pub const fn from_mins(m: u64) -> Self {
        Duration(m * 60_000)
    }

    /// The length in milliseconds.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Whether this is a whole multiple of `other` (Spark's `isMultipleOf`).
    pub fn is_multiple_of(self, other: Duration) -> bool {
        other.0 != 0 && self.0.is_multiple_of(other.0)
    }

    /// The equivalent `std::time::Duration`.
    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0)
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Duration(d.as_millis() as u64)
    }
}

impl std::fmt::Display for Duration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ms", self.0)
    }
}

/// Spark's `Milliseconds(n)`.
pub const fn milliseconds(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Spark's `Seconds(n)`.
pub const fn seconds(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Spark's `Minutes(n)`.
pub const fn minutes(n: u64) -> Duration {
    Duration::from_mins(n)
}

/// A batch time: milliseconds since the Unix epoch (or since 0 on a manual clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Time(u64);

impl Time {
    /// The time `ms` milliseconds after the epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Time(ms)
    }

    /// Milliseconds since the epoch.
    pub const fn milliseconds(self) -> u64 {
        self.0
    }

    /// This time rounded down to a multiple of `d` (Spark's `floor`).
    pub fn floor(self, d: Duration) -> Time {
        match d.as_millis() {
            0 => self,
            ms => Time(self.0 / ms * ms),
        }
    }
}

impl std::ops::Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(self.0 + d.as_millis())
    }
}

impl std::fmt::Display for Time {
    /// Spark's format: `1000 ms`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ms", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_matches_spark() {
        assert_eq!(Time::from_millis(1350).floor(milliseconds(200)), Time::from_millis(1200));
        assert_eq!(Time::from_millis(199).floor(milliseconds(200)), Time::from_millis(0));
    }

    #[test]
    fn multiples() {
        assert!(seconds(2).is_multiple_of(milliseconds(500)));
        assert!(!milliseconds(100).is_multiple_of(milliseconds(500)));
        assert!(!seconds(1).is_multiple_of(milliseconds(0)));
    }
}
