//! Freeze windows (`[[freeze]]` for every instance, `[[instances.freeze]]` for one): a
//! fixed `start`/`end`, or a `weekly` window in a named time zone.

use chrono::{DateTime, Utc};

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
            FreezeWhen::Weekly { .. } => todo!("config: weekly freeze windows"),
        }
    }

    /// The next occurrence that starts after `now`: (start, end) in UTC.
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        match &self.when {
            FreezeWhen::Fixed { start, end } => (*start > now).then_some((*start, *end)),
            FreezeWhen::Weekly { .. } => todo!("config: weekly freeze windows"),
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
