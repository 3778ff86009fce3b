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
    /// What a dry run's `plan` phase runs; empty: `argv` with `DEPLOY_NOOP=1`.
    pub noop_run: Vec<String>,
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

/// The deployment's parameters as `DEPLOY_PARAM_<KEY>`, each name checked again (the
/// service accepts only the instance's `params`; this is the last line before a child).
fn param_env(run: &RunContext) -> Result<Vec<(String, String)>, ProviderError> {
    run.params
        .iter()
        .map(|(key, value)| {
            let name = format!("DEPLOY_PARAM_{key}");
            crate::deploy::env::check_release_name(key)
                .and_then(|()| crate::deploy::env::check_child_name(&name))
                .map_err(|e| ProviderError::Unavailable(format!("parameter {key}: {e}")))?;
            if value.contains('\0') {
                return Err(ProviderError::Unavailable(format!(
                    "parameter {key}: its value holds a NUL"
                )));
            }
            Ok((name, value.clone()))
        })
        .collect()
}

/// One phase's run of a command.
struct Phase<'a> {
    name: &'a str,
    slot: &'a str,
    release: &'a ReleaseSpec,
    percent: Option<u8>,
    argv: &'a [String],
}

impl CommandProvider {
    /// The environment of one phase: the release's env first, then the `pass_env` values,
    /// then the DEPLOY_* values and the parameters (`DEPLOY_PARAM_<KEY>`), so a release env
    /// cannot pretend to be another deployment. A dry run's `plan` phase also gets
    /// `DEPLOY_NOOP=1`.
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
        if run.noop {
            env.push(("DEPLOY_NOOP".to_string(), "1".to_string()));
        }
        env.extend(param_env(run)?);
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
        self.run_phase(
            run,
            Phase {
                name: phase,
                slot,
                release,
                percent,
                argv: &self.argv,
            },
        )
        .await
    }

    async fn run_phase(&self, run: &RunContext, phase: Phase<'_>) -> Result<(), ProviderError> {
        if run.cancel.is_cancelled() {
            return Err(ProviderError::Cancelled);
        }
        let Phase {
            name,
            slot,
            release,
            percent,
            argv,
        } = phase;
        let env = self.env(run, name, slot, release, percent)?;
        let program = argv.first().cloned().unwrap_or_default();
        let step = if slot.is_empty() {
            name.to_string()
        } else {
            format!("{name} {slot}")
        };
        run.log.system(format!("{step}: running {program}"));
        let log = run.log.clone();
        let outcome = process::run(
            RunSpec {
                argv,
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
                "{step}: {program} exited with status {code}"
            ))),
            RunOutcome::Signalled(signal) => Err(ProviderError::Failed(format!(
                "{step}: {program} was killed by signal {signal}"
            ))),
            RunOutcome::TimedOut => Err(ProviderError::TimedOut(format!(
                "{step}: {program} did not finish within {}",
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

    /// Runs `noop_run` when configured, else `run`, with `DEPLOY_PHASE=plan` and
    /// `DEPLOY_NOOP=1`.
    async fn plan(&self, run: &RunContext, release: &ReleaseSpec) -> Result<(), ProviderError> {
        let argv = if self.noop_run.is_empty() {
            &self.argv
        } else {
            &self.noop_run
        };
        let mut run = run.clone();
        run.noop = true;
        self.run_phase(
            &run,
            Phase {
                name: "plan",
                slot: "",
                release,
                percent: None,
                argv,
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::provider::LogSink;
    use crate::deploy::{DeploymentId, Env, ReleaseId};
    use tokio_util::sync::CancellationToken;

    /// Prints what a deploy command is told about its phase, dry run and parameter.
    const REPORT: &str = "echo \"ran=$0 phase=$DEPLOY_PHASE noop=${DEPLOY_NOOP:-unset} region=${DEPLOY_PARAM_REGION:-unset}\"";

    fn provider(noop_run: &[&str]) -> CommandProvider {
        let argv = |name: &str| vec!["/bin/sh".into(), "-c".into(), REPORT.into(), name.into()];
        CommandProvider {
            argv: argv("run"),
            noop_run: if noop_run.is_empty() {
                Vec::new()
            } else {
                noop_run.iter().map(|s| s.to_string()).collect()
            },
            timeout: Duration::from_secs(30),
            kill_grace: Duration::from_secs(1),
            pass_env: Vec::new(),
        }
    }

    fn run(params: &[(&str, &str)], log: LogSink) -> RunContext {
        RunContext {
            deployment_id: DeploymentId::new(),
            tenant_id: "acme".into(),
            instance: "web".into(),
            environment: "production".into(),
            strategy: "rolling".into(),
            release: ReleaseSpec {
                id: ReleaseId::new(),
                version: 3,
                image: "ghcr.io/acme/web:3".into(),
                commit_sha: "abc1234".into(),
                env: Env::new(),
            },
            cancel: CancellationToken::new(),
            log,
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            noop: false,
        }
    }

    /// Runs `step` and returns the command's stdout lines.
    async fn stdout_of<F, Fut>(
        params: &[(&str, &str)],
        step: F,
    ) -> Result<Vec<String>, ProviderError>
    where
        F: FnOnce(RunContext) -> Fut,
        Fut: std::future::Future<Output = Result<(), ProviderError>>,
    {
        let (log, mut lines) = LogSink::channel(1000);
        step(run(params, log)).await?;
        let mut out = Vec::new();
        while let Ok(line) = lines.try_recv() {
            if line.stream == LogStream::Stdout {
                out.push(line.text);
            }
        }
        Ok(out)
    }

    #[tokio::test]
    async fn a_plan_runs_the_deploy_command_as_a_dry_run_with_its_parameters() {
        let p = provider(&[]);
        let out = stdout_of(&[("REGION", "eu-west-1")], |run| async move {
            p.plan(&run, &run.release).await
        })
        .await
        .unwrap();
        assert_eq!(out, ["ran=run phase=plan noop=1 region=eu-west-1"]);
    }

    #[tokio::test]
    async fn a_plan_runs_noop_run_when_it_is_configured() {
        let p = provider(&["/bin/sh", "-c", REPORT, "noop-run"]);
        let out = stdout_of(&[], |run| async move { p.plan(&run, &run.release).await })
            .await
            .unwrap();
        assert_eq!(out, ["ran=noop-run phase=plan noop=1 region=unset"]);
    }

    #[tokio::test]
    async fn a_real_phase_is_no_dry_run_and_gets_the_parameters_too() {
        let p = provider(&[]);
        let out = stdout_of(&[("REGION", "us-east-1")], |run| async move {
            p.start(&run, "blue", &run.release).await
        })
        .await
        .unwrap();
        assert_eq!(out, ["ran=run phase=start noop=unset region=us-east-1"]);
    }

    #[tokio::test]
    async fn a_parameter_that_is_no_environment_name_never_reaches_the_command() {
        let p = &provider(&[]);
        let refused = stdout_of(&[("LD_PRELOAD", "/tmp/x.so")], |run| async move {
            p.start(&run, "blue", &run.release).await
        })
        .await;
        let unformed = stdout_of(&[("region", "eu")], |run| async move {
            p.plan(&run, &run.release).await
        })
        .await;
        assert!(
            matches!(refused, Err(ProviderError::Unavailable(_))),
            "{refused:?}"
        );
        assert!(
            matches!(unformed, Err(ProviderError::Unavailable(_))),
            "{unformed:?}"
        );
    }

    #[tokio::test]
    async fn a_failing_plan_fails() {
        let mut p = provider(&[]);
        p.noop_run = vec!["/bin/sh".into(), "-c".into(), "exit 3".into()];
        let failed = stdout_of(&[], |run| async move { p.plan(&run, &run.release).await }).await;
        assert!(
            matches!(&failed, Err(ProviderError::Failed(m)) if m.contains("plan") && m.contains("status 3")),
            "{failed:?}"
        );
    }
}
