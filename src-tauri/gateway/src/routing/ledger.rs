//! What each credential has used and whether it may be used now: sliding request and token
//! windows, cooldowns after failures, and the auth-failed flag.
//!
//! Kept in memory by key id (`<provider>/<credential>`), so it survives registry reloads and
//! config edits; seeded at start from the last day of `usage` rows so a restart does not reset
//! a daily limit. Times are milliseconds since the epoch and passed in, which keeps every rule
//! testable without sleeping. `routing::Router` asks [`Ledger::availability`] and records each
//! attempt with [`Ledger::note_request`] under the same lock, so concurrent requests cannot
//! both take a credential's last allowed slot.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;

use super::policy::Limits;

pub const MINUTE_MS: i64 = 60_000;
pub const DAY_MS: i64 = 86_400_000;

/// Why a credential cannot be used until some time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hold {
    /// At `max_request_min`, `max_request_day` or `max_token_min`.
    AtLimit(String),
    /// Resting after a 429: the provider said to wait.
    CoolingDown(String),
    /// Resting after a 5xx, a timeout or a connection failure.
    Resting(String),
    /// The provider refused the key (401/403); it rests for long and is flagged.
    AuthFailed(String),
}

impl Hold {
    /// A rest after a failure (not a rate limit) is a preference, not a ban: when nothing else
    /// can serve, the resting credential is tried anyway, so one transient error of a user's
    /// only key does not turn into refusals of its own.
    pub fn is_soft(&self) -> bool {
        match self {
            Self::AtLimit(_) | Self::CoolingDown(_) => false,
            Self::Resting(_) | Self::AuthFailed(_) => true,
        }
    }

    pub fn state(&self) -> &'static str {
        match self {
            Self::AtLimit(_) => "at_limit",
            Self::CoolingDown(_) | Self::Resting(_) => "cooling_down",
            Self::AuthFailed(_) => "auth_failed",
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Self::AtLimit(reason)
            | Self::CoolingDown(reason)
            | Self::Resting(reason)
            | Self::AuthFailed(reason) => reason,
        }
    }
}

/// Whether a credential can take a request now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    Ready,
    /// Not before `until_ms`.
    Held {
        until_ms: i64,
        hold: Hold,
    },
}

/// The current counts of a credential's windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Windows {
    pub req_min: u32,
    pub req_day: u32,
    pub tok_min: u64,
}

/// The requests of one minute of the last day: how many, and when the newest of them started.
#[derive(Debug, Clone, Copy)]
struct MinuteBucket {
    minute: i64,
    newest_ms: i64,
    count: u32,
}

#[derive(Debug, Default)]
struct Entry {
    /// Start times of requests in the last minute, oldest first: a minute limit frees its slot
    /// at the exact millisecond.
    recent: VecDeque<i64>,
    /// Requests of the last day counted per minute, oldest first. A busy credential sends
    /// millions of requests a day; one timestamp each would cost ~170 MB a day at 250
    /// requests/s, while buckets cost at most 1,440 entries. A bucket leaves the day when its
    /// newest request does, so the day count errs by at most a minute, on the safe side.
    day: VecDeque<MinuteBucket>,
    day_count: u64,
    /// (time, tokens) of finished requests in the last minute, oldest first.
    tokens: VecDeque<(i64, u64)>,
    token_sum: u64,
    cooldown: Option<(i64, Hold)>,
}

impl Entry {
    fn expire(&mut self, now: i64) {
        let minute_ago = now.saturating_sub(MINUTE_MS);
        while self.recent.front().is_some_and(|&t| t <= minute_ago) {
            self.recent.pop_front();
        }
        let day_ago = now.saturating_sub(DAY_MS);
        while let Some(bucket) = self.day.front() {
            if bucket.newest_ms > day_ago {
                break;
            }
            self.day_count = self.day_count.saturating_sub(u64::from(bucket.count));
            self.day.pop_front();
        }
        while let Some(&(t, n)) = self.tokens.front() {
            if t > minute_ago {
                break;
            }
            self.token_sum = self.token_sum.saturating_sub(n);
            self.tokens.pop_front();
        }
        if self
            .cooldown
            .as_ref()
            .is_some_and(|(until, _)| *until <= now)
        {
            self.cooldown = None;
        }
    }

    /// Counts a request started at `at`. Times arrive in order but for clock steps and races
    /// between callers: a late one joins the newest bucket instead of reordering the day.
    fn push_request(&mut self, at: i64) {
        self.recent.push_back(at);
        let minute = at.div_euclid(MINUTE_MS);
        match self.day.back_mut() {
            Some(bucket) if bucket.minute >= minute => {
                bucket.count = bucket.count.saturating_add(1);
                bucket.newest_ms = bucket.newest_ms.max(at);
            }
            _ => self.day.push_back(MinuteBucket {
                minute,
                newest_ms: at,
                count: 1,
            }),
        }
        self.day_count = self.day_count.saturating_add(1);
    }

    fn requests_since(&self, since: i64) -> usize {
        // Requests are in time order: count from the newest end.
        self.recent.iter().rev().take_while(|&&t| t > since).count()
    }

    /// When the day holds fewer than `max` requests again: once the oldest
    /// `day_count - max + 1` have aged out.
    fn day_frees_at(&self, max: u32) -> Option<i64> {
        let must_leave = self
            .day_count
            .checked_sub(u64::from(max))?
            .saturating_add(1);
        let mut left = 0u64;
        self.day.iter().find_map(|bucket| {
            left = left.saturating_add(u64::from(bucket.count));
            (left >= must_leave).then(|| bucket.newest_ms.saturating_add(DAY_MS))
        })
    }

    fn windows(&self, now: i64) -> Windows {
        Windows {
            req_min: saturating_u32(self.requests_since(now.saturating_sub(MINUTE_MS))),
            req_day: u32::try_from(self.day_count).unwrap_or(u32::MAX),
            tok_min: self.token_sum,
        }
    }

    fn availability(&self, limits: &Limits, now: i64) -> Availability {
        if let Some((until, hold)) = &self.cooldown {
            return Availability::Held {
                until_ms: *until,
                hold: hold.clone(),
            };
        }
        let mut latest: Option<(i64, Hold)> = None;
        let mut hold_until = |until: i64, reason: String| {
            if latest.as_ref().is_none_or(|(t, _)| until > *t) {
                latest = Some((until, Hold::AtLimit(reason)));
            }
        };
        // Another request fits once the `max`-th newest has aged out of the window.
        if let Some(max) = limits.max_request_min
            && self.requests_since(now.saturating_sub(MINUTE_MS)) >= max as usize
            && let Some(&t) = self.recent.get(self.recent.len() - max as usize)
        {
            hold_until(
                t.saturating_add(MINUTE_MS),
                format!("{max} requests per minute"),
            );
        }
        if let Some(max) = limits.max_request_day
            && let Some(until) = self.day_frees_at(max)
        {
            hold_until(until, format!("{max} requests per day"));
        }
        if let Some(max) = limits.max_token_min
            && self.token_sum >= max
        {
            let mut sum = self.token_sum;
            for &(t, n) in &self.tokens {
                sum = sum.saturating_sub(n);
                if sum < max {
                    hold_until(
                        t.saturating_add(MINUTE_MS),
                        format!("{max} tokens per minute"),
                    );
                    break;
                }
            }
        }
        match latest {
            Some((until_ms, hold)) => Availability::Held { until_ms, hold },
            None => Availability::Ready,
        }
    }
}

fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Every credential's windows and cooldowns.
#[derive(Debug, Default)]
pub struct Ledger {
    entries: HashMap<String, Entry>,
}

impl Ledger {
    /// Runs `f` on the credential's entry, brought up to `now`. The key is copied only when
    /// the entry is new: this runs several times per request.
    fn with_entry<T>(&mut self, key_id: &str, now: i64, f: impl FnOnce(&mut Entry) -> T) -> T {
        if let Some(entry) = self.entries.get_mut(key_id) {
            entry.expire(now);
            return f(entry);
        }
        let mut entry = Entry::default();
        let out = f(&mut entry);
        self.entries.insert(key_id.to_owned(), entry);
        out
    }

    pub fn availability(&mut self, key_id: &str, limits: &Limits, now: i64) -> Availability {
        self.with_entry(key_id, now, |e| e.availability(limits, now))
    }

    /// Counts a request sent with this credential.
    pub fn note_request(&mut self, key_id: &str, now: i64) {
        self.with_entry(key_id, now, |e| e.push_request(now));
    }

    /// Counts the tokens a finished request used (from its usage record).
    pub fn note_tokens(&mut self, key_id: &str, tokens: u64, now: i64) {
        if tokens == 0 {
            return;
        }
        self.with_entry(key_id, now, |entry| {
            entry.tokens.push_back((now, tokens));
            entry.token_sum = entry.token_sum.saturating_add(tokens);
        });
    }

    /// Rests a credential until `until_ms`. A longer rest already running is kept, except that
    /// the provider's own word (a 429's wait) replaces a rest the gateway chose itself.
    pub fn cool_down(&mut self, key_id: &str, until_ms: i64, hold: Hold, now: i64) {
        self.with_entry(key_id, now, |entry| {
            if entry.cooldown.as_ref().is_none_or(|(current, held)| {
                until_ms > *current || (held.is_soft() && !hold.is_soft())
            }) {
                entry.cooldown = Some((until_ms, hold));
            }
        });
    }

    /// Ends a cooldown and clears the auth flag (the user fixed the key).
    pub fn reset(&mut self, key_id: &str) {
        if let Some(entry) = self.entries.get_mut(key_id) {
            entry.cooldown = None;
        }
    }

    pub fn windows(&mut self, key_id: &str, now: i64) -> Windows {
        self.with_entry(key_id, now, |e| e.windows(now))
    }

    /// Restores the windows from recorded usage: `(key_id, start ms, tokens)` of the last day.
    /// A row dated after `now` (the clock was turned back, or the file was edited) counts as
    /// made now, so it can neither hold a credential for longer than a window nor overflow
    /// the times computed from it.
    pub fn seed(&mut self, rows: impl IntoIterator<Item = (String, i64, u64)>, now: i64) {
        let mut started: HashMap<String, Vec<i64>> = HashMap::new();
        for (key_id, at, tokens) in rows {
            if at <= now.saturating_sub(DAY_MS) {
                continue;
            }
            let at = at.min(now);
            if at > now.saturating_sub(MINUTE_MS) && tokens > 0 {
                let entry = self.entries.entry(key_id.clone()).or_default();
                entry.tokens.push_back((at, tokens));
                entry.token_sum = entry.token_sum.saturating_add(tokens);
            }
            started.entry(key_id).or_default().push(at);
        }
        for (key_id, mut times) in started {
            times.sort_unstable();
            let entry = self.entries.entry(key_id).or_default();
            for at in times {
                entry.push_request(at);
            }
        }
        for entry in self.entries.values_mut() {
            entry.tokens.make_contiguous().sort_unstable();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    fn per_minute(n: u32) -> Limits {
        Limits::requests_per_minute(n)
    }

    #[test]
    fn a_minute_limit_holds_exactly_at_its_boundary_and_says_when_it_frees() {
        let mut ledger = Ledger::default();
        let limits = per_minute(3);
        for i in 0..3 {
            assert_eq!(
                ledger.availability("p/k", &limits, T0 + i * 1000),
                Availability::Ready
            );
            ledger.note_request("p/k", T0 + i * 1000);
        }
        let held = ledger.availability("p/k", &limits, T0 + 5000);
        assert_eq!(
            held,
            Availability::Held {
                until_ms: T0 + MINUTE_MS,
                hold: Hold::AtLimit("3 requests per minute".into())
            }
        );
        assert!(matches!(
            ledger.availability("p/k", &limits, T0 + MINUTE_MS - 1),
            Availability::Held { .. }
        ));
        assert_eq!(
            ledger.availability("p/k", &limits, T0 + MINUTE_MS),
            Availability::Ready,
            "the first request aged out"
        );
    }

    #[test]
    fn a_day_limit_counts_the_last_24_hours() {
        let mut ledger = Ledger::default();
        let limits = Limits::requests_per_day(2);
        ledger.note_request("p/k", T0);
        ledger.note_request("p/k", T0 + 3_600_000);
        let Availability::Held { until_ms, hold } =
            ledger.availability("p/k", &limits, T0 + 7_200_000)
        else {
            panic!("expected a hold");
        };
        assert_eq!(until_ms, T0 + DAY_MS);
        assert_eq!(hold.state(), "at_limit");
        assert_eq!(ledger.windows("p/k", T0 + 7_200_000).req_day, 2);
        assert_eq!(
            ledger.availability("p/k", &limits, T0 + DAY_MS),
            Availability::Ready
        );
    }

    #[test]
    fn tokens_per_minute_come_from_finished_requests() {
        let mut ledger = Ledger::default();
        let limits = Limits::tokens_per_minute(30);
        ledger.note_tokens("p/k", 15, T0);
        assert_eq!(
            ledger.availability("p/k", &limits, T0 + 1),
            Availability::Ready
        );
        ledger.note_tokens("p/k", 15, T0 + 10_000);
        let Availability::Held { until_ms, .. } = ledger.availability("p/k", &limits, T0 + 20_000)
        else {
            panic!("expected a hold");
        };
        assert_eq!(until_ms, T0 + MINUTE_MS, "frees when the first 15 age out");
        assert_eq!(ledger.windows("p/k", T0 + 20_000).tok_min, 30);
        assert_eq!(ledger.windows("p/k", T0 + MINUTE_MS).tok_min, 15);
    }

    #[test]
    fn cooldowns_end_by_themselves_and_keep_the_longer_rest() {
        let mut ledger = Ledger::default();
        let limits = Limits::default();
        ledger.cool_down("p/k", T0 + 2000, Hold::CoolingDown("429".into()), T0);
        ledger.cool_down("p/k", T0 + 1000, Hold::CoolingDown("500".into()), T0);
        assert_eq!(
            ledger.availability("p/k", &limits, T0 + 1500),
            Availability::Held {
                until_ms: T0 + 2000,
                hold: Hold::CoolingDown("429".into())
            }
        );
        assert_eq!(
            ledger.availability("p/k", &limits, T0 + 2000),
            Availability::Ready
        );
        ledger.cool_down("p/k", T0 + DAY_MS, Hold::AuthFailed("401".into()), T0);
        ledger.reset("p/k");
        assert_eq!(
            ledger.availability("p/k", &limits, T0 + 3000),
            Availability::Ready
        );
    }

    #[test]
    fn absurd_rows_and_counts_saturate_instead_of_overflowing() {
        let mut ledger = Ledger::default();
        let now = T0;
        // As an older version could have recorded them: a count of u64::MAX, a row dated at the
        // end of time.
        ledger.seed(
            [
                ("p/k".to_owned(), now - 1000, u64::MAX),
                ("p/k".to_owned(), i64::MAX, u64::MAX),
            ],
            now,
        );
        ledger.note_tokens("p/k", u64::MAX, now);
        let limits = Limits {
            max_request_min: Some(1),
            max_request_day: Some(1),
            max_token_min: Some(10),
        };
        let Availability::Held { until_ms, .. } = ledger.availability("p/k", &limits, now) else {
            panic!("expected a hold");
        };
        assert_eq!(until_ms, now + DAY_MS, "the future row counts as made now");
        assert_eq!(ledger.windows("p/k", now).tok_min, u64::MAX);
        assert_eq!(ledger.windows("p/k", now).req_day, 2);
        assert_eq!(
            ledger.windows("p/k", now + MINUTE_MS).tok_min,
            0,
            "all aged out"
        );
        ledger.note_request("p/k", i64::MIN);
        ledger.availability("p/k", &limits, i64::MIN);
    }

    #[test]
    fn a_busy_day_costs_at_most_a_bucket_per_minute() {
        let mut ledger = Ledger::default();
        // 100 requests a second for a day: 8.64 million, the old one-timestamp-each ledger held
        // ~69 MB for this credential.
        let step = 10;
        let mut now = T0;
        while now < T0 + DAY_MS {
            ledger.note_request("p/k", now);
            now += step;
        }
        let entry = &ledger.entries["p/k"];
        assert!(entry.day.len() <= 1441, "{} buckets", entry.day.len());
        assert!(entry.recent.len() <= 6001, "{} recent", entry.recent.len());
        let windows = ledger.windows("p/k", now);
        // The last minute is exact: (now - 1 min, now) holds 5,999 of the 10 ms steps.
        assert_eq!(windows.req_min, 5999);
        // The first minute's bucket leaves when its newest request does: the count is at most
        // one minute's requests high, never low.
        let exact = (DAY_MS / step) as u32 - 1;
        assert!(
            (exact..=exact + 6000).contains(&windows.req_day),
            "{}",
            windows.req_day
        );
        let limits = Limits::requests_per_day(exact);
        let Availability::Held { until_ms, .. } = ledger.availability("p/k", &limits, now) else {
            panic!("expected a hold");
        };
        assert!(until_ms > now && until_ms <= now + MINUTE_MS, "{until_ms}");
    }

    #[test]
    fn seeding_restores_the_windows_of_the_last_day() {
        let mut ledger = Ledger::default();
        let now = T0 + DAY_MS;
        ledger.seed(
            [
                ("p/k".to_owned(), T0 - 5, 10),
                ("p/k".to_owned(), now - 30_000, 20),
                ("p/k".to_owned(), now - 2 * MINUTE_MS, 40),
            ],
            now,
        );
        assert_eq!(
            ledger.windows("p/k", now),
            Windows {
                req_min: 1,
                req_day: 2,
                tok_min: 20
            }
        );
    }
}
