//! The gateway's one wall clock: milliseconds since the Unix epoch, the unit in which usage
//! rows, rate windows, cooldowns, login expiries and token expiries all count time.
//!
//! Signed, because differences of two readings (a wait, an age) are taken everywhere and must
//! not wrap; a clock before 1970 reads as 0 and one past the year 292 million as `i64::MAX`.

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
