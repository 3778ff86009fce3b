//! The `[retention]` section: how long stored records are kept before the worker removes
//! them, how often it looks, and how many rows one transaction removes.

use std::time::Duration;

use super::checks::Checker;
use super::shape::RawRetention;

const DAY: u64 = 86_400;

/// `[retention] audit` when it is not set: 400 days.
pub const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(400 * DAY);

/// The least `[retention] audit` accepted: the audit trail is kept at least 400 days.
pub const MIN_AUDIT_RETENTION: Duration = DEFAULT_AUDIT_RETENTION;

/// The least any other retention accepted: one day.
pub const MIN_RETENTION: Duration = Duration::from_secs(DAY);

/// The least `[retention] interval` accepted: one minute.
pub const MIN_PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// The most rows `[retention] batch` lets one transaction remove.
pub const MAX_PRUNE_BATCH: u32 = 10_000;

/// How long stored records are kept, and how pruning runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Deployment log lines older than this are removed (≥ 1 day).
    pub logs: Duration,
    /// Outbox items sent or given up on, last changed longer ago than this, are removed
    /// (≥ 1 day); pending items are never removed.
    pub outbox: Duration,
    /// Webhook delivery records older than this are removed (≥ 1 day and ≥
    /// `github.redeliver_lookback`).
    pub deliveries: Duration,
    /// Audit events older than this are removed (≥ 400 days).
    pub audit: Duration,
    /// How often pruning runs (≥ 1 minute).
    pub interval: Duration,
    /// The most rows one transaction removes (1 to 10000).
    pub batch: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            logs: Duration::from_secs(90 * DAY),
            outbox: Duration::from_secs(30 * DAY),
            deliveries: Duration::from_secs(30 * DAY),
            audit: DEFAULT_AUDIT_RETENTION,
            interval: Duration::from_secs(3600),
            batch: 500,
        }
    }
}

/// The value as written, for error messages.
fn written(raw: Option<&str>) -> &str {
    raw.unwrap_or_default().trim()
}

/// `retention.KEY`: a duration of at least a day (`default` when unset).
fn at_least_a_day(
    check: &mut Checker,
    key: &str,
    raw: Option<&str>,
    default: Duration,
) -> Duration {
    let full = format!("retention.{key}");
    let kept = check.duration(&full, raw, default);
    if kept < MIN_RETENTION {
        check.err(
            &full,
            format!(
                "\"{}\" is too short: records are kept at least one day; use \"1d\" or longer",
                written(raw)
            ),
        );
    }
    kept
}

/// `[retention]`, each period within its bounds; `redeliver_lookback` is
/// `github.redeliver_lookback`, which delivery records must outlast.
pub(super) fn build_retention(
    raw: RawRetention,
    redeliver_lookback: Duration,
    check: &mut Checker,
) -> RetentionConfig {
    let defaults = RetentionConfig::default();
    let logs = at_least_a_day(check, "logs", raw.logs.as_deref(), defaults.logs);
    let outbox = at_least_a_day(check, "outbox", raw.outbox.as_deref(), defaults.outbox);
    let deliveries = at_least_a_day(
        check,
        "deliveries",
        raw.deliveries.as_deref(),
        defaults.deliveries,
    );
    if deliveries >= MIN_RETENTION && deliveries < redeliver_lookback {
        check.err(
            "retention.deliveries",
            format!(
                "\"{}\" is shorter than github.redeliver_lookback ({}): a delivery forgotten before then would be asked of GitHub again; make retention.deliveries at least as long as github.redeliver_lookback",
                written(raw.deliveries.as_deref()),
                humantime::format_duration(redeliver_lookback)
            ),
        );
    }
    let audit = check.duration("retention.audit", raw.audit.as_deref(), defaults.audit);
    if audit < MIN_AUDIT_RETENTION {
        check.err(
            "retention.audit",
            format!(
                "\"{}\" is too short: the audit trail is kept at least 400 days; use \"400d\" or longer",
                written(raw.audit.as_deref())
            ),
        );
    }
    let interval = check.duration(
        "retention.interval",
        raw.interval.as_deref(),
        defaults.interval,
    );
    if interval < MIN_PRUNE_INTERVAL {
        check.err(
            "retention.interval",
            format!(
                "\"{}\" is too short: pruning runs at most once a minute; use \"1m\" or longer, e.g. \"1h\"",
                written(raw.interval.as_deref())
            ),
        );
    }
    RetentionConfig {
        logs,
        outbox,
        deliveries,
        audit,
        interval,
        batch: batch(raw.batch, defaults.batch, check),
    }
}

/// `retention.batch`: 1 to 10000 rows.
fn batch(raw: Option<i64>, default: u32, check: &mut Checker) -> u32 {
    let Some(raw) = raw else { return default };
    match u32::try_from(raw) {
        Ok(batch) if (1..=MAX_PRUNE_BATCH).contains(&batch) => batch,
        _ => {
            check.err(
                "retention.batch",
                format!(
                    "{raw} is out of range: one transaction removes 1 to {MAX_PRUNE_BATCH} rows; e.g. {default}"
                ),
            );
            default
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;

    fn days(n: u64) -> Duration {
        Duration::from_secs(n * DAY)
    }

    #[test]
    fn the_audit_trail_is_kept_400_days_unless_configured_longer() {
        assert_eq!(parse_ok("").retention.audit, days(400));
        let config = parse_ok("[retention]\naudit = \"730d\"\n");
        assert_eq!(config.retention.audit, days(730));
        let config = parse_ok("[retention]\naudit = \"400d\"\n");
        assert_eq!(config.retention.audit, days(400));
    }

    #[test]
    fn an_audit_retention_under_400_days_is_refused() {
        let err = parse_err("[retention]\naudit = \"30d\"\n");
        assert_mentions(&err, &["retention.audit", "\"30d\"", "at least 400 days"]);
        let err = parse_err("[retention]\naudit = \"399d 23h\"\n");
        assert_mentions(&err, &["retention.audit", "at least 400 days"]);
        let err = parse_err("[retention]\naudit = \"forever\"\n");
        assert_mentions(&err, &["retention.audit", "invalid duration"]);
        let err = parse_err("[retention]\nlines = \"30d\"\n");
        assert_mentions(&err, &["lines"]);
    }

    #[test]
    fn defaults_keep_logs_90_days_and_outbox_and_deliveries_30_and_prune_hourly() {
        let r = parse_ok("").retention;
        assert_eq!(r, RetentionConfig::default());
        assert_eq!(
            (r.logs, r.outbox, r.deliveries),
            (days(90), days(30), days(30))
        );
        assert_eq!((r.interval, r.batch), (Duration::from_secs(3600), 500));
    }

    #[test]
    fn every_key_is_read() {
        let r = parse_ok(
            "[retention]\nlogs = \"7d\"\noutbox = \"2d\"\ndeliveries = \"3d\"\naudit = \"2y\"\ninterval = \"15m\"\nbatch = 10000\n",
        )
        .retention;
        assert_eq!(
            (r.logs, r.outbox, r.deliveries),
            (days(7), days(2), days(3))
        );
        assert!(r.audit > days(700));
        assert_eq!((r.interval, r.batch), (Duration::from_secs(900), 10_000));
        let r = parse_ok("[retention]\nlogs = \"1d\"\nbatch = 1\ninterval = \"1m\"\n").retention;
        assert_eq!((r.logs, r.batch), (days(1), 1));
        assert_eq!(r.interval, Duration::from_secs(60));
    }

    #[test]
    fn a_retention_under_a_day_is_refused_and_says_what_to_use() {
        for key in ["logs", "outbox", "deliveries"] {
            let err = parse_err(&format!("[retention]\n{key} = \"23h\"\n"));
            assert_mentions(&err, &[&format!("retention.{key}"), "\"23h\"", "\"1d\""]);
        }
        let err = parse_err("[retention]\nlogs = \"0s\"\n");
        assert_mentions(&err, &["retention.logs", "at least one day"]);
        let err = parse_err("[retention]\noutbox = \"a month\"\n");
        assert_mentions(&err, &["retention.outbox", "invalid duration"]);
    }

    #[test]
    fn deliveries_must_outlast_the_redelivery_lookback() {
        let err =
            parse_err("[github]\nredeliver_lookback = \"72h\"\n[retention]\ndeliveries = \"2d\"\n");
        assert_mentions(
            &err,
            &["retention.deliveries", "github.redeliver_lookback", "3days"],
        );
        // As long as the lookback, or a shorter lookback: accepted.
        parse_ok("[retention]\ndeliveries = \"72h\"\n");
        let config =
            parse_ok("[github]\nredeliver_lookback = \"24h\"\n[retention]\ndeliveries = \"1d\"\n");
        assert_eq!(config.retention.deliveries, days(1));
    }

    #[test]
    fn the_interval_and_batch_are_bounded() {
        let err = parse_err("[retention]\ninterval = \"30s\"\n");
        assert_mentions(&err, &["retention.interval", "\"30s\"", "\"1m\""]);
        for batch in ["0", "10001", "-5"] {
            let err = parse_err(&format!("[retention]\nbatch = {batch}\n"));
            assert_mentions(&err, &["retention.batch", batch, "1 to 10000"]);
        }
    }
}
