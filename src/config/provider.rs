//! `[instances.provider]` and `[instances.health]`: what changes the running system, and how
//! the deployed target is probed for health.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ParseKindError;
use super::checks::{Checker, is_http_url};
use super::shape::{RawHealth, RawProvider};

/// What changes the running system.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// Runs `run` as an argv, with the deployment in `DEPLOY_*` variables.
    Command,
    /// Does nothing and succeeds.
    #[default]
    Noop,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 2] = [ProviderKind::Command, ProviderKind::Noop];
    const NAMES: &'static [&'static str] = &["command", "noop"];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Command => "command",
            ProviderKind::Noop => "noop",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderKind {
    type Err = ParseKindError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProviderKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ParseKindError {
                what: "provider kind",
                value: s.to_string(),
                valid: ProviderKind::NAMES,
            })
    }
}

/// `[instances.provider]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// argv; no shell unless the command is one. Non-empty for `command`.
    pub run: Vec<String>,
    /// `noop_run`: the argv a dry run runs in its `plan` phase; empty: `run` with
    /// `DEPLOY_NOOP=1`.
    pub noop_run: Vec<String>,
    /// The longest one provider call may take (default 15m).
    pub timeout: Duration,
    /// Between SIGTERM and SIGKILL when a call is cancelled or times out (default 10s).
    pub kill_grace: Duration,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig {
            kind: ProviderKind::Noop,
            run: Vec::new(),
            noop_run: Vec::new(),
            timeout: Duration::from_secs(15 * 60),
            kill_grace: Duration::from_secs(10),
        }
    }
}

/// `[instances.health]`: exactly one of `url` and `command` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// An `http://` or `https://` URL that answers 2xx when healthy.
    pub url: Option<String>,
    /// An argv that exits 0 when healthy.
    pub command: Option<Vec<String>>,
    /// One probe (default 5s).
    pub timeout: Duration,
    /// Between probes (default 2s).
    pub interval: Duration,
    /// Until the target must be healthy (default 60s).
    pub deadline: Duration,
}

impl HealthConfig {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
    pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);
}

/// `[instances.provider]` of the instance `p`: a known kind, and `run` for `command`.
pub(super) fn build_provider(p: &str, raw: RawProvider, check: &mut Checker) -> ProviderConfig {
    let defaults = ProviderConfig::default();
    let kind = match raw.kind.as_deref() {
        None => defaults.kind,
        Some(s) => s.parse().unwrap_or_else(|e: ParseKindError| {
            check.err(&format!("{p}.provider.kind"), e);
            defaults.kind
        }),
    };
    let run = raw.run.unwrap_or_default();
    if kind == ProviderKind::Command && run.first().is_none_or(|program| program.trim().is_empty())
    {
        check.err(
            &format!("{p}.provider.run"),
            "kind = \"command\" needs the program to run as an argv array, e.g. run = [\"./deploy/ship.sh\"]",
        );
    }
    let noop_run = raw.noop_run.unwrap_or_default();
    if !noop_run.is_empty() {
        if kind != ProviderKind::Command {
            check.err(
                &format!("{p}.provider.noop_run"),
                "only a kind = \"command\" provider runs a program; remove noop_run (a noop provider's dry run plans nothing)",
            );
        } else if noop_run.iter().any(|arg| arg.is_empty()) || noop_run[0].trim().is_empty() {
            check.err(
                &format!("{p}.provider.noop_run"),
                "has an empty string; write the program and its arguments, e.g. noop_run = [\"./deploy/plan.sh\"]",
            );
        }
    }
    let timeout = check.positive_duration(
        &format!("{p}.provider.timeout"),
        raw.timeout.as_deref(),
        defaults.timeout,
    );
    let kill_grace = check.duration(
        &format!("{p}.provider.kill_grace"),
        raw.kill_grace.as_deref(),
        defaults.kill_grace,
    );
    ProviderConfig {
        kind,
        run,
        noop_run,
        timeout,
        kill_grace,
    }
}

/// `[instances.health]` of the instance `p`: exactly one of `url` and `command`.
pub(super) fn build_health(p: &str, raw: RawHealth, check: &mut Checker) -> HealthConfig {
    let key = |k: &str| format!("{p}.health.{k}");
    match (&raw.url, &raw.command) {
        (Some(_), Some(_)) => check.err(
            &format!("{p}.health"),
            "set either url or command, not both",
        ),
        (None, None) => check.err(
            &format!("{p}.health"),
            "needs url = \"https://…/healthz\" or command = [\"…\"]; or remove the [instances.health] table",
        ),
        (Some(url), None) if !is_http_url(url) => check.err(
            &key("url"),
            format!("\"{url}\" is not an http:// or https:// URL"),
        ),
        (None, Some(command)) if command.first().is_none_or(|c| c.trim().is_empty()) => check.err(
            &key("command"),
            "must be a non-empty argv array, e.g. command = [\"./deploy/check.sh\"]",
        ),
        _ => {}
    }
    let timeout = check.positive_duration(
        &key("timeout"),
        raw.timeout.as_deref(),
        HealthConfig::DEFAULT_TIMEOUT,
    );
    let interval = check.positive_duration(
        &key("interval"),
        raw.interval.as_deref(),
        HealthConfig::DEFAULT_INTERVAL,
    );
    let deadline = check.positive_duration(
        &key("deadline"),
        raw.deadline.as_deref(),
        HealthConfig::DEFAULT_DEADLINE,
    );
    HealthConfig {
        url: raw.url,
        command: raw.command,
        timeout,
        interval,
        deadline,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::*;

    #[test]
    fn command_provider_needs_run() {
        let err = parse_err(&instance("[instances.provider]\nkind = \"command\""));
        assert_mentions(
            &err,
            &["instances[0] (web-production).provider.run", "argv"],
        );
        let err = parse_err(&instance("[instances.provider]\nkind = \"shell\""));
        assert_mentions(
            &err,
            &[
                "instances[0] (web-production).provider.kind",
                "command, noop",
            ],
        );
    }

    #[test]
    fn noop_run_is_read_for_a_command_provider_only() {
        let config = parse_ok(&instance(
            "[instances.provider]\nkind = \"command\"\nrun = [\"./ship.sh\"]\nnoop_run = [\"./ship.sh\", \"--plan\"]",
        ));
        let provider = &config.instances[0].provider;
        assert_eq!(provider.noop_run, vec!["./ship.sh", "--plan"]);
        assert_eq!(provider.run, vec!["./ship.sh"]);

        let config = parse_ok(&instance(
            "[instances.provider]\nkind = \"command\"\nrun = [\"./ship.sh\"]",
        ));
        assert!(config.instances[0].provider.noop_run.is_empty());

        let err = parse_err(&instance(
            "[instances.provider]\nnoop_run = [\"./plan.sh\"]",
        ));
        assert_mentions(
            &err,
            &["instances[0] (web-production).provider.noop_run", "command"],
        );
        for bad in ["[\"\"]", "[\"./plan.sh\", \"\"]", "[\"  \"]"] {
            let err = parse_err(&instance(&format!(
                "[instances.provider]\nkind = \"command\"\nrun = [\"./ship.sh\"]\nnoop_run = {bad}"
            )));
            assert_mentions(
                &err,
                &["instances[0] (web-production).provider.noop_run", "empty"],
            );
        }
    }

    #[test]
    fn health_needs_exactly_one_check() {
        let err = parse_err(&instance(
            "[instances.health]\nurl = \"https://x/healthz\"\ncommand = [\"true\"]",
        ));
        assert_mentions(&err, &["instances[0] (web-production).health", "not both"]);
        let err = parse_err(&instance("[instances.health]\ntimeout = \"1s\""));
        assert_mentions(&err, &["instances[0] (web-production).health", "url"]);
        let err = parse_err(&instance("[instances.health]\nurl = \"ftp://x\""));
        assert_mentions(&err, &["instances[0] (web-production).health.url", "http"]);
        let config = parse_ok(&instance("[instances.health]\ncommand = [\"./check.sh\"]"));
        assert_eq!(
            config.instances[0]
                .health
                .as_ref()
                .and_then(|h| h.command.clone()),
            Some(vec!["./check.sh".to_string()])
        );
    }
}
