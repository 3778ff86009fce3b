//! Rows as the database holds them, and their conversion to and from the domain types.
//! A row that does not convert (a corrupt id or state) is an internal error, never a panic.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::schema::{deployments, instances, releases};
use crate::deploy::{DeployKind, Deployment, Env, Error, Instance, Progress, Release};

pub(crate) fn to_db(at: DateTime<Utc>) -> NaiveDateTime {
    at.naive_utc()
}

pub(crate) fn from_db(at: NaiveDateTime) -> DateTime<Utc> {
    at.and_utc()
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> Error {
    Error::Internal(format!("stored {what} is corrupt: {detail}"))
}

fn env_to_db(env: &Env) -> Result<String, Error> {
    serde_json::to_string(env).map_err(|e| Error::Internal(format!("env cannot be encoded: {e}")))
}

fn env_from_db(text: &str) -> Result<Env, Error> {
    serde_json::from_str(text).map_err(|e| corrupt("env", e))
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = instances)]
pub(crate) struct InstanceRow {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub repo: String,
    pub environment: String,
    pub last_release_version: i64,
    pub deployment_count: i64,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl InstanceRow {
    pub fn into_domain(self) -> Result<Instance, Error> {
        Ok(Instance {
            id: self.id.parse().map_err(|e| corrupt("instance id", e))?,
            created_at: from_db(self.created_at),
            updated_at: from_db(self.updated_at),
            tenant_id: self.tenant_id,
            name: self.name,
            repo: self.repo,
            environment: self.environment,
        })
    }
}

// `None` is inserted as NULL (no nullable column has another default): without `DEFAULT`
// in them the INSERTs' text is fixed, so diesel prepares them once per connection.
#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = releases, treat_none_as_default_value = false)]
pub(crate) struct ReleaseRow {
    pub id: String,
    pub tenant_id: String,
    pub instance_id: String,
    pub version: i64,
    pub image: String,
    pub env: String,
    pub notes: String,
    pub commit_sha: String,
    pub active: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub last_active_at: Option<NaiveDateTime>,
}

impl ReleaseRow {
    pub fn from_domain(r: &Release) -> Result<Self, Error> {
        Ok(Self {
            id: r.id.to_string(),
            tenant_id: r.tenant_id.clone(),
            instance_id: r.instance_id.to_string(),
            version: r.version,
            image: r.image.clone(),
            env: env_to_db(&r.env)?,
            notes: r.notes.clone(),
            commit_sha: r.commit_sha.clone(),
            active: r.active,
            created_at: to_db(r.created_at),
            updated_at: to_db(r.updated_at),
            last_active_at: r.active.then(|| to_db(r.updated_at)),
        })
    }

    pub fn into_domain(self) -> Result<Release, Error> {
        Ok(Release {
            id: self.id.parse().map_err(|e| corrupt("release id", e))?,
            created_at: from_db(self.created_at),
            updated_at: from_db(self.updated_at),
            tenant_id: self.tenant_id,
            instance_id: self
                .instance_id
                .parse()
                .map_err(|e| corrupt("instance id", e))?,
            version: self.version,
            image: self.image,
            env: env_from_db(&self.env)?,
            notes: self.notes,
            commit_sha: self.commit_sha,
            active: self.active,
        })
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = deployments, treat_none_as_default_value = false)]
pub(crate) struct DeploymentRow {
    pub id: String,
    pub tenant_id: String,
    pub instance_id: String,
    pub release_id: String,
    pub state: String,
    pub strategy: String,
    pub image: String,
    pub env: String,
    pub provider_ref: String,
    pub started_at: Option<NaiveDateTime>,
    pub finished_at: Option<NaiveDateTime>,
    pub error: String,
    pub initiator: String,
    pub progress_phase: String,
    pub progress_percent: i32,
    pub progress_message: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub kind: String,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<NaiveDateTime>,
    pub cancel_requested: bool,
    pub source: String,
    pub github_deployment_id: Option<i64>,
    pub trigger_key: Option<String>,
    pub waiting_for: Option<String>,
    pub noop: bool,
    pub params: String,
    pub gate_readings: String,
    pub watch_until: Option<NaiveDateTime>,
    pub watch_owner: Option<String>,
    pub watch_lease_until: Option<NaiveDateTime>,
}

impl DeploymentRow {
    pub fn from_domain(d: &Deployment) -> Result<Self, Error> {
        Ok(Self {
            id: d.id.to_string(),
            tenant_id: d.tenant_id.clone(),
            instance_id: d.instance_id.to_string(),
            release_id: d.release_id.to_string(),
            state: d.state.as_str().to_string(),
            strategy: d.strategy.clone(),
            image: d.image.clone(),
            env: env_to_db(&d.env)?,
            provider_ref: d.provider_ref.clone(),
            started_at: d.started_at.map(to_db),
            finished_at: d.finished_at.map(to_db),
            error: d.error.clone(),
            initiator: d.initiator.clone(),
            progress_phase: d.progress.phase.clone(),
            progress_percent: d.progress.percent,
            progress_message: d.progress.message.clone(),
            created_at: to_db(d.created_at),
            updated_at: to_db(d.updated_at),
            kind: d.kind.as_str().to_string(),
            lease_owner: None,
            lease_expires_at: None,
            cancel_requested: false,
            source: serde_json::to_string(&d.source)
                .map_err(|e| Error::Internal(format!("source cannot be encoded: {e}")))?,
            github_deployment_id: d.github_deployment_id,
            trigger_key: None,
            waiting_for: d
                .waiting_for
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| Error::Internal(format!("waiting_for cannot be encoded: {e}")))?,
            noop: d.noop,
            params: env_to_db(&d.params)?,
            gate_readings: readings_to_db(&d.gates)?,
            watch_until: d.watch_until.map(to_db),
            watch_owner: None,
            watch_lease_until: None,
        })
    }

    pub fn into_domain(self) -> Result<Deployment, Error> {
        Ok(Deployment {
            id: self.id.parse().map_err(|e| corrupt("deployment id", e))?,
            created_at: from_db(self.created_at),
            updated_at: from_db(self.updated_at),
            tenant_id: self.tenant_id,
            instance_id: self
                .instance_id
                .parse()
                .map_err(|e| corrupt("instance id", e))?,
            release_id: self
                .release_id
                .parse()
                .map_err(|e| corrupt("release id", e))?,
            state: self
                .state
                .parse()
                .map_err(|e: String| corrupt("deployment state", e))?,
            strategy: self.strategy,
            image: self.image,
            env: env_from_db(&self.env)?,
            provider_ref: self.provider_ref,
            started_at: self.started_at.map(from_db),
            finished_at: self.finished_at.map(from_db),
            error: self.error,
            initiator: self.initiator,
            progress: Progress {
                phase: self.progress_phase,
                percent: self.progress_percent,
                message: self.progress_message,
            },
            kind: match self.kind.as_str() {
                "deploy" => DeployKind::Deploy,
                "rollback" => DeployKind::Rollback,
                other => return Err(corrupt("deployment kind", other)),
            },
            source: serde_json::from_str(&self.source).map_err(|e| corrupt("source", e))?,
            github_deployment_id: self.github_deployment_id,
            noop: self.noop,
            params: env_from_db(&self.params)?,
            waiting_for: self
                .waiting_for
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| corrupt("waiting_for", e))?,
            gates: serde_json::from_str(&self.gate_readings)
                .map_err(|e| corrupt("gate_readings", e))?,
            watch_until: self.watch_until.map(from_db),
        })
    }
}

/// A deployment's gate readings as stored: a JSON list.
pub(crate) fn readings_to_db(
    readings: &[crate::deploy::provider::GateReading],
) -> Result<String, Error> {
    serde_json::to_string(readings)
        .map_err(|e| Error::Internal(format!("gate readings cannot be encoded: {e}")))
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = super::schema::deployment_logs)]
pub(crate) struct LogRow {
    pub deployment_id: String,
    pub seq: i64,
    pub tenant_id: String,
    pub stream: String,
    pub line: String,
    pub at: NaiveDateTime,
}
