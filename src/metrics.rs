//! The process's Prometheus metrics. Server, worker and GitHub sender record into one
//! registry; counters are updated where things happen (webhook answers, finished
//! deployments, outbox results), and what lives in the database (deployments by state,
//! queue depth, outbox backlog) is set by the `/metrics` route at scrape time, so every
//! replica reports the same, current values.
//!
//! Every family is named under the `deploybot_` prefix:
//!
//! | name | type | labels | what |
//! | --- | --- | --- | --- |
//! | `deploybot_webhooks_total` | counter | `event`, `outcome` | webhook deliveries and how they were answered |
//! | `deploybot_deployments_total` | counter | `state` | deployments that ended in this process, by final state |
//! | `deploybot_deployments` | gauge | `state` | deployments in the database by state |
//! | `deploybot_deployment_duration_seconds` | histogram | `strategy`, `outcome` | start to end of the deployments run here; a rollback's `strategy` is `rollback` |
//! | `deploybot_rollbacks_total` | counter | `cause` | returns to the previous release: `gate` (a health or metric gate failed during the strategy), `failure` (a provider step failed), `watch` (a metric gate failed during the watch after success), `manual` (a person's or the API's rollback) |
//! | `deploybot_restore_seconds` | histogram | `cause` | from a failure's detection to the previous release serving again |
//! | `deploybot_gate_evaluations_total` | counter | `gate`, `result` | metric gate measurements by gate and result |
//! | `deploybot_webhook_commit_batch` | histogram | — | deliveries committed per transaction |
//! | `deploybot_queue_depth` | gauge | — | pending deployments |
//! | `deploybot_outbox_pending`, `deploybot_outbox_failed` | gauge | — | reports to GitHub not sent yet, and given up on |
//! | `deploybot_outbox_sent_total` | counter | `kind`, `result` | attempts to send an outbox item |
//! | `deploybot_github_rate_limit_remaining` | gauge | — | GitHub's last `x-ratelimit-remaining` |
//! | `deploybot_database_up` | gauge | — | whether the scrape-time database reads succeeded |
//! | `deploybot_webhook_redeliveries_total` | counter | — | missed deliveries asked of GitHub again |
//! | `deploybot_webhook_unverified`, `deploybot_webhook_unverified_bytes` | gauge | — | webhook bodies whose signature is not checked yet |
//! | `deploybot_pruned_rows_total` | counter | `table` | rows this process removed past their `[retention]` period |
//! | `deploybot_table_rows` | gauge | `table` | rows in each main table, counted after each pruning run of this process |

use std::sync::{OnceLock, RwLock};

use prometheus_client::encoding::{EncodeLabelSet, prometheus_text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry, Unit};

use crate::deploy::{DeployState, Deployment, DeploymentId, TableRows};

mod outcome;

pub use outcome::RollbackCause;

/// Upper bounds of the deployment duration buckets, in seconds: 1 s to 1 h.
pub const DURATION_BUCKETS: [f64; 12] = [
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0,
];

/// How deploybot answered a webhook delivery.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// Verified and stored; it may have started deployments or jobs.
    Accepted,
    /// Verified and stored; nothing to do.
    Ignored,
    /// A delivery id seen before (a redelivery).
    Duplicate,
    /// GitHub's ping.
    Pong,
    /// The signature is missing or wrong.
    BadSignature,
    /// Headers or payload unusable.
    BadRequest,
    /// Larger than `webhook_max_bytes`.
    TooLarge,
    /// The database could not store it; GitHub may redeliver.
    Unavailable,
    /// Refused before verification: too many bodies, or too many bytes, being read.
    Overloaded,
    /// Verified, but the repository name is pinned to another repository id.
    RepositoryReplaced,
}

impl WebhookOutcome {
    /// The `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookOutcome::Accepted => "accepted",
            WebhookOutcome::Ignored => "ignored",
            WebhookOutcome::Duplicate => "duplicate",
            WebhookOutcome::Pong => "pong",
            WebhookOutcome::BadSignature => "bad_signature",
            WebhookOutcome::BadRequest => "bad_request",
            WebhookOutcome::TooLarge => "too_large",
            WebhookOutcome::Unavailable => "unavailable",
            WebhookOutcome::Overloaded => "overloaded",
            WebhookOutcome::RepositoryReplaced => "repository_replaced",
        }
    }

    /// The outcome of a stored delivery from its JSON answer: ignored or accepted
    /// (including "already deployed").
    pub fn of_answer(answer: &serde_json::Value) -> Self {
        match answer["status"].as_str() {
            Some("ignored") => WebhookOutcome::Ignored,
            Some("pong") => WebhookOutcome::Pong,
            Some("duplicate") => WebhookOutcome::Duplicate,
            _ => WebhookOutcome::Accepted,
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    event: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    strategy: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabels {
    table: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    cause: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutboxLabels {
    kind: String,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GateLabels {
    gate: String,
    result: &'static str,
}

/// How one measurement of a metric gate came out, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateResult {
    Passed,
    Failed,
    NoData,
    /// The query could not be answered (unreachable server, bad query, wrong result type).
    Error,
}

impl GateResult {
    /// The `result` label.
    pub fn as_str(self) -> &'static str {
        match self {
            GateResult::Passed => "passed",
            GateResult::Failed => "failed",
            GateResult::NoData => "no_data",
            GateResult::Error => "error",
        }
    }
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// Reads the GitHub rate limit left, at scrape time.
pub type RateLimitSource = Box<dyn Fn() -> i64 + Send + Sync>;

/// How one attempt to send an outbox item ended, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendResult {
    Sent,
    Retry,
    Failed,
    Skipped,
}

/// The registry and every metric family of the process.
pub struct Metrics {
    registry: Registry,
    webhooks: Family<WebhookLabels, Counter>,
    deployments_finished: Family<StateLabels, Counter>,
    deployments: Family<StateLabels, Gauge>,
    duration: Family<DurationLabels, Histogram, fn() -> Histogram>,
    rollbacks: Family<CauseLabels, Counter>,
    restore: Family<CauseLabels, Histogram, fn() -> Histogram>,
    /// When each running deployment's failure was detected, until it finishes.
    restoring: outcome::Marks,
    commit_batch: Histogram,
    queue_depth: Gauge,
    outbox_pending: Gauge,
    outbox_failed: Gauge,
    outbox_results: Family<OutboxLabels, Counter>,
    rate_limit: Gauge,
    database_up: Gauge,
    redeliveries: Counter,
    unverified: Gauge,
    unverified_bytes: Gauge,
    rate_limit_source: RwLock<Option<RateLimitSource>>,
    gate_evaluations: Family<GateLabels, Counter>,
    config_reloads: Family<ReloadLabels, Counter>,
    config_refused: Gauge,
    config_loaded: Gauge,
    pruned_rows: Family<TableLabels, Counter>,
    table_rows: Family<TableLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The process's metrics, created on first use.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Event names kept as a label even when the request was not verified; any other
/// unverified name becomes "other", so unsigned requests cannot grow the label set.
const SUBSCRIBED_EVENTS: [&str; 5] = ["push", "create", "issue_comment", "pull_request", "ping"];

/// The `event` label: GitHub's event name when it looks like one and the request was
/// verified; for requests refused before verification, only the events deploybot
/// subscribes to ("other" for the rest).
fn event_label(event: Option<&str>, verified: bool) -> String {
    match event {
        None | Some("") => "unknown".into(),
        Some(e) if SUBSCRIBED_EVENTS.contains(&e) => e.into(),
        Some(e)
            if verified
                && e.len() <= 40
                && e.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') =>
        {
            e.into()
        }
        Some(_) => "other".into(),
    }
}

/// Upper bounds of the group-commit batch buckets, in deliveries.
const COMMIT_BATCHES: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// The name (under the `deploybot_` prefix) and help text of each metric family.
mod doc {
    /// A metric family's name and help text.
    pub(super) type Doc = (&'static str, &'static str);

    pub(super) const WEBHOOKS: Doc = (
        "webhooks",
        "Webhook deliveries by GitHub event and how deploybot answered",
    );
    pub(super) const FINISHED: Doc = (
        "deployments",
        "Deployments that ended in this process, by final state (runs finished by the worker and runs recovered after a lost lease)",
    );
    pub(super) const DEPLOYMENTS: Doc = (
        "deployments",
        "Deployments in the database by state, read at scrape time",
    );
    pub(super) const DURATION: Doc = (
        "deployment_duration",
        "Time from start to end of the deployments run in this process, by strategy (`rollback` for a rollback) and outcome (final state)",
    );
    pub(super) const ROLLBACKS: Doc = (
        "rollbacks",
        "Returns to the previous release finished in this process, by cause: gate (a health or metric gate failed during the strategy), failure (a provider step failed), watch (a metric gate failed during the watch), manual (a person's or the API's rollback)",
    );
    pub(super) const RESTORE: Doc = (
        "restore",
        "Time from a failure's detection to the previous release serving again, by cause (a rollback: from its request to its success)",
    );
    pub(super) const COMMIT_BATCH: Doc = (
        "webhook_commit_batch",
        "For each stored delivery, how many deliveries were committed in the same transaction (group commit)",
    );
    pub(super) const QUEUE_DEPTH: Doc = (
        "queue_depth",
        "Pending deployments waiting for a worker, read at scrape time",
    );
    pub(super) const OUTBOX_PENDING: Doc = (
        "outbox_pending",
        "Reports to GitHub not sent yet (including ones waiting to retry), read at scrape time",
    );
    pub(super) const OUTBOX_FAILED: Doc = (
        "outbox_failed",
        "Reports to GitHub given up on, read at scrape time",
    );
    pub(super) const OUTBOX_SENT: Doc = (
        "outbox_sent",
        "Attempts to send an outbox item by this process, by item kind and result (sent, retry, failed, skipped)",
    );
    pub(super) const RATE_LIMIT: Doc = (
        "github_rate_limit_remaining",
        "The last x-ratelimit-remaining GitHub sent (-1: unknown, no call yet or no credentials)",
    );
    pub(super) const DATABASE_UP: Doc = (
        "database_up",
        "1 when the scrape-time database reads succeeded; 0 when they failed and the database gauges are stale",
    );
    pub(super) const REDELIVERIES: Doc = (
        "webhook_redeliveries",
        "Missed GitHub App webhook deliveries this process asked GitHub to deliver again",
    );
    pub(super) const UNVERIFIED: Doc = (
        "webhook_unverified",
        "Webhook bodies being received whose signature is not checked yet (bounded by webhook_max_pending)",
    );
    pub(super) const GATE_EVALUATIONS: Doc = (
        "gate_evaluations",
        "Metric gate measurements taken by this process, by gate name and result (passed, failed, no_data, error)",
    );
    pub(super) const CONFIG_RELOADS: Doc = (
        "config_reloads",
        "Configuration reloads asked of this process (SIGHUP or POST /v1/admin/reload), by result: applied, or refused (the file was invalid and the configuration in force stayed)",
    );
    pub(super) const CONFIG_REFUSED: Doc = (
        "config_reload_refused",
        "1 when the last configuration reload was refused and the file on disk differs from the configuration in force; 0 after a reload that applied",
    );
    pub(super) const CONFIG_LOADED: Doc = (
        "config_loaded_timestamp",
        "When the configuration in force was loaded (Unix time): at start, then at each reload that applied",
    );
    pub(super) const PRUNED_ROWS: Doc = (
        "pruned_rows",
        "Rows this process removed because they passed their [retention] period, by table (deployment_logs, outbox, deliveries, audit_events)",
    );
    pub(super) const TABLE_ROWS: Doc = (
        "table_rows",
        "Rows in each main table (deployments, releases, deployment_logs, deliveries, outbox, audit_events), counted after each pruning run of this process",
    );
    pub(super) const UNVERIFIED_BYTES: Doc = (
        "webhook_unverified",
        "Bytes held by webhook bodies whose signature is not checked yet (bounded by webhook_pending_bytes)",
    );
}

/// Registers `metric` under `doc` and hands it back, to be recorded into.
fn registered<M: Metric + Clone>(registry: &mut Registry, (name, help): doc::Doc, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// Registers `metric`, measured in `unit`, under `doc` and hands it back.
fn registered_in<M: Metric + Clone>(
    registry: &mut Registry,
    (name, help): doc::Doc,
    unit: Unit,
    metric: M,
) -> M {
    registry.register_with_unit(name, help, unit, metric.clone());
    metric
}

/// Reloads by result, both shown from the start (at 0) so an alert on refusals works at once.
fn reload_results_at_zero() -> Family<ReloadLabels, Counter> {
    let reloads = Family::<ReloadLabels, Counter>::default();
    for result in ["applied", "refused"] {
        drop(reloads.get_or_create(&ReloadLabels { result }));
    }
    reloads
}

/// Deployments ended, by final state: every final state shows from the start (at 0), so
/// rates and alerts work at once.
fn final_states_at_zero() -> Family<StateLabels, Counter> {
    let finished = Family::<StateLabels, Counter>::default();
    for state in DeployState::ALL.into_iter().filter(|s| s.is_final()) {
        let state = StateLabels {
            state: state.as_str(),
        };
        drop(finished.get_or_create(&state));
    }
    finished
}

impl Metrics {
    /// A fresh registry with every family registered (the process uses `global()`).
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("deploybot");
        let rate_limit = Gauge::default();
        rate_limit.set(-1);
        // Registered in the order the fields are written: the order of the scrape output.
        Self {
            webhooks: registered(&mut r, doc::WEBHOOKS, Family::default()),
            deployments_finished: registered(&mut r, doc::FINISHED, final_states_at_zero()),
            deployments: registered(&mut r, doc::DEPLOYMENTS, Family::default()),
            duration: registered_in(
                &mut r,
                doc::DURATION,
                Unit::Seconds,
                Family::new_with_constructor(duration_histogram),
            ),
            rollbacks: registered(&mut r, doc::ROLLBACKS, outcome::causes_at_zero()),
            restore: registered_in(
                &mut r,
                doc::RESTORE,
                Unit::Seconds,
                Family::new_with_constructor(duration_histogram),
            ),
            restoring: outcome::Marks::default(),
            commit_batch: registered(&mut r, doc::COMMIT_BATCH, Histogram::new(COMMIT_BATCHES)),
            queue_depth: registered(&mut r, doc::QUEUE_DEPTH, Gauge::default()),
            outbox_pending: registered(&mut r, doc::OUTBOX_PENDING, Gauge::default()),
            outbox_failed: registered(&mut r, doc::OUTBOX_FAILED, Gauge::default()),
            outbox_results: registered(&mut r, doc::OUTBOX_SENT, Family::default()),
            rate_limit: registered(&mut r, doc::RATE_LIMIT, rate_limit),
            database_up: registered(&mut r, doc::DATABASE_UP, Gauge::default()),
            redeliveries: registered(&mut r, doc::REDELIVERIES, Counter::default()),
            unverified: registered(&mut r, doc::UNVERIFIED, Gauge::default()),
            unverified_bytes: registered_in(
                &mut r,
                doc::UNVERIFIED_BYTES,
                Unit::Bytes,
                Gauge::default(),
            ),
            gate_evaluations: registered(&mut r, doc::GATE_EVALUATIONS, Family::default()),
            config_reloads: registered(&mut r, doc::CONFIG_RELOADS, reload_results_at_zero()),
            config_refused: registered(&mut r, doc::CONFIG_REFUSED, Gauge::default()),
            config_loaded: registered_in(
                &mut r,
                doc::CONFIG_LOADED,
                Unit::Seconds,
                Gauge::default(),
            ),
            pruned_rows: registered(&mut r, doc::PRUNED_ROWS, Family::default()),
            table_rows: registered(&mut r, doc::TABLE_ROWS, Family::default()),
            registry: r,
            rate_limit_source: RwLock::new(None),
        }
    }

    /// Counts one answered webhook delivery whose signature was verified.
    pub fn webhook(&self, event: Option<&str>, outcome: WebhookOutcome) {
        let labels = WebhookLabels {
            event: event_label(event, true),
            outcome: outcome.as_str(),
        };
        self.webhooks.get_or_create(&labels).inc();
    }

    /// Counts a webhook request refused before its signature was verified: its
    /// X-GitHub-Event is a label only when it is an event deploybot subscribes to.
    pub fn webhook_unverified_refused(&self, event: Option<&str>, outcome: WebhookOutcome) {
        let labels = WebhookLabels {
            event: event_label(event, false),
            outcome: outcome.as_str(),
        };
        self.webhooks.get_or_create(&labels).inc();
    }

    /// Sets how many unverified webhook bodies are being received, and their bytes.
    pub fn webhook_unverified(&self, bodies: usize, bytes: usize) {
        self.unverified
            .set(i64::try_from(bodies).unwrap_or(i64::MAX));
        self.unverified_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Observes how many deliveries shared the commit of a stored one.
    pub fn webhook_committed(&self, batch: usize) {
        self.commit_batch.observe(batch as f64);
    }

    /// Counts a deployment that reached a final state and observes its duration; a return
    /// to the previous release is counted by cause, with its time to restore.
    pub fn deployment_finished(&self, deployment: &Deployment) {
        let state = deployment.state.as_str();
        self.deployments_finished
            .get_or_create(&StateLabels { state })
            .inc();
        let detected = self.restoring.take(deployment.id);
        if let (Some(started), Some(finished)) = (deployment.started_at, deployment.finished_at) {
            let labels = DurationLabels {
                strategy: outcome::strategy_label(deployment),
                outcome: state,
            };
            self.duration
                .get_or_create(&labels)
                .observe(outcome::seconds(started, finished));
        }
        if let Some(cause) = RollbackCause::of(deployment) {
            let labels = CauseLabels {
                cause: cause.as_str(),
            };
            self.rollbacks.get_or_create(&labels).inc();
            if let Some(seconds) = outcome::restore_seconds(deployment, detected) {
                self.restore.get_or_create(&labels).observe(seconds);
            }
        }
    }

    /// Marks the moment a running deployment's failure was detected (its restore of the
    /// previous release begins): its time to restore is measured from here.
    pub fn restore_started(&self, id: DeploymentId) {
        self.restoring.mark(id);
    }

    /// Counts one attempt to send an outbox item.
    pub fn outbox_result(&self, kind: &str, result: SendResult) {
        let result = match result {
            SendResult::Sent => "sent",
            SendResult::Retry => "retry",
            SendResult::Failed => "failed",
            SendResult::Skipped => "skipped",
        };
        let labels = OutboxLabels {
            kind: kind.to_string(),
            result,
        };
        self.outbox_results.get_or_create(&labels).inc();
    }

    /// Counts one measurement of the metric gate `gate`.
    pub fn gate_evaluated(&self, gate: &str, result: GateResult) {
        let labels = GateLabels {
            gate: gate.to_string(),
            result: result.as_str(),
        };
        self.gate_evaluations.get_or_create(&labels).inc();
    }

    /// Counts a configuration reload: `applied`, or refused with the configuration loaded
    /// at `loaded_at` still in force.
    pub fn config_reloaded(&self, applied: bool, loaded_at: chrono::DateTime<chrono::Utc>) {
        let result = if applied { "applied" } else { "refused" };
        self.config_reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
        self.config_refused.set(i64::from(!applied));
        self.config_loaded_at(loaded_at);
    }

    /// Sets when the configuration in force was loaded.
    pub fn config_loaded_at(&self, at: chrono::DateTime<chrono::Utc>) {
        self.config_loaded.set(at.timestamp());
    }

    /// Counts `rows` removed from `table` past their retention (0 shows the table).
    pub fn pruned(&self, table: &'static str, rows: u64) {
        self.pruned_rows
            .get_or_create(&TableLabels { table })
            .inc_by(rows);
    }

    /// Sets each main table's row count.
    pub fn set_table_rows(&self, rows: &TableRows) {
        for (table, count) in rows.by_table() {
            self.table_rows
                .get_or_create(&TableLabels { table })
                .set(count);
        }
    }

    /// Counts one redelivery asked of GitHub.
    pub fn webhook_redelivered(&self) {
        self.redeliveries.inc();
    }

    /// Where `/metrics` reads the GitHub rate limit left (`None`: no credentials).
    pub fn track_rate_limit(&self, source: Option<RateLimitSource>) {
        if let Ok(mut slot) = self.rate_limit_source.write() {
            *slot = source;
        }
    }

    /// Whether the last scrape could read the database.
    pub fn set_database_up(&self, up: bool) {
        self.database_up.set(i64::from(up));
    }

    /// Sets the gauges read from the database: counts by state and the outbox backlog.
    pub fn set_database(&self, by_state: &[(DeployState, i64)], outbox: (i64, i64)) {
        for state in DeployState::ALL {
            let count = by_state
                .iter()
                .filter(|(s, _)| *s == state)
                .map(|(_, n)| n)
                .sum();
            self.deployments
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                })
                .set(count);
            if state == DeployState::Pending {
                self.queue_depth.set(count);
            }
        }
        self.outbox_pending.set(outbox.0);
        self.outbox_failed.set(outbox.1);
    }

    /// The registry in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let remaining = match self.rate_limit_source.read() {
            Ok(source) => source.as_ref().map_or(-1, |read| read()),
            Err(_) => -1,
        };
        self.rate_limit.set(remaining);
        let mut text = String::new();
        prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unverified_requests_cannot_invent_event_labels() {
        assert_eq!(event_label(Some("push"), false), "push");
        assert_eq!(event_label(Some("workflow_run"), false), "other");
        assert_eq!(event_label(Some("workflow_run"), true), "workflow_run");
        assert_eq!(event_label(Some("Robert'); DROP"), true), "other");
        assert_eq!(event_label(None, false), "unknown");
    }

    #[test]
    fn names_follow_prometheus_conventions() {
        let metrics = Metrics::new();
        metrics.webhook(Some("push"), WebhookOutcome::Accepted);
        metrics.outbox_result("deployment_status", SendResult::Sent);
        metrics.gate_evaluated("error rate", GateResult::NoData);
        metrics.pruned("deployment_logs", 1204);
        metrics.pruned("outbox", 0);
        metrics.set_table_rows(&TableRows {
            deployments: 7,
            deliveries: 12,
            ..TableRows::default()
        });
        metrics.set_database(
            &[(DeployState::Pending, 2), (DeployState::Succeeded, 5)],
            (3, 1),
        );
        let text = metrics.encode().unwrap();
        for line in [
            "# TYPE deploybot_webhooks_total counter",
            r#"deploybot_webhooks_total{event="push",outcome="accepted"} 1"#,
            r#"deploybot_outbox_sent_total{kind="deployment_status",result="sent"} 1"#,
            "# TYPE deploybot_gate_evaluations_total counter",
            r#"deploybot_gate_evaluations_total{gate="error rate",result="no_data"} 1"#,
            r#"deploybot_deployments{state="succeeded"} 5"#,
            r#"deploybot_deployments{state="failed"} 0"#,
            "deploybot_queue_depth 2",
            "deploybot_outbox_pending 3",
            "deploybot_outbox_failed 1",
            "deploybot_github_rate_limit_remaining -1",
            r#"deploybot_deployments_total{state="rolled_back"} 0"#,
            "# TYPE deploybot_rollbacks_total counter",
            r#"deploybot_rollbacks_total{cause="gate"} 0"#,
            r#"deploybot_rollbacks_total{cause="failure"} 0"#,
            r#"deploybot_rollbacks_total{cause="watch"} 0"#,
            r#"deploybot_rollbacks_total{cause="manual"} 0"#,
            "# TYPE deploybot_pruned_rows_total counter",
            r#"deploybot_pruned_rows_total{table="deployment_logs"} 1204"#,
            r#"deploybot_pruned_rows_total{table="outbox"} 0"#,
            "# TYPE deploybot_table_rows gauge",
            r#"deploybot_table_rows{table="deployments"} 7"#,
            r#"deploybot_table_rows{table="deliveries"} 12"#,
            r#"deploybot_table_rows{table="audit_events"} 0"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing in:\n{text}"
            );
        }
    }
}
