//! The `Strategy` interface: a multi-phase orchestration of a provider, with health gates
//! between phases and an automatic restore of the previous release when a phase fails.

use std::time::Duration;

use async_trait::async_trait;

use tokio_util::sync::CancellationToken;

use super::Progress;
use super::provider::{
    GatePoint, GateReading, HealthCheck, MetricGate, Provider, ProviderError, ReleaseSpec,
    RunContext,
};

/// Where a deployment's progress goes as it happens (stored, shown, reported).
#[async_trait]
pub trait ProgressSink: Send + Sync {
    async fn report(&self, progress: Progress);

    /// A metric gate's measurement; the last one of each gate is kept on the deployment.
    fn reading(&self, _reading: GateReading) {}
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
    /// The instance's metric gates, asked after each phase that shifts traffic.
    pub gates: &'a [std::sync::Arc<dyn MetricGate>],
    pub run: &'a RunContext,
    /// The active release before this deployment, restored when a phase fails.
    pub previous: Option<ReleaseSpec>,
    /// The `provider_ref` of the instance's last succeeded deployment, as its strategy
    /// returned it; only strategies read it (to find the slot that is live).
    pub previous_ref: Option<String>,
    pub canary: CanarySteps,
    pub progress: &'a dyn ProgressSink,
    /// Stops even a restore: the worker lost the deployment's lease, so another server may
    /// be settling it and running the instance's next deployment. A person's cancel (on
    /// `run.cancel`) does not stop a restore.
    pub halt: CancellationToken,
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
    /// The deployment was cancelled; its work was stopped. `reason` says what was put
    /// back ("restored v12"), empty when nothing had changed.
    Cancelled { reason: String },
}

impl Outcome {
    /// Cancelled before anything changed.
    pub fn cancelled() -> Self {
        Outcome::Cancelled {
            reason: String::new(),
        }
    }
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

    /// The health gate at `at`: the health check, then every metric gate (the metric
    /// gates only where traffic reaches the checked release). Passes at once when neither
    /// is configured.
    pub(crate) async fn gate(&self, percent: i32, at: GatePoint) -> Result<(), ProviderError> {
        self.health_check(percent, &at).await?;
        if at.traffic_percent == 0 {
            return Ok(());
        }
        for gate in self.gates {
            self.progress(
                "gate",
                percent,
                format!("{}: measuring {}", at.label, gate.name()),
            )
            .await;
            let sink = self.progress;
            gate.evaluate(self.run, &at, &|r| sink.reading(r)).await?;
            self.progress(
                "gate",
                percent,
                format!("{}: {} passed", at.label, gate.name()),
            )
            .await;
        }
        Ok(())
    }

    /// The health check alone (one probe sequence), at `at`.
    pub(crate) async fn health_check(
        &self,
        percent: i32,
        at: &GatePoint,
    ) -> Result<(), ProviderError> {
        let context = &at.label;
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
                check.wait_healthy(self.run, at).await?;
                self.progress("health", percent, format!("{context}: healthy"))
                    .await;
                Ok(())
            }
        }
    }

    /// The health check of a restore, under the restore's own run context.
    pub(crate) async fn restored_health(
        &self,
        run: &RunContext,
        at: &GatePoint,
    ) -> Result<(), ProviderError> {
        match self.health {
            Some(check) => check.wait_healthy(run, at).await,
            None => Ok(()),
        }
    }

    /// Waits `duration` unless the deployment is cancelled first.
    pub(crate) async fn pause(&self, duration: Duration) -> Result<(), ProviderError> {
        tokio::select! {
            _ = tokio::time::sleep(duration) => Ok(()),
            _ = self.run.cancel.cancelled() => Err(ProviderError::Cancelled),
        }
    }

    /// Turns a failed phase into the outcome. With a previous release, the `restore` steps
    /// run (with a run context of their own, which a cancel of the deployment does not
    /// stop): a failure ends `rolled_back`, a cancel `cancelled` with "restored vN".
    /// A cancel before `changed` (nothing running was touched yet) just ends; a failure
    /// with nothing to restore ends `failed`.
    pub(crate) async fn after_failure<F, Fut>(
        &self,
        error: ProviderError,
        changed: bool,
        restore: F,
    ) -> Outcome
    where
        F: FnOnce(ReleaseSpec, RunContext) -> Fut,
        Fut: std::future::Future<Output = Result<(), ProviderError>>,
    {
        let cancelled = error == ProviderError::Cancelled || self.run.cancel.is_cancelled();
        if cancelled && !changed {
            return Outcome::cancelled();
        }
        let reason = if cancelled {
            "cancelled".to_string()
        } else {
            error.to_string()
        };
        let Some(previous) = &self.previous else {
            self.run
                .log
                .system(format!("{reason}; no previous release to restore"));
            return if cancelled {
                Outcome::cancelled()
            } else {
                Outcome::Failed { reason }
            };
        };
        self.progress(
            "rollback",
            100,
            format!("{reason}; restoring v{}", previous.version),
        )
        .await;
        if self.halt.is_cancelled() {
            self.run.log.system(
                "the lease was lost: the previous release is left to the server that takes over",
            );
            return Outcome::Failed { reason };
        }
        let restoring = RunContext {
            release: previous.clone(),
            cancel: self.halt.child_token(),
            ..self.run.clone()
        };
        match restore(previous.clone(), restoring).await {
            Ok(()) => {
                self.run
                    .log
                    .system(format!("restored v{}", previous.version));
                let restored = format!("restored v{}", previous.version);
                if cancelled {
                    Outcome::Cancelled { reason: restored }
                } else {
                    Outcome::RolledBack {
                        reason: format!("{reason}; {restored}"),
                    }
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
