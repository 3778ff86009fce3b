//! `/help`: the commands and their syntax, and each environment of the repository with its
//! parameters, deployers, lock and freezes.

use chrono::Utc;

use super::lock::freezes;
use super::markdown;
use super::route::with_prefix;
use super::run::{CommentRun, Stop};
use crate::config::InstanceConfig;
use crate::deploy::LockTarget;

/// The command's syntax, as parse errors show it.
pub const USAGE: &str = "/help";

/// The reply to `/help` and to a malformed command: the commands and their syntax.
pub const HELP: &str = "\
**deploybot commands**, each at the start of its own line in a pull request comment:

| command | what it does |
| --- | --- |
| `/deploy [to] [ENV] [--strategy NAME] [--force] [\\| KEY=VALUE …]` | deploy this pull request's head commit to ENV, optionally with another strategy (`rolling`, `recreate`, `blue-green`, `canary`) and parameters; `--force` passes a freeze (deployers only) |
| `/noop [ENV] [\\| KEY=VALUE …]` | a dry run: the provider plans, nothing changes, no release becomes active; the plan comes back as the reply |
| `/rollback [ENV] [VERSION\\|previous] [--force] [--reason TEXT…]` | make the previous release of ENV active again, or release VERSION (`12` or `v12`); `--force` passes another's lock or a freeze (deployers only) |
| `/cancel [ENV]` | cancel the running deployment to ENV (the release it replaces is restored) |
| `/cancel [ENV] --queued` | cancel the deployments to ENV that wait in the queue |
| `/lock [ENV\\|--global] [--for DURATION] [--reason TEXT…]` | lock ENV (or every environment of the repository) for yourself: others' deploys are refused, pushes wait; `--for` like `30m`, `2h`, `1d` (at most `30d`) |
| `/unlock [ENV\\|--global]` | release the lock; the newest push that waited deploys |
| `/locks` | who holds which lock, why, until when, and the freezes |
| `/approve [ENV]` | approve the deployment to ENV that waits for approval (not your own) |
| `/help` | show this help |

ENV may be left out when the repository has exactly one environment that accepts commands. \
Commands in quotes and code blocks are ignored.";

/// Replies with [`HELP`] (with the prefix in use) and each environment that takes
/// commands: its parameters, deployers, lock and current and next freeze.
pub(super) async fn handle(
    run: &CommentRun<'_>,
    step: i32,
    instances: &[&InstanceConfig],
) -> Result<(), Stop> {
    let prefix = run.config.command_prefix;
    let service = &run.cx.service;
    let tenant = run.item.tenant_id.as_str();
    let repo = run.job.repo.as_str();
    let held = service.locks(tenant).await.map_err(Stop::from_store)?;
    let now = Utc::now();
    let mut lines = vec![
        with_prefix(HELP, prefix),
        String::new(),
        format!("**Environments of {repo}**"),
        String::new(),
    ];
    if let Some(whole) = held
        .iter()
        .find(|l| l.repo.eq_ignore_ascii_case(repo) && matches!(l.target, LockTarget::Repo { .. }))
    {
        lines.push(format!("- every environment: {}", markdown::lock(whole)));
    }
    for cfg in instances {
        let mut line = format!("- `{}`", cfg.environment);
        let mut parts = Vec::new();
        if !cfg.params.is_empty() {
            parts.push(format!("parameters {}", quoted(&cfg.params)));
        }
        if !cfg.deployers.is_empty() {
            parts.push(format!("deployers {}", quoted(&cfg.deployers)));
        }
        let gates = cfg.gates.describe();
        if !gates.is_empty() {
            parts.push(format!("gates: {}", gates.join(", ").replace('`', "")));
        }
        let instance = service
            .resolve_instance(tenant, &cfg.name)
            .await
            .map_err(Stop::from_store)?;
        if let Some(lock) = held.iter().find(
            |l| matches!(&l.target, LockTarget::Instance { instance_id } if *instance_id == instance.id),
        ) {
            parts.push(markdown::lock(lock));
        }
        if !parts.is_empty() {
            line.push_str(": ");
            line.push_str(&parts.join("; "));
        }
        line.push_str(&freezes(run, &cfg.name, now));
        lines.push(line);
    }
    run.refuse_or_reply(step, lines.join("\n"), false).await
}

/// Configured names as inline code, comma-separated.
fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{}`", n.replace('`', "")))
        .collect::<Vec<_>>()
        .join(", ")
}
