//! The deploy domain: what a deployment and a release are, the states a deployment
//! moves through, and the store traits it is kept in. Nothing here knows about HTTP or SQL.

mod admission;
pub mod control;
pub mod env;
mod error;
pub mod gates;
pub mod provider;
pub mod service;
mod state;
mod store;
pub mod strategies;
pub mod strategy;

use std::collections::BTreeMap;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

pub use crate::id::{DeploymentId, InstanceId, ReleaseId};
pub use admission::{MAX_LOCK_TTL, MAX_PARAM_CHARS, MAX_REASON_CHARS, is_hidden_char};
pub use control::{
    ActiveFreeze, Actor, Admission, ApprovalState, Ask, AuditEvent, AuditPage, Lock, LockTarget,
    Origin, WaitKind, WaitingFor,
};
pub use error::Error;
pub use service::{Catalog, InstanceSpec, RollbackTarget, Service};
pub use state::{DeployState, InvalidTransition};
pub use store::{
    AuditStore, GateStore, InstanceStore, LockStore, LogStore, QueueStore, ReleaseStore,
    RetentionStore, ServiceStore, Store, TableRows, WatchFailure, WatchRollback, WatchStore,
};
pub use strategy::{CanarySteps, Outcome, Plan, ProgressSink, Strategy};

/// Environment variables handed to a release; ordered so that output is stable.
pub type Env = BTreeMap<String, String>;

/// The error message of a deployment whose worker stopped renewing its lease.
pub const WORKER_LOST: &str = "worker lost; outcome unknown";

/// The current time, truncated to microseconds: the precision both databases keep,
/// so a value read back compares equal to the value written.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// What someone asks for: run this image with this env on this instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployRequest {
    pub instance_id: InstanceId,
    pub image: String,
    #[serde(default)]
    pub env: Env,
    #[serde(default)]
    pub strategy: String,
    #[serde(default)]
    pub notes: String,
    #[serde(default)]
    pub commit_sha: String,
    /// Parameters (`/deploy ENV | KEY=VALUE`, the API's `params`): only names the instance
    /// lists in `params`; they reach the provider as `DEPLOY_PARAM_<KEY>`.
    #[serde(default)]
    pub params: Env,
    /// A dry run: the provider plans, nothing changes, no release becomes active.
    #[serde(default)]
    pub noop: bool,
}

/// Where a running deployment is: the phase it is in and how far along it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub phase: String,
    /// 0 to 100.
    pub percent: i32,
    pub message: String,
}

/// Why a deployment exists: a new release, or the return to an existing one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployKind {
    #[default]
    Deploy,
    Rollback,
}

impl DeployKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeployKind::Deploy => "deploy",
            DeployKind::Rollback => "rollback",
        }
    }
}

/// One attempt to make a release run on an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub id: DeploymentId,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub tenant_id: String,
    pub instance_id: InstanceId,
    pub release_id: ReleaseId,
    pub state: DeployState,
    pub strategy: String,
    pub image: String,
    pub env: Env,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub provider_ref: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    pub initiator: String,
    pub progress: Progress,
    /// A rollback's success marks the deployment it replaced `rolled_back`.
    #[serde(default)]
    pub kind: DeployKind,
    /// Where the deployment came from on GitHub (empty for API and CLI deployments).
    #[serde(default)]
    pub source: Source,
    /// The id of the GitHub Deployment that mirrors this one, once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github_deployment_id: Option<i64>,
    /// A dry run: the provider plans in one `plan` phase; its release never becomes active.
    #[serde(default)]
    pub noop: bool,
    /// The parameters it was asked with, passed to the provider as `DEPLOY_PARAM_<KEY>`.
    #[serde(default)]
    pub params: Env,
    /// What a pending deployment waits for before a worker may claim it (None: nothing).
    #[serde(default)]
    pub waiting_for: Option<WaitingFor>,
    /// Each metric gate's last measurement.
    #[serde(default)]
    pub gates: Vec<provider::GateReading>,
    /// A succeeded deployment's metric gates keep running until then (`watch`); a failure
    /// before it rolls back to the previous release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch_until: Option<DateTime<Utc>>,
}

/// Where a deployment came from: the trigger in words, and the GitHub objects to report to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// "push to main by @octocat (abc1234)", "/deploy on #42 by @octocat", "API (ci)".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub trigger: String,
    /// The pull request of a comment command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<u64>,
    /// The comment that carried the command (reactions and the reply go there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment_id: Option<u64>,
    /// The GitHub App installation that delivered the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<u64>,
    /// `@alice` or `token:ci`: who asked for it (a push's pusher, a command's commenter,
    /// an API token); they may not approve it themselves.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub requested_by: String,
}

impl Deployment {
    /// A new pending deployment of `release`.
    pub fn pending(release: &Release, strategy: &str, initiator: &str) -> Self {
        let at = now();
        Self {
            id: DeploymentId::new(),
            created_at: at,
            updated_at: at,
            tenant_id: release.tenant_id.clone(),
            instance_id: release.instance_id,
            release_id: release.id,
            state: DeployState::Pending,
            strategy: strategy.to_string(),
            image: release.image.clone(),
            env: release.env.clone(),
            provider_ref: String::new(),
            started_at: None,
            finished_at: None,
            error: String::new(),
            initiator: initiator.to_string(),
            progress: Progress::default(),
            kind: DeployKind::Deploy,
            source: Source::default(),
            github_deployment_id: None,
            noop: false,
            params: Env::new(),
            waiting_for: None,
            gates: Vec::new(),
            watch_until: None,
        }
    }

    /// Moves to `next`, refusing a transition the state machine does not allow, and
    /// stamps the start and finish times.
    pub fn transition(&mut self, next: DeployState) -> Result<(), InvalidTransition> {
        self.state.check_transition(next)?;
        let at = now();
        if next == DeployState::Running && self.started_at.is_none() {
            self.started_at = Some(at);
        }
        if next.is_final() && self.finished_at.is_none() {
            self.finished_at = Some(at);
        }
        self.state = next;
        self.updated_at = at;
        Ok(())
    }
}

/// An immutable snapshot of what runs: image, env, commit and notes, numbered per instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub id: ReleaseId,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub tenant_id: String,
    pub instance_id: InstanceId,
    /// 1, 2, 3 … per instance, allocated by the store when the release is inserted.
    pub version: i64,
    pub image: String,
    pub env: Env,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub notes: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub commit_sha: String,
    pub active: bool,
}

impl Release {
    /// A release built from a request, not yet numbered (the store allocates the version).
    pub fn from_request(tenant_id: &str, request: &DeployRequest) -> Self {
        let at = now();
        Self {
            id: ReleaseId::new(),
            created_at: at,
            updated_at: at,
            tenant_id: tenant_id.to_string(),
            instance_id: request.instance_id,
            version: 0,
            image: request.image.clone(),
            env: request.env.clone(),
            notes: request.notes.clone(),
            commit_sha: request.commit_sha.clone(),
            active: false,
        }
    }
}

/// A configured deploy target as kept in the database, with its stable id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub id: InstanceId,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub tenant_id: String,
    pub name: String,
    pub repo: String,
    pub environment: String,
}

/// One stored line of a deployment's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// 1, 2, 3 … per deployment: read "after seq N" to follow a log.
    pub seq: i64,
    /// `stdout`, `stderr` or `deploybot`.
    pub stream: String,
    pub line: String,
    pub at: DateTime<Utc>,
}

/// A running deployment whose worker stopped renewing its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredLease {
    pub id: DeploymentId,
    /// Who held the lease: `host:pid:run` for a worker.
    pub owner: String,
    pub expired_at: DateTime<Utc>,
}

/// A deployment someone asks for, with the key that makes its trigger idempotent.
#[derive(Debug, Clone)]
pub struct TriggeredDeployment {
    pub release: Release,
    pub deployment: Deployment,
    /// One deployment per (instance, key): a tag push and its `create` event share it.
    pub trigger_key: Option<String>,
    /// Cancel the instance's older queued deployments.
    pub supersede: bool,
    /// False for a rollback: the release exists and is not inserted again.
    pub new_release: bool,
    /// A push or a tag: when a lock covers the instance as it is stored, the store marks
    /// it waiting for the lock (in the same transaction).
    pub waits_for_locks: bool,
    /// A person's deployment, admitted as this holder (`@alice`, `token:ci`): refused with
    /// `Error::Locked` when, as it is written, a lock someone else holds covers its
    /// instance (taken after it was admitted). None for pushes, and for a rollback that
    /// passed the lock with `--force`.
    pub lock_holder: Option<String>,
    /// Audit events written in the same transaction as the deployment (its request, and
    /// what `--force` passed); not written when it is refused as it is written.
    pub audit: Vec<AuditEvent>,
}

/// What a worker learns when it renews the lease of a running deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Someone asked for the deployment to be cancelled.
    pub cancel_requested: bool,
}

/// Which page of a list to read: an opaque cursor from the previous page, and a size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

impl ListOptions {
    /// The page size when none is asked for.
    pub const DEFAULT_LIMIT: u32 = 20;
    /// The largest page anyone may ask for.
    pub const MAX_LIMIT: u32 = 100;

    /// The page size to use, or an invalid-request error naming the allowed range.
    pub fn effective_limit(&self) -> Result<u32, Error> {
        match self.limit {
            None => Ok(Self::DEFAULT_LIMIT),
            Some(n) if (1..=Self::MAX_LIMIT).contains(&n) => Ok(n),
            Some(n) => Err(Error::InvalidRequest(format!(
                "limit {n} is out of range: use 1 to {}",
                Self::MAX_LIMIT
            ))),
        }
    }
}

/// One page of deployments, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployListResult {
    pub items: Vec<Deployment>,
    /// Absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    pub total: i64,
}

/// One page of releases, highest version first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseListResult {
    pub items: Vec<Release>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    pub total: i64,
}
