//! Today's token count, as the tray shows it: the bounds of the local day and the totals of the
//! requests recorded in it.
//!
//! [`crate::desktop`] seeds a [`Today`] once from the gateway's database
//! (`RunningGateway::usage_since(local midnight)`) when the gateway starts, then adds each record
//! the gateway announces (`RunningGateway::subscribe_usage`), and rolls over to zero when the
//! local date changes. Everything here is plain arithmetic on timestamps, so it is tested
//! without a clock or a database.

use chrono::{DateTime, Local, NaiveDate, TimeZone};
use flexiproxy_gateway::store::usage::{Totals, UsageRecord};

/// Token totals of a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub requests: u64,
    pub input: u64,
    pub output: u64,
    /// Input tokens served from the provider's prompt cache (part of `input`).
    pub cached: u64,
}

impl Counts {
    /// Tokens in and out: what "N tokens" means in the tray.
    pub fn tokens(&self) -> u64 {
        self.input.saturating_add(self.output)
    }

    /// The database's totals (SQLite sums are signed; a negative one cannot happen).
    pub fn from_totals(totals: &Totals) -> Self {
        let count = |value: i64| u64::try_from(value).unwrap_or(0);
        Self {
            requests: count(totals.requests),
            input: count(totals.input_tokens),
            output: count(totals.output_tokens),
            cached: count(totals.cached_tokens),
        }
    }

    fn add(&mut self, record: &UsageRecord) {
        let tokens = record.tokens;
        self.requests = self.requests.saturating_add(1);
        self.input = self.input.saturating_add(tokens.input.unwrap_or(0));
        self.output = self.output.saturating_add(tokens.output.unwrap_or(0));
        self.cached = self.cached.saturating_add(tokens.cached.unwrap_or(0));
    }
}

/// One local calendar day as Unix milliseconds: `[start_ms, end_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Day {
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Day {
    /// The day `now` falls in, in `now`'s time zone.
    pub fn containing<Tz: TimeZone>(now: &DateTime<Tz>) -> Self {
        let zone = now.timezone();
        let date = now.date_naive();
        let start_ms = day_start_ms(&zone, date);
        let end_ms = date
            .succ_opt()
            .map_or(start_ms + DAY_MS, |next| day_start_ms(&zone, next));
        Self { start_ms, end_ms }
    }

    /// Today in the computer's time zone.
    pub fn local_today() -> Self {
        Self::containing(&Local::now())
    }

    pub fn contains(&self, ts_ms: i64) -> bool {
        (self.start_ms..self.end_ms).contains(&ts_ms)
    }
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// When `date` begins in `zone`: midnight, or where a daylight-saving jump skips midnight (some
/// zones change at 00:00), the first hour that exists.
fn day_start_ms<Tz: TimeZone>(zone: &Tz, date: NaiveDate) -> i64 {
    (0..3)
        .filter_map(|hour| date.and_hms_opt(hour, 0, 0))
        .find_map(|local| zone.from_local_datetime(&local).earliest())
        .map_or_else(
            // No zone skips three hours; treat the date as UTC rather than fail.
            || {
                date.and_hms_opt(0, 0, 0)
                    .map_or(0, |t| t.and_utc().timestamp_millis())
            },
            |start| start.timestamp_millis(),
        )
}

/// The running totals of one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Today {
    day: Day,
    counts: Counts,
}

impl Today {
    pub fn new(day: Day, counts: Counts) -> Self {
        Self { day, counts }
    }

    pub fn day(&self) -> Day {
        self.day
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Counts a record that belongs to this day; another day's record (a request that began
    /// before midnight and ended after the roll-over) is left out, as the database query would.
    pub fn add(&mut self, record: &UsageRecord) -> bool {
        if !self.day.contains(record.ts_ms) {
            return false;
        }
        self.counts.add(record);
        true
    }

    /// Starts `current` from zero if it is a later day than this one; says whether it did.
    pub fn roll(&mut self, current: Day) -> bool {
        if current.start_ms <= self.day.start_ms {
            return false;
        }
        *self = Self::new(current, Counts::default());
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use chrono::FixedOffset;
    use flexiproxy_gateway::store::usage::Outcome;
    use flexiproxy_protocol::canonical::TokenUsage;

    use super::*;

    fn record(ts_ms: i64, input: u64, output: u64, cached: Option<u64>) -> UsageRecord {
        UsageRecord {
            ts_ms,
            adapter: Some(1),
            provider_id: "mock".into(),
            credential: None,
            model: "m".into(),
            endpoint: "chat",
            stream: false,
            status: 200,
            tokens: TokenUsage {
                input: Some(input),
                output: Some(output),
                cached,
                reasoning: None,
            },
            latency_ms: 10,
            ttfb_ms: None,
            outcome: Outcome::Completed,
            error: None,
        }
    }

    #[test]
    fn the_day_runs_from_local_midnight_to_the_next() {
        let zone = FixedOffset::east_opt(2 * 3600).unwrap();
        let now = zone.with_ymd_and_hms(2024, 3, 10, 23, 30, 0).unwrap();
        let day = Day::containing(&now);
        let midnight = zone.with_ymd_and_hms(2024, 3, 10, 0, 0, 0).unwrap();
        assert_eq!(day.start_ms, midnight.timestamp_millis());
        assert_eq!(day.end_ms - day.start_ms, DAY_MS);
        assert!(day.contains(now.timestamp_millis()));
        assert!(!day.contains(day.end_ms));
        // 22:00 UTC the day before is already this local day (UTC+2).
        assert_eq!(day.start_ms % DAY_MS, 22 * 3600 * 1000);
    }

    #[test]
    fn records_add_up_and_other_days_are_left_out() {
        let zone = FixedOffset::west_opt(5 * 3600).unwrap();
        let day = Day::containing(&zone.with_ymd_and_hms(2024, 7, 1, 9, 0, 0).unwrap());
        let seeded = Counts {
            requests: 2,
            input: 100,
            output: 20,
            cached: 10,
        };
        let mut today = Today::new(day, seeded);
        assert!(today.add(&record(day.start_ms + 1, 17, 4, Some(5))));
        assert!(today.add(&record(day.start_ms + 2, 3, 1, None)));
        assert!(!today.add(&record(day.start_ms - 1, 1000, 1000, None)));
        assert_eq!(
            today.counts(),
            Counts {
                requests: 4,
                input: 120,
                output: 25,
                cached: 15,
            }
        );
        assert_eq!(today.counts().tokens(), 145);
    }

    #[test]
    fn a_new_day_starts_from_zero_and_an_old_one_is_ignored() {
        let zone = FixedOffset::east_opt(0).unwrap();
        let monday = Day::containing(&zone.with_ymd_and_hms(2024, 1, 1, 12, 0, 0).unwrap());
        let tuesday = Day::containing(&zone.with_ymd_and_hms(2024, 1, 2, 0, 0, 1).unwrap());
        assert_eq!(tuesday.start_ms, monday.end_ms);
        let mut today = Today::new(monday, Counts::default());
        today.add(&record(monday.start_ms, 5, 5, None));
        assert!(!today.roll(monday));
        assert_eq!(today.counts().tokens(), 10);
        assert!(today.roll(tuesday));
        assert_eq!(today.counts(), Counts::default());
        assert_eq!(today.day(), tuesday);
        assert!(!today.roll(monday));
        assert!(today.add(&record(tuesday.start_ms + 5, 1, 2, None)));
    }

    #[test]
    fn database_totals_are_read_as_counts() {
        let totals = Totals {
            requests: 3,
            input_tokens: 51,
            output_tokens: 12,
            cached_tokens: 15,
            errors: 1,
        };
        let counts = Counts::from_totals(&totals);
        assert_eq!(
            (counts.requests, counts.tokens(), counts.cached),
            (3, 63, 15)
        );
        let broken = Totals {
            input_tokens: -1,
            ..totals
        };
        assert_eq!(Counts::from_totals(&broken).input, 0);
    }
}
