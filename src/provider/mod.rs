//! Providers change the running system. A strategy drives one through slots: start a
//! release in a slot, check it, shift traffic between slots, retire a slot. Only this
//! module touches the running system (processes, health endpoints).

pub mod catalog;
pub mod child_env;
pub mod command;
pub mod health;
pub mod noop;
pub mod process;

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::deploy::{DeploymentId, Env, ReleaseId};
pub use child_env::SecretMask;

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

/// Where providers and strategies write a deployment's log. Never blocks: when the
/// writer falls behind, lines are counted as dropped and the count is logged instead.
/// A masking sink replaces every secret value in a line with `***` before passing it on.
#[derive(Clone)]
pub struct LogSink {
    tx: mpsc::Sender<LogLine>,
    dropped: Arc<AtomicU64>,
    mask: Option<Arc<SecretMask>>,
}

impl LogSink {
    /// A sink and the receiving end that stores the lines.
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<LogLine>) {
        let (tx, rx) = mpsc::channel(capacity);
        (
            Self {
                tx,
                dropped: Arc::new(AtomicU64::new(0)),
                mask: None,
            },
            rx,
        )
    }

    /// A sink that discards everything (for tests and tools).
    pub fn discard() -> Self {
        Self::channel(1).0
    }

    /// This sink, masking the secret values of `mask` in every line.
    pub fn masking(mut self, mask: Arc<SecretMask>) -> Self {
        self.mask = Some(mask);
        self
    }

    pub fn line(&self, stream: LogStream, text: impl Into<String>) {
        let mut text = text.into();
        if let Some(mask) = &self.mask
            && let Cow::Owned(masked) = mask.apply(&text)
        {
            text = masked;
        }
        if self.tx.try_send(LogLine { stream, text }).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
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
}

/// Checks that what runs is healthy: one probe, retried by the health gate.
#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// A short description for logs and progress ("GET https://…/healthz").
    fn describe(&self) -> String;

    /// Probes until healthy or until the deadline passes; the error is the last reason.
    async fn wait_healthy(&self, run: &RunContext) -> Result<(), ProviderError>;
}
