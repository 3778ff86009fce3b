//! The webhook events deploybot acts on, parsed into small structs that hold only the fields
//! it needs; everything else in GitHub's (large, growing) payloads is ignored.

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// A parsed webhook delivery, chosen by its `X-GitHub-Event` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Sent once when a webhook is created, to check that it reaches deploybot.
    Ping(Ping),
    /// Commits or a tag pushed, a branch or tag deleted.
    Push(Push),
    /// A branch or tag created (also sent alongside the push of a new tag).
    Create(Create),
    /// A comment on an issue or pull request was created, edited or deleted.
    IssueComment(IssueComment),
    /// A pull request was opened, pushed to, closed, labelled …
    PullRequest(PullRequestEvent),
    /// An event deploybot does not act on, by its name; answered as ignored.
    Other(String),
}

/// Why a delivery's body could not be read as the event its header names.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The body is not JSON, or lacks a field deploybot needs, or has one of the wrong type.
    #[error("{event} payload is invalid: {error}")]
    Invalid {
        /// The `X-GitHub-Event` name.
        event: &'static str,
        /// What serde found wrong, with the line and column.
        error: serde_json::Error,
    },
}

/// Parses the body of an event named by X-GitHub-Event. Unknown events are
/// `Ok(Event::Other)`; malformed JSON for a known event is an error naming the event. Never
/// panics, whatever the input (serde_json bounds nesting depth and checks number ranges).
pub fn parse(event: &str, body: &[u8]) -> Result<Event, EventError> {
    match event {
        "ping" => from_json("ping", body).map(Event::Ping),
        "push" => from_json("push", body).map(Event::Push),
        "create" => from_json("create", body).map(Event::Create),
        "issue_comment" => from_json("issue_comment", body).map(Event::IssueComment),
        "pull_request" => from_json("pull_request", body).map(Event::PullRequest),
        other => Ok(Event::Other(other.to_owned())),
    }
}

fn from_json<T: serde::de::DeserializeOwned>(
    event: &'static str,
    body: &[u8],
) -> Result<T, EventError> {
    serde_json::from_slice(&without_nul(body)).map_err(|error| EventError::Invalid { event, error })
}

/// `body` with every JSON escape `\u0000` rewritten to `\ufffd`: PostgreSQL text cannot
/// hold U+0000, and a delivery GitHub could never redeliver successfully must not fail on
/// it. An escaped backslash (`\\u0000`, the literal text) is left alone. A raw NUL byte is
/// not valid JSON and stays an error.
fn without_nul(body: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    const NUL: &[u8] = b"u0000";
    if !body.windows(NUL.len()).any(|w| w == NUL) {
        return std::borrow::Cow::Borrowed(body);
    }
    let mut out = body.to_vec();
    let mut i = 0;
    while i < out.len() {
        if out[i] == b'\\' {
            if out[i + 1..].starts_with(NUL) {
                out[i + 2..i + 6].copy_from_slice(b"fffd");
            }
            // Skip the escaped character, so `\\` never starts another escape.
            i += 2;
        } else {
            i += 1;
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `ping`: GitHub's check that the webhook reaches deploybot.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Ping {
    /// A random GitHub aphorism, echoed back in the answer.
    pub zen: String,
    /// The id of the webhook that sent the ping.
    pub hook_id: u64,
    /// The repository, for a repository webhook (absent for organization webhooks).
    #[serde(default)]
    pub repository: Option<Repository>,
}

/// `push`: a branch or tag moved from `before` to `after`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Push {
    /// The full ref: `refs/heads/main` or `refs/tags/v1.2.0`.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The SHA the ref pointed to before the push (all zeros when it was created).
    pub before: String,
    /// The SHA the ref points to now (all zeros when it was deleted).
    pub after: String,
    /// The push created the ref.
    pub created: bool,
    /// The push deleted the ref.
    pub deleted: bool,
    /// The push rewrote history (`git push --force`).
    pub forced: bool,
    /// For a tag push, the branch the tagged commit is on, when GitHub knows it.
    #[serde(default)]
    pub base_ref: Option<String>,
    /// The commit `after` names; absent for deletions.
    #[serde(default)]
    pub head_commit: Option<Commit>,
    /// Where the push happened.
    pub repository: Repository,
    /// Who pushed, as git knows them.
    pub pusher: Pusher,
    /// The GitHub account that pushed.
    pub sender: User,
    /// The GitHub App installation, when the webhook belongs to an App.
    #[serde(default)]
    pub installation: Option<Installation>,
}

impl Push {
    /// The branch name for a push to `refs/heads/…`, otherwise None.
    pub fn branch(&self) -> Option<&str> {
        self.git_ref
            .strip_prefix("refs/heads/")
            .filter(|name| !name.is_empty())
    }

    /// The tag name for a push to `refs/tags/…`, otherwise None.
    pub fn tag(&self) -> Option<&str> {
        self.git_ref
            .strip_prefix("refs/tags/")
            .filter(|name| !name.is_empty())
    }

    /// The push deleted its ref: nothing to deploy. GitHub sets `deleted` and zeros `after`;
    /// either is enough.
    pub fn is_deletion(&self) -> bool {
        self.deleted || (!self.after.is_empty() && self.after.bytes().all(|b| b == b'0'))
    }
}

/// `create`: a branch or tag was created.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Create {
    /// The short name of the ref: `v1.2.0`, not `refs/tags/v1.2.0`.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// Whether a tag or a branch was created.
    pub ref_type: RefType,
    /// The repository's default branch.
    pub master_branch: String,
    /// Where the ref was created.
    pub repository: Repository,
    /// Who created it.
    pub sender: User,
    /// The GitHub App installation, when the webhook belongs to an App.
    #[serde(default)]
    pub installation: Option<Installation>,
}

/// The kind of ref a `create` event names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefType {
    /// A tag.
    Tag,
    /// A branch.
    Branch,
    /// Anything else GitHub may add later; ignored.
    #[serde(other)]
    Other,
}

/// `issue_comment`: a comment on an issue or pull request (pull requests are issues too).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IssueComment {
    /// What happened to the comment.
    pub action: CommentAction,
    /// The issue or pull request commented on.
    pub issue: Issue,
    /// The comment itself.
    pub comment: Comment,
    /// The repository of the issue.
    pub repository: Repository,
    /// Who acted (the commenter for `created`).
    pub sender: User,
    /// The GitHub App installation, when the webhook belongs to an App.
    #[serde(default)]
    pub installation: Option<Installation>,
}

impl IssueComment {
    /// The comment was made on a pull request, not on a plain issue.
    pub fn is_pull_request(&self) -> bool {
        self.issue.pull_request.is_some()
    }
}

/// What happened to a comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommentAction {
    /// Posted: the only action that runs commands.
    Created,
    /// Changed after posting.
    Edited,
    /// Removed.
    Deleted,
    /// An action GitHub may add later; ignored.
    #[serde(other)]
    Other,
}

/// The issue (or pull request) a comment belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Issue {
    /// The issue or pull request number.
    pub number: u64,
    /// Its title.
    pub title: String,
    /// Present only when the issue is a pull request. The head SHA is not in the payload:
    /// it has to be fetched from the API.
    #[serde(default)]
    pub pull_request: Option<IssuePullRequest>,
    /// Open or closed.
    pub state: IssueState,
}

/// The link from an issue to its pull request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IssuePullRequest {
    /// The pull request's API URL.
    #[serde(default)]
    pub url: Option<String>,
    /// The pull request's page.
    #[serde(default)]
    pub html_url: Option<String>,
}

/// Whether an issue or pull request is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IssueState {
    /// Open.
    Open,
    /// Closed (for a pull request: closed or merged).
    Closed,
    /// A state GitHub may add later.
    #[serde(other)]
    Other,
}

/// A comment: where the commands are.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Comment {
    /// The comment id, used to react to it.
    pub id: u64,
    /// The markdown text.
    pub body: String,
    /// The author.
    pub user: User,
    /// The comment's page, for links in replies.
    pub html_url: String,
    /// When GitHub stored the comment (its own clock, not the commenter's).
    pub created_at: DateTime<Utc>,
}

/// `pull_request`: something happened to a pull request. deploybot records the head of
/// `opened`, `reopened` and `synchronize` (a push to its branch) with GitHub's time, so that
/// `/deploy` can tell which head its comment saw.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PullRequestEvent {
    /// What happened.
    pub action: PullRequestAction,
    /// The pull request number.
    pub number: u64,
    /// The pull request as it is after the event.
    pub pull_request: PullRequest,
    /// The repository the pull request is in (its base).
    pub repository: Repository,
    /// The GitHub App installation, when the webhook belongs to an App.
    #[serde(default)]
    pub installation: Option<Installation>,
}

impl PullRequestEvent {
    /// The event gave the pull request a head commit (opened, reopened, pushed to).
    pub fn sets_head(&self) -> bool {
        matches!(
            self.action,
            PullRequestAction::Opened
                | PullRequestAction::Reopened
                | PullRequestAction::Synchronize
        )
    }
}

/// What happened to a pull request: those that set its head, and its closing (locks taken
/// from it may end then).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PullRequestAction {
    /// Opened.
    Opened,
    /// Reopened after being closed (its head may have moved meanwhile).
    Reopened,
    /// Commits were pushed to its head branch.
    Synchronize,
    /// Closed, merged or not (`pull_request.merged` tells).
    Closed,
    /// Any other action (labelled, assigned …).
    #[serde(other)]
    Other,
}

/// The parts of a pull request deploybot reads from its events.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PullRequest {
    /// Its head: the branch and commit it would merge.
    pub head: PullRequestHead,
    /// GitHub's time of the last change, which for these events is the change itself.
    pub updated_at: DateTime<Utc>,
    /// Whether it was merged (absent in some payloads: not merged).
    #[serde(default)]
    pub merged: Option<bool>,
}

/// A pull request's head.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PullRequestHead {
    /// The head commit.
    pub sha: String,
}

/// A repository, with its owner (the tenant).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Repository {
    /// `owner/name`, as configured in `repo` of an instance.
    pub full_name: String,
    /// The name without the owner.
    pub name: String,
    /// The owning user or organization.
    pub owner: User,
    /// The repository is private.
    pub private: bool,
}

impl Repository {
    /// The tenant: the owner's login, lower-cased (GitHub logins are case-insensitive).
    pub fn tenant(&self) -> String {
        self.owner.login.to_lowercase()
    }
}

/// A GitHub account: a user, an organization or a bot.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    /// The login, e.g. `octocat` or `deploybot[bot]`.
    pub login: String,
    /// `User`, `Organization` or `Bot` (GitHub's `type` field).
    #[serde(rename = "type", default)]
    pub kind: String,
}

impl User {
    /// The account is a bot (a GitHub App): its comments never run commands, so the bot
    /// never answers itself or another bot.
    pub fn is_bot(&self) -> bool {
        self.kind == "Bot" || self.login.ends_with("[bot]")
    }
}

/// The git identity that pushed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Pusher {
    /// The git user name.
    pub name: String,
}

/// A commit in a push.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Commit {
    /// The full SHA.
    pub id: String,
    /// The commit message.
    pub message: String,
}

/// The GitHub App installation a delivery came through; needed for an installation token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Installation {
    /// The installation id.
    pub id: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZEROS: &str = "0000000000000000000000000000000000000000";
    const SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";

    fn push(body: &[u8]) -> Push {
        match parse("push", body) {
            Ok(Event::Push(push)) => push,
            other => panic!("expected a push, got {other:?}"),
        }
    }

    fn comment(body: &[u8]) -> IssueComment {
        match parse("issue_comment", body) {
            Ok(Event::IssueComment(comment)) => comment,
            other => panic!("expected an issue_comment, got {other:?}"),
        }
    }

    fn assert_hello_world(repository: &Repository) {
        assert_eq!(repository.full_name, "Codertocat/Hello-World");
        assert_eq!(repository.name, "Hello-World");
        assert_eq!(repository.owner.login, "Codertocat");
        assert_eq!(repository.tenant(), "codertocat");
        assert!(!repository.private);
    }

    #[test]
    fn ping_fixture() {
        let body = include_bytes!("../../../tests/fixtures/github/ping.json");
        let Ok(Event::Ping(ping)) = parse("ping", body) else {
            panic!("not a ping");
        };
        assert_eq!(ping.zen, "Anything added dilutes everything else.");
        assert_eq!(ping.hook_id, 109_948_940);
        let repository = ping.repository.expect("a repository webhook");
        assert_eq!(repository.full_name, "Octocoders/Hello-World");
        assert_eq!(repository.tenant(), "octocoders");
    }

    #[test]
    fn ping_of_an_organization_webhook_has_no_repository() {
        let ping = parse(
            "ping",
            br#"{"zen": "Keep it logically awesome.", "hook_id": 7}"#,
        );
        let Ok(Event::Ping(ping)) = ping else {
            panic!("not a ping: {ping:?}");
        };
        assert_eq!(ping.repository, None);
    }

    #[test]
    fn push_fixture_to_a_branch() {
        let push = push(include_bytes!("../../../tests/fixtures/github/push.json"));
        assert_eq!(push.git_ref, "refs/heads/master");
        assert_eq!(push.branch(), Some("master"));
        assert_eq!(push.tag(), None);
        assert_eq!(push.before, ZEROS);
        assert_eq!(push.after, SHA);
        assert!(push.created && !push.deleted && !push.forced);
        assert!(!push.is_deletion());
        assert_eq!(push.base_ref, None);
        let head = push.head_commit.expect("head commit");
        assert_eq!(head.id, SHA);
        assert_eq!(head.message, "Initial commit");
        assert_hello_world(&push.repository);
        assert_eq!(push.pusher.name, "Codertocat");
        assert_eq!(push.sender.login, "Codertocat");
        assert_eq!(push.sender.kind, "User");
        assert!(!push.sender.is_bot());
        assert_eq!(push.installation, Some(Installation { id: 1 }));
    }

    #[test]
    fn push_fixture_of_a_tag() {
        let push = push(include_bytes!(
            "../../../tests/fixtures/github/push_tag.json"
        ));
        assert_eq!(push.tag(), Some("simple-tag"));
        assert_eq!(push.branch(), None);
        assert_eq!(push.after, SHA);
        assert!(!push.is_deletion());
        assert_eq!(push.head_commit.map(|c| c.id), Some(SHA.to_owned()));
        assert_eq!(push.installation, None);
    }

    #[test]
    fn push_fixture_deleting_a_branch() {
        let push = push(include_bytes!(
            "../../../tests/fixtures/github/push_delete.json"
        ));
        assert_eq!(push.branch(), Some("feature"));
        assert_eq!(push.after, ZEROS);
        assert!(push.deleted);
        assert!(push.is_deletion());
        assert_eq!(push.head_commit, None);
    }

    #[test]
    fn push_fixture_deleting_a_tag() {
        let push = push(include_bytes!(
            "../../../tests/fixtures/github/push_tag_delete.json"
        ));
        assert_eq!(push.tag(), Some("simple-tag"));
        assert!(push.is_deletion());
    }

    #[test]
    fn push_fixture_forced() {
        let push = push(include_bytes!(
            "../../../tests/fixtures/github/push_forced.json"
        ));
        assert!(push.forced && !push.created && !push.deleted);
        assert_eq!(push.branch(), Some("master"));
        assert_eq!(push.before, "b7e0cbd39f4a0a9b0f6a0bd2c9c1a4a8c9a0d7f2");
        assert!(!push.is_deletion());
    }

    #[test]
    fn zeroed_after_is_a_deletion_even_without_the_flag() {
        let mut push = push(include_bytes!("../../../tests/fixtures/github/push.json"));
        assert!(!push.is_deletion());
        push.after = ZEROS.to_owned();
        assert!(push.is_deletion());
    }

    #[test]
    fn refs_outside_heads_and_tags_are_neither_branch_nor_tag() {
        let mut push = push(include_bytes!("../../../tests/fixtures/github/push.json"));
        for git_ref in ["refs/pull/1/head", "refs/heads/", "refs/tags/", "main", ""] {
            push.git_ref = git_ref.to_owned();
            assert_eq!((push.branch(), push.tag()), (None, None), "{git_ref}");
        }
        push.git_ref = "refs/heads/release/v1".to_owned();
        assert_eq!(push.branch(), Some("release/v1"));
    }

    #[test]
    fn create_fixture_of_a_tag() {
        let body = include_bytes!("../../../tests/fixtures/github/create_tag.json");
        let Ok(Event::Create(create)) = parse("create", body) else {
            panic!("not a create");
        };
        assert_eq!(create.git_ref, "simple-tag");
        assert_eq!(create.ref_type, RefType::Tag);
        assert_eq!(create.master_branch, "master");
        assert_hello_world(&create.repository);
        assert_eq!(create.sender.login, "Codertocat");
        assert_eq!(create.installation, Some(Installation { id: 1 }));
    }

    #[test]
    fn unknown_ref_type_is_other_not_an_error() {
        let mut value: serde_json::Value = serde_json::from_slice(include_bytes!(
            "../../../tests/fixtures/github/create_tag.json"
        ))
        .unwrap();
        value["ref_type"] = "repository".into();
        let body = serde_json::to_vec(&value).unwrap();
        let Ok(Event::Create(create)) = parse("create", &body) else {
            panic!("not a create");
        };
        assert_eq!(create.ref_type, RefType::Other);
    }

    #[test]
    fn issue_comment_fixture_created_on_a_pull_request() {
        let event = comment(include_bytes!(
            "../../../tests/fixtures/github/issue_comment_created_pr.json"
        ));
        assert_eq!(event.action, CommentAction::Created);
        assert!(event.is_pull_request());
        assert_eq!(event.issue.number, 2);
        assert_eq!(event.issue.title, "Update the README with new information.");
        assert_eq!(event.issue.state, IssueState::Open);
        let pr = event.issue.pull_request.as_ref().expect("a pull request");
        assert_eq!(
            pr.url.as_deref(),
            Some("https://api.github.com/repos/Codertocat/Hello-World/pulls/2")
        );
        assert_eq!(event.comment.id, 492_700_400);
        assert_eq!(event.comment.body, "/deploy production");
        assert_eq!(event.comment.user.login, "Codertocat");
        assert!(!event.comment.user.is_bot());
        assert_eq!(
            event.comment.html_url,
            "https://github.com/Codertocat/Hello-World/pull/2#issuecomment-492700400"
        );
        assert_hello_world(&event.repository);
        assert_eq!(event.installation, Some(Installation { id: 1 }));
    }

    #[test]
    fn issue_comment_fixture_created_on_a_plain_issue() {
        let event = comment(include_bytes!(
            "../../../tests/fixtures/github/issue_comment_created_issue.json"
        ));
        assert_eq!(event.action, CommentAction::Created);
        assert!(!event.is_pull_request());
        assert_eq!(event.issue.number, 1);
        assert_eq!(
            event.comment.body,
            "You are totally right! I'll get this fixed right away."
        );
    }

    #[test]
    fn pull_request_fixtures_carry_the_head_and_githubs_time() {
        for (name, body, action) in [
            (
                "opened",
                &include_bytes!("../../../tests/fixtures/github/pull_request_opened.json")[..],
                PullRequestAction::Opened,
            ),
            (
                "synchronize",
                include_bytes!("../../../tests/fixtures/github/pull_request_synchronize.json"),
                PullRequestAction::Synchronize,
            ),
            (
                "reopened",
                include_bytes!("../../../tests/fixtures/github/pull_request_reopened.json"),
                PullRequestAction::Reopened,
            ),
        ] {
            let Ok(Event::PullRequest(event)) = parse("pull_request", body) else {
                panic!("{name}: not a pull_request");
            };
            assert_eq!(event.action, action, "{name}");
            assert!(event.sets_head(), "{name}");
            assert_eq!(event.number, 2);
            assert_eq!(
                event.pull_request.head.sha,
                "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
            );
            assert_eq!(
                event.pull_request.updated_at.to_rfc3339(),
                "2019-05-15T15:20:33+00:00"
            );
            assert_hello_world(&event.repository);
        }
        let mut value: serde_json::Value = serde_json::from_slice(include_bytes!(
            "../../../tests/fixtures/github/pull_request_opened.json"
        ))
        .unwrap();
        value["action"] = "labeled".into();
        let Ok(Event::PullRequest(event)) =
            parse("pull_request", &serde_json::to_vec(&value).unwrap())
        else {
            panic!("not a pull_request");
        };
        assert!(!event.sets_head());
    }

    #[test]
    fn issue_comment_fixture_edited() {
        let event = comment(include_bytes!(
            "../../../tests/fixtures/github/issue_comment_edited.json"
        ));
        assert_eq!(event.action, CommentAction::Edited);
        assert_eq!(event.installation, None);
    }

    #[test]
    fn issue_comment_fixture_deleted() {
        let event = comment(include_bytes!(
            "../../../tests/fixtures/github/issue_comment_deleted.json"
        ));
        assert_eq!(event.action, CommentAction::Deleted);
        assert_eq!(event.comment.id, 492_700_400);
    }

    #[test]
    fn issue_comment_fixture_by_a_bot() {
        let event = comment(include_bytes!(
            "../../../tests/fixtures/github/issue_comment_bot.json"
        ));
        assert_eq!(event.comment.user.login, "renovate[bot]");
        assert_eq!(event.comment.user.kind, "Bot");
        assert!(event.comment.user.is_bot());
        assert!(event.sender.is_bot());
        assert!(event.is_pull_request());
    }

    #[test]
    fn bots_are_recognised_by_type_or_by_login() {
        let user = |login: &str, kind: &str| User {
            login: login.to_owned(),
            kind: kind.to_owned(),
        };
        assert!(user("deploybot[bot]", "Bot").is_bot());
        assert!(user("deploybot[bot]", "").is_bot());
        assert!(user("ci-helper", "Bot").is_bot());
        assert!(!user("octocat", "User").is_bot());
        assert!(!user("bot", "User").is_bot());
        assert!(!user("acme", "Organization").is_bot());
    }

    #[test]
    fn tenant_is_lower_cased() {
        let repository = Repository {
            full_name: "AcMe/Web".to_owned(),
            name: "Web".to_owned(),
            owner: User {
                login: "AcMe".to_owned(),
                kind: "Organization".to_owned(),
            },
            private: true,
        };
        assert_eq!(repository.tenant(), "acme");
    }

    #[test]
    fn unknown_events_are_other_whatever_the_body() {
        for (name, body) in [
            ("workflow_run", &b"{}"[..]),
            ("pull_request_review", b"not json at all"),
            ("", b""),
            ("Push", b"{}"),
        ] {
            match parse(name, body) {
                Ok(Event::Other(got)) => assert_eq!(got, name),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn missing_field_names_the_event_and_the_field() {
        let error = parse("push", br#"{"ref": "refs/heads/main", "before": "a"}"#).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("push payload is invalid: "),
            "{message}"
        );
        assert!(message.contains("missing field `after`"), "{message}");
        assert!(message.contains("line 1 column"), "{message}");
    }

    #[test]
    fn every_fixture_fails_cleanly_when_truncated() {
        let fixtures: [(&str, &[u8]); 4] = [
            (
                "ping",
                include_bytes!("../../../tests/fixtures/github/ping.json"),
            ),
            (
                "push",
                include_bytes!("../../../tests/fixtures/github/push.json"),
            ),
            (
                "create",
                include_bytes!("../../../tests/fixtures/github/create_tag.json"),
            ),
            (
                "issue_comment",
                include_bytes!("../../../tests/fixtures/github/issue_comment_created_pr.json"),
            ),
        ];
        for (name, body) in fixtures {
            assert!(parse(name, body).is_ok(), "{name}");
            // Every prefix that ends before the closing brace is invalid.
            let end = body.iter().rposition(|&b| b == b'}').unwrap();
            for cut in (0..end).step_by(97) {
                let error = parse(name, &body[..cut]).unwrap_err();
                assert!(error.to_string().starts_with(name), "{name} cut at {cut}");
            }
        }
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let cases: [(&str, &[u8]); 9] = [
            ("push", b""),
            ("push", b"null"),
            ("push", b"[]"),
            ("push", b"{"),
            ("ping", b"\xff\xfe"),
            ("ping", br#"{"zen": 1, "hook_id": 1}"#),
            ("ping", br#"{"zen": "z", "hook_id": "1"}"#),
            ("issue_comment", br#"{"action": "created"}"#),
            ("create", br#"{"ref": "v1", "ref_type": 3}"#),
        ];
        for (name, body) in cases {
            let error = parse(name, body).unwrap_err();
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("{name} payload is invalid: "))
            );
        }
    }

    #[test]
    fn wrong_types_in_a_real_payload_are_errors() {
        let fixture = include_bytes!("../../../tests/fixtures/github/push.json");
        let value: serde_json::Value = serde_json::from_slice(fixture).unwrap();
        for (pointer, replacement) in [
            ("/after", serde_json::json!(42)),
            ("/deleted", serde_json::json!("false")),
            ("/repository/owner/login", serde_json::json!(null)),
            ("/repository/private", serde_json::json!(0)),
            ("/installation/id", serde_json::json!(-1)),
            ("/head_commit", serde_json::json!("6113728")),
        ] {
            let mut value = value.clone();
            *value.pointer_mut(pointer).unwrap() = replacement;
            let body = serde_json::to_vec(&value).unwrap();
            assert!(parse("push", &body).is_err(), "{pointer}");
        }
    }

    #[test]
    fn huge_numbers_are_errors() {
        for hook_id in [
            "18446744073709551616",
            "1e400",
            "-1",
            "1.5",
            "99999999999999999999999999",
        ] {
            let body = format!(r#"{{"zen": "z", "hook_id": {hook_id}}}"#);
            assert!(parse("ping", body.as_bytes()).is_err(), "{hook_id}");
        }
        let body = br#"{"zen": "z", "hook_id": 18446744073709551615}"#;
        assert!(parse("ping", body).is_ok());
    }

    #[test]
    fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
        let deep = "[".repeat(10_000);
        for name in ["ping", "push", "create", "issue_comment"] {
            assert!(parse(name, deep.as_bytes()).is_err(), "{name}");
        }
        // Also inside a field deploybot ignores.
        let body = format!(r#"{{"zen": "z", "hook_id": 1, "hook": {deep}"#);
        assert!(parse("ping", body.as_bytes()).is_err());
        let objects = r#"{"a":"#.repeat(10_000);
        let body = format!(r#"{{"zen": "z", "hook_id": 1, "hook": {objects}"#);
        assert!(parse("ping", body.as_bytes()).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A small deterministic generator: no dependency, the same inputs on every run.
        let fixture =
            include_bytes!("../../../tests/fixtures/github/issue_comment_created_pr.json");
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2_000 {
            let mut body = fixture.to_vec();
            for _ in 0..(next() % 8 + 1) {
                let at = (next() % body.len() as u64) as usize;
                body[at] = (next() & 0xff) as u8;
            }
            for name in ["ping", "push", "create", "issue_comment"] {
                let _ = parse(name, &body);
            }
        }
    }

    #[test]
    fn nul_escapes_become_the_replacement_character_and_literal_text_stays() {
        let cases: [(&[u8], &[u8]); 5] = [
            (br#"{"a":"x\u0000y"}"#, br#"{"a":"x\ufffdy"}"#),
            (br#"{"a":"\\u0000"}"#, br#"{"a":"\\u0000"}"#),
            (br#"{"a":"\\\u0000"}"#, br#"{"a":"\\\ufffd"}"#),
            (br#"{"a":"u0000\u00001"}"#, br#"{"a":"u0000\ufffd1"}"#),
            (br#"{"a":"u0000"}\"#, br#"{"a":"u0000"}\"#),
        ];
        for (body, expected) in cases {
            assert_eq!(
                &*without_nul(body),
                expected,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
