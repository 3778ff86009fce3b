//! rolling: start the new release alongside the old one, health gate, retire the old one.

use async_trait::async_trait;

use super::slots::Slots;
use crate::deploy::provider::GatePoint;
use crate::deploy::strategy::{Outcome, Plan, Strategy};

pub struct Rolling;

#[async_trait]
impl Strategy for Rolling {
    fn name(&self) -> &'static str {
        "rolling"
    }

    async fn execute(&self, plan: &Plan<'_>) -> Outcome {
        let Slots {
            live: old_slot,
            idle: new_slot,
        } = Slots::of(plan);
        let result = async {
            plan.progress(
                "start",
                10,
                format!(
                    "starting v{} in {new_slot} alongside {old_slot}",
                    plan.run.release.version
                ),
            )
            .await;
            plan.provider
                .start(plan.run, new_slot, &plan.run.release)
                .await?;
            plan.gate(
                50,
                GatePoint::new("batch", new_slot, 50, "the rolling batch"),
            )
            .await?;
            if plan.previous.is_some() {
                plan.progress("retire", 80, format!("retiring {old_slot}"))
                    .await;
                plan.provider.retire(plan.run, old_slot).await?;
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                plan.progress(
                    "done",
                    100,
                    format!("v{} runs in {new_slot}", plan.run.release.version),
                )
                .await;
                Outcome::Succeeded {
                    provider_ref: new_slot.into(),
                }
            }
            // The old release never stopped: retiring the new one is the whole restore.
            // A cancel before the old release was retired changed nothing that serves.
            Err(error) => {
                plan.after_failure(error, false, |_, run| async move {
                    plan.provider.retire(&run, new_slot).await
                })
                .await
            }
        }
    }
}
