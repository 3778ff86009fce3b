//! `/rollback [ENV] [VERSION|previous] [--force] [--reason TEXT…]`: make an earlier
//! release of an environment active again. `--force` passes another's lock or a freeze,
//! for a deployer of the environment.

use super::run::{Checks, CommentRun, Forks, Stop, Target};
use crate::deploy::RollbackTarget;
use crate::deploy::{MAX_REASON_CHARS, is_hidden_char};

/// The command's syntax, as help and parse errors show it.
pub const USAGE: &str = "/rollback [ENV] [VERSION|previous] [--force] [--reason TEXT…]";

/// A rollback never runs from a fork's pull request.
pub(super) const CHECKS: Checks = Checks {
    verb: "roll back",
    forks: Forks::Refused,
    open_pull: true,
};

/// Queues the rollback to `version`, or to the previous release when None.
pub(super) async fn handle(
    run: &CommentRun<'_>,
    target: &Target<'_>,
    version: Option<i64>,
    force: bool,
    reason: Option<&str>,
) -> Result<(), Stop> {
    let rollback_to = version.map_or(RollbackTarget::Previous, RollbackTarget::Version);
    if let Some(reason) = reason.filter(|r| r.chars().count() > MAX_REASON_CHARS) {
        let text = format!(
            "The rollback's reason has {} characters; at most {MAX_REASON_CHARS} fit: shorten it.",
            reason.chars().count()
        );
        return run.refuse_or_reply(target.step, text, true).await;
    }
    if reason.is_some_and(|r| r.chars().any(is_hidden_char)) {
        let text = "The rollback's reason holds control or invisible characters: write it as one line of plain text.";
        return run
            .refuse_or_reply(target.step, text.to_string(), true)
            .await;
    }
    let mut source = run.source("rollback");
    if let Some(reason) = reason {
        source.trigger.push_str(&format!(": {reason}"));
    }
    let prepared = async {
        let service = &run.cx.service;
        let inst = service
            .resolve_instance(&run.item.tenant_id, &target.cfg.name)
            .await?;
        service
            .prepare_rollback(
                &run.item.tenant_id,
                inst.id,
                rollback_to,
                &run.job.user,
                source,
                None,
            )
            .await
    };
    run.queue(target, CHECKS.verb, prepared.await, force).await
}
