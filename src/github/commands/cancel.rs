//! `/cancel [ENV] [--queued]`: stop the running deployment of an environment (the release
//! it replaces is restored), or with `--queued` cancel the deployments waiting for it.

use super::run::{Checks, CommentRun, Forks, Outgoing, Stop, Target};
use crate::deploy::{AuditEvent, DeployState, DeploymentId, ListOptions};
use crate::github::outbox::NewOutboxItem;
use crate::github::store::{CommentActed, CommentEffect};

/// The command's syntax, as help and parse errors show it.
pub const USAGE: &str = "/cancel [ENV] [--queued]";

/// A cancel never runs from a fork's pull request.
pub(super) const CHECKS: Checks = Checks {
    verb: "cancel",
    forks: Forks::Refused,
    open_pull: true,
};

/// The deployments of the environment a cancel is about.
struct Cancellable {
    /// The running one, or with `--queued` the waiting ones.
    ids: Vec<DeploymentId>,
    /// How many wait in the queue.
    waiting: usize,
}

/// Cancels the running deployment, or the queued ones, and says what it did.
pub(super) async fn handle(
    run: &CommentRun<'_>,
    target: &Target<'_>,
    queued: bool,
) -> Result<(), Stop> {
    let environment = target.cfg.environment.as_str();
    let Cancellable { ids, waiting } = cancellable(run, target, queued).await?;
    if ids.is_empty() {
        let prefix = run.config.command_prefix;
        let text = nothing_to_cancel(environment, queued, waiting, prefix);
        return run.refuse_or_reply(target.step, text, false).await;
    }
    let audit = AuditEvent::new(
        &run.item.tenant_id,
        &format!("@{}", run.job.user.to_ascii_lowercase()),
        "cancel",
        format!(
            "{}cancel on #{} on {environment}",
            run.config.command_prefix, run.job.pr
        ),
    );
    let effect = CommentEffect::Cancel {
        ids,
        by: run.job.user.clone(),
        audit,
    };
    let items = replies(run.out.clone(), environment.to_string());
    let Some(acted) = run.act(target.step, effect, items).await? else {
        return Ok(());
    };
    let service = &run.cx.service;
    for d in acted.cancelled {
        if d.state == DeployState::Running {
            service.stop_running(d.id);
        }
    }
    service.wake().notify_waiters();
    Ok(())
}

/// The deployments to cancel: the running one, or the queued ones.
async fn cancellable(
    run: &CommentRun<'_>,
    target: &Target<'_>,
    queued: bool,
) -> Result<Cancellable, Stop> {
    let service = &run.cx.service;
    let tenant = &run.item.tenant_id;
    let inst = service
        .resolve_instance(tenant, &target.cfg.name)
        .await
        .map_err(Stop::from_store)?;
    let page = service
        .list_deployments(
            tenant,
            inst.id,
            ListOptions {
                cursor: None,
                limit: Some(100),
            },
        )
        .await
        .map_err(Stop::from_store)?;
    let wanted = if queued {
        DeployState::Pending
    } else {
        DeployState::Running
    };
    Ok(Cancellable {
        ids: page
            .items
            .iter()
            .filter(|d| d.state == wanted)
            .map(|d| d.id)
            .collect(),
        waiting: page
            .items
            .iter()
            .filter(|d| d.state == DeployState::Pending)
            .count(),
    })
}

/// The reply when there is nothing to cancel, pointing at `--queued` (with the command
/// prefix in use) when deployments wait.
fn nothing_to_cancel(environment: &str, queued: bool, waiting: usize, prefix: char) -> String {
    if queued {
        format!("Nothing to cancel on `{environment}`: no deployment is queued.")
    } else if waiting > 0 {
        format!(
            "Nothing to cancel on `{environment}`: no deployment is running. {waiting} wait in the queue: `{prefix}cancel {environment} --queued` cancels them."
        )
    } else {
        format!("Nothing to cancel on `{environment}`: no deployment is running.")
    }
}

/// The reply naming what the cancel stopped, cancelled, or found already finished.
fn replies(
    out: Outgoing,
    environment: String,
) -> impl Fn(&CommentActed) -> Vec<NewOutboxItem> + Send + Sync + 'static {
    move |acted: &CommentActed| {
        let mut lines = Vec::new();
        for d in &acted.cancelled {
            lines.push(if d.state == DeployState::Running {
                format!(
                    "Stopping deployment {} on `{environment}`; the release it replaces is restored.",
                    d.id
                )
            } else {
                format!("Cancelled queued deployment {} on `{environment}`.", d.id)
            });
        }
        for id in &acted.finished {
            lines.push(format!(
                "Deployment {id} on `{environment}` has already finished."
            ));
        }
        vec![out.reply(lines.join("\n"))]
    }
}
