//! The usage history as CSV, for spreadsheets and scripts (`GET /api/usage/export.csv`).
//!
//! `server::usage_views` reads the rows a page at a time through `usage_page` and turns each
//! page into text here, so the download is streamed and never held whole in memory. Fields are
//! quoted as RFC 4180 says: only when they contain a comma, a quote or a line break, with
//! quotes doubled; lines end in CRLF. Times are written twice, as ISO 8601 UTC for people and as
//! epoch milliseconds for programs. Text that came from outside (model names from clients, error
//! text from providers) and starts like a formula gets a leading `'`, so a spreadsheet opening the
//! file shows it instead of evaluating it.

use std::fmt::Write as _;

use crate::store::usage::RecentRow;

/// The first line of every export.
pub const HEADER: &str = "time_utc,ts_ms,provider,credential,adapter,model,endpoint,stream,\
                          status,outcome,input_tokens,output_tokens,cached_tokens,latency_ms,\
                          ttfb_ms,error\r\n";

/// The download's file name: `flexiproxy-usage-YYYYMMDD.csv`, dated `now_ms` (UTC).
pub fn file_name(now_ms: i64) -> String {
    let (year, month, day) = civil_date(now_ms.div_euclid(DAY_MS));
    format!("flexiproxy-usage-{year:04}{month:02}{day:02}.csv")
}

/// Appends one row; `adapter` is the adapter's label as the dashboard shows it.
pub fn push_row(out: &mut String, row: &RecentRow, adapter: &str) {
    let number = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_default();
    let fields: [&str; 16] = [
        &time_utc(row.ts_ms),
        &row.ts_ms.to_string(),
        &inert(&row.provider_id),
        &inert(row.credential.as_deref().unwrap_or("")),
        &inert(adapter),
        &inert(&row.model),
        &row.endpoint,
        if row.stream { "true" } else { "false" },
        &row.status.to_string(),
        &row.outcome,
        &number(row.input_tokens),
        &number(row.output_tokens),
        &number(row.cached_tokens),
        &row.latency_ms.to_string(),
        &number(row.ttfb_ms),
        &inert(row.error.as_deref().unwrap_or("")),
    ];
    for (n, value) in fields.into_iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        push_field(out, value);
    }
    out.push_str("\r\n");
}

/// Text a spreadsheet would take for a formula, defused with a leading apostrophe.
fn inert(value: &str) -> std::borrow::Cow<'_, str> {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{value}"))
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

/// Appends one field, quoted when RFC 4180 requires it.
fn push_field(out: &mut String, value: &str) {
    if value.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

const DAY_MS: i64 = 86_400_000;

/// `ts_ms` as `2024-05-01T12:34:56.789Z`.
pub fn time_utc(ts_ms: i64) -> String {
    let (year, month, day) = civil_date(ts_ms.div_euclid(DAY_MS));
    let in_day = ts_ms.rem_euclid(DAY_MS);
    let mut text = String::with_capacity(24);
    let _ = write!(
        text,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    );
    text
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`: shift to eras of 400 years starting in March, where leap days fall last).
fn civil_date(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn row() -> RecentRow {
        RecentRow {
            ts_ms: 1_714_566_896_789,
            adapter: Some(12),
            adapter_label: String::new(),
            provider_id: "openai".into(),
            credential: Some("openai/work".into()),
            model: "gpt-4o".into(),
            endpoint: "chat.completions".into(),
            stream: true,
            status: 200,
            input_tokens: Some(5),
            output_tokens: Some(7),
            cached_tokens: None,
            latency_ms: 120,
            ttfb_ms: Some(30),
            outcome: "completed".into(),
            error: None,
        }
    }

    #[test]
    fn plain_fields_stay_unquoted() {
        let mut out = String::new();
        push_row(&mut out, &row(), "openai · gpt-4o");
        assert_eq!(
            out,
            "2024-05-01T12:34:56.789Z,1714566896789,openai,openai/work,openai · gpt-4o,gpt-4o,\
             chat.completions,true,200,completed,5,7,,120,30,\r\n"
        );
        assert_eq!(HEADER.matches(',').count(), out.matches(',').count());
    }

    #[test]
    fn commas_quotes_and_line_breaks_are_quoted() {
        let mut out = String::new();
        push_field(&mut out, "a,b");
        out.push('|');
        push_field(&mut out, "say \"hi\"");
        out.push('|');
        push_field(&mut out, "two\nlines");
        out.push('|');
        push_field(&mut out, "cr\r");
        out.push('|');
        push_field(&mut out, "");
        assert_eq!(out, "\"a,b\"|\"say \"\"hi\"\"\"|\"two\nlines\"|\"cr\r\"|");

        let mut failed = row();
        failed.error = Some("provider `x` answered HTTP 400: \"bad\", very".into());
        let mut line = String::new();
        push_row(&mut line, &failed, "routing");
        assert!(line.ends_with(",\"provider `x` answered HTTP 400: \"\"bad\"\", very\"\r\n"));
    }

    #[test]
    fn formulas_from_outside_are_defused() {
        let mut hostile = row();
        hostile.model = "=HYPERLINK(\"http://x\")".into();
        hostile.error = Some("@SUM(A1)".into());
        let mut line = String::new();
        push_row(&mut line, &hostile, "openai · gpt-4o");
        assert!(
            line.contains(",\"'=HYPERLINK(\"\"http://x\"\")\","),
            "{line}"
        );
        assert!(line.ends_with(",'@SUM(A1)\r\n"), "{line}");
        assert_eq!(inert("gpt-4o"), "gpt-4o");
    }

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(time_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(time_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(time_utc(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
        assert_eq!(time_utc(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            file_name(1_735_689_599_000),
            "flexiproxy-usage-20241231.csv"
        );
    }
}
