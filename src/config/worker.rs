//! The `[worker]` section: how many deployments run at once, their lease and shutdown grace,
//! and how much of each deployment's log is kept.

use std::time::Duration;

use super::checks::Checker;
use super::shape::RawWorker;

/// The worker that runs deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Deployments running at once, across instances (≥ 1).
    pub concurrency: usize,
    /// A running deployment whose worker stops renewing for this long is recovered (≥ 1s).
    pub lease: Duration,
    /// How long shutdown waits for running deployments.
    pub grace: Duration,
    /// The most lines of a deployment's log that are stored (≥ 10).
    pub log_lines: usize,
    /// The most bytes of a deployment's log that are stored (≥ 4 KiB).
    pub log_bytes: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 4,
            lease: Duration::from_secs(30),
            grace: Duration::from_secs(30),
            log_lines: 20_000,
            log_bytes: 1024 * 1024,
        }
    }
}

/// `[worker]`, each limit within its bounds.
pub(super) fn build_worker(raw: RawWorker, check: &mut Checker) -> WorkerConfig {
    let defaults = WorkerConfig::default();
    let concurrency = raw.concurrency.unwrap_or(defaults.concurrency);
    if concurrency < 1 {
        check.err(
            "worker.concurrency",
            "must be at least 1 (it is the number of deployments running at once)",
        );
    }
    let lease = check.duration("worker.lease", raw.lease.as_deref(), defaults.lease);
    if lease < Duration::from_secs(1) {
        check.err(
            "worker.lease",
            "must be at least 1s (a running deployment whose worker stops renewing for this long is recovered); e.g. \"30s\"",
        );
    }
    let grace = check.duration("worker.grace", raw.grace.as_deref(), defaults.grace);
    let log_lines = raw.log_lines.unwrap_or(defaults.log_lines);
    if log_lines < 10 {
        check.err(
            "worker.log_lines",
            "must be at least 10 (a deployment's log keeps its first and last lines within it); e.g. 20000",
        );
    }
    let log_bytes = raw.log_bytes.unwrap_or(defaults.log_bytes);
    if log_bytes < 4096 {
        check.err(
            "worker.log_bytes",
            "must be at least 4096 (a deployment's log keeps its first and last lines within it); e.g. 1048576",
        );
    }
    WorkerConfig {
        concurrency,
        lease,
        grace,
        log_lines,
        log_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;

    #[test]
    fn worker_limits() {
        let err = parse_err("[worker]\nconcurrency = 0\nlease = \"500ms\"\n");
        assert_mentions(
            &err,
            &[
                "worker.concurrency",
                "at least 1",
                "worker.lease",
                "at least 1s",
            ],
        );
        let config = parse_ok("[worker]\nconcurrency = 8\nlease = \"1m\"\ngrace = \"5s\"\n");
        assert_eq!(config.worker.concurrency, 8);
        assert_eq!(config.worker.lease, Duration::from_secs(60));
        assert_eq!(config.worker.grace, Duration::from_secs(5));
    }

    #[test]
    fn log_caps_are_checked() {
        let err = parse_err("[worker]\nlog_lines = 3\nlog_bytes = 100\n");
        assert_mentions(
            &err,
            &[
                "worker.log_lines",
                "at least 10",
                "worker.log_bytes",
                "at least 4096",
            ],
        );
        let config = parse_ok("[worker]\nlog_lines = 500\nlog_bytes = 65536\n");
        assert_eq!(config.worker.log_lines, 500);
        assert_eq!(config.worker.log_bytes, 65536);
        let config = parse_ok("");
        assert_eq!(config.worker.log_lines, 20_000);
        assert_eq!(config.worker.log_bytes, 1024 * 1024);
    }
}
