//! The `command` provider: runs the configured argv once per phase, with everything about
//! the deployment in environment variables. No shell is involved unless the configured
//! program is one, and values from GitHub reach the command only as environment values.
//! The command sees none of the server's environment but the `pass_env` values it is given.

use std::time::Duration;

use async_trait::async_trait;

use super::process::{self, RunOutcome, RunSpec, Stream};
use crate::deploy::provider::{LogStream, Provider, ProviderError, ReleaseSpec, RunContext};

/// Runs `argv` for every phase.
#[derive(Debug, Clone)]
pub struct CommandProvider {
    pub argv: Vec<String>,
    pub timeout: Duration,
    pub kill_grace: Duration,
    /// The server's values of the instance's `pass_env` names.
    pub pass_env: Vec<(String, String)>,
}

/// The release's env, each name checked again (a release stored under an older rule may
/// hold one that is refused now).
pub(super) fn release_env(release: &ReleaseSpec) -> Result<Vec<(String, String)>, ProviderError> {
    release
        .env
        .iter()
        .map(|(name, value)| {
            crate::deploy::env::check_release_name(name)
                .map(|()| (name.clone(), value.clone()))
                .map_err(|e| {
                    ProviderError::Unavailable(format!(
                        "release v{}: {e}; deploy a new release without it",
                        release.version
                    ))
                })
        })
        .collect()
}

impl CommandProvider {
    /// The environment of one phase: the release's env first, then the `pass_env` values,
    /// then the DEPLOY_* values, so a release env cannot pretend to be another deployment.
    fn env(
        &self,
        run: &RunContext,
        phase: &str,
        slot: &str,
        release: &ReleaseSpec,
        percent: Option<u8>,
    ) -> Result<Vec<(String, String)>, ProviderError> {
        let mut env = release_env(release)?;
        env.extend(self.pass_env.iter().cloned());
        let deploy = [
            ("DEPLOY_ID", run.deployment_id.to_string()),
            ("DEPLOY_TENANT", run.tenant_id.clone()),
            ("DEPLOY_INSTANCE", run.instance.clone()),
            ("DEPLOY_ENVIRONMENT", run.environment.clone()),
            ("DEPLOY_RELEASE_ID", release.id.to_string()),
            ("DEPLOY_RELEASE_VERSION", release.version.to_string()),
            ("DEPLOY_IMAGE", release.image.clone()),
            ("DEPLOY_COMMIT_SHA", release.commit_sha.clone()),
            ("DEPLOY_STRATEGY", run.strategy.clone()),
            ("DEPLOY_PHASE", phase.to_string()),
            ("DEPLOY_SLOT", slot.to_string()),
            (
                "DEPLOY_TRAFFIC_PERCENT",
                percent.map(|p| p.to_string()).unwrap_or_default(),
            ),
        ];
        env.extend(deploy.into_iter().map(|(k, v)| (k.to_string(), v)));
        Ok(env)
    }

    async fn phase(
        &self,
        run: &RunContext,
        phase: &str,
        slot: &str,
        release: &ReleaseSpec,
        percent: Option<u8>,
    ) -> Result<(), ProviderError> {
        if run.cancel.is_cancelled() {
            return Err(ProviderError::Cancelled);
        }
        let env = self.env(run, phase, slot, release, percent)?;
        let program = self.argv.first().cloned().unwrap_or_default();
        run.log.system(format!("{phase} {slot}: running {program}"));
        let log = run.log.clone();
        let outcome = process::run(
            RunSpec {
                argv: &self.argv,
                env: &env,
                cwd: None,
                timeout: self.timeout,
                kill_grace: self.kill_grace,
                cancel: run.cancel.clone(),
            },
            move |stream, line| {
                let stream = match stream {
                    Stream::Stdout => LogStream::Stdout,
                    Stream::Stderr => LogStream::Stderr,
                };
                log.line(stream, line);
            },
        )
        .await
        .map_err(|e| ProviderError::Unavailable(e.to_string()))?;
        match outcome {
            RunOutcome::Exited(0) => Ok(()),
            RunOutcome::Exited(code) => Err(ProviderError::Failed(format!(
                "{phase} {slot}: {program} exited with status {code}"
            ))),
            RunOutcome::Signalled(signal) => Err(ProviderError::Failed(format!(
                "{phase} {slot}: {program} was killed by signal {signal}"
            ))),
            RunOutcome::TimedOut => Err(ProviderError::TimedOut(format!(
                "{phase} {slot}: {program} did not finish within {}",
                humantime::format_duration(self.timeout)
            ))),
            RunOutcome::Cancelled => Err(ProviderError::Cancelled),
        }
    }
}

#[async_trait]
impl Provider for CommandProvider {
    fn kind(&self) -> &'static str {
        "command"
    }

    fn supports(&self, _strategy: &str) -> bool {
        // The command is told the phase, slot and traffic share; it can serve any strategy.
        true
    }

    async fn start(
        &self,
        run: &RunContext,
        slot: &str,
        release: &ReleaseSpec,
    ) -> Result<(), ProviderError> {
        self.phase(run, "start", slot, release, None).await
    }

    async fn shift_traffic(
        &self,
        run: &RunContext,
        slot: &str,
        percent: u8,
    ) -> Result<(), ProviderError> {
        self.phase(run, "traffic", slot, &run.release, Some(percent))
            .await
    }

    async fn retire(&self, run: &RunContext, slot: &str) -> Result<(), ProviderError> {
        self.phase(run, "retire", slot, &run.release, None).await
    }
}
