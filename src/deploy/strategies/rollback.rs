//! The fast rollback: one phase. The earlier release goes straight back into the slot that
//! serves all traffic, one health check follows, and that is all: no canary steps, no
//! pauses, no metric gates. Every rollback runs this way, whatever the instance's strategy.

use async_trait::async_trait;

use crate::deploy::provider::GatePoint;
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
        let result = async {
            plan.progress(
                "rollback",
                10,
                format!("putting v{version} back in {slot} with all traffic"),
            )
            .await;
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
            Err(error) if plan.run.cancel.is_cancelled() => {
                plan.run.log.system(format!("rollback stopped: {error}"));
                Outcome::cancelled()
            }
            Err(error) => Outcome::Failed {
                reason: format!("the rollback to v{version} failed: {error}"),
            },
        }
    }
}
