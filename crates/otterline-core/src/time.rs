//! Wall-clock helpers shared by components (timestamps in OTLP are Unix nanoseconds).

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};

/// Now, in Unix nanoseconds.
pub fn now_unix_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// A Unix-nanosecond timestamp as a UTC date-time.
pub fn from_unix_nanos(nanos: u64) -> DateTime<Utc> {
    DateTime::from_timestamp((nanos / 1_000_000_000) as i64, (nanos % 1_000_000_000) as u32).unwrap_or_default()
}

/// RFC 3339 with millisecond precision, e.g. `2026-11-23T05:18:57.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A compact UTC stamp for file names, e.g. `20261123T051857Z`.
pub fn file_stamp(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).format("%Y%m%dT%H%M%SZ").to_string()
}
