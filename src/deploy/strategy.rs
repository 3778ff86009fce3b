//! The `Strategy` interface: a multi-phase orchestration of a provider, with health gates
//! between phases and an automatic restore of the previous release when a phase fails.

use std::time::Duration;

use async_trait::async_trait;

use super::Progress;
use super::provider::{HealthCheck, Provider, ProviderError, ReleaseSpec, RunContext};

/// Where a deployment's progress goes as it happens (stored, shown, reported).
#[async_trait]
pub trait ProgressSink: Send + Sync {
    async fn report(&self, progress: Progress);
}

/// Canary settings of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanarySteps {
    /// Traffic percentages, strictly increasing, ending at 100.
    pub steps: Vec<u8>,
    /// How long to watch each step before its health gate.
    pub pause: Duration,
}

impl Default for CanarySteps {
    fn default() -> Self {
        Self {
            steps: vec![10, 50, 100],
            pause: Duration::from_secs(30),
        }
    }
}

/// Everything a strategy drives for one deployment.
pub struct Plan<'a> {
    pub provider: &'a dyn Provider,
    pub health: Option<&'a dyn HealthCheck>,
    pub run: &'a RunContext,
    /// The active release before this deployment, restored when a phase fails.
    pub previous: Option<ReleaseSpec>,
    /// The `provider_ref` of the instance's last succeeded deployment, as its strategy
    /// returned it; only strategies read it (to find the slot that is live).
    pub previous_ref: Option<String>,
    pub canary: CanarySteps,
    pub progress: &'a dyn ProgressSink,
}

/// How a strategy ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The new release runs and takes all traffic. `provider_ref` (where it runs) is
    /// stored on the deployment and handed to the next deployment's strategy.
    Succeeded { provider_ref: String },
    /// A phase failed and the previous release was restored.
    RolledBack { reason: String },
    /// A phase failed and there was nothing to restore (or the restore failed too).
    Failed { reason: String },
    /// The deployment was cancelled; its work was stopped.
    Cancelled,
}

/// A way of driving a provider from one release to the next.
#[async_trait]
pub trait Strategy: Send + Sync {
    /// The configured name (`rolling`, `recreate`, `blue-green`, `canary`).
    fn name(&self) -> &'static str;

    /// Runs the phases, reporting progress, and says how it ended.
    async fn execute(&self, plan: &Plan<'_>) -> Outcome;
}

impl Plan<'_> {
    pub(crate) async fn progress(&self, phase: &str, percent: i32, message: impl Into<String>) {
        let message = message.into();
        self.run
            .log
            .system(format!("[{percent:>3}%] {phase}: {message}"));
        self.progress
            .report(Progress {
                phase: phase.to_string(),
                percent: percent.clamp(0, 100),
                message,
            })
            .await;
    }

    /// The health gate: passes at once when no health check is configured.
    pub(crate) async fn gate(&self, percent: i32, context: &str) -> Result<(), ProviderError> {
        match self.health {
            None => {
                self.progress(
                    "health",
                    percent,
                    format!("{context}: no health check configured"),
                )
                .await;
                Ok(())
            }
            Some(check) => {
                self.progress(
                    "health",
                    percent,
                    format!("{context}: checking {}", check.describe()),
                )
                .await;
                check.wait_healthy(self.run).await?;
                self.progress("health", percent, format!("{context}: healthy"))
                    .await;
                Ok(())
            }
        }
    }

    /// Waits `duration` unless the deployment is cancelled first.
    pub(crate) async fn pause(&self, duration: Duration) -> Result<(), ProviderError> {
        tokio::select! {
            _ = tokio::time::sleep(duration) => Ok(()),
            _ = self.run.cancel.cancelled() => Err(ProviderError::Cancelled),
        }
    }

    /// Turns a failed phase into the outcome: cancelled stays cancelled; with a previous
    /// release the `restore` steps run and the deployment is rolled back; otherwise failed.
    pub(crate) async fn after_failure<F, Fut>(&self, error: ProviderError, restore: F) -> Outcome
    where
        F: FnOnce(ReleaseSpec) -> Fut,
        Fut: std::future::Future<Output = Result<(), ProviderError>>,
    {
        if error == ProviderError::Cancelled || self.run.cancel.is_cancelled() {
            return Outcome::Cancelled;
        }
        let reason = error.to_string();
        let Some(previous) = &self.previous else {
            self.run
                .log
                .system(format!("failed: {reason}; no previous release to restore"));
            return Outcome::Failed { reason };
        };
        self.progress(
            "rollback",
            100,
            format!("{reason}; restoring v{}", previous.version),
        )
        .await;
        match restore(previous.clone()).await {
            Ok(()) => {
                self.run
                    .log
                    .system(format!("restored v{}", previous.version));
                Outcome::RolledBack {
                    reason: format!("{reason}; restored v{}", previous.version),
                }
            }
            Err(restore_error) => Outcome::Failed {
                reason: format!(
                    "{reason}; restoring v{} also failed: {restore_error}",
                    previous.version
                ),
            },
        }
    }
}
