//! The simulator's clock: wall time plus an offset that tests can advance, and the ISO-8601
//! timestamps Portal uses (`2024-03-01T12:00:00.000Z`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub(crate) type Millis = i64;

/// Wall clock plus an adjustable offset; timestamps it hands out strictly increase, so
/// `createdAt` orders every object by creation.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    offset_ms: i64,
    last_issued: Millis,
}

impl Clock {
    /// The current simulated time.
    pub(crate) fn now(&self) -> Millis {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        wall.saturating_add(self.offset_ms)
    }

    /// A creation timestamp: the current time, or one millisecond after the previous one.
    pub(crate) fn stamp(&mut self) -> Millis {
        let t = self.now().max(self.last_issued.saturating_add(1));
        self.last_issued = t;
        t
    }

    /// Moves simulated time forward.
    pub(crate) fn advance(&mut self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms = self.offset_ms.saturating_add(ms);
    }
}

// Calendar arithmetic (Howard Hinnant's civil-from-days algorithm) on values bounded by the
// range of an i64 of milliseconds divided down to days; none of these operations can overflow,
// so the workspace's arithmetic lint is relaxed for these two functions only.
#[allow(
    clippy::arithmetic_side_effects,
    reason = "bounded calendar arithmetic, see the comment above"
)]
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[allow(
    clippy::arithmetic_side_effects,
    reason = "bounded calendar arithmetic, see the comment above civil_from_days"
)]
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) fn format_iso(ms: Millis) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (y, mo, d) = civil_from_days(days);
    let secs = in_day.div_euclid(1000);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs.div_euclid(3600),
        secs.rem_euclid(3600).div_euclid(60),
        secs.rem_euclid(60),
        in_day.rem_euclid(1000)
    )
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff]Z` (or a `+00:00` suffix); other offsets are refused.
pub(crate) fn parse_iso(text: &str) -> Option<Millis> {
    let text = text.trim();
    let body = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix("+00:00"))?;
    let (date, time) = body.split_once(['T', ' '])?;
    let mut date_parts = date.splitn(3, '-');
    let y: i64 = date_parts.next()?.parse().ok()?;
    let mo: i64 = date_parts.next()?.parse().ok()?;
    let d: i64 = date_parts.next()?.parse().ok()?;
    let (hms, frac) = match time.split_once('.') {
        Some((hms, frac)) => (hms, Some(frac)),
        None => (time, None),
    };
    let mut t = hms.splitn(3, ':');
    let h: i64 = t.next()?.parse().ok()?;
    let mi: i64 = t.next()?.parse().ok()?;
    let s: i64 = t.next()?.parse().ok()?;
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    if !(0..=9999).contains(&y) || h < 0 || mi < 0 || s < 0 {
        return None;
    }
    let millis = match frac {
        Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
            let first3: String = f.chars().chain("000".chars()).take(3).collect();
            first3.parse::<i64>().ok()?
        }
        Some(_) => return None,
        None => 0,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days
        .checked_mul(86_400)?
        .checked_add(h.checked_mul(3600)?)?
        .checked_add(mi.checked_mul(60)?)?
        .checked_add(s)?;
    secs.checked_mul(1000)?.checked_add(millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        assert_eq!(format_iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_iso(1_709_294_400_123), "2024-03-01T12:00:00.123Z");
        assert_eq!(
            parse_iso("2024-03-01T12:00:00.123Z"),
            Some(1_709_294_400_123)
        );
        assert_eq!(parse_iso("2024-03-01T12:00:00Z"), Some(1_709_294_400_000));
        assert_eq!(
            parse_iso("2024-03-01T12:00:00+00:00"),
            Some(1_709_294_400_000)
        );
        assert_eq!(parse_iso("2024-02-29T23:59:59.9Z"), Some(1_709_251_199_900));
        for bad in [
            "",
            "x",
            "2024-13-01T00:00:00Z",
            "2024-03-01T12:00:00+02:00",
            "2024-03-01",
        ] {
            assert_eq!(parse_iso(bad), None, "{bad}");
        }
        for ms in [0, 951_782_400_000, 4_102_444_800_999, 1_234_567_890_123] {
            assert_eq!(parse_iso(&format_iso(ms)), Some(ms));
        }
    }

    #[test]
    fn stamps_strictly_increase_and_advance_moves_time() {
        let mut c = Clock::default();
        let a = c.stamp();
        let b = c.stamp();
        assert!(b > a);
        let before = c.now();
        c.advance(Duration::from_secs(3600));
        assert!(c.now() >= before.saturating_add(3_600_000));
    }
}
