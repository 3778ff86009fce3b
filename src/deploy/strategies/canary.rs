//! canary: start the new release in a canary slot, step traffic to it (e.g. 10 → 50 →
//! 100) with a pause and a health gate at every step, then promote it into the live slot
//! and retire the canary.

use async_trait::async_trait;

use super::slots::Slots;
use crate::deploy::provider::{GatePoint, ProviderError};
use crate::deploy::strategy::{Outcome, Plan, Strategy};

pub struct Canary;

const CANARY_SLOT: &str = "canary";

/// How far a canary got before a phase failed: what its restore has to undo.
#[derive(Debug, Default, Clone, Copy)]
struct Reached {
    /// Some traffic went to the canary.
    shifted: bool,
    /// The promotion began: the live slot may run the new release.
    promoting: bool,
}

#[async_trait]
impl Strategy for Canary {
    fn name(&self) -> &'static str {
        "canary"
    }

    async fn execute(&self, plan: &Plan<'_>) -> Outcome {
        let live = Slots::of(plan).live;
        let mut reached = Reached::default();
        match run_phases(plan, live, &mut reached).await {
            Ok(()) => {
                plan.progress(
                    "done",
                    100,
                    format!("v{} promoted", plan.run.release.version),
                )
                .await;
                Outcome::Succeeded {
                    provider_ref: live.into(),
                }
            }
            Err(error) => {
                let changed = reached.shifted || reached.promoting;
                plan.after_failure(error, changed, |previous, run| async move {
                    // A promotion that began has overwritten the live slot: put the old release back.
                    if reached.promoting {
                        plan.provider.start(&run, live, &previous).await?;
                    }
                    if reached.shifted {
                        plan.provider.shift_traffic(&run, live, 100).await?;
                    }
                    plan.provider.retire(&run, CANARY_SLOT).await
                })
                .await
            }
        }
    }
}

/// Starts the canary, steps traffic to it, promotes it into `live` and retires it,
/// noting in `reached` what a restore would have to undo.
async fn run_phases(
    plan: &Plan<'_>,
    live: &str,
    reached: &mut Reached,
) -> Result<(), ProviderError> {
    let steps = &plan.canary.steps;
    // Phases: start, one per step, promote, retire: spread over 0–100 %.
    let total = steps.len() as i32 + 3;
    let at = |phase: i32| phase * 100 / total;
    plan.progress(
        "start",
        at(0),
        format!("starting canary v{}", plan.run.release.version),
    )
    .await;
    plan.provider
        .start(plan.run, CANARY_SLOT, &plan.run.release)
        .await?;
    plan.gate(
        at(1),
        GatePoint::new("start", CANARY_SLOT, 0, "the canary's start"),
    )
    .await?;
    for (i, step) in steps.iter().enumerate() {
        let phase = i as i32 + 1;
        plan.progress("canary", at(phase), format!("canary {step}%"))
            .await;
        reached.shifted = true;
        plan.provider
            .shift_traffic(plan.run, CANARY_SLOT, *step)
            .await?;
        plan.pause(plan.canary.pause).await?;
        plan.gate(
            at(phase),
            GatePoint::new("canary", CANARY_SLOT, *step, format!("canary {step}%")),
        )
        .await?;
        plan.progress("canary", at(phase), format!("canary {step}% — healthy"))
            .await;
    }
    let phase = steps.len() as i32 + 1;
    plan.progress(
        "promote",
        at(phase),
        format!("promoting v{} into {live}", plan.run.release.version),
    )
    .await;
    reached.promoting = true;
    plan.provider
        .start(plan.run, live, &plan.run.release)
        .await?;
    plan.provider.shift_traffic(plan.run, live, 100).await?;
    plan.gate(
        at(phase + 1),
        GatePoint::new("promote", live, 100, "promotion"),
    )
    .await?;
    plan.progress("retire", at(phase + 1), "retiring the canary")
        .await;
    plan.provider.retire(plan.run, CANARY_SLOT).await
}
