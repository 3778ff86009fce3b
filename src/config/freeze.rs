//! Freeze windows (`[[freeze]]` for every instance, `[[instances.freeze]]` for one): a
//! fixed `start`/`end`, or a `weekly` window in a named time zone.
//!
//! A weekly window's times are wall-clock times in its zone, so it follows daylight saving
//! time. A clock change can make a wall-clock time not exist or exist twice:
//! - a time skipped when the clocks go forward (02:30 on the night Europe/Berlin goes from
//!   02:00 to 03:00) is read with the offset in force before the change: the instant the
//!   clock would have shown it had it not changed (02:30 CET = 03:30 CEST);
//! - a time shown twice when the clocks go back (02:30 on the night Europe/Berlin goes from
//!   03:00 back to 02:00) is its first occurrence (02:30 CEST).

use chrono::{DateTime, Datelike, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime};
use chrono::{Offset, TimeZone, Utc, Weekday};

use super::checks::Checker;
use super::shape::{RawFreeze, RawWeekly};

/// The longest `reason` accepted: it is shown in GitHub's one-line status descriptions.
const MAX_REASON_CHARS: usize = 120;

/// One freeze window, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreezeWindow {
    pub reason: String,
    pub when: FreezeWhen,
}

/// When a freeze holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FreezeWhen {
    /// From `start` (inclusive) to `end` (exclusive).
    Fixed {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    /// Every week from `from` until `until`, read in `timezone`
    /// (`{ from = "Fri 15:00", until = "Mon 08:00", timezone = "Europe/Berlin" }`).
    Weekly {
        from: (chrono::Weekday, chrono::NaiveTime),
        until: (chrono::Weekday, chrono::NaiveTime),
        timezone: chrono_tz::Tz,
    },
}

impl FreezeWindow {
    /// The occurrence of this window that holds at `now`: (start, end) in UTC.
    pub fn active_at(&self, now: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        match &self.when {
            FreezeWhen::Fixed { start, end } => {
                (*start <= now && now < *end).then_some((*start, *end))
            }
            FreezeWhen::Weekly {
                from,
                until,
                timezone,
            } => weekly_occurrences(*from, *until, *timezone, now, -1..=1)
                .find(|(start, end)| *start <= now && now < *end),
        }
    }

    /// The next occurrence that starts after `now`: (start, end) in UTC.
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        match &self.when {
            FreezeWhen::Fixed { start, end } => (*start > now).then_some((*start, *end)),
            FreezeWhen::Weekly {
                from,
                until,
                timezone,
            } => weekly_occurrences(*from, *until, *timezone, now, -1..=2)
                .filter(|(start, _)| *start > now)
                .min_by_key(|(start, _)| *start),
        }
    }

    /// A short description for people: `"Fri 15:00 until Mon 08:00 Europe/Berlin"` or
    /// `"2026-12-24T00:00:00Z until 2026-12-27T00:00:00Z"`.
    pub fn schedule(&self) -> String {
        match &self.when {
            FreezeWhen::Fixed { start, end } => format!(
                "{} until {}",
                start.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                end.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            ),
            FreezeWhen::Weekly {
                from,
                until,
                timezone,
            } => format!(
                "every {} {} until {} {} {timezone}",
                from.0,
                from.1.format("%H:%M"),
                until.0,
                until.1.format("%H:%M")
            ),
        }
    }
}

/// The weekly window's occurrences whose start falls in the weeks `weeks` around `now`
/// (0: the one starting on the latest `from` weekday on or before `now`'s local date), in
/// UTC. An occurrence a clock change leaves empty is left out.
fn weekly_occurrences(
    from: (Weekday, NaiveTime),
    until: (Weekday, NaiveTime),
    timezone: chrono_tz::Tz,
    now: DateTime<Utc>,
    weeks: std::ops::RangeInclusive<i64>,
) -> impl Iterator<Item = (DateTime<Utc>, DateTime<Utc>)> {
    let today = now.with_timezone(&timezone).date_naive();
    let back = (7 + today.weekday().num_days_from_monday() - from.0.num_days_from_monday()) % 7;
    let base = today - Days::new(u64::from(back));
    let mut span = (7 + until.0.num_days_from_monday() - from.0.num_days_from_monday()) % 7;
    if span == 0 && until.1 <= from.1 {
        span = 7;
    }
    weeks.filter_map(move |week| {
        let start_date = shift_days(base, week * 7)?;
        let end_date = start_date.checked_add_days(Days::new(u64::from(span)))?;
        let start = to_utc(timezone, start_date.and_time(from.1));
        let end = to_utc(timezone, end_date.and_time(until.1));
        (start < end).then_some((start, end))
    })
}

/// `date` moved by `days` (negative: back).
fn shift_days(date: NaiveDate, days: i64) -> Option<NaiveDate> {
    if days >= 0 {
        date.checked_add_days(Days::new(days.unsigned_abs()))
    } else {
        date.checked_sub_days(Days::new(days.unsigned_abs()))
    }
}

/// The instant a wall-clock time in `timezone` stands for: a time skipped by a clock change
/// is read with the offset in force before it; a time shown twice is its first occurrence.
fn to_utc(timezone: chrono_tz::Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match timezone.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => {
            // Gaps are at most a day long: a day earlier the offset before the gap holds.
            let before = timezone
                .offset_from_utc_datetime(&(local - chrono::Duration::days(1)))
                .fix();
            let utc = local - chrono::Duration::seconds(i64::from(before.local_minus_utc()));
            Utc.from_utc_datetime(&utc)
        }
    }
}

/// One occurrence of a window: the window, its start and its end.
pub type Occurrence<'a> = (&'a FreezeWindow, DateTime<Utc>, DateTime<Utc>);

/// The freeze in force at `now` among `windows` (the one ending last when several hold),
/// and the next one to start after `now`.
pub fn freeze_state(
    windows: &[FreezeWindow],
    now: DateTime<Utc>,
) -> (Option<Occurrence<'_>>, Option<Occurrence<'_>>) {
    let current = windows
        .iter()
        .filter_map(|w| w.active_at(now).map(|(s, e)| (w, s, e)))
        .max_by_key(|(_, _, end)| *end);
    let next = windows
        .iter()
        .filter_map(|w| w.next_after(now).map(|(s, e)| (w, s, e)))
        .min_by_key(|(_, start, _)| *start);
    (current, next)
}

/// `[[freeze]]` entries (`table` = `"freeze"`) or `[[instances.freeze]]` ones
/// (`"instances[N] (NAME).freeze"`), each checked.
pub(super) fn build_freezes(
    table: &str,
    raw: Vec<RawFreeze>,
    check: &mut Checker,
) -> Vec<FreezeWindow> {
    raw.into_iter()
        .enumerate()
        .filter_map(|(n, raw)| build_freeze(&format!("{table}[{n}]"), raw, check))
        .collect()
}

/// One freeze window: a reason, and either `start` + `end` or `weekly`.
fn build_freeze(p: &str, raw: RawFreeze, check: &mut Checker) -> Option<FreezeWindow> {
    let key = |k: &str| format!("{p}.{k}");
    let reason = raw.reason.unwrap_or_default().trim().to_string();
    let reason_ok = if reason.is_empty() {
        check.err(
            &key("reason"),
            "missing; say why deploys stop, e.g. reason = \"end-of-year freeze\" (shown to whoever is held)",
        );
        false
    } else if reason.chars().count() > MAX_REASON_CHARS || reason.chars().any(char::is_control) {
        check.err(
            &key("reason"),
            format!(
                "is shown on GitHub in one line: at most {MAX_REASON_CHARS} characters, without line breaks or control characters"
            ),
        );
        false
    } else {
        true
    };
    let fixed = raw.start.is_some() || raw.end.is_some();
    let when = match (fixed, raw.weekly) {
        (true, Some(_)) => {
            check.err(
                p,
                "set either start and end, or weekly, not both (make two [[freeze]] entries for both)",
            );
            None
        }
        (false, None) => {
            check.err(
                p,
                "needs start and end (RFC 3339, e.g. start = \"2026-12-24T00:00:00Z\") or weekly = { from = \"Fri 15:00\", until = \"Mon 08:00\", timezone = \"Europe/Berlin\" }",
            );
            None
        }
        (true, None) => fixed_window(p, raw.start, raw.end, check),
        (false, Some(weekly)) => weekly_window(&key("weekly"), weekly, check),
    };
    let when = when?;
    reason_ok.then_some(FreezeWindow { reason, when })
}

/// `start` and `end`: both set, RFC 3339 with an offset, `end` after `start`.
fn fixed_window(
    p: &str,
    start: Option<toml::Value>,
    end: Option<toml::Value>,
    check: &mut Checker,
) -> Option<FreezeWhen> {
    let start = instant(&format!("{p}.start"), start, check);
    let end = instant(&format!("{p}.end"), end, check);
    let (start, end) = (start?, end?);
    if end <= start {
        check.err(
            &format!("{p}.end"),
            format!(
                "{} is not after start {}; a freeze ends after it starts",
                end.to_rfc3339(),
                start.to_rfc3339()
            ),
        );
        return None;
    }
    Some(FreezeWhen::Fixed { start, end })
}

/// One instant: an RFC 3339 string or TOML date-time, with a UTC offset.
fn instant(key: &str, raw: Option<toml::Value>, check: &mut Checker) -> Option<DateTime<Utc>> {
    let text = match raw {
        None => {
            check.err(
                key,
                "missing; a fixed freeze needs both start and end, e.g. \"2026-12-24T00:00:00Z\"",
            );
            return None;
        }
        Some(toml::Value::String(s)) => s,
        Some(toml::Value::Datetime(d)) => d.to_string(),
        Some(other) => {
            check.err(
                key,
                format!(
                    "must be an RFC 3339 time like \"2026-12-24T00:00:00Z\", not {}",
                    other.type_str()
                ),
            );
            return None;
        }
    };
    match DateTime::parse_from_rfc3339(text.trim()) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(e) => {
            check.err(
                key,
                format!(
                    "\"{text}\" is not an RFC 3339 time with an offset ({e}); write it like \"2026-12-24T00:00:00Z\" or \"2026-12-24T00:00:00+01:00\""
                ),
            );
            None
        }
    }
}

/// `weekly`: `from` and `until` as `"Fri 15:00"`, different, and an IANA `timezone`.
fn weekly_window(p: &str, raw: RawWeekly, check: &mut Checker) -> Option<FreezeWhen> {
    let from = weekly_time(&format!("{p}.from"), raw.from, check);
    let until = weekly_time(&format!("{p}.until"), raw.until, check);
    let timezone = match raw.timezone {
        None => {
            check.err(
                &format!("{p}.timezone"),
                "missing; name the zone the times are in, e.g. timezone = \"Europe/Berlin\" or \"UTC\"",
            );
            None
        }
        Some(name) => match name.trim().parse::<chrono_tz::Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                check.err(
                    &format!("{p}.timezone"),
                    format!(
                        "\"{name}\" is not an IANA time zone; use a name like \"Europe/Berlin\", \"America/New_York\" or \"UTC\""
                    ),
                );
                None
            }
        },
    };
    let (from, until, timezone) = (from?, until?, timezone?);
    if from == until {
        check.err(
            &format!("{p}.until"),
            "is the same as from; a weekly freeze ends at another time than it starts",
        );
        return None;
    }
    Some(FreezeWhen::Weekly {
        from,
        until,
        timezone,
    })
}

/// `"Fri 15:00"`: a weekday (`Mon` … `Sun`, or the full English name) and `HH:MM`.
fn weekly_time(
    key: &str,
    raw: Option<String>,
    check: &mut Checker,
) -> Option<(Weekday, NaiveTime)> {
    let Some(raw) = raw else {
        check.err(
            key,
            "missing; write a weekday and a time, e.g. \"Fri 15:00\"",
        );
        return None;
    };
    let parsed = match raw.split_whitespace().collect::<Vec<_>>()[..] {
        [day, time] => day.parse::<Weekday>().ok().zip(parse_hh_mm(time)),
        _ => None,
    };
    if parsed.is_none() {
        check.err(
            key,
            format!(
                "\"{raw}\" is not a weekday and a time; write it like \"Fri 15:00\" (Mon, Tue, Wed, Thu, Fri, Sat, Sun; 24-hour HH:MM)"
            ),
        );
    }
    parsed
}

/// `HH:MM`, 24-hour.
fn parse_hh_mm(text: &str) -> Option<NaiveTime> {
    let (h, m) = text.split_once(':')?;
    if !(1..=2).contains(&h.len())
        || m.len() != 2
        || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    NaiveTime::from_hms_opt(h.parse().ok()?, m.parse().ok()?, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Europe::Berlin;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test instant")
            .with_timezone(&Utc)
    }

    fn weekly(from: &str, until: &str, timezone: chrono_tz::Tz) -> FreezeWindow {
        let at = |s: &str| {
            let (day, time) = s.split_once(' ').expect("day and time");
            (
                day.parse::<Weekday>().expect("weekday"),
                parse_hh_mm(time).expect("time"),
            )
        };
        FreezeWindow {
            reason: "weekend".into(),
            when: FreezeWhen::Weekly {
                from: at(from),
                until: at(until),
                timezone,
            },
        }
    }

    fn span(a: &str, b: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        Some((t(a), t(b)))
    }

    #[test]
    fn weekend_freeze_wraps_the_week_in_winter() {
        let w = weekly("Fri 15:00", "Mon 08:00", Berlin);
        // 2026-12-11 is a Friday; Berlin is UTC+1.
        let this_weekend = span("2026-12-11T14:00:00Z", "2026-12-14T07:00:00Z");
        assert_eq!(w.active_at(t("2026-12-12T12:00:00Z")), this_weekend);
        assert_eq!(w.active_at(t("2026-12-13T23:30:00Z")), this_weekend);
        assert_eq!(w.active_at(t("2026-12-11T14:00:00Z")), this_weekend);
        assert_eq!(w.active_at(t("2026-12-11T13:59:59Z")), None);
        assert_eq!(w.active_at(t("2026-12-14T07:00:00Z")), None);
        assert_eq!(w.active_at(t("2026-12-09T10:00:00Z")), None);
        assert_eq!(w.next_after(t("2026-12-09T10:00:00Z")), this_weekend);
        assert_eq!(w.next_after(t("2026-12-11T13:59:59Z")), this_weekend);
        // While it holds, the next one is a week later.
        assert_eq!(
            w.next_after(t("2026-12-12T12:00:00Z")),
            span("2026-12-18T14:00:00Z", "2026-12-21T07:00:00Z")
        );
        // Monday morning local time, before 08:00: still the weekend's.
        assert_eq!(w.active_at(t("2026-12-14T06:30:00Z")), this_weekend);
    }

    #[test]
    fn weekend_freeze_across_the_spring_clock_change() {
        let w = weekly("Fri 15:00", "Mon 08:00", Berlin);
        // Berlin goes from UTC+1 to UTC+2 on Sunday 2026-03-29 at 02:00.
        let weekend = span("2026-03-27T14:00:00Z", "2026-03-30T06:00:00Z");
        assert_eq!(w.active_at(t("2026-03-29T01:30:00Z")), weekend);
        assert_eq!(w.active_at(t("2026-03-30T05:59:00Z")), weekend);
        assert_eq!(w.active_at(t("2026-03-30T06:00:00Z")), None);
        assert_eq!(w.next_after(t("2026-03-25T00:00:00Z")), weekend);
        // The week after runs in summer time.
        assert_eq!(
            w.next_after(t("2026-03-30T06:00:00Z")),
            span("2026-04-03T13:00:00Z", "2026-04-06T06:00:00Z")
        );
    }

    #[test]
    fn weekend_freeze_across_the_autumn_clock_change() {
        let w = weekly("Fri 15:00", "Mon 08:00", Berlin);
        // Berlin goes from UTC+2 back to UTC+1 on Sunday 2026-10-25 at 03:00.
        let weekend = span("2026-10-23T13:00:00Z", "2026-10-26T07:00:00Z");
        assert_eq!(w.active_at(t("2026-10-25T01:30:00Z")), weekend);
        assert_eq!(w.active_at(t("2026-10-26T06:30:00Z")), weekend);
        assert_eq!(w.active_at(t("2026-10-26T07:00:00Z")), None);
        assert_eq!(w.next_after(t("2026-10-20T00:00:00Z")), weekend);
    }

    #[test]
    fn a_start_skipped_by_the_clock_change_uses_the_offset_before_it() {
        // 02:30 does not exist in Berlin on 2026-03-29: read as 02:30 CET = 01:30 UTC.
        let w = weekly("Sun 02:30", "Sun 04:00", Berlin);
        let gap_night = span("2026-03-29T01:30:00Z", "2026-03-29T02:00:00Z");
        assert_eq!(w.active_at(t("2026-03-29T01:45:00Z")), gap_night);
        assert_eq!(w.next_after(t("2026-03-28T00:00:00Z")), gap_night);
        // A normal winter Sunday: 02:30 CET to 04:00 CET.
        assert_eq!(
            w.next_after(t("2026-03-21T00:00:00Z")),
            span("2026-03-22T01:30:00Z", "2026-03-22T03:00:00Z")
        );
    }

    #[test]
    fn a_time_shown_twice_is_its_first_occurrence() {
        // 02:30 is shown twice in Berlin on 2026-10-25: first at 00:30 UTC (CEST).
        let w = weekly("Sun 02:30", "Sun 05:00", Berlin);
        let fold_night = span("2026-10-25T00:30:00Z", "2026-10-25T04:00:00Z");
        assert_eq!(w.active_at(t("2026-10-25T00:30:00Z")), fold_night);
        assert_eq!(w.active_at(t("2026-10-25T00:29:59Z")), None);
        assert_eq!(w.active_at(t("2026-10-25T03:59:00Z")), fold_night);
        assert_eq!(w.next_after(t("2026-10-24T00:00:00Z")), fold_night);
    }

    #[test]
    fn a_window_within_one_day() {
        let w = weekly("Tue 09:00", "Tue 17:00", chrono_tz::UTC);
        // 2026-12-08 is a Tuesday.
        let tuesday = span("2026-12-08T09:00:00Z", "2026-12-08T17:00:00Z");
        assert_eq!(w.active_at(t("2026-12-08T12:00:00Z")), tuesday);
        assert_eq!(w.active_at(t("2026-12-08T08:59:00Z")), None);
        assert_eq!(w.active_at(t("2026-12-08T17:00:00Z")), None);
        assert_eq!(w.active_at(t("2026-12-09T12:00:00Z")), None);
        assert_eq!(w.next_after(t("2026-12-08T08:00:00Z")), tuesday);
        assert_eq!(
            w.next_after(t("2026-12-08T18:00:00Z")),
            span("2026-12-15T09:00:00Z", "2026-12-15T17:00:00Z")
        );
    }

    #[test]
    fn a_window_ending_on_its_start_day_before_its_start_time_lasts_almost_a_week() {
        // Frozen all week except Monday 09:00–10:00 UTC.
        let w = weekly("Mon 10:00", "Mon 09:00", chrono_tz::UTC);
        // 2026-12-07 is a Monday.
        assert_eq!(w.active_at(t("2026-12-07T09:30:00Z")), None);
        assert_eq!(
            w.active_at(t("2026-12-07T08:00:00Z")),
            span("2026-11-30T10:00:00Z", "2026-12-07T09:00:00Z")
        );
        assert_eq!(
            w.active_at(t("2026-12-10T00:00:00Z")),
            span("2026-12-07T10:00:00Z", "2026-12-14T09:00:00Z")
        );
        assert_eq!(
            w.next_after(t("2026-12-07T09:30:00Z")),
            span("2026-12-07T10:00:00Z", "2026-12-14T09:00:00Z")
        );
    }

    #[test]
    fn a_zone_east_of_utc_whose_local_day_differs() {
        // Friday 07:00 in Tokyo is Thursday 22:00 UTC.
        let w = weekly("Fri 07:00", "Fri 09:00", chrono_tz::Asia::Tokyo);
        let friday = span("2026-12-10T22:00:00Z", "2026-12-11T00:00:00Z");
        assert_eq!(w.active_at(t("2026-12-10T23:00:00Z")), friday);
        assert_eq!(w.next_after(t("2026-12-10T12:00:00Z")), friday);
    }

    #[test]
    fn fixed_windows_and_the_state_of_several() {
        let fixed = FreezeWindow {
            reason: "end of year".into(),
            when: FreezeWhen::Fixed {
                start: t("2026-12-24T00:00:00Z"),
                end: t("2027-01-04T00:00:00Z"),
            },
        };
        let weekend = weekly("Fri 15:00", "Mon 08:00", Berlin);
        let windows = [weekend.clone(), fixed.clone()];
        // Saturday 2026-12-26: both hold, the one ending last is reported.
        let (current, next) = freeze_state(&windows, t("2026-12-26T12:00:00Z"));
        let (w, _, end) = current.expect("frozen");
        assert_eq!(w.reason, "end of year");
        assert_eq!(end, t("2027-01-04T00:00:00Z"));
        let (w, start, _) = next.expect("the next weekend");
        assert_eq!(w.reason, "weekend");
        assert_eq!(start, t("2027-01-01T14:00:00Z"));
        // Wednesday before: nothing holds; the weekend comes first.
        let (current, next) = freeze_state(&windows, t("2026-12-09T12:00:00Z"));
        assert!(current.is_none());
        assert_eq!(
            next.map(|(w, s, _)| (w.reason.as_str(), s)),
            Some(("weekend", t("2026-12-11T14:00:00Z")))
        );
        assert_eq!(fixed.next_after(t("2027-01-01T00:00:00Z")), None);
        assert!(freeze_state(&[], t("2026-12-09T12:00:00Z")).0.is_none());
    }

    mod parsing {
        use crate::config::test_support::*;

        fn top(entry: &str) -> String {
            format!("[[freeze]]\n{entry}\n")
        }

        #[test]
        fn a_freeze_needs_a_reason_and_one_kind_of_window() {
            let err = parse_err(&top(
                "start = \"2026-12-20T00:00:00Z\"\nend = \"2026-12-21T00:00:00Z\"",
            ));
            assert_mentions(&err, &["freeze[0].reason: missing"]);
            let err = parse_err(&top(
                "reason = \"  \"\nweekly = { from = \"Fri 15:00\", until = \"Mon 08:00\", timezone = \"UTC\" }",
            ));
            assert_mentions(&err, &["freeze[0].reason: missing"]);
            let err = parse_err(&top(&format!(
                "reason = \"{}\"\nweekly = {{ from = \"Fri 15:00\", until = \"Mon 08:00\", timezone = \"UTC\" }}",
                "x".repeat(121)
            )));
            assert_mentions(&err, &["freeze[0].reason", "at most 120"]);
            let err = parse_err(&top(
                "reason = \"two\\nlines\"\nweekly = { from = \"Fri 15:00\", until = \"Mon 08:00\", timezone = \"UTC\" }",
            ));
            assert_mentions(&err, &["freeze[0].reason", "line breaks"]);
            let err = parse_err(&top("reason = \"x\""));
            assert_mentions(&err, &["freeze[0]: needs start and end", "weekly"]);
            let err = parse_err(&top(
                "reason = \"x\"\nstart = \"2026-12-20T00:00:00Z\"\nend = \"2026-12-21T00:00:00Z\"\nweekly = { from = \"Fri 15:00\", until = \"Mon 08:00\", timezone = \"UTC\" }",
            ));
            assert_mentions(&err, &["freeze[0]: set either start and end, or weekly"]);
            let err = parse_err(&top("reason = \"x\"\nstart = \"2026-12-20T00:00:00Z\""));
            assert_mentions(&err, &["freeze[0].end: missing"]);
        }

        #[test]
        fn fixed_times_need_an_offset_and_an_order() {
            let err = parse_err(&top(
                "reason = \"x\"\nstart = \"2026-12-20 00:00\"\nend = 2026-12-21T00:00:00",
            ));
            assert_mentions(
                &err,
                &[
                    "freeze[0].start: \"2026-12-20 00:00\" is not an RFC 3339 time",
                    "freeze[0].end: \"2026-12-21T00:00:00\" is not an RFC 3339 time",
                ],
            );
            let err = parse_err(&top(
                "reason = \"x\"\nstart = 5\nend = \"2026-12-21T00:00:00Z\"",
            ));
            assert_mentions(
                &err,
                &["freeze[0].start: must be an RFC 3339 time", "not integer"],
            );
            let err = parse_err(&top(
                "reason = \"x\"\nstart = \"2026-12-21T00:00:00Z\"\nend = \"2026-12-21T01:00:00+01:00\"",
            ));
            assert_mentions(&err, &["freeze[0].end", "not after start"]);
        }

        #[test]
        fn weekly_windows_are_checked() {
            for (weekly, key, needle) in [
                (
                    "from = \"Friday 15:00\", until = \"Mon 8:00\", timezone = \"Europe/Berlin\"",
                    "",
                    "",
                ),
                (
                    "from = \"Fri\", until = \"Mon 08:00\", timezone = \"UTC\"",
                    "from",
                    "not a weekday and a time",
                ),
                (
                    "from = \"Fri 25:00\", until = \"Mon 08:00\", timezone = \"UTC\"",
                    "from",
                    "HH:MM",
                ),
                (
                    "from = \"Fri 15:00\", until = \"Funday 08:00\", timezone = \"UTC\"",
                    "until",
                    "Mon, Tue",
                ),
                (
                    "from = \"Fri 15:00\", timezone = \"UTC\"",
                    "until",
                    "missing",
                ),
                (
                    "from = \"Fri 15:00\", until = \"Mon 08:00\"",
                    "timezone",
                    "missing",
                ),
                (
                    "from = \"Fri 15:00\", until = \"Mon 08:00\", timezone = \"Mars/Olympus\"",
                    "timezone",
                    "IANA",
                ),
                (
                    "from = \"Fri 15:00\", until = \"fri 15:00\", timezone = \"UTC\"",
                    "until",
                    "same as from",
                ),
            ] {
                let text = top(&format!("reason = \"x\"\nweekly = {{ {weekly} }}"));
                if key.is_empty() {
                    parse_ok(&text);
                } else {
                    let err = parse_err(&text);
                    assert_mentions(&err, &[&format!("freeze[0].weekly.{key}"), needle]);
                }
            }
        }

        #[test]
        fn an_instance_freeze_names_its_instance() {
            let err = parse_err(&instance(
                "[[instances.freeze]]\nreason = \"x\"\nweekly = { from = \"Fri 15:00\", until = \"Mon 08:00\", timezone = \"Berlin\" }",
            ));
            assert_mentions(
                &err,
                &[
                    "instances[0] (web-production).freeze[0].weekly.timezone",
                    "\"Berlin\"",
                ],
            );
            let err = parse_err(&instance(
                "[[instances.freeze]]\nreason = \"x\"\n[[instances.freeze]]\nstart = \"2026-12-20T00:00:00Z\"\nend = \"2026-12-21T00:00:00Z\"",
            ));
            assert_mentions(
                &err,
                &[
                    "instances[0] (web-production).freeze[0]: needs start and end",
                    "instances[0] (web-production).freeze[1].reason: missing",
                ],
            );
        }
    }

    /// Every quarter hour of 2026: a weekly window holds exactly when the wall clock in its
    /// zone reads a time inside it, and each occurrence is announced by `next_after` the
    /// quarter hour before it starts.
    fn agrees_with_the_wall_clock_all_year(w: &FreezeWindow) {
        let FreezeWhen::Weekly {
            from,
            until,
            timezone,
        } = &w.when
        else {
            panic!("a weekly window");
        };
        let minute_of_week = |day: Weekday, time: NaiveTime| {
            use chrono::Timelike;
            day.num_days_from_monday() * 1440 + time.hour() * 60 + time.minute()
        };
        let (from_m, until_m) = (
            minute_of_week(from.0, from.1),
            minute_of_week(until.0, until.1),
        );
        let step = chrono::Duration::minutes(15);
        let mut now = t("2026-01-01T00:00:00Z");
        let mut was_active = None;
        let mut starts = 0;
        while now < t("2027-01-01T00:00:00Z") {
            let local = now.with_timezone(timezone);
            let m = minute_of_week(local.weekday(), local.time());
            let expected = if from_m < until_m {
                from_m <= m && m < until_m
            } else {
                m >= from_m || m < until_m
            };
            let active = w.active_at(now);
            assert_eq!(active.is_some(), expected, "at {now} ({local})");
            if let Some((start, end)) = active {
                assert!(start <= now && now < end, "at {now}");
            }
            if expected && was_active == Some(false) {
                starts += 1;
                let (start, _) = w.next_after(now - step).expect("the next one");
                assert_eq!(start, now, "announced before {now}");
            }
            was_active = Some(expected);
            now += step;
        }
        assert!(starts >= 52, "{starts} occurrences");
    }

    #[test]
    fn weekly_windows_follow_the_wall_clock_through_a_year() {
        agrees_with_the_wall_clock_all_year(&weekly("Fri 15:00", "Mon 08:00", Berlin));
        // Across the night the clocks change in New York (02:00 skipped or shown twice).
        agrees_with_the_wall_clock_all_year(&weekly(
            "Sun 01:00",
            "Sun 04:00",
            chrono_tz::America::New_York,
        ));
        agrees_with_the_wall_clock_all_year(&weekly("Wed 22:00", "Wed 06:00", chrono_tz::UTC));
    }

    #[test]
    fn weekly_times_are_read_strictly() {
        assert_eq!(parse_hh_mm("08:00"), NaiveTime::from_hms_opt(8, 0, 0));
        assert_eq!(parse_hh_mm("8:05"), NaiveTime::from_hms_opt(8, 5, 0));
        for bad in ["24:00", "8", "08:0", "08:60", "-1:00", "08:00:00", "ab:cd"] {
            assert_eq!(parse_hh_mm(bad), None, "{bad}");
        }
    }
}
