//! Strategies: which one drives an instance's deployments (`strategy`), and the canary's
//! steps (`[instances.canary]`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ParseKindError;
use super::checks::Checker;
use super::shape::RawCanary;

/// How a deployment is driven.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKind {
    #[default]
    Rolling,
    Recreate,
    BlueGreen,
    Canary,
}

impl StrategyKind {
    pub const ALL: [StrategyKind; 4] = [
        StrategyKind::Rolling,
        StrategyKind::Recreate,
        StrategyKind::BlueGreen,
        StrategyKind::Canary,
    ];
    const NAMES: &'static [&'static str] = &["rolling", "recreate", "blue-green", "canary"];

    /// The name used in files, the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            StrategyKind::Rolling => "rolling",
            StrategyKind::Recreate => "recreate",
            StrategyKind::BlueGreen => "blue-green",
            StrategyKind::Canary => "canary",
        }
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StrategyKind {
    type Err = ParseKindError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StrategyKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ParseKindError {
                what: "strategy",
                value: s.to_string(),
                valid: StrategyKind::NAMES,
            })
    }
}

/// `[instances.canary]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryConfig {
    /// Traffic percentages, strictly increasing, each 1..=100, ending with 100.
    pub steps: Vec<u8>,
    /// Wait between steps.
    pub pause: Duration,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        CanaryConfig {
            steps: vec![10, 50, 100],
            pause: Duration::from_secs(30),
        }
    }
}

/// `strategy` read by its name; the default when unset or unknown (an unknown one is reported).
pub(super) fn strategy(check: &mut Checker, key: &str, raw: Option<&str>) -> StrategyKind {
    match raw {
        None => StrategyKind::default(),
        Some(s) => s.parse().unwrap_or_else(|e: ParseKindError| {
            check.err(key, e);
            StrategyKind::default()
        }),
    }
}

/// `[instances.canary]` of the instance `p`: strictly increasing percentages ending with
/// 100; the default steps when they are not.
pub(super) fn build_canary(p: &str, raw: RawCanary, check: &mut Checker) -> CanaryConfig {
    let defaults = CanaryConfig::default();
    let key = |k: &str| format!("{p}.canary.{k}");
    let pause = check.duration(&key("pause"), raw.pause.as_deref(), defaults.pause);
    let Some(raw_steps) = raw.steps else {
        return CanaryConfig {
            steps: defaults.steps,
            pause,
        };
    };
    let mut steps = Vec::new();
    let mut ok = true;
    for (n, &step) in raw_steps.iter().enumerate() {
        match u8::try_from(step) {
            Ok(s) if (1..=100).contains(&s) => {
                if let Some(&last) = steps.last()
                    && s <= last
                {
                    ok = false;
                    check.err(
                        &key(&format!("steps[{n}]")),
                        format!(
                            "{s} after {last}: steps must be strictly increasing traffic percentages, e.g. [10, 50, 100]"
                        ),
                    );
                }
                steps.push(s);
            }
            _ => {
                ok = false;
                check.err(
                    &key(&format!("steps[{n}]")),
                    format!("{step} is not a traffic percentage from 1 to 100"),
                );
            }
        }
    }
    match raw_steps.last() {
        None => {
            ok = false;
            check.err(
                &key("steps"),
                "is empty; list traffic percentages ending with 100, e.g. [10, 50, 100]",
            );
        }
        Some(&last) if last != 100 => {
            ok = false;
            check.err(
                &key("steps"),
                format!(
                    "the last step is {last}; it must be 100 so the release ends with all traffic"
                ),
            );
        }
        _ => {}
    }
    CanaryConfig {
        steps: if ok { steps } else { defaults.steps },
        pause,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderKind;
    use crate::config::test_support::*;

    #[test]
    fn strategy_and_provider_names() {
        for kind in StrategyKind::ALL {
            assert_eq!(kind.as_str().parse::<StrategyKind>(), Ok(kind));
        }
        assert_eq!(StrategyKind::BlueGreen.as_str(), "blue-green");
        assert_eq!(StrategyKind::default(), StrategyKind::Rolling);
        let err = "bluegreen".parse::<StrategyKind>().unwrap_err().to_string();
        assert_mentions(
            &err,
            &["bluegreen", "rolling, recreate, blue-green, canary"],
        );
        assert_eq!(
            serde_json::to_string(&StrategyKind::BlueGreen).unwrap(),
            "\"blue-green\""
        );
        assert_eq!(
            serde_json::from_str::<StrategyKind>("\"canary\"").unwrap(),
            StrategyKind::Canary
        );
        assert_eq!("command".parse::<ProviderKind>(), Ok(ProviderKind::Command));
        assert_eq!(ProviderKind::default(), ProviderKind::Noop);
        assert_eq!(
            serde_json::to_string(&ProviderKind::Noop).unwrap(),
            "\"noop\""
        );
    }

    #[test]
    fn unknown_strategy_lists_valid_ones() {
        let err = parse_err(&instance("strategy = \"yolo\""));
        assert_mentions(
            &err,
            &[
                "instances[0] (web-production).strategy",
                "yolo",
                "rolling, recreate, blue-green, canary",
            ],
        );
    }

    #[test]
    fn canary_steps_are_checked() {
        for (steps, needle) in [
            ("[10, 10, 100]", "steps[1]"),
            ("[50, 10, 100]", "strictly increasing"),
            ("[0, 100]", "steps[0]"),
            ("[10, 150]", "steps[1]"),
            ("[10, 50]", "must be 100"),
            ("[]", "empty"),
        ] {
            let err = parse_err(&instance(&format!("[instances.canary]\nsteps = {steps}")));
            assert_mentions(
                &err,
                &["instances[0] (web-production).canary.steps", needle],
            );
        }
        let config = parse_ok(&instance("[instances.canary]\nsteps = [1, 100]"));
        assert_eq!(config.instances[0].canary.steps, vec![1, 100]);
    }
}
