//! `/approve [ENV]`: approve the environment's deployment that waits for approval (the
//! two-person rule). The commenter must be allowed to deploy there (its `deployers`), and
//! may not approve a deployment they asked for.

use super::run::{Checks, CommentRun, Forks, Stop, Target};
use crate::deploy::{DeployState, Deployment, Error, ListOptions, WaitKind};

/// The command's syntax, as help and parse errors show it.
pub const USAGE: &str = "/approve [ENV]";

/// An approval acts on the environment, whatever pull request it is written on.
pub(super) const CHECKS: Checks = Checks {
    verb: "approve deployments to",
    forks: Forks::Refused,
    open_pull: false,
};

/// Approves the deployment this comment is about (see [`waiting_for_approval`]), and says
/// what is still needed.
pub(super) async fn handle(run: &CommentRun<'_>, target: &Target<'_>) -> Result<(), Stop> {
    let environment = target.cfg.environment.as_str();
    let waiting = match waiting_for_approval(run, target).await? {
        Ok(waiting) => waiting,
        Err(text) => {
            let detail = format!("approval on {} refused: {text}", target.cfg.name);
            return run
                .refused_audited::<()>(target.step, text, detail, Some(target.cfg))
                .await
                .map(|_| ());
        }
    };
    let tenant = run.item.tenant_id.as_str();
    let actor = run.actor(target);
    match run.cx.service.approve(tenant, waiting.id, &actor).await {
        Ok(approved) => {
            let text = approved_text(&approved, environment, &actor.id);
            run.refuse_or_reply(target.step, text, false).await
        }
        Err(Error::NotApproved(why)) => {
            let text = format!(
                "@{} cannot approve on `{environment}`: {why}.",
                run.job.user
            );
            run.refuse_or_reply(target.step, text, true).await
        }
        Err(e) => Err(Stop::from_store(e)),
    }
}

/// The deployment this `/approve` is about: the newest of this pull request's that waits
/// for approval on the environment, else the only one waiting there that no pull request
/// asked for (a push's, a tag's, the API's). Otherwise the reply saying why none is.
async fn waiting_for_approval(
    run: &CommentRun<'_>,
    target: &Target<'_>,
) -> Result<Result<Deployment, String>, Stop> {
    let service = &run.cx.service;
    let tenant = &run.item.tenant_id;
    let inst = service
        .resolve_instance(tenant, &target.cfg.name)
        .await
        .map_err(Stop::from_store)?;
    let options = ListOptions {
        cursor: None,
        limit: Some(100),
    };
    let page = service
        .list_deployments(tenant, inst.id, options)
        .await
        .map_err(Stop::from_store)?;
    let waiting: Vec<Deployment> = page
        .items
        .into_iter()
        .filter(|d| {
            d.state == DeployState::Pending
                && d.waiting_for
                    .as_ref()
                    .is_some_and(|w| w.kind == WaitKind::Approval)
        })
        .collect();
    let environment = &target.cfg.environment;
    if let Some(ours) = waiting
        .iter()
        .find(|d| d.source.pull_request == Some(run.job.pr))
    {
        return Ok(Ok(ours.clone()));
    }
    let unasked: Vec<&Deployment> = waiting
        .iter()
        .filter(|d| d.source.pull_request.is_none())
        .collect();
    Ok(match (unasked.as_slice(), waiting.len()) {
        (_, 0) => Err(format!(
            "Nothing to approve on `{environment}`: no deployment waits for approval."
        )),
        ([only], 1) => Ok((*only).clone()),
        _ => Err(format!(
            "No deployment of this pull request waits for approval on `{environment}`, and {} others do: approve each on its own pull request, or by its id on its page or with `deploybot approve`.",
            waiting.len()
        )),
    })
}

/// "Approved deployment dep_… to `production` (as @bob): it runs now." or what is still
/// needed.
fn approved_text(d: &Deployment, environment: &str, approver: &str) -> String {
    let head = format!(
        "Approved deployment {} to `{environment}` (as {approver})",
        d.id
    );
    match d.waiting_for.as_ref().and_then(|w| w.approval.as_ref()) {
        Some(state)
            if d.waiting_for
                .as_ref()
                .is_some_and(|w| w.kind == WaitKind::Approval) =>
        {
            format!(
                "{head}: approved by {}; {} more approval{} needed from a deployer of `{environment}`.",
                state.approved_by.join(", "),
                state.missing(),
                if state.missing() == 1 { "" } else { "s" }
            )
        }
        _ => format!("{head}: it runs now."),
    }
}
