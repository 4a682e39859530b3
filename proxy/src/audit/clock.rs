//! RFC 3339 timestamps for the `ts` field, formatted by hand so the audit
//! log needs no calendar dependency: UTC, millisecond precision, `Z` suffix
//! (`2024-02-29T23:59:59.123Z`), which sorts lexically in time order.

use std::time::{SystemTime, UNIX_EPOCH};

/// The current time as an audit timestamp.
pub(super) fn now() -> String {
    format_rfc3339_millis(SystemTime::now())
}

/// Formats `t` as `YYYY-MM-DDTHH:MM:SS.mmmZ`. Times before 1970 (a clock
/// set absurdly wrong) are written as the epoch rather than failing the
/// record: the chain, not the timestamp, is what orders records.
pub fn format_rfc3339_millis(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
/// Howard Hinnant's `civil_from_days`, restricted to non-negative days:
/// shift the epoch to 0000-03-01 so leap days fall at the end of a year,
/// then split into 400-year eras of 146 097 days.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // day of era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1
    let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(secs: u64, millis: u64) -> String {
        format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(secs * 1000 + millis))
    }

    #[test]
    fn known_instants() {
        // Expected values from `date -u -d @SECS`.
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.007Z");
        assert_eq!(at(1_234_567_890, 999), "2009-02-13T23:31:30.999Z");
        assert_eq!(at(1_709_251_199, 120), "2024-02-29T23:59:59.120Z");
        assert_eq!(at(4_102_444_800, 0), "2100-01-01T00:00:00.000Z");
    }

    #[test]
    fn before_epoch_is_epoch() {
        let t = UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(format_rfc3339_millis(t), "1970-01-01T00:00:00.000Z");
    }
}
