//! The fast rollback: one phase. The earlier release goes straight back into the slot that
//! serves all traffic, one health check follows, and that is all: no canary steps, no
//! pauses, no metric gates. Every rollback runs this way, whatever the instance's strategy.

use async_trait::async_trait;

use crate::deploy::provider::{GatePoint, ProviderError};
use crate::deploy::strategy::{Outcome, Plan, Strategy};

pub struct FastRollback;

/// The slot a rollback puts the release in: the one the instance's last succeeded
/// deployment left live (`blue` when none did).
fn live_slot<'a>(plan: &'a Plan<'_>) -> &'a str {
    match plan.previous_ref.as_deref() {
        Some(slot) if !slot.is_empty() => slot,
        _ => "blue",
    }
}

#[async_trait]
impl Strategy for FastRollback {
    fn name(&self) -> &'static str {
        "rollback"
    }

    async fn execute(&self, plan: &Plan<'_>) -> Outcome {
        let slot = live_slot(plan);
        let version = plan.run.release.version;
        let mut started = false;
        let result = async {
            if plan.run.cancel.is_cancelled() {
                return Err(ProviderError::Cancelled);
            }
            plan.progress(
                "rollback",
                10,
                format!("putting v{version} back in {slot} with all traffic"),
            )
            .await;
            started = true;
            plan.provider
                .start(plan.run, slot, &plan.run.release)
                .await?;
            plan.health_check(80, &GatePoint::new("rollback", slot, 100, "the rollback"))
                .await
        }
        .await;
        match result {
            Ok(()) => {
                plan.progress("done", 100, format!("v{version} serves in {slot}"))
                    .await;
                Outcome::Succeeded {
                    provider_ref: slot.to_string(),
                }
            }
            // The start was stopped part-way: what serves in the slot is not known.
            Err(_) if plan.run.cancel.is_cancelled() && !started => Outcome::cancelled(),
            Err(error) if plan.run.cancel.is_cancelled() => {
                plan.run.log.system(format!("rollback stopped: {error}"));
                Outcome::Cancelled {
                    reason: format!(
                        "the rollback to v{version} was stopped part-way in {slot}, so what serves there is unknown; roll back or deploy again"
                    ),
                }
            }
            Err(error) => Outcome::Failed {
                reason: format!("the rollback to v{version} failed: {error}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::deploy::provider::{
        HealthCheck, LogSink, Provider, ProviderError, ReleaseSpec, RunContext,
    };
    use crate::deploy::strategy::{CanarySteps, ProgressSink};
    use crate::deploy::{DeploymentId, Progress, ReleaseId};

    /// Writes down every step and health check it is asked for; `fail` makes health fail;
    /// `cancel_in_start` cancels the deployment while its start runs.
    #[derive(Default)]
    struct Recorder {
        steps: Mutex<Vec<String>>,
        fail: bool,
        cancel_in_start: bool,
    }

    impl Recorder {
        fn note(&self, step: String) -> Result<(), ProviderError> {
            self.steps.lock().unwrap().push(step);
            Ok(())
        }
    }

    #[async_trait]
    impl Provider for Recorder {
        fn kind(&self) -> &'static str {
            "recorder"
        }
        fn supports(&self, _: &str) -> bool {
            true
        }
        async fn start(
            &self,
            run: &RunContext,
            slot: &str,
            release: &ReleaseSpec,
        ) -> Result<(), ProviderError> {
            self.note(format!("start {slot} v{}", release.version))?;
            if self.cancel_in_start {
                run.cancel.cancel();
                return Err(ProviderError::Cancelled);
            }
            Ok(())
        }
        async fn shift_traffic(
            &self,
            _: &RunContext,
            slot: &str,
            percent: u8,
        ) -> Result<(), ProviderError> {
            self.note(format!("traffic {slot} {percent}"))
        }
        async fn retire(&self, _: &RunContext, slot: &str) -> Result<(), ProviderError> {
            self.note(format!("retire {slot}"))
        }
    }

    #[async_trait]
    impl HealthCheck for Recorder {
        fn describe(&self) -> String {
            "recorder".into()
        }
        async fn wait_healthy(
            &self,
            run: &RunContext,
            at: &GatePoint,
        ) -> Result<(), ProviderError> {
            self.note(format!(
                "health {} {} {} v{}",
                at.phase, at.slot, at.traffic_percent, run.release.version
            ))?;
            if self.fail {
                return Err(ProviderError::Failed("answered 503".into()));
            }
            Ok(())
        }
    }

    struct Ignored;

    #[async_trait]
    impl ProgressSink for Ignored {
        async fn report(&self, _: Progress) {}
    }

    fn release(version: i64) -> ReleaseSpec {
        ReleaseSpec {
            id: ReleaseId::new(),
            version,
            image: format!("img:{version}"),
            commit_sha: String::new(),
            env: Default::default(),
        }
    }

    /// Rolls back to v1 of a canary instance (v2 active) whose last deployment returned
    /// `previous_ref`: the steps asked of the provider and the health check, and the outcome.
    async fn roll_back(
        previous_ref: Option<&str>,
        recorder: Recorder,
        cancelled: bool,
    ) -> (Vec<String>, Outcome) {
        let cancel = CancellationToken::new();
        if cancelled {
            cancel.cancel();
        }
        let run = RunContext {
            deployment_id: DeploymentId::new(),
            tenant_id: "acme".into(),
            instance: "web".into(),
            environment: "production".into(),
            strategy: "canary".into(),
            release: release(1),
            cancel,
            log: LogSink::discard(),
            params: Default::default(),
            noop: false,
        };
        let plan = Plan {
            provider: &recorder,
            health: Some(&recorder),
            gates: &[],
            run: &run,
            previous: Some(release(2)),
            previous_ref: previous_ref.map(str::to_string),
            canary: CanarySteps::default(),
            progress: &Ignored,
            halt: CancellationToken::new(),
        };
        let outcome = FastRollback.execute(&plan).await;
        (recorder.steps.into_inner().unwrap(), outcome)
    }

    /// One start in the live slot and one health check of it with all traffic; no canary
    /// steps and no pause (the default canary pauses 30 s per step).
    #[tokio::test]
    async fn a_rollback_is_one_start_in_the_live_slot_and_one_health_check() {
        let (steps, outcome) = roll_back(Some("green"), Recorder::default(), false).await;
        assert_eq!(steps, ["start green v1", "health rollback green 100 v1"]);
        assert_eq!(
            outcome,
            Outcome::Succeeded {
                provider_ref: "green".into()
            }
        );

        // Nothing live recorded: blue, as for the slot strategies.
        let (steps, _) = roll_back(None, Recorder::default(), false).await;
        assert_eq!(steps, ["start blue v1", "health rollback blue 100 v1"]);
        // A recreate instance's slot is kept.
        let (steps, outcome) = roll_back(Some("primary"), Recorder::default(), false).await;
        assert_eq!(steps[0], "start primary v1");
        assert_eq!(
            outcome,
            Outcome::Succeeded {
                provider_ref: "primary".into()
            }
        );
    }

    /// An unhealthy rollback fails, naming the release; a cancelled one ends cancelled.
    #[tokio::test]
    async fn a_failed_or_cancelled_rollback_says_so() {
        let failing = Recorder {
            fail: true,
            ..Recorder::default()
        };
        let (_, outcome) = roll_back(Some("blue"), failing, false).await;
        let Outcome::Failed { reason } = outcome else {
            panic!("{outcome:?}");
        };
        assert!(reason.contains("the rollback to v1 failed"), "{reason}");
        assert!(reason.contains("503"), "{reason}");

        let failing = Recorder {
            fail: true,
            ..Recorder::default()
        };
        let (_, outcome) = roll_back(Some("blue"), failing, true).await;
        assert_eq!(outcome, Outcome::cancelled());
    }

    /// A rollback cancelled while its release starts ends cancelled saying that what serves
    /// in the live slot is unknown, rather than as if nothing had changed.
    #[tokio::test]
    async fn a_rollback_cancelled_part_way_says_what_serves_is_unknown() {
        let cancelling = Recorder {
            cancel_in_start: true,
            ..Recorder::default()
        };
        let (steps, outcome) = roll_back(Some("blue"), cancelling, false).await;
        assert_eq!(steps, ["start blue v1"]);
        let Outcome::Cancelled { reason } = outcome else {
            panic!("{outcome:?}");
        };
        assert!(reason.contains("stopped part-way in blue"), "{reason}");
        assert!(reason.contains("unknown"), "{reason}");
    }
}
