//! Which events deploy what: a pure function from the configuration and one verified
//! event to the deployments to create now and the jobs that need GitHub first. Nothing
//! here talks to GitHub or the database.

use serde_json::json;

use super::command::{self, Command, RollbackTo};
use super::events::{CommentAction, Event, IssueState, Push, RefType, Repository};
use crate::config::{Config, InstanceConfig};
use crate::deploy::{NewOutboxItem, Source};

/// Outbox kinds of the jobs and replies that webhooks create.
pub const JOB_RESOLVE_TAG: &str = "job.resolve_tag";
pub const JOB_COMMAND: &str = "job.command";
pub const COMMENT_REACTION: &str = "comment.reaction";
pub const COMMENT_REPLY: &str = "comment.reply";

/// A deployment an event asks for, before validation by the Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedDeploy {
    pub tenant: String,
    pub instance: String,
    pub image: String,
    pub commit_sha: String,
    pub notes: String,
    pub initiator: String,
    /// One deployment per instance and key: `tag:v1.2.0:<sha>`, `push:refs/heads/main:<before>..<after>`.
    pub trigger_key: String,
    pub source: Source,
}

/// What to do with an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Routing {
    /// A `ping`: answer with the zen.
    Pong { zen: String },
    /// Nothing to do, and why.
    Ignored { reason: String },
    /// Deployments to create now and outbox items (jobs, reactions, replies).
    Act {
        tenant: String,
        deploys: Vec<PlannedDeploy>,
        items: Vec<NewOutboxItem>,
        /// Instances the event matched but that cannot deploy it: (instance, why), told in
        /// the webhook's answer (GitHub's delivery log) and the log.
        refused: Vec<(String, String)>,
    },
}

/// Values for the image template's placeholders; a placeholder without a value is an error.
#[derive(Debug, Default, Clone)]
pub struct ImageVars<'a> {
    pub sha: &'a str,
    pub git_ref: &'a str,
    pub branch: Option<&'a str>,
    pub tag: Option<&'a str>,
    pub pr: Option<u64>,
}

/// Fills `{sha} {short_sha} {ref} {branch} {tag} {pr}` in an image template.
pub fn render_image(template: &str, vars: &ImageVars<'_>) -> Result<String, String> {
    let short: String = vars.sha.chars().take(7).collect();
    let pr = vars.pr.map(|n| n.to_string());
    let mut out = String::with_capacity(template.len() + 40);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = &rest[start + 1..start + len];
        let value = match name {
            "sha" => Some(vars.sha),
            "short_sha" => Some(short.as_str()),
            "ref" => Some(vars.git_ref),
            "branch" => vars.branch,
            "tag" => vars.tag,
            "pr" => pr.as_deref(),
            _ => None,
        };
        match value {
            Some(v) if !v.is_empty() => out.push_str(&sanitize_tag(v)),
            _ => {
                return Err(format!(
                    "the image template {template:?} uses {{{name}}}, which this trigger does not provide"
                ));
            }
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Branch names may hold characters an image reference cannot (`feature/x`): keep the
/// reference valid and free of anything a shell or a registry would read specially.
fn sanitize_tag(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

fn instances_of<'a>(config: &'a Config, repo: &Repository) -> Vec<&'a InstanceConfig> {
    config
        .instances
        .iter()
        .filter(|i| i.repo.eq_ignore_ascii_case(&repo.full_name))
        .collect()
}

/// Decides what an event does.
pub fn route(config: &Config, event: &Event) -> Routing {
    match event {
        Event::Ping(ping) => Routing::Pong {
            zen: ping.zen.clone(),
        },
        Event::Push(push) => route_push(config, push),
        Event::Create(create) => {
            if create.ref_type != RefType::Tag {
                return Routing::Ignored {
                    reason: "create event for a branch: branches deploy on push".into(),
                };
            }
            let tag = create.git_ref.as_str();
            let instances: Vec<&InstanceConfig> = instances_of(config, &create.repository)
                .into_iter()
                .filter(|i| i.matches_tag(tag))
                .collect();
            if instances.is_empty() {
                return Routing::Ignored {
                    reason: format!(
                        "no instance of {} deploys tag {tag}",
                        create.repository.full_name
                    ),
                };
            }
            let tenant = create.repository.tenant();
            // The commit is not in the payload: a job resolves it through the API. The
            // push event for the same tag, if any, shares the trigger key, so only one
            // of the two deploys.
            let item = NewOutboxItem {
                tenant_id: tenant.clone(),
                ordering_key: format!("tag:{}:{tag}", create.repository.full_name),
                deployment_id: None,
                kind: JOB_RESOLVE_TAG.into(),
                payload: json!({
                    "repo": create.repository.full_name,
                    "tag": tag,
                    "sender": create.sender.login,
                    "installation_id": create.installation.as_ref().map(|i| i.id),
                    "instances": instances.iter().map(|i| i.name.clone()).collect::<Vec<_>>(),
                }),
            };
            Routing::Act {
                tenant,
                deploys: Vec::new(),
                items: vec![item],
                refused: Vec::new(),
            }
        }
        Event::IssueComment(comment) => route_comment(config, comment),
        Event::Other(name) => Routing::Ignored {
            reason: format!("deploybot does not act on {name} events"),
        },
    }
}

fn route_push(config: &Config, push: &Push) -> Routing {
    if push.is_deletion() {
        return Routing::Ignored {
            reason: format!("{} was deleted", push.git_ref),
        };
    }
    let tenant = push.repository.tenant();
    let (kind, name, matching): (&str, &str, Vec<&InstanceConfig>) =
        if let Some(branch) = push.branch() {
            let m = instances_of(config, &push.repository)
                .into_iter()
                .filter(|i| i.matches_push(branch))
                .collect();
            ("push to", branch, m)
        } else if let Some(tag) = push.tag() {
            let m = instances_of(config, &push.repository)
                .into_iter()
                .filter(|i| i.matches_tag(tag))
                .collect();
            ("tag", tag, m)
        } else {
            return Routing::Ignored {
                reason: format!("{} is neither a branch nor a tag", push.git_ref),
            };
        };
    if matching.is_empty() {
        return Routing::Ignored {
            reason: format!(
                "no instance of {} deploys {} {name}",
                push.repository.full_name,
                if kind == "tag" { "tag" } else { "branch" }
            ),
        };
    }
    // For a tag, the commit it points to: `after` is the tag object of an annotated tag.
    let sha = push
        .head_commit
        .as_ref()
        .map(|c| c.id.as_str())
        .filter(|_| kind == "tag")
        .unwrap_or(push.after.as_str())
        .to_string();
    let notes = format!("{kind} {name} by @{} ({})", push.sender.login, short(&sha));
    let key = if kind == "tag" {
        format!("tag:{name}:{sha}")
    } else {
        // The push itself (`before..after`): GitHub's redelivery of it, even under another
        // delivery id, is the same key and deploys nothing; a branch moved back to an
        // earlier commit (a force-push) is another push and deploys that commit again.
        format!("push:{}:{}..{sha}", push.git_ref, push.before)
    };
    let vars = ImageVars {
        sha: &sha,
        git_ref: &push.git_ref,
        branch: push.branch(),
        tag: push.tag(),
        pr: None,
    };
    let mut deploys = Vec::new();
    let mut refused = Vec::new();
    for instance in matching {
        match render_image(&instance.image, &vars) {
            Ok(image) => deploys.push(PlannedDeploy {
                tenant: tenant.clone(),
                instance: instance.name.clone(),
                image,
                commit_sha: sha.clone(),
                notes: notes.clone(),
                initiator: push.sender.login.clone(),
                trigger_key: key.clone(),
                source: Source {
                    trigger: notes.clone(),
                    pull_request: None,
                    comment_id: None,
                    installation_id: push.installation.as_ref().map(|i| i.id),
                },
            }),
            Err(reason) => {
                tracing::warn!(instance = %instance.name, %reason, "push not deployed");
                refused.push((instance.name.clone(), reason));
            }
        }
    }
    Routing::Act {
        tenant,
        deploys,
        items: Vec::new(),
        refused,
    }
}

/// The most command lines of one comment that deploybot acts on.
pub const MAX_COMMANDS: usize = 5;

fn route_comment(config: &Config, event: &super::events::IssueComment) -> Routing {
    if event.action != CommentAction::Created {
        return Routing::Ignored {
            reason: "only new comments carry commands (edits and deletions are ignored)".into(),
        };
    }
    if event.comment.user.is_bot() {
        return Routing::Ignored {
            reason: format!("comment by the bot {}", event.comment.user.login),
        };
    }
    let commands = command::parse(&event.comment.body);
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
    let key = format!("comment:{}", event.comment.id);
    let installation_id = event.installation.as_ref().map(|i| i.id);
    let number = event.issue.number;
    let item = |kind: &str, payload: serde_json::Value| NewOutboxItem {
        tenant_id: tenant.clone(),
        ordering_key: key.clone(),
        deployment_id: None,
        kind: kind.to_string(),
        payload,
    };
    let reply = |body: String| {
        item(
            COMMENT_REPLY,
            json!({"repo": repo.full_name, "issue": number, "body": body, "installation_id": installation_id}),
        )
    };
    let confused = || {
        item(
            COMMENT_REACTION,
            json!({"repo": repo.full_name, "comment_id": event.comment.id, "content": "confused", "installation_id": installation_id}),
        )
    };
    // 👀 at once: the command was seen.
    let mut items = vec![item(
        COMMENT_REACTION,
        json!({"repo": repo.full_name, "comment_id": event.comment.id, "content": "eyes", "installation_id": installation_id}),
    )];
    let choices = instances
        .iter()
        .map(|i| format!("`{}`", i.environment))
        .collect::<Vec<_>>()
        .join(", ");
    if !event.is_pull_request() {
        items.push(reply(format!(
            "deploybot commands work on pull requests; this is an issue. Environments of {}: {choices}.",
            repo.full_name
        )));
        items.push(item(
            COMMENT_REACTION,
            json!({"repo": repo.full_name, "comment_id": event.comment.id, "content": "confused", "installation_id": installation_id}),
        ));
        return Routing::Act {
            tenant,
            deploys: Vec::new(),
            items,
            refused: Vec::new(),
        };
    }
    // One comment can hold many command lines; each costs GitHub API calls (a reply, a
    // permission check). Past MAX_COMMANDS the rest are refused in one reply, and the 😕
    // reaction is added once however many commands went wrong.
    let total = commands.len();
    let mut puzzled = false;
    for parsed in commands.into_iter().take(MAX_COMMANDS) {
        let command = match parsed {
            Ok(command) => command,
            Err(error) => {
                items.push(reply(format!("{error}\n\n{}", command::HELP)));
                puzzled = true;
                continue;
            }
        };
        let environment = match &command {
            Command::Help => {
                items.push(reply(format!(
                    "{}\n\nEnvironments of {}: {choices}.",
                    command::HELP,
                    repo.full_name
                )));
                continue;
            }
            Command::Deploy { environment, .. }
            | Command::Rollback { environment, .. }
            | Command::Cancel { environment } => environment.clone(),
        };
        let instance = match &environment {
            Some(env) => instances.iter().find(|i| {
                i.environment.eq_ignore_ascii_case(env) || i.name.eq_ignore_ascii_case(env)
            }),
            None if instances.len() == 1 => instances.first(),
            None => {
                items.push(reply(format!(
                    "Which environment? {} has several: {choices}. For example `/deploy {}`.",
                    repo.full_name, instances[0].environment
                )));
                puzzled = true;
                continue;
            }
        };
        let Some(instance) = instance else {
            items.push(reply(format!(
                "`{}` is not an environment of {} that accepts commands. Choose one of {choices}.",
                environment.unwrap_or_default().replace('`', ""),
                repo.full_name
            )));
            puzzled = true;
            continue;
        };
        let (action, strategy, target) = match &command {
            Command::Deploy { strategy, .. } => ("deploy", strategy.clone(), None),
            Command::Rollback { target, .. } => (
                "rollback",
                None,
                Some(match target {
                    RollbackTo::Previous => json!("previous"),
                    RollbackTo::Version(v) => json!(v),
                }),
            ),
            Command::Cancel { .. } => ("cancel", None, None),
            Command::Help => continue,
        };
        items.push(item(
            JOB_COMMAND,
            json!({
                "repo": repo.full_name,
                "pr": number,
                "pr_open": event.issue.state == IssueState::Open,
                "comment_id": event.comment.id,
                "user": event.comment.user.login,
                "installation_id": installation_id,
                "action": action,
                "instance": instance.name,
                "strategy": strategy,
                "target": target,
            }),
        ));
    }
    if total > MAX_COMMANDS {
        items.push(reply(format!(
            "This comment has {total} commands; deploybot runs at most {MAX_COMMANDS} per comment, so only the first {MAX_COMMANDS} were taken. Put the others in another comment."
        )));
        puzzled = true;
    }
    if puzzled {
        items.push(confused());
    }
    Routing::Act {
        tenant,
        deploys: Vec::new(),
        items,
        refused: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_rendered_and_missing_values_refused() {
        let vars = ImageVars {
            sha: "a10867b14bb761a232cd80139fbd4c0d33264240",
            git_ref: "refs/heads/feature/x",
            branch: Some("feature/x"),
            tag: None,
            pr: Some(42),
        };
        assert_eq!(
            render_image("ghcr.io/acme/web:{short_sha}-{branch}-pr{pr}", &vars).unwrap(),
            "ghcr.io/acme/web:a10867b-feature-x-pr42"
        );
        let err = render_image("ghcr.io/acme/web:{tag}", &vars).unwrap_err();
        assert!(err.contains("{tag}"), "{err}");
        // Shell metacharacters from a branch name never survive into the image.
        let evil = ImageVars {
            branch: Some("main;rm -rf ~"),
            ..vars.clone()
        };
        assert_eq!(
            render_image("img:{branch}", &evil).unwrap(),
            "img:main-rm--rf--"
        );
        let evil = ImageVars {
            tag: Some("$(reboot)"),
            ..vars
        };
        assert_eq!(render_image("img:{tag}", &evil).unwrap(), "img:--reboot-");
    }
}
