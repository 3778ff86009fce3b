//! What the sandbox's pull-request page shows, read from the GitHub stand-in's state: the
//! conversation with its reactions, and each environment's deployments with their statuses.
//! The stand-in fills these (`PullSource`); `page` renders them.

use serde::Serialize;

/// One pull request as GitHub's page shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PullView {
    /// `owner/name`, as the repository was added.
    pub repo: String,
    pub number: u64,
    pub title: String,
    /// `open` or `closed`.
    pub state: String,
    pub author: String,
    /// The branch the pull request comes from, and the commit at its head.
    pub head_ref: String,
    pub head_sha: String,
    /// The branch it would merge into (the repository's default branch).
    pub base_ref: String,
    /// The pull request's description (Markdown), if any.
    pub body: String,
    pub created_at: String,
    /// Comments, oldest first.
    pub comments: Vec<CommentView>,
    /// Every environment of the repository that has deployments, by name.
    pub environments: Vec<EnvironmentView>,
}

/// One comment of the conversation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CommentView {
    pub id: u64,
    pub author: String,
    /// True for a bot account (the bot's own replies).
    pub author_is_bot: bool,
    /// The comment's Markdown, as posted.
    pub body: String,
    pub created_at: String,
    /// Reactions with their counts, in the order GitHub lists them (`+1`, `-1`, `laugh`,
    /// `confused`, `heart`, `hooray`, `rocket`, `eyes`), only those with a count.
    pub reactions: Vec<ReactionCount>,
}

/// How many people reacted with one emoji.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReactionCount {
    /// GitHub's name for it: `+1`, `-1`, `laugh`, `confused`, `heart`, `hooray`, `rocket`, `eyes`.
    pub content: String,
    pub count: u32,
}

/// One environment and its deployments, newest first.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EnvironmentView {
    pub name: String,
    pub deployments: Vec<DeploymentView>,
}

/// One GitHub Deployment with its statuses.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeploymentView {
    pub id: u64,
    /// The ref it was created for, and the commit that ref resolved to.
    pub git_ref: String,
    pub sha: String,
    pub task: String,
    pub description: String,
    pub creator: String,
    pub created_at: String,
    /// The state of its newest status (`queued`, `in_progress`, `success`, `failure`,
    /// `error`, `inactive`, `pending`), or `pending` when it has none. GitHub shows a
    /// `success` deployment that no newer one replaced as active.
    pub state: String,
    /// True for the environment's newest successful deployment that no later status made
    /// inactive: the one GitHub marks "Active".
    pub active: bool,
    /// Statuses, oldest first.
    pub statuses: Vec<StatusView>,
}

/// One deployment status.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StatusView {
    pub state: String,
    pub description: String,
    pub log_url: String,
    pub environment_url: String,
    pub creator: String,
    pub created_at: String,
}

/// Where the page reads its views from: the stand-in's state.
pub trait PullSource: Send + Sync {
    /// The pull request `number` of `repo` (`owner/name`, any case), or `None` when there
    /// is no such repository or pull request.
    fn pull_view(&self, repo: &str, number: u64) -> Option<PullView>;
    /// The repository's environments and their deployments (for the deployments page), or
    /// `None` when there is no such repository.
    fn environments(&self, repo: &str) -> Option<Vec<EnvironmentView>>;
    /// A number that grows whenever anything the pages show changes, so that a page can
    /// ask cheaply whether to refresh.
    fn version(&self) -> u64;
    /// Every repository with the numbers of its pull requests, so that a page asked for
    /// something unknown can say what exists.
    fn repositories(&self) -> Vec<RepositoryView>;
}

/// One repository of the stand-in and its pull requests.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RepositoryView {
    /// `owner/name`, as the repository was added.
    pub repo: String,
    /// Its pull requests' numbers, ascending.
    pub pulls: Vec<u64>,
}
