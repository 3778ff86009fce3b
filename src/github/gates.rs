//! The checks gate: deployments waiting for their commit's checks are looked at on GitHub
//! (check runs and commit statuses), each less often the longer it waits. All green moves
//! one on to its next gate or lets it run; a failed check, or the `checks_timeout`, ends
//! it failed with the checks named and linked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::checks::{CheckState, CommitCheck};
use super::context::Context;
use crate::config::GateConfig;
use crate::deploy::service::blocking;
use crate::deploy::{
    self, AuditEvent, DeployState, Deployment, DeploymentId, Error, WaitKind, WaitingFor, gates,
};

/// How often the watcher looks for deployments waiting for checks.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// The first wait between two reads of one deployment's checks, and the longest.
const FIRST_DELAY: Duration = Duration::from_secs(2);
const MAX_DELAY: Duration = Duration::from_secs(60);
/// The most waiting deployments read at one look.
const BATCH: u32 = 500;
/// Who ends a deployment whose checks failed, in the audit trail.
const BOT: &str = "deploybot";

/// What a deployment's checks say now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every required check passed.
    Green,
    /// Some are not finished (or not reported yet): their names.
    Pending(Vec<String>),
    /// Some failed: "name (url)" each.
    Failed(Vec<String>),
}

/// Reads `checks` against `required_checks` (`["*"]`: every check of the commit, and at
/// least one). A failure decides before anything pending; a required check not reported
/// yet is pending.
pub fn verdict(config: &GateConfig, checks: &[CommitCheck]) -> Verdict {
    let relevant: Vec<&CommitCheck> = if config.all_checks() {
        checks.iter().collect()
    } else {
        checks
            .iter()
            .filter(|c| config.required_checks.contains(&c.name))
            .collect()
    };
    let failed: Vec<String> = relevant
        .iter()
        .filter(|c| c.state == CheckState::Failure)
        .map(|c| match safe_url(&c.url) {
            Some(url) => format!("{} ({url})", name_of(&c.name)),
            None => name_of(&c.name),
        })
        .collect();
    if !failed.is_empty() {
        return Verdict::Failed(failed);
    }
    let mut pending: Vec<String> = relevant
        .iter()
        .filter(|c| c.state == CheckState::Pending)
        .map(|c| name_of(&c.name))
        .collect();
    if config.all_checks() {
        if checks.is_empty() {
            pending.push("no check reported yet".to_string());
        }
    } else {
        for name in &config.required_checks {
            if !relevant.iter().any(|c| c.name == *name) {
                pending.push(format!("{} (not reported yet)", name_of(name)));
            }
        }
    }
    if pending.is_empty() {
        Verdict::Green
    } else {
        Verdict::Pending(pending)
    }
}

/// A check's name as replies, statuses and pages show it: inline code, so a name chosen
/// by whoever posts the check mentions nobody and renders no Markdown; at most 100
/// characters, without backticks or control characters.
fn name_of(name: &str) -> String {
    let clean: String = name
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if c == '`' { '\'' } else { c })
        .take(100)
        .collect();
    format!("`{clean}`")
}

/// A check's link when it is a plain `https://` URL (no spaces, quotes, brackets or
/// Markdown), else None.
fn safe_url(url: &str) -> Option<&str> {
    let plain = url.len() <= 500
        && url.starts_with("https://")
        && !url
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "`<>()[]\"'\\".contains(c));
    plain.then_some(url)
}

/// Watches the deployments that wait for checks.
pub struct ChecksWatcher {
    cx: Context,
    /// When each deployment's checks are read next, and the wait after that.
    next_read: Mutex<HashMap<DeploymentId, (Instant, Duration)>>,
}

impl ChecksWatcher {
    pub fn new(cx: Context) -> Self {
        Self {
            cx,
            next_read: Mutex::new(HashMap::new()),
        }
    }

    /// Looks every second until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            if let Err(e) = self.look().await {
                tracing::warn!(error = %e, "cannot look at the deployments waiting for checks; retrying");
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(LOOK_EVERY) => {}
            }
        }
    }

    /// One look: reads the checks of each waiting deployment whose turn it is.
    pub async fn look(&self) -> Result<(), Error> {
        let store = Arc::clone(&self.cx.store);
        let waiting = blocking(move || store.waiting_at_gate(WaitKind::Checks, BATCH)).await?;
        let now = Instant::now();
        let due: Vec<Deployment> = {
            let mut next = self.next_read.lock().unwrap_or_else(|p| p.into_inner());
            next.retain(|id, _| waiting.iter().any(|d| d.id == *id));
            waiting
                .into_iter()
                .filter(|d| {
                    let (at, delay) = next.entry(d.id).or_insert((now, FIRST_DELAY));
                    if *at > now {
                        return false;
                    }
                    *at = now + *delay;
                    *delay = (*delay * 3 / 2).min(MAX_DELAY);
                    true
                })
                .collect()
        };
        for d in due {
            if let Err(e) = self.resolve(&d).await {
                tracing::warn!(deployment = %d.id, error = %e, "cannot resolve the deployment's checks");
            }
        }
        Ok(())
    }

    async fn resolve(&self, d: &Deployment) -> Result<(), Error> {
        let Some(waiting) = d.waiting_for.clone() else {
            return Ok(());
        };
        let (_, release, instance) = self.cx.load(&d.tenant_id, d.id).await?;
        let Some(cfg) = self.cx.instance_config(&d.tenant_id, &instance.name) else {
            return Ok(());
        };
        let timed_out = gates::timed_out(&waiting, deploy::now());
        let timeout = humantime::format_duration(cfg.gates.checks_timeout);
        let Some(client) = self.cx.client.as_deref() else {
            let reason = "required checks cannot be read without GitHub credentials: configure [github], or remove required_checks";
            return self.end(d, reason.to_string()).await;
        };
        let sha = release.commit_sha.as_str();
        let installation = d.source.installation_id;
        let checks = match client
            .commit_checks(&instance.repo, installation, sha)
            .await
        {
            Ok(checks) => checks,
            Err(e) if timed_out => {
                let reason = format!("checks could not be read within {timeout}: {e}");
                return self.end(d, reason).await;
            }
            Err(e) => {
                tracing::warn!(deployment = %d.id, error = %e, "cannot read the commit's checks yet");
                return Ok(());
            }
        };
        let short: String = sha.chars().take(7).collect();
        match verdict(&cfg.gates, &checks) {
            Verdict::Failed(failed) => {
                let reason = format!("checks of {short} failed: {}", failed.join(", "));
                self.end(d, reason).await
            }
            Verdict::Pending(pending) if timed_out => {
                let reason = format!(
                    "checks of {short} did not pass within {timeout}: still pending {}",
                    pending.join(", ")
                );
                self.end(d, reason).await
            }
            Verdict::Pending(pending) => {
                let mut still = waiting.clone();
                still.reason = format!("pending: {}", pending.join(", "));
                if still != waiting {
                    self.advance(d, Some(still)).await?;
                }
                Ok(())
            }
            Verdict::Green => {
                let requested_by = gates::requested_by(d);
                let facts = gates::Facts {
                    kind: d.kind,
                    noop: d.noop,
                    commit_sha: sha,
                    requested_by: &requested_by,
                    environment: &instance.environment,
                };
                let next = gates::next(Some(WaitKind::Checks), &cfg.gates, &facts, deploy::now());
                tracing::info!(deployment = %d.id, instance = %instance.name, "required checks are green");
                self.advance(d, next).await
            }
        }
    }

    async fn advance(&self, d: &Deployment, to: Option<WaitingFor>) -> Result<(), Error> {
        let store = Arc::clone(&self.cx.store);
        let (t, id) = (d.tenant_id.clone(), d.id);
        let runs = to.is_none();
        let moved =
            blocking(move || store.advance_waiting(&t, id, WaitKind::Checks, to.as_ref())).await?;
        if moved.is_some() && runs {
            self.cx.service.wake().notify_waiters();
        }
        Ok(())
    }

    async fn end(&self, d: &Deployment, reason: String) -> Result<(), Error> {
        let event = AuditEvent::new(&d.tenant_id, BOT, "refused", reason.clone());
        let store = Arc::clone(&self.cx.store);
        let (t, id) = (d.tenant_id.clone(), d.id);
        let state = DeployState::Failed;
        let ended =
            blocking(move || store.end_waiting(&t, id, WaitKind::Checks, state, &reason, &event))
                .await?;
        if let Some(ended) = ended {
            tracing::info!(deployment = %ended.id, reason = %ended.error, "the deployment's checks did not pass");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::checks::CheckKind;

    fn check(name: &str, state: CheckState) -> CommitCheck {
        CommitCheck {
            name: name.into(),
            state,
            url: format!("https://ci.example/{name}"),
            kind: CheckKind::CheckRun,
        }
    }

    fn required(names: &[&str]) -> GateConfig {
        GateConfig {
            required_checks: names.iter().map(|n| n.to_string()).collect(),
            ..GateConfig::default()
        }
    }

    #[test]
    fn named_checks_must_each_be_reported_and_green() {
        let config = required(&["ci/test", "build"]);
        let green = [
            check("ci/test", CheckState::Success),
            check("build", CheckState::Success),
        ];
        assert_eq!(verdict(&config, &green), Verdict::Green);
        let missing = [
            check("ci/test", CheckState::Success),
            check("lint", CheckState::Failure),
        ];
        assert_eq!(
            verdict(&config, &missing),
            Verdict::Pending(vec!["`build` (not reported yet)".into()]),
            "an unrequired failure does not count, a missing required one is waited for"
        );
        let failed = [
            check("ci/test", CheckState::Pending),
            check("build", CheckState::Failure),
        ];
        assert_eq!(
            verdict(&config, &failed),
            Verdict::Failed(vec!["`build` (https://ci.example/build)".into()])
        );
    }

    #[test]
    fn a_star_takes_every_check_and_waits_for_one() {
        let config = required(&["*"]);
        assert!(matches!(verdict(&config, &[]), Verdict::Pending(_)));
        let one_pending = [
            check("a", CheckState::Success),
            check("b", CheckState::Pending),
        ];
        assert_eq!(
            verdict(&config, &one_pending),
            Verdict::Pending(vec!["`b`".into()])
        );
        let lint = [
            check("a", CheckState::Success),
            check("lint", CheckState::Failure),
        ];
        assert!(matches!(verdict(&config, &lint), Verdict::Failed(_)));
    }

    #[test]
    fn a_checks_name_and_link_cannot_mention_or_render_markdown() {
        let mut evil = check(
            "@acme/everyone `x` ![i](https://e/i.png)",
            CheckState::Failure,
        );
        evil.url = "https://e/x) [click](https://phish".into();
        let Verdict::Failed(failed) = verdict(&required(&["*"]), &[evil]) else {
            panic!("a failure")
        };
        assert_eq!(failed, ["`@acme/everyone 'x' ![i](https://e/i.png)`"]);
    }
}
