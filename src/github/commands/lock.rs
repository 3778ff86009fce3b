//! `/lock [ENV|--global] [--for DURATION] [--reason TEXT…]`, `/unlock [ENV|--global]` and
//! `/locks`: hold an environment (or every environment of the repository) for one person
//! (pushes wait, others' deploys are refused), release it, and show who holds what.

use std::time::Duration;

use chrono::Utc;

use super::markdown;
use super::run::{Checks, CommentRun, Forks, Stop, Target};
use crate::config::InstanceConfig;
use crate::deploy::{Error, Lock, LockTarget};

/// `/lock`'s syntax, as help and parse errors show it.
pub const LOCK_USAGE: &str = "/lock [ENV|--global] [--for DURATION] [--reason TEXT…]";

/// `/unlock`'s syntax, as help and parse errors show it.
pub const UNLOCK_USAGE: &str = "/unlock [ENV|--global]";

/// A lock holds the environment, not the pull request's code: whatever the pull request
/// is (closed, from a fork), a commenter allowed to deploy there may lock it.
pub(super) const CHECKS: Checks = Checks {
    verb: "lock",
    forks: Forks::WhenAllowed,
    open_pull: false,
};

/// Whoever may deploy to the environment may unlock it.
pub(super) const UNLOCK_CHECKS: Checks = Checks {
    verb: "unlock",
    forks: Forks::WhenAllowed,
    open_pull: false,
};

/// What a lock covers, for replies: "`production`" or "every environment of acme/web".
fn scope(target: &Target<'_>, global: bool, repo: &str) -> String {
    if global {
        format!("every environment of {repo}")
    } else {
        format!("`{}`", target.cfg.environment)
    }
}

/// Takes (or renews) the lock, and replies once: who holds it, why, until when; or whose
/// lock is in the way.
pub(super) async fn lock(
    run: &CommentRun<'_>,
    target: &Target<'_>,
    global: bool,
    ttl: Option<Duration>,
    reason: Option<&str>,
) -> Result<(), Stop> {
    let service = &run.cx.service;
    let tenant = run.item.tenant_id.as_str();
    let what = scope(target, global, &run.job.repo);
    let instance = service
        .resolve_instance(tenant, &target.cfg.name)
        .await
        .map_err(Stop::from_store)?;
    let taken = service
        .lock(
            tenant,
            &instance,
            global,
            &run.actor(target),
            reason.unwrap_or_default(),
            ttl,
            Some(run.job.pr),
        )
        .await;
    let (text, refused) = match taken {
        Ok(lock) => (
            format!("🔒 Locked {what}: {}.", markdown::lock(&lock)),
            false,
        ),
        Err(Error::Unavailable(e)) => return Err(Stop::unavailable(e)),
        Err(Error::Locked(why)) => (
            format!(
                "@{} cannot lock {what}: it is already {}",
                run.job.user,
                run.locked(&why).await?
            ),
            true,
        ),
        Err(Error::InvalidRequest(why)) => (format!("Could not lock {what}: {why}"), true),
        Err(e) => return Err(Stop::from_store(e)),
    };
    run.refuse_or_reply(target.step, text, refused).await
}

/// Releases the lock and replies once, naming whose lock it was.
pub(super) async fn unlock(
    run: &CommentRun<'_>,
    target: &Target<'_>,
    global: bool,
) -> Result<(), Stop> {
    let service = &run.cx.service;
    let tenant = run.item.tenant_id.as_str();
    let what = scope(target, global, &run.job.repo);
    let instance = service
        .resolve_instance(tenant, &target.cfg.name)
        .await
        .map_err(Stop::from_store)?;
    let released = service
        .unlock(tenant, &instance, global, &run.actor(target))
        .await
        .map_err(Stop::from_store)?;
    let text = match released {
        Some(lock) => format!(
            "🔓 Unlocked {what} (it was {}). A push that waited for it deploys now.",
            markdown::lock(&lock)
        ),
        None if global => format!("{what} is not locked as a whole: nothing to unlock."),
        None => format!("{what} is not locked: nothing to unlock."),
    };
    run.refuse_or_reply(target.step, text, false).await
}

/// Replies once with every lock of the repository and each environment's current and
/// next freeze.
pub(super) async fn locks(
    run: &CommentRun<'_>,
    step: i32,
    instances: &[&InstanceConfig],
) -> Result<(), Stop> {
    let text = overview(run, instances).await?;
    run.refuse_or_reply(step, text, false).await
}

/// The repository's locks and each environment's freezes, as markdown.
pub(super) async fn overview(
    run: &CommentRun<'_>,
    instances: &[&InstanceConfig],
) -> Result<String, Stop> {
    let service = &run.cx.service;
    let tenant = run.item.tenant_id.as_str();
    let repo = run.job.repo.as_str();
    let held: Vec<Lock> = service
        .locks(tenant)
        .await
        .map_err(Stop::from_store)?
        .into_iter()
        .filter(|l| l.repo.eq_ignore_ascii_case(repo))
        .collect();
    let mut lines = vec![format!("**Locks and freezes of {repo}**"), String::new()];
    if let Some(whole) = held
        .iter()
        .find(|l| matches!(l.target, LockTarget::Repo { .. }))
    {
        lines.push(format!("- every environment: {}", from_pull(whole)));
    }
    let now = Utc::now();
    for cfg in instances {
        let instance = service
            .resolve_instance(tenant, &cfg.name)
            .await
            .map_err(Stop::from_store)?;
        let own = held.iter().find(
            |l| matches!(&l.target, LockTarget::Instance { instance_id } if *instance_id == instance.id),
        );
        let mut line = format!("- `{}`: ", cfg.environment);
        line.push_str(&own.map_or_else(|| "not locked".to_string(), from_pull));
        line.push_str(&freezes(run, &cfg.name, now));
        lines.push(line);
    }
    if held.is_empty() {
        lines.push(String::new());
        lines.push(format!("Nothing of {repo} is locked."));
    }
    Ok(lines.join("\n"))
}

/// A lock in words, with the pull request it was taken from.
fn from_pull(lock: &Lock) -> String {
    match lock.pull_request {
        Some(pr) => format!("{} (from #{pr})", markdown::lock(lock)),
        None => markdown::lock(lock),
    }
}

/// "; frozen until …: reason; next freeze …" for an instance, or nothing.
pub(super) fn freezes(run: &CommentRun<'_>, instance: &str, now: chrono::DateTime<Utc>) -> String {
    let service = &run.cx.service;
    let tenant = run.item.tenant_id.as_str();
    let mut text = String::new();
    if let Some(freeze) = service.freeze_now(tenant, instance, now) {
        text.push_str(&format!(
            "; **frozen** until {}: {}",
            freeze.end.format("%Y-%m-%d %H:%M UTC"),
            freeze.reason
        ));
    }
    if let Some(next) = service.next_freeze(tenant, instance, now) {
        text.push_str(&format!(
            "; next freeze {} to {}: {}",
            next.start.format("%Y-%m-%d %H:%M UTC"),
            next.end.format("%Y-%m-%d %H:%M UTC"),
            next.reason
        ));
    }
    text
}
