//! Wall-clock helpers shared by components (timestamps in OTLP are Unix nanoseconds).

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, NaiveDate, Utc};

/// Now, in Unix nanoseconds.
pub fn now_unix_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// A Unix-nanosecond timestamp as a UTC date-time.
pub fn from_unix_nanos(nanos: u64) -> DateTime<Utc> {
    DateTime::from_timestamp((nanos / 1_000_000_000) as i64, (nanos % 1_000_000_000) as u32).unwrap_or_default()
}

/// A time given on a command line or in a config: an RFC 3339 time
/// (`2026-11-23T05:00:00Z`), a date (`2026-11-23`, midnight UTC), or a duration before `now`
/// (`24h`, `7d`). Every command and the replay receiver read times with this.
pub fn parse_time_arg(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc());
        }
    }
    let ago = crate::units::parse_duration(s).map_err(|_| {
        format!("invalid time {s:?}: give an RFC 3339 time (2026-11-23T05:00:00Z), a date (2026-11-23) or a duration ago (24h, 7d)")
    })?;
    chrono::Duration::from_std(ago)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .ok_or_else(|| format!("time {s:?} is out of range"))
}

/// [`parse_time_arg`] as Unix nanoseconds, relative to the current time.
pub fn parse_time_arg_nanos(s: &str) -> Result<i64, String> {
    parse_time_arg(s, Utc::now())?.timestamp_nanos_opt().ok_or_else(|| format!("time {s:?} is out of range"))
}

/// RFC 3339 with millisecond precision, e.g. `2026-11-23T05:18:57.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A compact UTC stamp for file names, e.g. `20261123T051857Z`.
pub fn file_stamp(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).format("%Y%m%dT%H%M%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_arguments_in_every_accepted_form() {
        let now = DateTime::parse_from_rfc3339("2026-12-07T12:00:00Z").unwrap().with_timezone(&Utc);
        let at = |s: &str| parse_time_arg(s, now).map(|t| t.to_rfc3339());
        assert_eq!(at("2026-11-23T05:00:00+01:00").unwrap(), "2026-11-23T04:00:00+00:00");
        assert_eq!(at("2026-11-23").unwrap(), "2026-11-23T00:00:00+00:00");
        assert_eq!(at("24h").unwrap(), "2026-12-06T12:00:00+00:00");
        assert_eq!(at(" 7d ").unwrap(), "2026-11-30T12:00:00+00:00");
        let e = at("yesterday").unwrap_err();
        assert!(e.contains("RFC 3339") && e.contains("24h"), "{e}");
        assert_eq!(parse_time_arg_nanos("1970-01-01T00:00:01Z").unwrap(), 1_000_000_000);
    }
}
