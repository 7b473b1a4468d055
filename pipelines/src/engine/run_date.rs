//! The run date, computed once: the calendar date D, the instant `as_of` = D 00:00 UTC in
//! nanoseconds since the epoch (how every timestamp is compared in SQL), the window W = the 365
//! days before as_of, and the training snapshots (as_of minus one and two horizons). No other
//! module does epoch arithmetic: it asks a `RunDate`.

use chrono::{Days, NaiveDate};

use crate::config::Config;
use crate::error::{FlywheelError, Result};

/// One UTC day in nanoseconds (a day is 86,400 s: no leap seconds, as in the exports).
pub const DAY_NS: i64 = 86_400_000_000_000;

/// One hour in nanoseconds.
pub const HOUR_NS: i64 = 3_600_000_000_000;

/// The length of the window W in days (domain.md, "Definitions": the 365 days before as_of).
pub const WINDOW_DAYS: i64 = 365;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RunDate {
    date: NaiveDate,
    /// Days since 1970-01-01.
    days: i64,
}

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("1970-01-01 is a date")
}

/// The first and last days whose midnight fits a nanosecond timestamp (i64).
fn representable() -> (i64, i64) {
    (i64::MIN / DAY_NS + 1, i64::MAX / DAY_NS)
}

impl RunDate {
    /// A run date whose as_of, window and every horizon and snapshot `cfg` implies fit the
    /// nanosecond timestamps of the exports (1677-09-22 to 2262-04-11); otherwise a
    /// configuration error naming the usable range.
    pub fn new(date: NaiveDate, cfg: &Config) -> Result<RunDate> {
        let run_date = RunDate::unchecked(date);
        let horizon = cfg.refer_horizon_days.max(cfg.churn_horizon_days).max(0);
        let reach_back = 2 * horizon + WINDOW_DAYS + cfg.attribution_window_days.max(0);
        let (lo, hi) = representable();
        let ok = run_date
            .days
            .checked_sub(reach_back)
            .is_some_and(|d| d >= lo)
            && run_date.days.checked_add(horizon).is_some_and(|d| d <= hi);
        if ok {
            return Ok(run_date);
        }
        let first = epoch() + chrono::Duration::days(lo + reach_back);
        let last = epoch() + chrono::Duration::days(hi - horizon);
        Err(FlywheelError::Config(format!(
            "run date {date} is outside the range the nanosecond timestamps can hold with the \
             configured window and horizons: use a date from {first} to {last}"
        )))
    }

    /// A run date without the range check (dates known to be in range, e.g. a snapshot of a
    /// checked run date).
    fn unchecked(date: NaiveDate) -> RunDate {
        RunDate {
            date,
            days: date.signed_duration_since(epoch()).num_days(),
        }
    }

    pub fn date(&self) -> NaiveDate {
        self.date
    }

    /// Days since 1970-01-01 (a Parquet/Arrow `date32`).
    pub fn epoch_days(&self) -> i64 {
        self.days
    }

    /// as_of = D 00:00 UTC, nanoseconds since the epoch.
    pub fn as_of_ns(&self) -> i64 {
        self.days * DAY_NS
    }

    /// The start of W (as_of − 365 days), nanoseconds since the epoch.
    pub fn window_start_ns(&self) -> i64 {
        self.as_of_ns() - WINDOW_DAYS * DAY_NS
    }

    /// as_of as an RFC 3339 instant.
    pub fn as_of_rfc3339(&self) -> String {
        format!("{}T00:00:00Z", self.date)
    }

    /// The run date `days` days earlier (a training snapshot, a cooldown edge).
    pub fn days_before(&self, days: i64) -> RunDate {
        let date = u64::try_from(days)
            .ok()
            .and_then(|d| self.date.checked_sub_days(Days::new(d)))
            .unwrap_or(self.date);
        RunDate::unchecked(date)
    }

    /// Whole days from `earlier` to this date.
    pub fn days_since(&self, earlier: NaiveDate) -> i64 {
        self.days - RunDate::unchecked(earlier).days
    }

    /// A date as days since the epoch (for `date32` columns).
    pub fn epoch_days_of(date: NaiveDate) -> i64 {
        RunDate::unchecked(date).days
    }
}

impl std::fmt::Display for RunDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.date.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn as_of_window_and_snapshots() {
        let r = RunDate::new(d("2026-11-23"), &Config::default()).unwrap();
        assert_eq!(r.epoch_days(), 20_780);
        assert_eq!(r.as_of_ns(), 20_780 * DAY_NS);
        assert_eq!(r.window_start_ns(), (20_780 - 365) * DAY_NS);
        assert_eq!(r.days_before(180).date(), d("2026-05-27"));
        assert_eq!(r.days_since(d("2026-11-01")), 22);
        assert_eq!(r.as_of_rfc3339(), "2026-11-23T00:00:00Z");
    }

    #[test]
    fn dates_beyond_nanosecond_timestamps_are_refused() {
        let cfg = Config::default();
        for bad in [
            "9999-12-31",
            "2263-01-01",
            "2262-04-11",
            "1600-01-01",
            "1678-06-01",
        ] {
            let e = RunDate::new(d(bad), &cfg).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
            assert!(e.to_string().contains("use a date from"), "{e}");
        }
        // The last usable date leaves room for the longest horizon (180 days) after it.
        assert!(RunDate::new(d("2261-10-01"), &cfg).is_ok());
        assert!(RunDate::new(d("1680-01-01"), &cfg).is_ok());
    }
}
