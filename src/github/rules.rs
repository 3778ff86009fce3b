//! Which events deploy what: a pure function from the configuration and one verified
//! event to the deployments to create now and the jobs that need GitHub first. Nothing
//! here talks to GitHub or the database.

use super::image::{ImageVars, render_image, short};
use super::outbox::{NewOutboxItem, PullClosedJob, PullHeadJob, ResolveTagJob, Work};
pub use super::routing::{PlannedDeploy, Routing};
use super::routing::{instances_of, pull_key};
use super::webhook::events::{Event, PullRequestAction, PullRequestEvent, Push, RefType};
use crate::config::{Config, InstanceConfig};
use crate::deploy::Source;

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
                work: Work::ResolveTag(ResolveTagJob {
                    repo: create.repository.full_name.clone(),
                    tag: tag.to_string(),
                    sender: create.sender.login.clone(),
                    installation_id: create.installation.as_ref().map(|i| i.id),
                    instances: instances.iter().map(|i| i.name.clone()).collect(),
                }),
            };
            Routing::Act {
                tenant,
                deploys: Vec::new(),
                items: vec![item],
                refused: Vec::new(),
            }
        }
        Event::IssueComment(comment) => super::commands::route_comment(config, comment),
        Event::PullRequest(event) => route_pull_request(config, event),
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
    let pushed = match Pushed::of(config, push) {
        Ok(pushed) => pushed,
        Err(reason) => return Routing::Ignored { reason },
    };
    let sha = pushed.commit(push);
    let name = pushed.name;
    let kind = if pushed.tag { "tag" } else { "push to" };
    let notes = format!("{kind} {name} by @{} ({})", push.sender.login, short(&sha));
    let key = if pushed.tag {
        format!("tag:{name}:{sha}")
    } else {
        // The push itself (`before..after`): GitHub's redelivery of it, even under another
        // delivery id, is the same key and deploys nothing; a branch moved back to an
        // earlier commit (a force-push) is another push and deploys that commit again.
        format!("push:{}:{}..{sha}", push.git_ref, push.before)
    };
    let planned = PlannedDeploy {
        tenant: push.repository.tenant(),
        instance: String::new(),
        image: String::new(),
        commit_sha: sha,
        notes: notes.clone(),
        initiator: push.sender.login.clone(),
        trigger_key: key,
        source: Source {
            trigger: notes,
            pull_request: None,
            comment_id: None,
            installation_id: push.installation.as_ref().map(|i| i.id),
            requested_by: format!("@{}", push.sender.login.to_ascii_lowercase()),
        },
    };
    let (deploys, refused) = push_deploys(push, &pushed.matching, &planned);
    Routing::Act {
        tenant: planned.tenant,
        deploys,
        items: Vec::new(),
        refused,
    }
}

/// What a push moved: a branch or a tag, its name, and the instances that deploy it.
struct Pushed<'a> {
    tag: bool,
    name: &'a str,
    matching: Vec<&'a InstanceConfig>,
}

impl<'a> Pushed<'a> {
    /// The branch or tag a push moved; why nothing deploys it when no instance matches.
    fn of(config: &'a Config, push: &'a Push) -> Result<Self, String> {
        let instances = instances_of(config, &push.repository).into_iter();
        let pushed = if let Some(branch) = push.branch() {
            Pushed {
                tag: false,
                name: branch,
                matching: instances.filter(|i| i.matches_push(branch)).collect(),
            }
        } else if let Some(tag) = push.tag() {
            Pushed {
                tag: true,
                name: tag,
                matching: instances.filter(|i| i.matches_tag(tag)).collect(),
            }
        } else {
            return Err(format!("{} is neither a branch nor a tag", push.git_ref));
        };
        if pushed.matching.is_empty() {
            return Err(format!(
                "no instance of {} deploys {} {}",
                push.repository.full_name,
                if pushed.tag { "tag" } else { "branch" },
                pushed.name
            ));
        }
        Ok(pushed)
    }

    /// The commit to deploy. For a tag, the commit it points to: `after` is the tag object
    /// of an annotated tag.
    fn commit(&self, push: &Push) -> String {
        push.head_commit
            .as_ref()
            .map(|c| c.id.as_str())
            .filter(|_| self.tag)
            .unwrap_or(push.after.as_str())
            .to_string()
    }
}

/// `planned` for each matching instance with its image; the instances whose image
/// template the push cannot fill are refused, with why.
fn push_deploys(
    push: &Push,
    matching: &[&InstanceConfig],
    planned: &PlannedDeploy,
) -> (Vec<PlannedDeploy>, Vec<(String, String)>) {
    let vars = ImageVars {
        sha: &planned.commit_sha,
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
                instance: instance.name.clone(),
                image,
                ..planned.clone()
            }),
            Err(reason) => {
                tracing::warn!(instance = %instance.name, %reason, "push not deployed");
                refused.push((instance.name.clone(), reason));
            }
        }
    }
    (deploys, refused)
}

fn route_pull_request(config: &Config, event: &PullRequestEvent) -> Routing {
    if event.action == PullRequestAction::Closed {
        return route_pull_closed(config, event);
    }
    if !event.sets_head() {
        return Routing::Ignored {
            reason: "only opened, reopened and synchronize change a pull request's head, and closed ends its locks".into(),
        };
    }
    let repo = &event.repository;
    if !instances_of(config, repo).iter().any(|i| i.commands) {
        return Routing::Ignored {
            reason: format!("no instance of {} accepts commands", repo.full_name),
        };
    }
    let tenant = repo.tenant();
    let job = PullHeadJob {
        repo: repo.full_name.clone(),
        pr: event.number,
        head_sha: event.pull_request.head.sha.clone(),
        at: event.pull_request.updated_at,
    };
    let item = NewOutboxItem {
        tenant_id: tenant.clone(),
        ordering_key: pull_key(&repo.full_name, event.number),
        deployment_id: None,
        work: Work::PullHead(job),
    };
    Routing::Act {
        tenant,
        deploys: Vec::new(),
        items: vec![item],
        refused: Vec::new(),
    }
}

/// A closed pull request (merged or not): a job releases the locks taken from it on the
/// instances that set `unlock_on_merge`.
fn route_pull_closed(config: &Config, event: &PullRequestEvent) -> Routing {
    let repo = &event.repository;
    if !instances_of(config, repo).iter().any(|i| i.unlock_on_merge) {
        return Routing::Ignored {
            reason: format!("no instance of {} sets unlock_on_merge", repo.full_name),
        };
    }
    let tenant = repo.tenant();
    let item = NewOutboxItem {
        tenant_id: tenant.clone(),
        ordering_key: pull_key(&repo.full_name, event.number),
        deployment_id: None,
        work: Work::PullClosed(PullClosedJob {
            repo: repo.full_name.clone(),
            pr: event.number,
            merged: event.pull_request.merged.unwrap_or(false),
        }),
    };
    Routing::Act {
        tenant,
        deploys: Vec::new(),
        items: vec![item],
        refused: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::outbox::{
        CommentCommand, CommentJob, JOB_COMMAND, JOB_PULL_CLOSED, JOB_PULL_HEAD,
    };

    const CONFIG: &str = r#"
webhook_secrets = ["s"]

[[instances]]
name = "web-production"
repo = "Codertocat/Hello-World"
environment = "production"
image = "img:{sha}"

[instances.provider]
kind = "noop"
"#;

    fn config() -> Config {
        Config::from_toml_str(CONFIG, &|_| None).unwrap()
    }

    fn event(name: &str, body: &[u8]) -> Event {
        crate::github::webhook::events::parse(name, body).unwrap()
    }

    fn comment(body: &str) -> serde_json::Value {
        let mut v: serde_json::Value = serde_json::from_slice(include_bytes!(
            "../../tests/fixtures/github/issue_comment_created_pr.json"
        ))
        .unwrap();
        v["comment"]["body"] = body.into();
        v
    }

    #[test]
    fn a_pull_request_comment_is_one_job_with_its_commands_and_nothing_for_github_yet() {
        let body = comment("/deploy production\n/cancel production --queued\n/help\n/deploy moon");
        let routing = route(
            &config(),
            &event("issue_comment", body.to_string().as_bytes()),
        );
        let Routing::Act { items, deploys, .. } = routing else {
            panic!("{routing:?}");
        };
        assert!(deploys.is_empty());
        assert_eq!(
            items.len(),
            1,
            "no reaction or reply before the permission check"
        );
        assert_eq!(items[0].work.kind(), JOB_COMMAND);
        assert_eq!(items[0].ordering_key, "pull:codertocat/hello-world#2");
        let job: CommentJob = serde_json::from_value(items[0].work.payload()).unwrap();
        assert_eq!(job.comment_id, 492_700_400);
        assert_eq!(job.created_at.to_rfc3339(), "2019-05-15T15:20:21+00:00");
        assert_eq!(job.steps.len(), 4);
        assert_eq!(
            job.steps[0],
            CommentCommand::Deploy {
                instance: "web-production".into(),
                strategy: None,
                force: false,
                params: Default::default(),
            }
        );
        assert_eq!(
            job.steps[1],
            CommentCommand::Cancel {
                instance: "web-production".into(),
                queued: true
            }
        );
        assert_eq!(job.steps[2], CommentCommand::Help);
        assert!(
            matches!(&job.steps[3], CommentCommand::Invalid { message } if message.contains("`moon`"))
        );
    }

    #[test]
    fn comments_on_plain_issues_are_ignored() {
        let body = include_bytes!("../../tests/fixtures/github/issue_comment_created_issue.json");
        let mut v: serde_json::Value = serde_json::from_slice(body).unwrap();
        v["comment"]["body"] = "/deploy production".into();
        let routing = route(&config(), &event("issue_comment", v.to_string().as_bytes()));
        assert!(matches!(routing, Routing::Ignored { .. }), "{routing:?}");
    }

    #[test]
    fn pull_request_heads_are_recorded_with_githubs_time_and_other_actions_ignored() {
        let body = include_bytes!("../../tests/fixtures/github/pull_request_synchronize.json");
        let routing = route(&config(), &event("pull_request", body));
        let Routing::Act { items, .. } = routing else {
            panic!("{routing:?}");
        };
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].work.kind(), JOB_PULL_HEAD);
        assert_eq!(items[0].ordering_key, "pull:codertocat/hello-world#2");
        let job: PullHeadJob = serde_json::from_value(items[0].work.payload()).unwrap();
        assert_eq!(job.head_sha, "ec26c3e57ca3a959ca5aad62de7213c562f8c821");
        assert_eq!(job.at.to_rfc3339(), "2019-05-15T15:20:33+00:00");

        let mut v: serde_json::Value = serde_json::from_slice(body).unwrap();
        v["action"] = "labeled".into();
        let routing = route(&config(), &event("pull_request", v.to_string().as_bytes()));
        assert!(matches!(routing, Routing::Ignored { .. }), "{routing:?}");
    }

    #[test]
    fn a_closed_pull_request_ends_its_locks_only_where_unlock_on_merge_is_set() {
        let body = include_bytes!("../../tests/fixtures/github/pull_request_closed.json");
        let routing = route(&config(), &event("pull_request", body));
        assert!(
            matches!(&routing, Routing::Ignored { reason } if reason.contains("unlock_on_merge")),
            "{routing:?}"
        );
        let unlocking = Config::from_toml_str(
            &CONFIG.replace(
                "[instances.provider]",
                "unlock_on_merge = true\n\n[instances.provider]",
            ),
            &|_| None,
        )
        .unwrap();
        let Routing::Act { items, deploys, .. } = route(&unlocking, &event("pull_request", body))
        else {
            panic!("a closed pull request was ignored");
        };
        assert!(deploys.is_empty());
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].work.kind(), JOB_PULL_CLOSED);
        assert_eq!(items[0].ordering_key, "pull:codertocat/hello-world#2");
        let job: PullClosedJob = serde_json::from_value(items[0].work.payload()).unwrap();
        assert_eq!((job.pr, job.merged), (2, false));
    }
}
