//! The pull-request gates of `/deploy` and `/noop`: `required_reviews` approving reviews
//! of the head by others than its author, and `require_up_to_date` (the branch contains
//! its base branch's head). Read from GitHub when the command runs.

use super::run::{CommentRun, Stop, Target};
use crate::github::client::{GithubClient, PullRequest};
use crate::github::image::short;

/// Why the pull request may not be deployed to the target yet, in words for the reply
/// and for the audit trail; None when its gates pass.
pub(super) async fn refusal(
    run: &CommentRun<'_>,
    target: &Target<'_>,
    verb: &str,
) -> Result<Option<(String, String)>, Stop> {
    let (job, cfg, pull) = (run.job, target.cfg, target.pull);
    let gates = &cfg.gates;
    if gates.required_reviews == 0 && !gates.require_up_to_date {
        return Ok(None);
    }
    let Some(client) = run.cx.client.as_deref() else {
        return Ok(None);
    };
    let head = short(&pull.head_sha);
    if gates.required_reviews > 0 {
        let approvers = counted_reviewers(run, client, pull).await?;
        let have = u32::try_from(approvers.len()).unwrap_or(u32::MAX);
        if have < gates.required_reviews {
            let by = if approvers.is_empty() {
                "none with write access yet".to_string()
            } else {
                approvers
                    .iter()
                    .map(|a| format!("@{a}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let text = format!(
                "@{} cannot {verb} `{}`: it needs {} of {head} by someone with write access other than @{} (approved by {by}). Approvals of an earlier head do not count.",
                job.user,
                cfg.environment,
                crate::config::plural(gates.required_reviews, "approving review"),
                pull.author,
            );
            let detail = format!(
                "{verb} of {} refused: {have} of {} required reviews of {head}",
                cfg.name, gates.required_reviews
            );
            return Ok(Some((text, detail)));
        }
    }
    if gates.require_up_to_date
        && !client
            .contains_base(
                &job.repo,
                job.installation_id,
                &pull.base_ref,
                &pull.head_sha,
            )
            .await
            .map_err(Stop::from_api)?
    {
        let text = format!(
            "@{} cannot {verb} `{}`: the branch is behind `{}`. Merge or rebase `{}` onto it, then comment again.",
            job.user,
            cfg.environment,
            pull.base_ref.replace('`', ""),
            pull.base_ref.replace('`', ""),
        );
        let detail = format!(
            "{verb} of {} refused: {head} does not contain the head of {}",
            cfg.name, pull.base_ref
        );
        return Ok(Some((text, detail)));
    }
    Ok(None)
}

/// The roles whose approving reviews count, as GitHub counts them for required reviews:
/// those with write access to the repository.
const REVIEWER_ROLES: [&str; 3] = ["admin", "maintain", "write"];

/// The approvers of the pull request's head (not its author) who have write access to the
/// repository; a review by anyone else does not count.
async fn counted_reviewers(
    run: &CommentRun<'_>,
    client: &GithubClient,
    pull: &PullRequest,
) -> Result<Vec<String>, Stop> {
    let job = run.job;
    let approvers = client
        .approving_reviewers(
            &job.repo,
            job.installation_id,
            job.pr,
            &pull.head_sha,
            &pull.author,
        )
        .await
        .map_err(Stop::from_api)?;
    let mut counted = Vec::with_capacity(approvers.len());
    for login in approvers {
        let role = client
            .permission(&job.repo, job.installation_id, &login)
            .await
            .map_err(Stop::from_api)?;
        if REVIEWER_ROLES.iter().any(|r| role.eq_ignore_ascii_case(r)) {
            counted.push(login);
        }
    }
    Ok(counted)
}
