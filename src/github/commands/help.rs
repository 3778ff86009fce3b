//! `/help`: the commands and their syntax, and the environments of the repository.

use super::route::choices;
use super::run::{CommentRun, Stop};
use crate::config::InstanceConfig;

/// The command's syntax, as parse errors show it.
pub const USAGE: &str = "/help";

/// The reply to `/help` and to a malformed command: the commands and their syntax.
pub const HELP: &str = "\
**deploybot commands**, each at the start of its own line in a pull request comment:

| command | what it does |
| --- | --- |
| `/deploy [to] [ENV] [--strategy NAME]` | deploy this pull request's head commit to ENV, optionally with another strategy (`rolling`, `recreate`, `blue-green`, `canary`) |
| `/rollback [ENV] [VERSION\\|previous]` | make the previous release of ENV active again, or release VERSION (`12` or `v12`) |
| `/cancel [ENV]` | cancel the running deployment to ENV (the release it replaces is restored) |
| `/cancel [ENV] --queued` | cancel the deployments to ENV that wait in the queue |
| `/help` | show this help |

ENV may be left out when the repository has exactly one environment that accepts commands. \
Commands in quotes and code blocks are ignored.";

/// Replies with [`HELP`] and the environments that take commands.
pub(super) async fn handle(
    run: &CommentRun<'_>,
    step: i32,
    instances: &[&InstanceConfig],
) -> Result<(), Stop> {
    let text = format!(
        "{HELP}\n\nEnvironments of {}: {}.",
        run.job.repo,
        choices(instances)
    );
    run.refuse_or_reply(step, text, false).await
}
