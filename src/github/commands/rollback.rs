//! `/rollback [ENV] [VERSION|previous]`: make an earlier release of an environment active
//! again.

use super::run::{Checks, CommentRun, Forks, Stop, Target};
use crate::deploy::RollbackTarget;

/// The command's syntax, as help and parse errors show it.
pub const USAGE: &str = "/rollback [ENV] [VERSION|previous]";

/// A rollback never runs from a fork's pull request.
pub(super) const CHECKS: Checks = Checks {
    verb: "roll back",
    forks: Forks::Refused,
};

/// Queues the rollback to `version`, or to the previous release when None.
pub(super) async fn handle(
    run: &CommentRun<'_>,
    target: &Target<'_>,
    version: Option<i64>,
) -> Result<(), Stop> {
    let rollback_to = version.map_or(RollbackTarget::Previous, RollbackTarget::Version);
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
                run.source("rollback"),
                None,
            )
            .await
    };
    run.queue(target, CHECKS.verb, prepared.await).await
}
