//! The stand-in's state as the sandbox's pages read it (`view::PullSource`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::state::{Reaction, Repo, State, Subject, lock};
use super::types::{FakeComment, FakeDeployment};
use super::view::{
    CommentView, DeploymentView, EnvironmentView, PullSource, PullView, ReactionCount,
    RepositoryView, StatusView,
};
use super::{FakeGithub, TOKEN_LOGIN};

/// GitHub's order of reactions.
const REACTION_ORDER: [&str; 8] = [
    "+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes",
];

/// Reads the stand-in's state for the pages; it never changes it.
struct Source {
    state: Arc<Mutex<State>>,
}

impl FakeGithub {
    /// What the sandbox's pages read: pull requests, their conversations and deployments.
    pub fn pull_source(&self) -> Arc<dyn PullSource> {
        Arc::new(Source {
            state: Arc::clone(&self.state),
        })
    }
}

impl PullSource for Source {
    fn pull_view(&self, repo: &str, number: u64) -> Option<PullView> {
        let state = lock(&self.state);
        let repo = state.repos.get(&repo.to_lowercase())?;
        let pull = repo.pulls.get(&number)?;
        let comments = repo.comments.iter().filter(|c| c.issue == number);
        Some(PullView {
            repo: repo.full_name.clone(),
            number,
            title: pull.title.clone(),
            state: pull.state.clone(),
            author: pull.author.clone(),
            head_ref: pull.head_ref.clone(),
            head_sha: pull.head_sha.clone(),
            base_ref: pull.base_ref.clone(),
            body: pull.body.clone(),
            created_at: pull.created_at.clone(),
            comments: comments.map(|c| comment_view(repo, c)).collect(),
            environments: environments(repo),
        })
    }

    fn environments(&self, repo: &str) -> Option<Vec<EnvironmentView>> {
        let state = lock(&self.state);
        state.repos.get(&repo.to_lowercase()).map(environments)
    }

    fn version(&self) -> u64 {
        lock(&self.state).version
    }

    fn repositories(&self) -> Vec<RepositoryView> {
        let state = lock(&self.state);
        let repos = state.repos.values();
        repos
            .map(|repo| RepositoryView {
                repo: repo.full_name.clone(),
                pulls: repo.pulls.keys().copied().collect(),
            })
            .collect()
    }
}

fn comment_view(repo: &Repo, comment: &FakeComment) -> CommentView {
    let on_it = |r: &&Reaction| r.subject == Subject::Comment(comment.id);
    let reactions: Vec<&Reaction> = repo.reactions.iter().filter(on_it).collect();
    let reactions = REACTION_ORDER
        .iter()
        .filter_map(|content| {
            let count = reactions.iter().filter(|r| r.content == *content).count();
            (count > 0).then(|| ReactionCount {
                content: content.to_string(),
                count: u32::try_from(count).unwrap_or(u32::MAX),
            })
        })
        .collect();
    CommentView {
        id: comment.id,
        author: comment.user.clone(),
        author_is_bot: comment.user == TOKEN_LOGIN || comment.user.ends_with("[bot]"),
        body: comment.body.clone(),
        created_at: comment.created_at.clone(),
        reactions,
    }
}

/// Every environment with deployments, by name, each with its deployments newest first.
fn environments(repo: &Repo) -> Vec<EnvironmentView> {
    let mut by_name: BTreeMap<&str, Vec<&FakeDeployment>> = BTreeMap::new();
    for deployment in &repo.deployments {
        by_name
            .entry(deployment.environment.as_str())
            .or_default()
            .push(deployment);
    }
    by_name
        .into_iter()
        .map(|(name, deployments)| {
            let active = deployments
                .iter()
                .filter(|d| d.statuses.last().is_some_and(|s| s.state == "success"))
                .map(|d| d.id)
                .max();
            let newest_first = deployments.iter().rev();
            EnvironmentView {
                name: name.to_string(),
                deployments: newest_first
                    .map(|d| deployment_view(d, active == Some(d.id)))
                    .collect(),
            }
        })
        .collect()
}

fn deployment_view(d: &FakeDeployment, active: bool) -> DeploymentView {
    DeploymentView {
        id: d.id,
        git_ref: d.git_ref.clone(),
        sha: d.sha.clone(),
        task: d.task.clone(),
        description: d.description.clone().unwrap_or_default(),
        creator: d.creator.clone(),
        created_at: d.created_at.clone(),
        state: d
            .statuses
            .last()
            .map_or_else(|| "pending".to_string(), |s| s.state.clone()),
        active,
        statuses: d
            .statuses
            .iter()
            .map(|s| StatusView {
                state: s.state.clone(),
                description: s.description.clone(),
                log_url: s.log_url.clone(),
                environment_url: s.environment_url.clone(),
                creator: s.creator.clone(),
                created_at: s.created_at.clone(),
            })
            .collect(),
    }
}
