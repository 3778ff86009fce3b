//! Health checks: an HTTP GET that must answer 2xx, or a command that must exit 0, probed
//! every `interval` until it passes or `deadline` has gone by.

use std::time::Duration;

use async_trait::async_trait;
use tokio::time::{Instant, sleep};

use super::process::{self, RunOutcome, RunSpec};
use crate::deploy::provider::{GatePoint, HealthCheck, LogStream, ProviderError, RunContext};

/// How often and how long to probe.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub timeout: Duration,
    pub interval: Duration,
    pub deadline: Duration,
}

/// Probes `once` until it passes, the deadline passes, or the deployment is cancelled.
async fn until_healthy<F, Fut>(
    run: &RunContext,
    probe: Probe,
    what: &str,
    mut once: F,
) -> Result<(), ProviderError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + probe.deadline;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let result = tokio::select! {
            result = once() => result,
            _ = run.cancel.cancelled() => return Err(ProviderError::Cancelled),
        };
        match result {
            Ok(()) => {
                run.log
                    .system(format!("health: {what} healthy (attempt {attempt})"));
                return Ok(());
            }
            Err(reason) => {
                run.log.system(format!(
                    "health: {what} unhealthy (attempt {attempt}): {reason}"
                ));
                if Instant::now() + probe.interval > deadline {
                    return Err(ProviderError::Failed(format!(
                        "health check failed: {what}: {reason} (still failing after {attempt} attempts in {})",
                        humantime::format_duration(probe.deadline)
                    )));
                }
            }
        }
        tokio::select! {
            _ = sleep(probe.interval) => {}
            _ = run.cancel.cancelled() => return Err(ProviderError::Cancelled),
        }
    }
}

/// GET `url`, expecting a 2xx answer within the probe timeout.
pub struct HttpHealth {
    url: String,
    probe: Probe,
    client: reqwest::Client,
}

impl HttpHealth {
    pub fn new(url: &str, probe: Probe) -> Result<Self, ProviderError> {
        let client = reqwest::Client::builder()
            .timeout(probe.timeout)
            .user_agent(concat!(
                "deploybot/",
                env!("CARGO_PKG_VERSION"),
                " health-check"
            ))
            .build()
            .map_err(|e| {
                ProviderError::Unavailable(format!("cannot build the health-check client: {e}"))
            })?;
        Ok(Self {
            url: url.to_string(),
            probe,
            client,
        })
    }
}

#[async_trait]
impl HealthCheck for HttpHealth {
    fn describe(&self) -> String {
        format!("GET {}", self.url)
    }

    async fn wait_healthy(&self, run: &RunContext, _at: &GatePoint) -> Result<(), ProviderError> {
        let what = self.describe();
        until_healthy(run, self.probe, &what, || async {
            match self.client.get(&self.url).send().await {
                Ok(response) if response.status().is_success() => Ok(()),
                Ok(response) => Err(format!("answered {}", response.status())),
                Err(e) if e.is_timeout() => Err(format!(
                    "no answer within {}",
                    humantime::format_duration(self.probe.timeout)
                )),
                Err(e) => Err(format!("request failed: {e}")),
            }
        })
        .await
    }
}

/// What a health command (or a command gate) is told about the release it checks, after
/// the release's env and the `pass_env` values, so neither can pretend to be another.
pub(crate) fn gate_env(run: &RunContext, at: &GatePoint) -> Vec<(String, String)> {
    [
        ("DEPLOY_ID", run.deployment_id.to_string()),
        ("DEPLOY_INSTANCE", run.instance.clone()),
        ("DEPLOY_ENVIRONMENT", run.environment.clone()),
        ("DEPLOY_RELEASE_ID", run.release.id.to_string()),
        ("DEPLOY_RELEASE_VERSION", run.release.version.to_string()),
        ("DEPLOY_IMAGE", run.release.image.clone()),
        ("DEPLOY_COMMIT_SHA", run.release.commit_sha.clone()),
        ("DEPLOY_STRATEGY", run.strategy.clone()),
        ("DEPLOY_PHASE", at.phase.clone()),
        ("DEPLOY_SLOT", at.slot.clone()),
        ("DEPLOY_TRAFFIC_PERCENT", at.traffic_percent.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Runs `argv` (no shell), expecting exit status 0 within the probe timeout. It sees the
/// release's env, the `pass_env` values and the DEPLOY_* values, nothing else of the server.
pub struct CommandHealth {
    argv: Vec<String>,
    probe: Probe,
    pass_env: Vec<(String, String)>,
}

impl CommandHealth {
    /// `pass_env`: the server's values of the instance's `pass_env` names.
    pub fn new(argv: Vec<String>, probe: Probe, pass_env: Vec<(String, String)>) -> Self {
        Self {
            argv,
            probe,
            pass_env,
        }
    }
}

#[async_trait]
impl HealthCheck for CommandHealth {
    fn describe(&self) -> String {
        format!("command {}", self.argv.join(" "))
    }

    async fn wait_healthy(&self, run: &RunContext, at: &GatePoint) -> Result<(), ProviderError> {
        let what = self.describe();
        let mut env = super::command::release_env(&run.release)?;
        env.extend(self.pass_env.iter().cloned());
        env.extend(gate_env(run, at));
        until_healthy(run, self.probe, &what, || async {
            let log = run.log.clone();
            let outcome = process::run(
                RunSpec {
                    argv: &self.argv,
                    env: &env,
                    cwd: None,
                    timeout: self.probe.timeout,
                    kill_grace: Duration::from_secs(1),
                    cancel: run.cancel.child_token(),
                },
                move |_, line| log.line(LogStream::Stdout, line),
            )
            .await
            .map_err(|e| e.to_string())?;
            match outcome {
                RunOutcome::Exited(0) => Ok(()),
                RunOutcome::Exited(code) => Err(format!("exited with status {code}")),
                RunOutcome::Signalled(sig) => Err(format!("killed by signal {sig}")),
                RunOutcome::TimedOut => Err("timed out".to_string()),
                RunOutcome::Cancelled => Err("cancelled".to_string()),
            }
        })
        .await
    }
}
