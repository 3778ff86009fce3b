//! Typed work: every report and job that waits in the outbox is one variant of [`Work`].
//! The stored `kind` comes from the variant and the stored payload is the variant's own
//! struct as JSON, so what is written is what the sender reads back. An item this version
//! cannot read is refused by [`Work::decode`], never run as something else.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::deploy::DeployState;

/// The stored kind of a deployment's GitHub Deployment (created once, before its statuses).
pub const DEPLOYMENT_CREATED: &str = "deployment.created";
/// The stored kind of a deployment status.
pub const DEPLOYMENT_STATUS: &str = "deployment.status";
/// The stored kind of the reaction to the comment that started a deployment.
pub const DEPLOYMENT_REACTION: &str = "deployment.reaction";
/// The stored kind of the reply telling a comment's deployment's outcome.
pub const DEPLOYMENT_REPLY: &str = "deployment.reply";
/// The stored kind of a reaction to a comment.
pub const COMMENT_REACTION: &str = "comment.reaction";
/// The stored kind of a reply on a pull request.
pub const COMMENT_REPLY: &str = "comment.reply";
/// The stored kind of the job resolving a tag's commit.
pub const JOB_RESOLVE_TAG: &str = "job.resolve_tag";
/// The stored kind of the job running a comment's commands.
pub const JOB_COMMAND: &str = "job.comment";
/// The stored kind of the job recording a pull request's new head.
pub const JOB_PULL_HEAD: &str = "job.pull_head";
/// The stored kind of the job ending what a closed pull request held (its locks).
pub const JOB_PULL_CLOSED: &str = "job.pull_closed";

/// Everything that waits in the outbox: a report to GitHub or a job that needs GitHub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "payload")]
pub enum Work {
    #[serde(rename = "deployment.created")]
    DeploymentCreated(DeploymentCreated),
    #[serde(rename = "deployment.status")]
    DeploymentStatus(StatusReport),
    #[serde(rename = "deployment.reaction")]
    DeploymentReaction(DeploymentReaction),
    #[serde(rename = "deployment.reply")]
    DeploymentReply(DeploymentReply),
    #[serde(rename = "comment.reaction")]
    CommentReaction(CommentReaction),
    #[serde(rename = "comment.reply")]
    CommentReply(CommentReply),
    #[serde(rename = "job.resolve_tag")]
    ResolveTag(ResolveTagJob),
    #[serde(rename = "job.pull_head")]
    PullHead(PullHeadJob),
    #[serde(rename = "job.comment")]
    Comment(CommentJob),
    #[serde(rename = "job.pull_closed")]
    PullClosed(PullClosedJob),
}

/// Create the GitHub Deployment mirroring the item's deployment; everything it needs is
/// read from the deployment when it is sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentCreated {}

/// A deployment status: the state it is about and its message (`queued`, `started`, a
/// progress line, or the error it ended with).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub state: DeployState,
    pub message: String,
}

/// The reaction (`rocket`, `confused`) to the comment that started a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentReaction {
    pub content: String,
}

/// The reply telling a comment's deployment's outcome, with the final state and error it
/// was queued with (a later rollback may change the deployment before it is sent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentReply {
    /// Absent in replies queued before the outcome was carried: then the state the
    /// deployment has when the reply is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<DeployState>,
    #[serde(default)]
    pub error: String,
}

/// A reaction to a comment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentReaction {
    /// `owner/name`.
    pub repo: String,
    pub comment_id: u64,
    pub content: String,
    pub installation_id: Option<u64>,
}

/// A reply on an issue or pull request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentReply {
    /// `owner/name`.
    pub repo: String,
    pub issue: u64,
    pub body: String,
    pub installation_id: Option<u64>,
}

/// A tag that arrived only as a `create` event: its commit is resolved through the API,
/// then the instances named here deploy it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolveTagJob {
    /// `owner/name`.
    pub repo: String,
    pub tag: String,
    /// The login that pushed the tag.
    pub sender: String,
    pub installation_id: Option<u64>,
    pub instances: Vec<String>,
}

/// The job recording a pull request's new head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullHeadJob {
    pub repo: String,
    pub pr: u64,
    pub head_sha: String,
    pub at: DateTime<Utc>,
}

/// The job releasing the locks taken from a pull request that closed (merged or not), on
/// the instances that set `unlock_on_merge`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullClosedJob {
    /// `owner/name`.
    pub repo: String,
    pub pr: u64,
    pub merged: bool,
}

/// The job of one pull-request comment: who wrote it when, and what each command line
/// asks. The job checks the commenter's permission before anything is written to GitHub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentJob {
    /// `owner/name` as GitHub spells it.
    pub repo: String,
    pub pr: u64,
    pub comment_id: u64,
    /// GitHub's time of the comment: `/deploy` ships the head the pull request had then.
    pub created_at: DateTime<Utc>,
    pub user: String,
    pub installation_id: Option<u64>,
    /// The command lines, in order; step N of the comment is `steps[N - 1]`.
    pub steps: Vec<CommentCommand>,
}

/// What one command line of a comment asks, with its instance resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum CommentCommand {
    /// `/help`.
    Help,
    /// A line deploybot cannot run; the reply says why.
    Invalid { message: String },
    Deploy {
        instance: String,
        strategy: Option<String>,
        /// `--force`: pass a freeze (a deployer of the instance only).
        #[serde(default, skip_serializing_if = "is_false")]
        force: bool,
        /// `| KEY=VALUE …`.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        params: BTreeMap<String, String>,
    },
    /// `/noop`: a dry run of the pull request's head.
    Noop {
        instance: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        params: BTreeMap<String, String>,
    },
    Rollback {
        instance: String,
        /// A version, or the previous release when None.
        version: Option<i64>,
        /// `--force`: pass another's lock or a freeze (a deployer of the instance only).
        #[serde(default, skip_serializing_if = "is_false")]
        force: bool,
        /// `--reason TEXT…`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Cancel {
        instance: String,
        /// The queued deployments instead of the running one.
        queued: bool,
    },
    /// `/approve`: the instance's deployment that waits for approval.
    Approve { instance: String },
    /// `/lock`: the instance, or with `global` every instance of its repository.
    Lock {
        instance: String,
        global: bool,
        /// `--for`, in seconds; None: until unlocked.
        for_secs: Option<u64>,
        reason: Option<String>,
    },
    /// `/unlock`: the instance's lock, or with `global` the repository's.
    Unlock { instance: String, global: bool },
    /// `/locks`: the repository's locks and each environment's freezes.
    Locks,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Why a stored item cannot be read by this version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown kind {kind:?}: this version of deploybot has no such report or job")]
    UnknownKind { kind: String },
    #[error("its payload is not a JSON object, as a {kind} needs")]
    NotAnObject { kind: String },
    #[error("a {kind} whose payload is malformed: {reason}")]
    Malformed { kind: String, reason: String },
    #[error("the stored row is corrupt: {reason}")]
    Corrupt { reason: String },
}

impl Work {
    /// Every stored kind, one per variant.
    pub const KINDS: [&'static str; 10] = [
        DEPLOYMENT_CREATED,
        DEPLOYMENT_STATUS,
        DEPLOYMENT_REACTION,
        DEPLOYMENT_REPLY,
        COMMENT_REACTION,
        COMMENT_REPLY,
        JOB_RESOLVE_TAG,
        JOB_PULL_HEAD,
        JOB_COMMAND,
        JOB_PULL_CLOSED,
    ];

    /// The kind stored with this item.
    pub fn kind(&self) -> &'static str {
        match self {
            Work::DeploymentCreated(_) => DEPLOYMENT_CREATED,
            Work::DeploymentStatus(_) => DEPLOYMENT_STATUS,
            Work::DeploymentReaction(_) => DEPLOYMENT_REACTION,
            Work::DeploymentReply(_) => DEPLOYMENT_REPLY,
            Work::CommentReaction(_) => COMMENT_REACTION,
            Work::CommentReply(_) => COMMENT_REPLY,
            Work::ResolveTag(_) => JOB_RESOLVE_TAG,
            Work::PullHead(_) => JOB_PULL_HEAD,
            Work::Comment(_) => JOB_COMMAND,
            Work::PullClosed(_) => JOB_PULL_CLOSED,
        }
    }

    /// The payload stored with this item: the variant's struct as JSON.
    pub fn payload(&self) -> Value {
        let stored = match self {
            Work::DeploymentCreated(p) => serde_json::to_value(p),
            Work::DeploymentStatus(p) => serde_json::to_value(p),
            Work::DeploymentReaction(p) => serde_json::to_value(p),
            Work::DeploymentReply(p) => serde_json::to_value(p),
            Work::CommentReaction(p) => serde_json::to_value(p),
            Work::CommentReply(p) => serde_json::to_value(p),
            Work::ResolveTag(p) => serde_json::to_value(p),
            Work::PullHead(p) => serde_json::to_value(p),
            Work::Comment(p) => serde_json::to_value(p),
            Work::PullClosed(p) => serde_json::to_value(p),
        };
        // Plain structs of strings, numbers and lists with string keys always serialize.
        stored.unwrap_or(Value::Null)
    }

    /// The repository the item is about, when its payload names one (deployment reports
    /// name theirs through the deployment).
    pub fn repo(&self) -> Option<&str> {
        match self {
            Work::DeploymentCreated(_)
            | Work::DeploymentStatus(_)
            | Work::DeploymentReaction(_)
            | Work::DeploymentReply(_) => None,
            Work::CommentReaction(p) => Some(&p.repo),
            Work::CommentReply(p) => Some(&p.repo),
            Work::ResolveTag(p) => Some(&p.repo),
            Work::PullHead(p) => Some(&p.repo),
            Work::Comment(p) => Some(&p.repo),
            Work::PullClosed(p) => Some(&p.repo),
        }
    }

    /// Reads a stored item: an unknown kind, or a payload missing a field or holding one
    /// of the wrong type, is an error naming the kind and the problem.
    pub fn decode(kind: &str, payload: &Value) -> Result<Work, DecodeError> {
        if !Self::KINDS.contains(&kind) {
            return Err(DecodeError::UnknownKind {
                kind: clip(kind, KIND_SHOWN),
            });
        }
        if !payload.is_object() {
            return Err(DecodeError::NotAnObject {
                kind: kind.to_string(),
            });
        }
        let stored = serde_json::json!({"kind": kind, "payload": payload});
        serde_path_to_error::deserialize(stored).map_err(|e| DecodeError::Malformed {
            kind: kind.to_string(),
            reason: reason(&e),
        })
    }

    /// The metric label of a stored kind: itself when known, else `unknown`, so that
    /// stored garbage cannot grow the number of label values.
    pub fn label(kind: &str) -> &'static str {
        Self::KINDS
            .iter()
            .find(|known| **known == kind)
            .copied()
            .unwrap_or("unknown")
    }
}

/// A decoding error told as the field it is about (without the envelope `decode` wraps
/// the payload in) and what is wrong with it.
fn reason(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = e.path().to_string();
    let field = path
        .strip_prefix("payload.")
        .or_else(|| path.strip_prefix("payload"))
        .unwrap_or(&path);
    let problem = without_value(&e.inner().to_string());
    if field.is_empty() || field == "." {
        problem
    } else {
        format!("{}: {problem}", clip(field, KIND_SHOWN))
    }
}

/// How many characters of a stored kind or field path a reason shows.
const KIND_SHOWN: usize = 64;

fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// serde's message without the stored value it quotes (`invalid type: string "…"`,
/// ``unknown variant `…` ``): a payload may hold text that must not reach the API or the
/// logs. A missing field's name is the reader's own and is kept.
fn without_value(message: &str) -> String {
    if message.starts_with("missing field") {
        return message.to_string();
    }
    let Some(start) = message.find(['"', '`']) else {
        return message.to_string();
    };
    let quote = &message[start..start + 1];
    // The value ends at the quote before ", expected" (serde's shape), else at the last
    // quote: a quote inside the value cannot end the masking early.
    let end = message
        .rfind(&format!("{quote}, expected"))
        .or_else(|| message.rfind(quote))
        .filter(|end| *end > start);
    match end {
        Some(end) => format!(
            "{}{quote}…{quote}{}",
            &message[..start],
            &message[end + 1..]
        ),
        None => format!("{}{quote}…", &message[..start]),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reasons_name_the_field_but_never_the_stored_value() {
        for (kind, payload) in [
            (
                COMMENT_REPLY,
                json!({"repo": "acme/web", "issue": "ghp_SECRET\"x`, expected", "body": "hi"}),
            ),
            (
                DEPLOYMENT_STATUS,
                json!({"state": "ghp_SECRET", "message": "m"}),
            ),
        ] {
            let error = Work::decode(kind, &payload).unwrap_err().to_string();
            assert!(!error.contains("ghp_SECRET"), "{error}");
            assert!(error.contains(kind), "{error}");
        }
        let missing = Work::decode(DEPLOYMENT_STATUS, &json!({"state": "running"}))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("missing field `message`"), "{missing}");
        let long = "k".repeat(5000);
        let unknown = Work::decode(&long, &json!({})).unwrap_err().to_string();
        assert!(unknown.len() < 300, "{unknown}");
    }

    /// One payload per kind, exactly as the version before typed work wrote it.
    fn stored_today() -> Vec<(&'static str, Value)> {
        vec![
            (DEPLOYMENT_CREATED, json!({})),
            (
                DEPLOYMENT_STATUS,
                json!({"state": "running", "message": "started"}),
            ),
            (DEPLOYMENT_REACTION, json!({"content": "rocket"})),
            (
                DEPLOYMENT_REPLY,
                json!({"state": "failed", "error": "exit 1"}),
            ),
            (
                COMMENT_REACTION,
                json!({"repo": "acme/web", "comment_id": 7, "content": "eyes", "installation_id": null}),
            ),
            (
                COMMENT_REPLY,
                json!({"repo": "acme/web", "issue": 3, "body": "hi", "installation_id": 42}),
            ),
            (
                JOB_RESOLVE_TAG,
                json!({"repo": "acme/web", "tag": "v1", "sender": "octocat", "installation_id": null, "instances": ["web"]}),
            ),
            (
                JOB_PULL_HEAD,
                json!({"repo": "acme/web", "pr": 3, "head_sha": "abc", "at": "2026-01-02T03:04:05Z"}),
            ),
            (
                JOB_COMMAND,
                json!({"repo": "acme/web", "pr": 3, "comment_id": 9, "created_at": "2026-01-02T03:04:05Z",
                       "user": "octocat", "installation_id": null,
                       "steps": [{"command": "deploy", "instance": "web", "strategy": null}, {"command": "help"}]}),
            ),
            (
                JOB_PULL_CLOSED,
                json!({"repo": "acme/web", "pr": 3, "merged": true}),
            ),
        ]
    }

    #[test]
    fn every_kind_stored_today_reads_back_and_is_written_the_same() {
        let stored = stored_today();
        assert_eq!(stored.len(), Work::KINDS.len());
        for (kind, payload) in stored {
            let work = Work::decode(kind, &payload).unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert_eq!(work.kind(), kind);
            let again = Work::decode(work.kind(), &work.payload()).unwrap();
            assert_eq!(again, work, "{kind}");
            if kind != JOB_PULL_HEAD && kind != JOB_COMMAND {
                // Timestamps may be written with another precision; the rest is byte-exact.
                assert_eq!(work.payload(), payload, "{kind}");
            }
        }
    }

    #[test]
    fn a_reply_queued_without_its_outcome_still_reads() {
        let work = Work::decode(DEPLOYMENT_REPLY, &json!({})).unwrap();
        assert_eq!(
            work,
            Work::DeploymentReply(DeploymentReply {
                state: None,
                error: String::new()
            })
        );
    }

    #[test]
    fn an_unknown_kind_is_refused_by_name() {
        let err = Work::decode("job.lock", &json!({"repo": "acme/web"})).unwrap_err();
        assert!(err.to_string().contains("\"job.lock\""), "{err}");
        assert_eq!(Work::label("job.lock"), "unknown");
        assert_eq!(Work::label(JOB_COMMAND), JOB_COMMAND);
    }

    #[test]
    fn a_malformed_payload_is_refused_naming_the_kind_and_the_field() {
        let missing = Work::decode(DEPLOYMENT_STATUS, &json!({"state": "running"})).unwrap_err();
        assert!(missing.to_string().contains(DEPLOYMENT_STATUS), "{missing}");
        assert!(missing.to_string().contains("message"), "{missing}");
        let wrong = Work::decode(
            COMMENT_REPLY,
            &json!({"repo": "a/b", "issue": "one", "body": "x"}),
        )
        .unwrap_err();
        assert!(wrong.to_string().contains("issue"), "{wrong}");
        let unknown_state = Work::decode(
            DEPLOYMENT_STATUS,
            &json!({"state": "exploded", "message": ""}),
        )
        .unwrap_err();
        assert!(
            unknown_state.to_string().contains("state"),
            "{unknown_state}"
        );
        let command = Work::decode(
            JOB_COMMAND,
            &json!({"repo": "acme/web", "pr": 3, "comment_id": 9, "created_at": "2026-01-02T03:04:05Z",
                    "user": "octocat", "steps": [{"command": "lock", "instance": "web", "global": "yes"}]}),
        )
        .unwrap_err();
        assert!(command.to_string().contains("steps[0]"), "{command}");
        let text = Work::decode(COMMENT_REPLY, &Value::String("{not json".into())).unwrap_err();
        assert!(text.to_string().contains("not a JSON object"), "{text}");
    }

    #[test]
    fn stored_comment_jobs_keep_their_json_shape() {
        let stored = r#"{"repo":"Acme/Web","pr":42,"comment_id":7,"created_at":"2026-12-01T10:00:01Z","user":"octocat","installation_id":null,"steps":[{"command":"help"},{"command":"invalid","message":"no"},{"command":"deploy","instance":"web","strategy":null},{"command":"deploy","instance":"web","strategy":"canary"},{"command":"rollback","instance":"web","version":null},{"command":"rollback","instance":"web","version":3},{"command":"cancel","instance":"web","queued":true}]}"#;
        let job: CommentJob = serde_json::from_str(stored).unwrap();
        assert_eq!(
            job.steps[5],
            CommentCommand::Rollback {
                instance: "web".into(),
                version: Some(3),
                force: false,
                reason: None,
            }
        );
        assert_eq!(serde_json::to_string(&job).unwrap(), stored);
    }
}
