//! The two long-lived slots, `blue` and `green`, that blue-green, rolling and canary move a
//! release between. A succeeded deployment's `provider_ref` names the slot left live.

use crate::deploy::strategy::Plan;

/// The slot serving traffic now and the one free for the next release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Slots {
    pub live: &'static str,
    pub idle: &'static str,
}

impl Slots {
    /// Read from the last succeeded deployment's `provider_ref`: `blue` is live when it
    /// names neither slot (no deployment yet, or one by recreate).
    pub(super) fn of(plan: &Plan<'_>) -> Self {
        match plan.previous_ref.as_deref() {
            Some("green") => Slots {
                live: "green",
                idle: "blue",
            },
            _ => Slots {
                live: "blue",
                idle: "green",
            },
        }
    }
}
