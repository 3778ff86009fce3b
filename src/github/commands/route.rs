//! From a pull-request comment to its job: which comments carry commands, each command
//! line with its environment resolved, and the stored form of the job. Pure: nothing here
//! talks to GitHub or the database.

use super::HELP;
use super::parser::{self, Command, ParseError, RollbackTo};
use crate::config::{Config, InstanceConfig};
use crate::github::outbox::{CommentCommand, CommentJob, NewOutboxItem, Work};
use crate::github::routing::{Routing, instances_of, pull_key};
use crate::github::webhook::events::{CommentAction, IssueComment};

/// The most command lines of one comment that deploybot acts on.
pub const MAX_COMMANDS: usize = 5;

/// What a comment asks: its job, or why it is ignored.
pub fn route_comment(config: &Config, event: &IssueComment) -> Routing {
    if let Some(reason) = ignored(event) {
        return Routing::Ignored { reason };
    }
    let commands = parser::parse_prefixed(&event.comment.body, config.command_prefix);
    if commands.is_empty() {
        return Routing::Ignored {
            reason: "the comment has no command".into(),
        };
    }
    let repo = &event.repository;
    let instances: Vec<&InstanceConfig> = instances_of(config, repo)
        .into_iter()
        .filter(|i| i.commands)
        .collect();
    if instances.is_empty() {
        return Routing::Ignored {
            reason: format!("no instance of {} accepts commands", repo.full_name),
        };
    }
    let tenant = repo.tenant();
    let job = CommentJob {
        repo: repo.full_name.clone(),
        pr: event.issue.number,
        comment_id: event.comment.id,
        created_at: event.comment.created_at,
        user: event.comment.user.login.clone(),
        installation_id: event.installation.as_ref().map(|i| i.id),
        steps: steps(commands, &instances, &repo.full_name, config.command_prefix),
    };
    let item = NewOutboxItem {
        tenant_id: tenant.clone(),
        ordering_key: pull_key(&repo.full_name, event.issue.number),
        deployment_id: None,
        work: Work::Comment(job),
    };
    Routing::Act {
        tenant,
        deploys: Vec::new(),
        items: vec![item],
        refused: Vec::new(),
    }
}

/// Why a comment carries no command before it is read: an edit or deletion, a bot's
/// comment, or a comment on an issue.
fn ignored(event: &IssueComment) -> Option<String> {
    if event.action != CommentAction::Created {
        Some("only new comments carry commands (edits and deletions are ignored)".into())
    } else if event.comment.user.is_bot() {
        Some(format!("comment by the bot {}", event.comment.user.login))
    } else if !event.is_pull_request() {
        Some("commands work on pull requests only; this comment is on an issue".into())
    } else {
        None
    }
}

/// The job's steps: the first [`MAX_COMMANDS`] command lines resolved, then one refusal
/// for the rest. One comment can hold many command lines, and each costs GitHub API calls.
fn steps(
    commands: Vec<Result<Command, ParseError>>,
    instances: &[&InstanceConfig],
    repo: &str,
    prefix: char,
) -> Vec<CommentCommand> {
    let choices = choices(instances);
    let total = commands.len();
    let mut steps: Vec<CommentCommand> = commands
        .into_iter()
        .take(MAX_COMMANDS)
        .map(|parsed| step(parsed, instances, repo, &choices, prefix))
        .collect();
    if total > MAX_COMMANDS {
        steps.push(CommentCommand::Invalid {
            message: format!(
                "This comment has {total} commands; deploybot runs at most {MAX_COMMANDS} per comment, so only the first {MAX_COMMANDS} were taken. Put the others in another comment."
            ),
        });
    }
    steps
}

/// The environments of the repository that take commands, for replies.
pub(super) fn choices(instances: &[&InstanceConfig]) -> String {
    instances
        .iter()
        .map(|i| format!("`{}`", i.environment))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One parsed command line, with its instance chosen.
fn step(
    parsed: Result<Command, ParseError>,
    instances: &[&InstanceConfig],
    repo: &str,
    choices: &str,
    prefix: char,
) -> CommentCommand {
    let command = match parsed {
        Ok(Command::Help) => return CommentCommand::Help,
        Ok(Command::Locks) => return CommentCommand::Locks,
        Ok(command) => command,
        Err(error) => {
            return CommentCommand::Invalid {
                message: with_prefix(&format!("{error}\n\n{HELP}"), prefix),
            };
        }
    };
    match instance(environment(&command, instances), instances, repo, choices) {
        Ok(instance) => resolved(command, instance.name.clone()),
        Err(message) => CommentCommand::Invalid {
            message: with_prefix(&message, prefix),
        },
    }
}

/// The environment a command names, if any. A repository-wide lock is kept under any of
/// the repository's instances; who may take it is checked against every one of them when
/// the command runs.
fn environment<'a>(command: &'a Command, instances: &[&'a InstanceConfig]) -> Option<&'a str> {
    match command {
        Command::Lock { global: true, .. } | Command::Unlock { global: true, .. } => {
            instances.first().map(|i| i.environment.as_str())
        }
        Command::Deploy { environment, .. }
        | Command::Noop { environment, .. }
        | Command::Rollback { environment, .. }
        | Command::Cancel { environment, .. }
        | Command::Approve { environment }
        | Command::Lock { environment, .. }
        | Command::Unlock { environment, .. } => environment.as_deref(),
        Command::Help | Command::Locks => None,
    }
}

/// The stored form of a command on `instance`.
fn resolved(command: Command, instance: String) -> CommentCommand {
    match command {
        Command::Deploy {
            strategy,
            force,
            params,
            ..
        } => CommentCommand::Deploy {
            instance,
            strategy,
            force,
            params,
        },
        Command::Noop { params, .. } => CommentCommand::Noop { instance, params },
        Command::Rollback {
            target,
            force,
            reason,
            ..
        } => CommentCommand::Rollback {
            instance,
            version: match target {
                RollbackTo::Previous => None,
                RollbackTo::Version(v) => Some(v),
            },
            force,
            reason,
        },
        Command::Cancel { queued, .. } => CommentCommand::Cancel { instance, queued },
        Command::Approve { .. } => CommentCommand::Approve { instance },
        Command::Lock {
            global,
            duration,
            reason,
            ..
        } => CommentCommand::Lock {
            instance,
            global,
            for_secs: duration.map(|d| d.as_secs()),
            reason,
        },
        Command::Unlock { global, .. } => CommentCommand::Unlock { instance, global },
        Command::Locks => CommentCommand::Locks,
        Command::Help => CommentCommand::Help,
    }
}

/// A reply's text with its command examples written with the prefix in use: `` `/deploy``
/// becomes `` `.deploy`` when `command_prefix = "."`.
pub(super) fn with_prefix(text: &str, prefix: char) -> String {
    if prefix == '/' {
        return text.to_string();
    }
    text.replace("`/", &format!("`{prefix}"))
}

/// The instance a command names (by environment or instance name), or the only one; the
/// reply when there is none or several to choose from.
fn instance<'a>(
    environment: Option<&str>,
    instances: &[&'a InstanceConfig],
    repo: &str,
    choices: &str,
) -> Result<&'a InstanceConfig, String> {
    let found = match environment {
        Some(env) => instances
            .iter()
            .find(|i| i.environment.eq_ignore_ascii_case(env) || i.name.eq_ignore_ascii_case(env)),
        None if instances.len() == 1 => instances.first(),
        None => {
            return Err(format!(
                "Which environment? {repo} has several: {choices}. For example `/deploy {}`.",
                instances[0].environment
            ));
        }
    };
    found.copied().ok_or_else(|| {
        format!(
            "`{}` is not an environment of {repo} that accepts commands. Choose one of {choices}.",
            environment.unwrap_or_default().replace('`', "")
        )
    })
}
