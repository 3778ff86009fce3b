//! recreate: stop the old release, start the new one in its place, health gate.

use async_trait::async_trait;

use crate::deploy::provider::GatePoint;
use crate::deploy::strategy::{Outcome, Plan, Strategy};

pub struct Recreate;

const SLOT: &str = "primary";

#[async_trait]
impl Strategy for Recreate {
    fn name(&self) -> &'static str {
        "recreate"
    }

    async fn execute(&self, plan: &Plan<'_>) -> Outcome {
        let mut changed = false;
        let result = async {
            changed = true;
            if plan.previous.is_some() {
                plan.progress("stop", 10, "stopping the running release")
                    .await;
                plan.provider.retire(plan.run, SLOT).await?;
            }
            plan.progress(
                "start",
                40,
                format!("starting v{}", plan.run.release.version),
            )
            .await;
            plan.provider
                .start(plan.run, SLOT, &plan.run.release)
                .await?;
            plan.gate(80, GatePoint::new("start", SLOT, 100, "the new release"))
                .await
        }
        .await;
        match result {
            Ok(()) => {
                plan.progress("done", 100, "recreated").await;
                Outcome::Succeeded {
                    provider_ref: SLOT.into(),
                }
            }
            Err(error) => {
                plan.after_failure(error, changed, |previous, run| async move {
                    plan.provider.start(&run, SLOT, &previous).await?;
                    let at = GatePoint::new("restore", SLOT, 100, "the restored release");
                    plan.restored_health(&run, &at).await
                })
                .await
            }
        }
    }
}
