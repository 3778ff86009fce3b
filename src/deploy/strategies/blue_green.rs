//! blue-green: start the new release in the idle slot, health gate, switch all traffic to
//! it, retire the old slot.

use async_trait::async_trait;

use super::slots::Slots;
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
            plan.gate(40, &format!("{idle} slot")).await?;
            plan.progress(
                "switch",
                60,
                format!("switching all traffic from {live} to {idle}"),
            )
            .await;
            switched = true;
            plan.provider.shift_traffic(plan.run, idle, 100).await?;
            plan.gate(75, "after the switch").await?;
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
                plan.after_failure(error, |_| async {
                    if switched {
                        plan.provider.shift_traffic(plan.run, live, 100).await?;
                    }
                    plan.provider.retire(plan.run, idle).await
                })
                .await
            }
        }
    }
}
