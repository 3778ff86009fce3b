//! Outbox items as written and as stored, and how sending one ended.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::work::{DecodeError, Work};
use crate::deploy::{DeploymentId, Error};
use crate::github::client::ApiError;

/// The `last_error` of an item whose previous claim was never completed (its sender died
/// or lost the database mid-send): GitHub may already have it, so look before resending.
pub const SENDER_LOST: &str = "sender lost; GitHub may already have this report";

/// One stored report to GitHub (or job that needs GitHub), written in the same
/// transaction as the change that causes it and sent in order per `ordering_key`. The
/// kind and payload are as stored: [`OutboxItem::work`] reads them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxItem {
    pub id: i64,
    pub tenant_id: String,
    pub ordering_key: String,
    pub deployment_id: Option<DeploymentId>,
    /// Why the stored row itself cannot be read (a column that is not what it must be):
    /// such an item is parked as failed, like one whose work cannot be decoded.
    pub corrupt: Option<String>,
    pub kind: String,
    pub payload: serde_json::Value,
    pub attempts: i32,
    pub last_error: String,
    pub state: String,
    pub created_at: DateTime<Utc>,
}

impl OutboxItem {
    /// What the item asks for, or why this version cannot read it.
    pub fn work(&self) -> Result<Work, DecodeError> {
        if let Some(reason) = &self.corrupt {
            return Err(DecodeError::Corrupt {
                reason: reason.clone(),
            });
        }
        Work::decode(&self.kind, &self.payload)
    }

    /// Whether an earlier attempt may have reached GitHub although no outcome was
    /// recorded (it was tried before, or its sender died mid-send): then look first.
    pub fn in_doubt(&self) -> bool {
        self.attempts > 0 || self.last_error == SENDER_LOST
    }
}

/// An outbox item to write: its kind and payload come from `work`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutboxItem {
    pub tenant_id: String,
    pub ordering_key: String,
    pub deployment_id: Option<DeploymentId>,
    pub work: Work,
}

/// Whether GitHub accepted the Deployment that mirrors a deployment (its
/// `deployment.created` report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GithubAcceptance {
    /// Nothing was asked of GitHub: the deployment is not mirrored (no commit SHA), or
    /// there are no GitHub credentials (the report was logged only).
    NotAsked,
    /// GitHub has not answered yet.
    Waiting,
    /// GitHub created the Deployment.
    Accepted,
    /// GitHub refused it (for example, a required commit status is not green): why.
    Refused(String),
}

/// How sending an outbox item ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxResult {
    Sent,
    /// Try again after the delay (network error, 5xx, rate limit).
    Retry {
        after: std::time::Duration,
        error: String,
    },
    /// GitHub refused it for good (a 4xx other than rate limits), or this version cannot
    /// read it; recorded, never retried.
    Failed {
        error: String,
    },
    /// Made stale by a newer item (an older in-progress status); not sent.
    Skipped {
        reason: String,
    },
}

impl OutboxResult {
    /// A GitHub API error: retried when GitHub says so, given up otherwise.
    pub fn from_api(e: ApiError) -> Self {
        match e {
            ApiError::Retry { after, message } => OutboxResult::Retry {
                after,
                error: message,
            },
            refused => OutboxResult::Failed {
                error: refused.to_string(),
            },
        }
    }

    /// A store error: retried while the database is unavailable, given up otherwise.
    pub fn from_store(e: Error) -> Self {
        match e {
            Error::Unavailable(e) => Self::unavailable(e),
            other => OutboxResult::Failed {
                error: other.to_string(),
            },
        }
    }

    /// Try again in two seconds: the database is unavailable.
    pub fn unavailable(error: String) -> Self {
        OutboxResult::Retry {
            after: std::time::Duration::from_secs(2),
            error,
        }
    }
}
