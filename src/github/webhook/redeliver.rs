//! Missed deliveries. GitHub tries a webhook once: a delivery deploybot could not store
//! (the database was away, the process was restarting) is lost unless someone asks for it
//! again. With GitHub App credentials, deploybot asks: at start and every
//! `github.redeliver_interval` it lists the App's recent deliveries
//! (`GET /app/hook/deliveries`, as the App, following the cursor), and for each event
//! (GUID) that never got a 2xx answer and that it never stored, it asks GitHub to deliver
//! it again (`POST /app/hook/deliveries/{id}/attempts`).
//!
//! Bounded: at most `per_round` requests a round, `pause` apart, and a round stops at
//! GitHub's first rate-limit or server-error answer. An event is asked for again only
//! after GitHub has listed the attempt of the previous request as failed (or ten minutes
//! passed without it; six hours when GitHub refused the request), and each further request
//! for it waits twice as long as the one before (the interval, then 2×, 4×, … up to six
//! hours): an event the receiver keeps refusing is asked for 17 times in GitHub's three
//! days at the default interval, not every round.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::deploy::Error;
use crate::deploy::service::blocking;
use crate::github::client::{ApiError, GithubClient, HookDelivery};
use crate::github::store::DeliveryStore;

/// The longest wait between two requests for the same event.
const MAX_BACKOFF: Duration = Duration::from_secs(6 * 3600);
/// A request whose attempt GitHub has not listed after this long is taken as lost.
const PATIENCE: Duration = Duration::from_secs(10 * 60);

/// How the rounds run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Time between rounds; also the first wait between two requests for one event.
    pub interval: Duration,
    /// Deliveries older than this are not looked at.
    pub lookback: Duration,
    /// Most redeliveries asked for in one round.
    pub per_round: usize,
    /// Most pages (of 100) read in one round.
    pub max_pages: usize,
    /// Wait between two redelivery requests.
    pub pause: Duration,
}

impl Settings {
    pub fn new(interval: Duration, lookback: Duration) -> Self {
        Settings {
            interval,
            lookback,
            per_round: 100,
            max_pages: 30,
            pause: Duration::from_millis(250),
        }
    }
}

/// An event that never reached deploybot, and the attempt to ask GitHub to repeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missed {
    pub guid: String,
    /// The newest attempt's id.
    pub delivery_id: u64,
    pub event: String,
    pub action: Option<String>,
    pub repository_id: Option<u64>,
    pub installation_id: Option<u64>,
    /// Attempts GitHub listed for the event.
    pub attempts: usize,
    /// When GitHub first tried it.
    pub first_at: DateTime<Utc>,
}

/// A redelivery deploybot asked for: how many attempts were listed then, and until when
/// the event is not asked for again unless GitHub lists a newer attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asked {
    pub attempts: usize,
    pub until: DateTime<Utc>,
}

/// What one round saw and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoundReport {
    /// Deliveries listed within the look-back window.
    pub listed: usize,
    /// GUIDs asked for again, oldest event first.
    pub redelivered: Vec<String>,
}

/// Why a round stopped early.
#[derive(Debug, thiserror::Error)]
pub enum RoundError {
    #[error("cannot list the GitHub App's webhook deliveries: {0}")]
    List(ApiError),
    #[error("cannot tell which webhook deliveries were stored (the database): {0}")]
    Store(Error),
}

/// The wait after an event's newest failed attempt before it is asked for again:
/// nothing for the first request, then the interval, doubling, at most six hours.
pub fn backoff(interval: Duration, redeliveries: usize) -> Duration {
    if redeliveries == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32 << (redeliveries - 1).min(16);
    interval.saturating_mul(factor).min(MAX_BACKOFF)
}

/// The events among `deliveries` that never got a 2xx answer and are due to be asked
/// for: the newest attempt is older than the backoff, and no request of ours is still
/// waiting for its attempt. Not yet filtered by what the database stored. Oldest first.
pub fn missed(
    deliveries: &[HookDelivery],
    asked: &HashMap<String, Asked>,
    interval: Duration,
    now: DateTime<Utc>,
) -> Vec<Missed> {
    let mut by_guid: BTreeMap<&str, Vec<&HookDelivery>> = BTreeMap::new();
    for d in deliveries {
        by_guid.entry(d.guid.as_str()).or_default().push(d);
    }
    let mut out: Vec<Missed> = by_guid
        .into_iter()
        .filter(|(_, attempts)| !attempts.iter().any(|a| a.succeeded()))
        .filter_map(|(guid, attempts)| {
            let newest = attempts.iter().max_by_key(|a| (a.delivered_at, a.id))?;
            let first_at = attempts.iter().map(|a| a.delivered_at).min()?;
            let redeliveries = attempts.iter().filter(|a| a.redelivery).count();
            if let Some(previous) = asked.get(guid) {
                let answered = attempts.len() > previous.attempts;
                if !answered && now < previous.until {
                    return None;
                }
            }
            let wait = chrono::Duration::from_std(backoff(interval, redeliveries)).ok()?;
            if now < newest.delivered_at + wait {
                return None;
            }
            Some(Missed {
                guid: guid.to_string(),
                delivery_id: newest.id,
                event: newest.event.clone(),
                action: newest.action.clone(),
                repository_id: newest.repository_id,
                installation_id: newest.installation_id,
                attempts: attempts.len(),
                first_at,
            })
        })
        .collect();
    out.sort_by(|a, b| (a.first_at, &a.guid).cmp(&(b.first_at, &b.guid)));
    out
}

/// Finds the App's missed webhook deliveries and asks GitHub for them again.
pub struct Redeliverer {
    client: Arc<GithubClient>,
    store: Arc<dyn DeliveryStore>,
    settings: Settings,
    asked: Mutex<HashMap<String, Asked>>,
}

impl Redeliverer {
    pub fn new(
        client: Arc<GithubClient>,
        store: Arc<dyn DeliveryStore>,
        settings: Settings,
    ) -> Self {
        Redeliverer {
            client,
            store,
            settings,
            asked: Mutex::new(HashMap::new()),
        }
    }

    /// A round at once, then one every interval, until `stop` (which also ends a round
    /// under way: what it remembers is only in memory, and GitHub keeps the deliveries).
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let round = tokio::select! {
                _ = stop.cancelled() => return,
                round = self.round() => round,
            };
            match round {
                Ok(report) if !report.redelivered.is_empty() => tracing::info!(
                    listed = report.listed,
                    redelivered = report.redelivered.len(),
                    "missed webhook deliveries asked for again"
                ),
                Ok(report) => {
                    tracing::debug!(listed = report.listed, "no missed webhook deliveries")
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    retry_in = ?self.settings.interval,
                    "the round that looks for missed webhook deliveries stopped; the next round tries again"
                ),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.settings.interval) => {}
            }
        }
    }

    /// Lists the deliveries of the look-back window, newest first.
    async fn list(&self, now: DateTime<Utc>) -> Result<Vec<HookDelivery>, ApiError> {
        let since = now - chrono::Duration::from_std(self.settings.lookback).unwrap_or_default();
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..self.settings.max_pages.max(1) {
            let (page, next) = self
                .client
                .app_hook_deliveries(cursor.as_deref(), 100)
                .await?;
            let reached_end = page.iter().any(|d| d.delivered_at < since);
            all.extend(page.into_iter().filter(|d| d.delivered_at >= since));
            match next {
                Some(next) if !reached_end && cursor.as_deref() != Some(next.as_str()) => {
                    cursor = Some(next)
                }
                _ => break,
            }
        }
        Ok(all)
    }

    /// One round: list, pick the missed events, ask for them.
    pub async fn round(&self) -> Result<RoundReport, RoundError> {
        let now = Utc::now();
        let deliveries = self.list(now).await.map_err(RoundError::List)?;
        let due = {
            let asked = self.asked.lock().map(|a| a.clone()).unwrap_or_default();
            missed(&deliveries, &asked, self.settings.interval, now)
        };
        let mut report = RoundReport {
            listed: deliveries.len(),
            redelivered: Vec::new(),
        };
        if due.is_empty() {
            self.forget_older_than(now);
            return Ok(report);
        }
        let guids: Vec<String> = due.iter().map(|m| m.guid.clone()).collect();
        let store = Arc::clone(&self.store);
        let stored: HashSet<String> = blocking(move || store.stored_deliveries(&guids))
            .await
            .map_err(RoundError::Store)?
            .into_iter()
            .collect();
        let to_ask = due
            .into_iter()
            .filter(|m| !stored.contains(&m.guid))
            .take(self.settings.per_round);
        for (n, missed) in to_ask.enumerate() {
            if n > 0 {
                tokio::time::sleep(self.settings.pause).await;
            }
            match self
                .client
                .redeliver_app_hook_delivery(missed.delivery_id)
                .await
            {
                Ok(()) => {
                    tracing::info!(
                        guid = %missed.guid,
                        event = %missed.event,
                        action = missed.action.as_deref().unwrap_or(""),
                        repository_id = missed.repository_id,
                        installation_id = missed.installation_id,
                        attempts = missed.attempts,
                        "asked GitHub to redeliver a webhook delivery deploybot never stored"
                    );
                    crate::metrics::global().webhook_redelivered();
                    self.remember(&missed, PATIENCE);
                    report.redelivered.push(missed.guid);
                }
                Err(ApiError::Retry { after, message }) => {
                    // Rate-limited or GitHub unwell: the rest waits for the next round.
                    tracing::warn!(guid = %missed.guid, retry_in = ?after, %message, "GitHub did not take a redelivery request; the next round asks again");
                    break;
                }
                Err(ApiError::Refused { status, message }) => {
                    tracing::warn!(guid = %missed.guid, event = %missed.event, status, %message, retry_in = ?MAX_BACKOFF, "GitHub refused to redeliver a webhook delivery");
                    self.remember(&missed, MAX_BACKOFF);
                }
            }
        }
        self.forget_older_than(now);
        Ok(report)
    }

    /// Not asked for again for `wait`, unless GitHub lists a newer attempt.
    fn remember(&self, missed: &Missed, wait: Duration) {
        let until = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
        if let Ok(mut asked) = self.asked.lock() {
            asked.insert(
                missed.guid.clone(),
                Asked {
                    attempts: missed.attempts,
                    until,
                },
            );
        }
    }

    /// Requests older than the look-back window name events GitHub no longer lists.
    fn forget_older_than(&self, now: DateTime<Utc>) {
        let since = now
            - chrono::Duration::from_std(self.settings.lookback + MAX_BACKOFF).unwrap_or_default();
        if let Ok(mut asked) = self.asked.lock() {
            asked.retain(|_, a| a.until >= since);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(
        id: u64,
        guid: &str,
        at: DateTime<Utc>,
        redelivery: bool,
        code: u16,
    ) -> HookDelivery {
        HookDelivery {
            id,
            guid: guid.into(),
            delivered_at: at,
            redelivery,
            status: if code == 0 {
                "timed out".into()
            } else {
                format!("{code}")
            },
            status_code: code,
            event: "push".into(),
            action: None,
            installation_id: Some(77),
            repository_id: Some(1),
        }
    }

    fn guids(missed: &[Missed]) -> Vec<&str> {
        missed.iter().map(|m| m.guid.as_str()).collect()
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn only_events_that_never_got_a_2xx_answer_are_missed() {
        let now = Utc::now();
        let ago = |s: i64| now - chrono::Duration::seconds(s);
        let listed = vec![
            attempt(1, "ok", ago(50), false, 202),
            attempt(2, "refused", ago(40), false, 503),
            attempt(3, "timed-out", ago(30), false, 0),
            attempt(4, "later-ok", ago(20), false, 503),
            attempt(5, "later-ok", ago(10), true, 200),
        ];
        let missed = missed(&listed, &HashMap::new(), MINUTE, now);
        assert_eq!(guids(&missed), ["refused", "timed-out"]);
        assert_eq!(missed[0].delivery_id, 2);
        assert_eq!(missed[0].attempts, 1);
    }

    #[test]
    fn the_newest_attempt_is_redelivered_and_the_oldest_event_goes_first() {
        let now = Utc::now();
        let ago = |s: i64| now - chrono::Duration::hours(s);
        let listed = vec![
            attempt(9, "b", ago(1), false, 503),
            attempt(7, "a", ago(12), true, 503),
            attempt(3, "a", ago(20), false, 503),
        ];
        let missed = missed(&listed, &HashMap::new(), MINUTE, now);
        assert_eq!(guids(&missed), ["a", "b"]);
        assert_eq!(missed[0].delivery_id, 7, "the newest attempt of a");
        assert_eq!(missed[0].attempts, 2);
    }

    #[test]
    fn an_event_asked_for_waits_for_its_attempt_then_backs_off() {
        let now = Utc::now();
        let secs = |s: i64| chrono::Duration::seconds(s);
        let first = vec![attempt(1, "g", now - secs(90), false, 503)];
        let mut asked = HashMap::new();
        asked.insert(
            "g".to_string(),
            Asked {
                attempts: 1,
                until: now - secs(2) + chrono::Duration::from_std(PATIENCE).unwrap(),
            },
        );
        // GitHub has not listed the attempt yet: not asked again.
        assert!(missed(&first, &asked, MINUTE, now).is_empty());
        // Ten minutes later it is taken as lost and asked for again.
        assert_eq!(
            guids(&missed(&first, &asked, MINUTE, now + secs(11 * 60))),
            ["g"]
        );
        // The redelivery failed 30 s ago: the first backoff is one interval.
        let mut second = first.clone();
        second.push(attempt(2, "g", now - secs(30), true, 503));
        assert!(missed(&second, &asked, MINUTE, now).is_empty());
        assert_eq!(
            guids(&missed(&second, &asked, MINUTE, now + secs(31))),
            ["g"]
        );
        // Each further redelivery waits twice as long.
        assert_eq!(backoff(MINUTE, 0), Duration::ZERO);
        assert_eq!(backoff(MINUTE, 1), MINUTE);
        assert_eq!(backoff(MINUTE, 2), 2 * MINUTE);
        assert_eq!(backoff(MINUTE, 5), 16 * MINUTE);
        assert_eq!(backoff(MINUTE, 40), MAX_BACKOFF);
    }

    #[test]
    fn requests_over_three_days_stay_few() {
        // A receiver that refuses for ever, rounds every 5 minutes for 3 days.
        let interval = 5 * MINUTE;
        let start = Utc::now();
        let mut listed = vec![attempt(1, "g", start, false, 503)];
        let mut asked = HashMap::new();
        let mut requests = 0;
        let mut now = start;
        while now < start + chrono::Duration::days(3) {
            if let Some(m) = missed(&listed, &asked, interval, now).pop() {
                requests += 1;
                asked.insert(
                    m.guid.clone(),
                    Asked {
                        attempts: m.attempts,
                        until: now + chrono::Duration::from_std(PATIENCE).unwrap(),
                    },
                );
                let id = listed.len() as u64 + 1;
                listed.push(attempt(
                    id,
                    "g",
                    now + chrono::Duration::seconds(1),
                    true,
                    503,
                ));
            }
            now += chrono::Duration::from_std(interval).unwrap();
        }
        assert_eq!(requests, 17);
    }
}
