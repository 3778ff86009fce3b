//! blue-green: start the new release in the idle slot, health gate, switch all traffic to
//! it, retire the old slot.

use async_trait::async_trait;

use super::slots::Slots;
use crate::deploy::provider::GatePoint;
use crate::deploy::strategy::{Outcome, Plan, Strategy};

pub struct BlueGreen;

#[async_trait]
impl Strategy for BlueGreen {
    fn name(&self) -> &'static str {
        "blue-green"
    }

    async fn execute(&self, plan: &Plan<'_>) -> Outcome {
        let Slots { live, idle } = Slots::of(plan);
        let mut switched = false;
        let result = async {
            plan.progress(
                "start",
                10,
                format!("starting v{} in idle slot {idle}", plan.run.release.version),
            )
            .await;
            plan.provider
                .start(plan.run, idle, &plan.run.release)
                .await?;
            plan.gate(
                40,
                GatePoint::new("start", idle, 0, format!("the {idle} slot")),
            )
            .await?;
            plan.progress(
                "switch",
                60,
                format!("switching all traffic from {live} to {idle}"),
            )
            .await;
            switched = true;
            plan.provider.shift_traffic(plan.run, idle, 100).await?;
            plan.gate(75, GatePoint::new("switch", idle, 100, "the switch"))
                .await?;
            if plan.previous.is_some() {
                plan.progress("retire", 90, format!("retiring {live}"))
                    .await;
                plan.provider.retire(plan.run, live).await?;
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                plan.progress("done", 100, format!("{idle} is live")).await;
                Outcome::Succeeded {
                    provider_ref: idle.into(),
                }
            }
            Err(error) => {
                plan.after_failure(error, switched, |_, run| async move {
                    if switched {
                        plan.provider.shift_traffic(&run, live, 100).await?;
                    }
                    plan.provider.retire(&run, idle).await
                })
                .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::deploy::provider::{LogSink, Provider, ProviderError, ReleaseSpec, RunContext};
    use crate::deploy::strategy::{CanarySteps, ProgressSink};
    use crate::deploy::{DeploymentId, Progress, ReleaseId};

    /// Writes down every step it is asked for.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Recorder {
        fn note(&self, step: String) -> Result<(), ProviderError> {
            self.0.lock().unwrap().push(step);
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
            _: &RunContext,
            slot: &str,
            _: &ReleaseSpec,
        ) -> Result<(), ProviderError> {
            self.note(format!("start {slot}"))
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

    /// Runs blue-green after a deployment that returned `previous_ref`: the steps asked of
    /// the provider and the outcome.
    async fn deploy_after(previous_ref: Option<&str>) -> (Vec<String>, Outcome) {
        let provider = Recorder::default();
        let run = RunContext {
            deployment_id: DeploymentId::new(),
            tenant_id: "acme".into(),
            instance: "web".into(),
            environment: "production".into(),
            strategy: "blue-green".into(),
            release: release(2),
            cancel: CancellationToken::new(),
            log: LogSink::discard(),
            params: Default::default(),
            noop: false,
        };
        let plan = Plan {
            provider: &provider,
            health: None,
            gates: &[],
            run: &run,
            previous: previous_ref.map(|_| release(1)),
            previous_ref: previous_ref.map(str::to_string),
            canary: CanarySteps::default(),
            progress: &Ignored,
            halt: CancellationToken::new(),
        };
        let outcome = BlueGreen.execute(&plan).await;
        (provider.0.into_inner().unwrap(), outcome)
    }

    /// Each deployment starts in the slot the one before left idle and retires the other.
    #[tokio::test]
    async fn each_deployment_goes_to_the_slot_the_last_one_left_idle() {
        let (steps, outcome) = deploy_after(None).await;
        assert_eq!(steps, ["start green", "traffic green 100"]);
        assert_eq!(
            outcome,
            Outcome::Succeeded {
                provider_ref: "green".into()
            }
        );

        let (steps, outcome) = deploy_after(Some("green")).await;
        assert_eq!(steps, ["start blue", "traffic blue 100", "retire green"]);
        assert_eq!(
            outcome,
            Outcome::Succeeded {
                provider_ref: "blue".into()
            }
        );

        // After another strategy's deployment (recreate's `primary`), blue counts as live.
        let (steps, _) = deploy_after(Some("primary")).await;
        assert_eq!(steps, ["start green", "traffic green 100", "retire blue"]);
    }
}
