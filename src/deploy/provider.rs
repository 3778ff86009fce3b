//! The provider port: what a strategy asks of the running system (start a release in a
//! slot, shift traffic, retire a slot, check health) and what it hands over to do so. The
//! domain owns these traits, as it owns `Store`; each provider in the top-level `provider`
//! module implements them.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{DeploymentId, Env, ReleaseId};

/// A release as a provider needs it: what to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseSpec {
    pub id: ReleaseId,
    pub version: i64,
    pub image: String,
    pub commit_sha: String,
    pub env: Env,
}

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
    /// deploybot's own account of what it is doing.
    System,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::System => "deploybot",
        }
    }
}

/// One line of a deployment's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub stream: LogStream,
    pub text: String,
}

/// Hides secret values in a log line before it is stored (`***` in their place).
pub trait LogMask: Send + Sync {
    /// `line` with every secret hidden; borrowed when there was nothing to hide.
    fn apply<'a>(&self, line: &'a str) -> Cow<'a, str>;
}

/// Where providers and strategies write a deployment's log. Never blocks: when the
/// writer falls behind, a command's lines are counted as dropped and the count is logged
/// instead, while deploybot's own lines wait in order (up to [`HELD_SYSTEM_LINES`]) until
/// there is room, or until [`LogSink::flush`] sends them at the end.
/// A masking sink replaces every secret value in a line with `***` before passing it on.
/// Every sink replaces a NUL (U+0000) with U+FFFD, the same on both databases.
#[derive(Clone)]
pub struct LogSink {
    tx: mpsc::Sender<LogLine>,
    dropped: Arc<AtomicU64>,
    mask: Option<Arc<dyn LogMask>>,
    held: Arc<std::sync::Mutex<std::collections::VecDeque<LogLine>>>,
}

/// The most of deploybot's own lines a sink holds while its writer is behind.
pub const HELD_SYSTEM_LINES: usize = 10_000;

impl LogSink {
    /// A sink and the receiving end that stores the lines.
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<LogLine>) {
        let (tx, rx) = mpsc::channel(capacity);
        (
            Self {
                tx,
                dropped: Arc::new(AtomicU64::new(0)),
                mask: None,
                held: Arc::default(),
            },
            rx,
        )
    }

    /// A sink that discards everything (for tests and tools).
    pub fn discard() -> Self {
        Self::channel(1).0
    }

    /// This sink, masking the secret values of `mask` in every line.
    pub fn masking(mut self, mask: Arc<dyn LogMask>) -> Self {
        self.mask = Some(mask);
        self
    }

    pub fn line(&self, stream: LogStream, text: impl Into<String>) {
        let mut text = text.into();
        // PostgreSQL text cannot hold U+0000: one such line would lose its whole batch.
        // It is replaced before masking, so the mask sees the text that is stored.
        if text.contains('\0') {
            text = text.replace('\0', "\u{FFFD}");
        }
        if let Some(mask) = &self.mask
            && let Cow::Owned(masked) = mask.apply(&text)
        {
            text = masked;
        }
        let line = LogLine { stream, text };
        let Ok(mut held) = self.held.lock() else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        // Held lines go first, so the log keeps its order.
        while let Some(first) = held.pop_front() {
            if let Err(e) = self.tx.try_send(first) {
                held.push_front(e.into_inner());
                break;
            }
        }
        let line = if held.is_empty() {
            match self.tx.try_send(line) {
                Ok(()) => return,
                Err(e) => e.into_inner(),
            }
        } else {
            line
        };
        if line.stream == LogStream::System && held.len() < HELD_SYSTEM_LINES {
            held.push_back(line);
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends the held lines of deploybot's own, waiting for room: called once the
    /// deployment's work is over, before the sink is dropped.
    pub async fn flush(&self) {
        loop {
            let next = match self.held.lock() {
                Ok(mut held) => held.pop_front(),
                Err(_) => None,
            };
            let Some(line) = next else { return };
            if self.tx.send(line).await.is_err() {
                return;
            }
        }
    }

    /// deploybot's own line.
    pub fn system(&self, text: impl Into<String>) {
        self.line(LogStream::System, text);
    }

    /// How many lines were dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// What a provider knows about the deployment it is serving.
#[derive(Clone)]
pub struct RunContext {
    pub deployment_id: DeploymentId,
    pub tenant_id: String,
    pub instance: String,
    pub environment: String,
    pub strategy: String,
    /// The release being deployed (a restore after a failure passes the previous one
    /// to `start` instead).
    pub release: ReleaseSpec,
    pub cancel: CancellationToken,
    pub log: LogSink,
    /// The deployment's parameters; the command provider passes each as
    /// `DEPLOY_PARAM_<KEY>`.
    pub params: Env,
    /// A dry run: only [`Provider::plan`] is asked for.
    pub noop: bool,
}

/// Why a provider step did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The step ran and failed; the message says how (exit code, signal, …).
    #[error("{0}")]
    Failed(String),
    /// The step took longer than the instance's timeout and was stopped.
    #[error("{0}")]
    TimedOut(String),
    /// The deployment was cancelled while the step ran; it was stopped.
    #[error("cancelled")]
    Cancelled,
    /// The provider could not even try (a missing program, a bad configuration).
    #[error("{0}")]
    Unavailable(String),
}

/// What changes the running system, driven slot by slot by a strategy.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The provider's kind, as configured (`command`, `noop`).
    fn kind(&self) -> &'static str;

    /// Whether this provider can serve the strategy (`rolling`, `recreate`, `blue-green`, `canary`).
    fn supports(&self, strategy: &str) -> bool;

    /// Starts `release` in `slot` (replacing whatever ran there).
    async fn start(
        &self,
        run: &RunContext,
        slot: &str,
        release: &ReleaseSpec,
    ) -> Result<(), ProviderError>;

    /// Sends `percent` of the traffic to `slot` and the rest to the other live slot.
    async fn shift_traffic(
        &self,
        run: &RunContext,
        slot: &str,
        percent: u8,
    ) -> Result<(), ProviderError>;

    /// Stops what runs in `slot`.
    async fn retire(&self, run: &RunContext, slot: &str) -> Result<(), ProviderError>;

    /// A dry run: says what deploying `release` would change, changing nothing. A provider
    /// that cannot plan says so in the log and succeeds.
    async fn plan(&self, run: &RunContext, release: &ReleaseSpec) -> Result<(), ProviderError> {
        if run.cancel.is_cancelled() {
            return Err(ProviderError::Cancelled);
        }
        run.log.system(format!(
            "the {} provider has nothing to plan for v{} ({})",
            self.kind(),
            release.version,
            release.image
        ));
        Ok(())
    }
}

/// Where a gate is asked: after which phase, of which slot, at what share of traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatePoint {
    /// The phase just done: `start`, `canary`, `switch`, `batch`, `promote`, `rollback`,
    /// `restore` or `watch`; health commands get it as `DEPLOY_PHASE`.
    pub phase: String,
    /// The slot the checked release runs in (`DEPLOY_SLOT`).
    pub slot: String,
    /// The share of traffic the checked release takes, 0–100 (`DEPLOY_TRAFFIC_PERCENT`).
    pub traffic_percent: u8,
    /// Where, in words, for reasons and logs: "canary 50%", "the switch", "watch".
    pub label: String,
}

impl GatePoint {
    pub fn new(phase: &str, slot: &str, traffic_percent: u8, label: impl Into<String>) -> Self {
        Self {
            phase: phase.to_string(),
            slot: slot.to_string(),
            traffic_percent,
            label: label.into(),
        }
    }
}

/// A metric gate's last measurement, kept on the deployment and shown on its page.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GateReading {
    /// The gate's configured name ("error rate").
    pub gate: String,
    /// The value measured, as shown ("0.042"); "no data" when the query returned none.
    pub value: String,
    /// The bound it is judged by ("≤ 0.01", "≥ 0.99").
    pub bound: String,
    pub passed: bool,
    /// Where it was measured ("canary 50%").
    pub at: String,
}

/// A health gate that measures a metric: run after each phase that shifts traffic.
#[async_trait]
pub trait MetricGate: Send + Sync {
    /// The configured name ("error rate").
    fn name(&self) -> &str;

    /// The time between two measurements (`interval`); the watch after success waits this
    /// long between its rounds too.
    fn interval(&self) -> std::time::Duration;

    /// Takes the gate's measurements at `at` (its `count`, `interval` apart), judged by its
    /// bound, `failure_limit` and `no_data`. Each measurement is handed to `reading`.
    /// The error of a failed gate is one sentence naming the gate, the value, the bound and
    /// `at.label` ("error rate 0.042 > 0.01 at canary 50%"); `Cancelled` when `run.cancel` fires.
    async fn evaluate(
        &self,
        run: &RunContext,
        at: &GatePoint,
        reading: &(dyn Fn(GateReading) + Send + Sync),
    ) -> Result<(), ProviderError>;
}

/// Checks that what runs is healthy: one probe, retried by the health gate.
#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// A short description for logs and progress ("GET https://…/healthz").
    fn describe(&self) -> String;

    /// Probes until healthy or until the deadline passes; the error is the last reason.
    /// `at` says which slot, phase and traffic share is checked (a health command gets
    /// them as `DEPLOY_SLOT`, `DEPLOY_PHASE` and `DEPLOY_TRAFFIC_PERCENT`).
    async fn wait_healthy(&self, run: &RunContext, at: &GatePoint) -> Result<(), ProviderError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer far behind a chatty command: the command's excess lines are counted as
    /// dropped, deploybot's own lines wait and arrive, in order, after what was taken.
    #[tokio::test]
    async fn deploybots_own_lines_wait_for_a_writer_that_fell_behind() {
        let (sink, mut rx) = LogSink::channel(2);
        for n in 0..5 {
            sink.line(LogStream::Stdout, format!("out {n}"));
        }
        sink.system("failed: exit 1");
        sink.line(LogStream::Stdout, "out 5");
        sink.system("restored v1");
        assert_eq!(sink.dropped(), 4, "out 2, 3, 4 and 5 found no room");
        let flushing = {
            let sink = sink.clone();
            tokio::spawn(async move { sink.flush().await })
        };
        let mut got = Vec::new();
        while got.len() < 4 {
            let line = rx.recv().await.expect("a line");
            got.push(line.text);
        }
        flushing.await.unwrap();
        assert_eq!(got, ["out 0", "out 1", "failed: exit 1", "restored v1"]);
    }
}
