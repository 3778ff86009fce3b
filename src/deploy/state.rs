//! The deployment state machine of DESIGN.md.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The lifecycle state of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployState {
    Pending,
    Running,
    Succeeded,
    Failed,
    RolledBack,
    Cancelled,
}

/// A state change the state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a deployment that is {from} cannot become {to}")]
pub struct InvalidTransition {
    pub from: DeployState,
    pub to: DeployState,
}

impl DeployState {
    /// Every state, in lifecycle order.
    pub const ALL: [DeployState; 6] = [
        DeployState::Pending,
        DeployState::Running,
        DeployState::Succeeded,
        DeployState::Failed,
        DeployState::RolledBack,
        DeployState::Cancelled,
    ];

    /// The name used in JSON, the database and URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            DeployState::Pending => "pending",
            DeployState::Running => "running",
            DeployState::Succeeded => "succeeded",
            DeployState::Failed => "failed",
            DeployState::RolledBack => "rolled_back",
            DeployState::Cancelled => "cancelled",
        }
    }

    /// Whether `self → next` is one of the arrows of the state diagram.
    pub fn can_become(self, next: DeployState) -> bool {
        use DeployState::*;
        matches!(
            (self, next),
            (Pending, Running)
                | (Pending, Cancelled)
                | (Running, Succeeded)
                | (Running, Failed)
                | (Running, RolledBack)
                | (Running, Cancelled)
                | (Succeeded, RolledBack)
        )
    }

    /// `Ok` when `self → next` is allowed, otherwise the typed refusal.
    pub fn check_transition(self, next: DeployState) -> Result<(), InvalidTransition> {
        if self.can_become(next) {
            Ok(())
        } else {
            Err(InvalidTransition {
                from: self,
                to: next,
            })
        }
    }

    /// A deployment in this state has stopped running (it may still be rolled back later
    /// if it succeeded).
    pub fn is_final(self) -> bool {
        !matches!(self, DeployState::Pending | DeployState::Running)
    }
}

impl fmt::Display for DeployState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeployState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        DeployState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown deployment state {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::DeployState::{self, *};

    #[test]
    fn only_the_arrows_of_the_diagram_are_allowed() {
        let allowed = [
            (Pending, Running),
            (Pending, Cancelled),
            (Running, Succeeded),
            (Running, Failed),
            (Running, RolledBack),
            (Running, Cancelled),
            (Succeeded, RolledBack),
        ];
        for from in DeployState::ALL {
            for to in DeployState::ALL {
                let expected = allowed.contains(&(from, to));
                assert_eq!(from.can_become(to), expected, "{from} -> {to}");
                let result = from.check_transition(to);
                assert_eq!(result.is_ok(), expected, "{from} -> {to}");
                if let Err(err) = result {
                    assert_eq!(
                        err.to_string(),
                        format!("a deployment that is {from} cannot become {to}")
                    );
                }
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for state in DeployState::ALL {
            assert_eq!(state.as_str().parse::<DeployState>().unwrap(), state);
            assert_eq!(
                serde_json::to_string(&state).unwrap(),
                format!("\"{}\"", state.as_str())
            );
        }
        assert!("done".parse::<DeployState>().is_err());
    }
}
