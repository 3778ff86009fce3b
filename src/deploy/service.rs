//! The `Service`: what callers (the REST API, webhooks, the CLI) ask of the domain. Every
//! method validates first, writes in one transaction, and returns at once: deployments
//! run later, in a worker.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::provider::{HealthCheck, Provider};
use super::strategy::CanarySteps;
use super::{
    Actor, AuditEvent, DeployKind, DeployListResult, DeployRequest, DeployState, Deployment,
    DeploymentId, Error, Instance, InstanceId, ListOptions, LogEntry, Release, ReleaseId,
    ReleaseListResult, ServiceStore, Source, TriggeredDeployment, strategies,
};

/// The most characters (not bytes) a release's notes hold: the API document's `maxLength`.
const MAX_NOTES_CHARS: usize = 4096;

/// How the notes of a dry run's release start.
pub const DRY_RUN_NOTES: &str = "dry run: ";

/// How one configured instance deploys.
pub struct InstanceSpec {
    pub name: String,
    pub environment: String,
    /// The strategy used when a request names none.
    pub default_strategy: String,
    /// A newer queued deployment cancels older queued ones.
    pub supersede: bool,
    pub provider: Arc<dyn Provider>,
    pub health: Option<Arc<dyn HealthCheck>>,
    /// Metric gates, asked after each phase that shifts traffic (and during `watch`).
    pub gates: Vec<Arc<dyn crate::deploy::provider::MetricGate>>,
    /// After success the metric gates keep running this long; a failure rolls back.
    pub watch: Option<std::time::Duration>,
    pub canary: CanarySteps,
    /// The instance has `required_contexts`: a deployment mirrored on GitHub runs only
    /// once GitHub has accepted its Deployment (the contexts passed), and fails with
    /// GitHub's reason when GitHub refuses it.
    pub wait_for_github: bool,
    /// The instance's `env`: every new release gets it, under the request's own `env`
    /// (a key the request names wins).
    pub env: BTreeMap<String, String>,
    /// Locks, freezes and parameters.
    pub control: ControlSpec,
}

/// Deploy control of one instance, from its configuration.
#[derive(Debug, Clone, Default)]
pub struct ControlSpec {
    /// The parameter names accepted (`params`).
    pub params: Vec<String>,
    /// The instance's freeze windows and the top-level ones.
    pub freezes: Vec<crate::config::FreezeWindow>,
    /// An automatic rollback locks the instance against pushes.
    pub lock_on_rollback: bool,
    /// Promotion order, required checks, reviews and approvals.
    pub gates: crate::config::GateConfig,
}

/// The configured instances, looked up by tenant and name.
pub trait Catalog: Send + Sync {
    fn spec(&self, tenant: &str, name: &str) -> Option<Arc<InstanceSpec>>;

    /// The freeze of the named instance in force at `now`, if any.
    fn freeze_now(
        &self,
        tenant: &str,
        name: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<super::ActiveFreeze> {
        let spec = self.spec(tenant, name)?;
        let (current, _) = crate::config::freeze_state(&spec.control.freezes, now);
        current.map(|(w, start, end)| super::ActiveFreeze {
            reason: w.reason.clone(),
            start,
            end,
        })
    }
}

/// Which release a rollback returns to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackTarget {
    Release(ReleaseId),
    Version(i64),
    /// The release that was active before the active one.
    Previous,
}

/// Cancellation tokens of the deployments running in this process, so that a cancel
/// stops them at once (other processes notice the request at their next heartbeat).
#[derive(Default)]
pub struct Running {
    tokens: Mutex<HashMap<DeploymentId, CancellationToken>>,
}

impl Running {
    pub fn register(&self, id: DeploymentId, token: CancellationToken) {
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.insert(id, token);
        }
    }

    pub fn remove(&self, id: DeploymentId) {
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.remove(&id);
        }
    }

    /// Cancels the deployment if it runs here; false when it does not.
    pub fn cancel(&self, id: DeploymentId) -> bool {
        match self.tokens.lock().ok().and_then(|t| t.get(&id).cloned()) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }
}

/// Runs a blocking store call off the async threads.
pub async fn blocking<T, F>(f: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Error> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("a store call did not complete: {e}")))?
}

/// The deploy service.
#[derive(Clone)]
pub struct Service {
    pub(super) store: Arc<dyn ServiceStore>,
    pub(super) catalog: Arc<dyn Catalog>,
    pub(super) wake: Arc<Notify>,
    running: Arc<Running>,
}

/// A NUL (U+0000) cannot be stored on PostgreSQL: refused on both databases alike, naming
/// `field`.
fn refuse_nul(field: &str, text: &str) -> Result<(), Error> {
    if text.contains('\0') {
        return Err(Error::InvalidRequest(format!(
            "{field} contains a NUL character (U+0000), which deploybot cannot store: remove it"
        )));
    }
    Ok(())
}

/// Parameters name only what the instance lists in `params`, follow the rules of env
/// names, and hold short single-line values.
fn check_params(spec: &InstanceSpec, params: &super::Env) -> Result<(), Error> {
    for (name, value) in params {
        if !spec.control.params.iter().any(|p| p == name) {
            let accepted = if spec.control.params.is_empty() {
                format!(
                    "{} accepts no parameters (its `params` is empty)",
                    spec.name
                )
            } else {
                format!("{} accepts {}", spec.name, spec.control.params.join(", "))
            };
            return Err(Error::InvalidRequest(format!(
                "parameter {name:?} is not accepted: {accepted}"
            )));
        }
        super::env::check_release_name(name)
            .map_err(|e| Error::InvalidRequest(format!("parameter {name:?}: {e}")))?;
        if value.chars().count() > super::MAX_PARAM_CHARS
            || value.chars().any(super::is_hidden_char)
        {
            return Err(Error::InvalidRequest(format!(
                "parameter {name}: values are at most {} characters on one line, without control or invisible characters",
                super::MAX_PARAM_CHARS
            )));
        }
    }
    Ok(())
}

/// The name a person's deployment records as its initiator: a token's name, a login.
pub fn actor_name(actor: &Actor) -> &str {
    actor
        .id
        .strip_prefix("token:")
        .or_else(|| actor.id.strip_prefix('@'))
        .unwrap_or(&actor.id)
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Service {
    pub fn new(store: Arc<dyn ServiceStore>, catalog: Arc<dyn Catalog>) -> Self {
        Self {
            store,
            catalog,
            wake: Arc::new(Notify::new()),
            running: Arc::new(Running::default()),
        }
    }

    pub fn catalog(&self) -> &Arc<dyn Catalog> {
        &self.catalog
    }

    /// Notified whenever a deployment is queued, so a worker in this process claims it at once.
    pub fn wake(&self) -> &Arc<Notify> {
        &self.wake
    }

    pub fn running(&self) -> &Arc<Running> {
        &self.running
    }

    /// The instance and its configured spec; an instance that left the configuration
    /// keeps its history but cannot be deployed.
    pub(super) async fn deployable(
        &self,
        tenant: &str,
        instance: InstanceId,
    ) -> Result<(Instance, Arc<InstanceSpec>), Error> {
        let store = Arc::clone(&self.store);
        let tenant_owned = tenant.to_string();
        let instance = blocking(move || store.get_instance(&tenant_owned, instance)).await?;
        let spec = self.spec(tenant, &instance)?;
        Ok((instance, spec))
    }

    /// The configured spec of a loaded instance (see `deployable`).
    fn spec(&self, tenant: &str, instance: &Instance) -> Result<Arc<InstanceSpec>, Error> {
        self.catalog.spec(tenant, &instance.name).ok_or_else(|| {
            Error::InvalidRequest(format!(
                "instance {} is no longer in the configuration: add it back to deploy it",
                instance.name
            ))
        })
    }

    fn choose_strategy(spec: &InstanceSpec, requested: &str) -> Result<String, Error> {
        let strategy = if requested.trim().is_empty() {
            spec.default_strategy.clone()
        } else {
            requested.trim().to_string()
        };
        if strategies::by_name(&strategy).is_none() {
            return Err(Error::InvalidRequest(format!(
                "unknown strategy {strategy:?}: use one of {}",
                strategies::NAMES.join(", ")
            )));
        }
        if !spec.provider.supports(&strategy) {
            return Err(Error::InvalidRequest(format!(
                "the {} provider of instance {} cannot run the {strategy} strategy",
                spec.provider.kind(),
                spec.name
            )));
        }
        Ok(strategy)
    }

    fn validate(request: &DeployRequest) -> Result<(), Error> {
        for (field, text) in [
            ("image", &request.image),
            ("notes", &request.notes),
            ("strategy", &request.strategy),
            ("commit_sha", &request.commit_sha),
        ] {
            refuse_nul(field, text)?;
        }
        let image = request.image.trim();
        if image.is_empty() {
            return Err(Error::InvalidRequest(
                "image is empty: name the image to deploy".into(),
            ));
        }
        if image.len() > 1024 || image.chars().any(char::is_whitespace) {
            return Err(Error::InvalidRequest(
                "image must be one reference of at most 1024 characters without spaces".into(),
            ));
        }
        let sha = &request.commit_sha;
        if !sha.is_empty() && (!(7..=64).contains(&sha.len()) || !is_hex(sha)) {
            return Err(Error::InvalidRequest(format!(
                "commit_sha {sha:?} is not a commit SHA (7 to 64 hexadecimal characters)"
            )));
        }
        if request.notes.chars().count() > MAX_NOTES_CHARS {
            return Err(Error::InvalidRequest(format!(
                "notes are longer than {MAX_NOTES_CHARS} characters"
            )));
        }
        for key in request.env.keys() {
            super::env::check_release_name(key)
                .map_err(|e| Error::InvalidRequest(format!("env: {e}")))?;
        }
        if request.env.values().any(|v| v.contains('\0')) {
            return Err(Error::InvalidRequest(
                "env values cannot contain NUL bytes".into(),
            ));
        }
        Ok(())
    }

    /// Validates a request and builds its release and pending deployment, writing nothing
    /// (webhooks write them together with the delivery, in one transaction).
    pub async fn prepare(
        &self,
        tenant: &str,
        request: DeployRequest,
        initiator: &str,
        source: Source,
    ) -> Result<TriggeredDeployment, Error> {
        Self::validate(&request)?;
        let (_, spec) = self.deployable(tenant, request.instance_id).await?;
        Self::triggered(tenant, &spec, request, initiator, source)
    }

    /// `prepare` for an instance the caller has just loaded (a webhook resolves it by
    /// name): no second read of it.
    pub fn prepare_for(
        &self,
        tenant: &str,
        instance: &Instance,
        mut request: DeployRequest,
        initiator: &str,
        source: Source,
    ) -> Result<TriggeredDeployment, Error> {
        request.instance_id = instance.id;
        Self::validate(&request)?;
        let spec = self.spec(tenant, instance)?;
        Self::triggered(tenant, &spec, request, initiator, source)
    }

    fn triggered(
        tenant: &str,
        spec: &InstanceSpec,
        mut request: DeployRequest,
        initiator: &str,
        source: Source,
    ) -> Result<TriggeredDeployment, Error> {
        let strategy = Self::choose_strategy(spec, &request.strategy)?;
        check_params(spec, &request.params)?;
        request.image = request.image.trim().to_string();
        if !spec.env.is_empty() {
            let mut env = spec.env.clone();
            env.append(&mut request.env);
            request.env = env;
        }
        if request.noop && !request.notes.starts_with(DRY_RUN_NOTES) {
            request.notes = format!("{DRY_RUN_NOTES}{}", request.notes);
        }
        let release = Release::from_request(tenant, &request);
        let mut deployment = Deployment::pending(&release, &strategy, initiator);
        deployment.source = source;
        deployment.noop = request.noop;
        deployment.params = request.params;
        // A dry run changes nothing, so it cancels nothing a push or a person queued.
        let supersede = spec.supersede && !deployment.noop;
        Ok(TriggeredDeployment {
            release,
            deployment,
            trigger_key: None,
            supersede,
            new_release: true,
            waits_for_locks: false,
            lock_holder: None,
            audit: Vec::new(),
        })
    }

    /// Queues a new release of the instance: one transaction creates the release and a
    /// pending deployment. Nothing runs here.
    pub async fn deploy(
        &self,
        tenant: &str,
        request: DeployRequest,
        initiator: &str,
    ) -> Result<Deployment, Error> {
        let source = Source {
            trigger: format!("API ({initiator})"),
            ..Source::default()
        };
        let triggered = self.prepare(tenant, request, initiator, source).await?;
        self.queue(triggered).await?.ok_or_else(|| {
            Error::Internal("a deployment without a trigger key was not created".into())
        })
    }

    /// A person's deploy (the API, the CLI, a page): checked, admitted through locks and
    /// freezes as `actor` (`force` passes what it may), recorded in the audit trail and
    /// queued.
    pub async fn deploy_as(
        &self,
        tenant: &str,
        request: DeployRequest,
        actor: &Actor,
        force: bool,
        source: Source,
    ) -> Result<Deployment, Error> {
        Self::validate(&request)?;
        let (instance, spec) = self.deployable(tenant, request.instance_id).await?;
        let initiator = actor_name(actor);
        let mut triggered = Self::triggered(tenant, &spec, request, initiator, source)?;
        self.admit(tenant, &instance, &mut triggered, actor, force)
            .await?;
        self.queue(triggered).await?.ok_or_else(|| {
            Error::Internal("a deployment without a trigger key was not created".into())
        })
    }

    /// A person's rollback (the API, the CLI, a page): admitted through locks and freezes
    /// as `actor` (a rollback passes another's lock with `force` by one who may force),
    /// with its `reason` in its trigger and the audit trail.
    pub async fn rollback_as(
        &self,
        tenant: &str,
        instance: InstanceId,
        target: RollbackTarget,
        actor: &Actor,
        force: bool,
        reason: &str,
    ) -> Result<Deployment, Error> {
        let reason = reason.trim();
        if reason.chars().count() > super::MAX_REASON_CHARS
            || reason.chars().any(super::is_hidden_char)
        {
            return Err(Error::InvalidRequest(format!(
                "the rollback's reason is longer than {} characters or holds control or invisible characters: write it as one line of plain text",
                super::MAX_REASON_CHARS
            )));
        }
        let initiator = actor_name(actor);
        let mut trigger = format!("rollback by {initiator}");
        if !reason.is_empty() {
            trigger.push_str(&format!(": {reason}"));
        }
        let source = Source {
            trigger,
            ..Source::default()
        };
        let mut triggered = self
            .prepare_rollback(tenant, instance, target, initiator, source, None)
            .await?;
        let loaded = self.resolve_instance(tenant, &instance.to_string()).await?;
        self.admit(tenant, &loaded, &mut triggered, actor, force)
            .await?;
        self.queue(triggered)
            .await?
            .ok_or_else(|| Error::Conflict("this rollback was already requested".into()))
    }

    /// Writes a prepared deployment (unless its trigger key already deployed: then `None`)
    /// and wakes the worker.
    pub async fn queue(&self, triggered: TriggeredDeployment) -> Result<Option<Deployment>, Error> {
        let store = Arc::clone(&self.store);
        let created = blocking(move || store.insert_triggered(&triggered)).await?;
        if let Some(d) = &created {
            tracing::info!(deployment = %d.id, initiator = %d.initiator, "deployment queued");
            self.wake.notify_waiters();
        }
        Ok(created)
    }

    /// Queues a deployment of an existing release of the instance (no new release).
    pub async fn rollback(
        &self,
        tenant: &str,
        instance: InstanceId,
        target: RollbackTarget,
        initiator: &str,
    ) -> Result<Deployment, Error> {
        let source = Source {
            trigger: format!("rollback by {initiator}"),
            ..Source::default()
        };
        self.rollback_from(tenant, instance, target, initiator, source, None)
            .await
    }

    /// A rollback with its origin (a `/rollback` comment) and an idempotency key: a
    /// rollback whose key was already used is a conflict.
    pub async fn rollback_from(
        &self,
        tenant: &str,
        instance: InstanceId,
        target: RollbackTarget,
        initiator: &str,
        source: Source,
        trigger_key: Option<String>,
    ) -> Result<Deployment, Error> {
        let triggered = self
            .prepare_rollback(tenant, instance, target, initiator, source, trigger_key)
            .await?;
        self.queue(triggered)
            .await?
            .ok_or_else(|| Error::Conflict("this rollback was already requested".into()))
    }

    /// The rollback `rollback_from` queues, checked but not stored yet.
    pub async fn prepare_rollback(
        &self,
        tenant: &str,
        instance: InstanceId,
        target: RollbackTarget,
        initiator: &str,
        source: Source,
        trigger_key: Option<String>,
    ) -> Result<TriggeredDeployment, Error> {
        let (instance, spec) = self.deployable(tenant, instance).await?;
        let store = Arc::clone(&self.store);
        let tenant_owned = tenant.to_string();
        let name = instance.name.clone();
        let release = blocking(move || match target {
            RollbackTarget::Release(id) => {
                let release = store.get_release(&tenant_owned, id)?;
                if release.instance_id != instance.id {
                    return Err(Error::not_found("release", id));
                }
                Ok(release)
            }
            RollbackTarget::Version(version) => {
                store.release_by_version(&tenant_owned, instance.id, version)
            }
            RollbackTarget::Previous => store
                .previous_release(&tenant_owned, instance.id)?
                .ok_or_else(|| {
                    Error::InvalidRequest(format!(
                        "instance {} has no previous release to roll back to",
                        instance.name
                    ))
                }),
        })
        .await?;
        let store = Arc::clone(&self.store);
        let (t, id) = (tenant.to_string(), release.id);
        if !blocking(move || store.release_was_live(&t, id)).await? {
            return Err(Error::Conflict(format!(
                "v{} of {name} was never live there (its deploy did not succeed, or it was a dry run): roll back to a release that ran",
                release.version
            )));
        }
        // A release stored under an older rule may hold a name that is refused now.
        for key in release.env.keys() {
            super::env::check_release_name(key).map_err(|e| {
                Error::InvalidRequest(format!(
                    "release v{} cannot be deployed again: {e}; deploy a new release instead",
                    release.version
                ))
            })?;
        }
        let strategy = Self::choose_strategy(&spec, "")?;
        let mut deployment = Deployment::pending(&release, &strategy, initiator);
        deployment.kind = DeployKind::Rollback;
        deployment.source = source;
        tracing::info!(deployment = %deployment.id, instance = %spec.name, version = release.version, %initiator, "rollback requested");
        Ok(TriggeredDeployment {
            release,
            deployment,
            trigger_key,
            supersede: false,
            new_release: false,
            waits_for_locks: false,
            lock_holder: None,
            audit: Vec::new(),
        })
    }

    /// Stops a running deployment this process runs, after its cancellation was recorded.
    pub fn stop_running(&self, id: DeploymentId) {
        self.running.cancel(id);
    }

    /// pending → cancelled at once; running → stopped by its worker, then cancelled.
    /// Recorded in the audit trail with `by` as the actor.
    pub async fn cancel(
        &self,
        tenant: &str,
        id: DeploymentId,
        by: &str,
    ) -> Result<Deployment, Error> {
        self.cancel_recorded(tenant, id, by, by).await
    }

    /// `cancel` by a person or a token: the deployment names `actor` by its name, the
    /// audit trail by its id (`@alice`, `token:ci`).
    pub async fn cancel_as(
        &self,
        tenant: &str,
        id: DeploymentId,
        actor: &Actor,
    ) -> Result<Deployment, Error> {
        self.cancel_recorded(tenant, id, actor_name(actor), &actor.id)
            .await
    }

    async fn cancel_recorded(
        &self,
        tenant: &str,
        id: DeploymentId,
        by: &str,
        audit_actor: &str,
    ) -> Result<Deployment, Error> {
        let store = Arc::clone(&self.store);
        let (t, by, actor) = (tenant.to_string(), by.to_string(), audit_actor.to_string());
        let deployment = blocking(move || {
            let audit = |d: &Deployment| {
                let what = if d.state == DeployState::Running {
                    "cancellation requested"
                } else {
                    "cancelled"
                };
                AuditEvent::new(&t, &actor, "cancel", format!("deployment {} {what}", d.id))
            };
            store.request_cancel_audited(&t, id, &by, &audit)
        })
        .await?;
        if deployment.state == DeployState::Running {
            self.running.cancel(id);
        }
        Ok(deployment)
    }

    pub async fn get_deployment(
        &self,
        tenant: &str,
        id: DeploymentId,
    ) -> Result<Deployment, Error> {
        let (store, tenant) = (Arc::clone(&self.store), tenant.to_string());
        blocking(move || store.get_deployment(&tenant, id)).await
    }

    pub async fn list_deployments(
        &self,
        tenant: &str,
        instance: InstanceId,
        options: ListOptions,
    ) -> Result<DeployListResult, Error> {
        let (store, tenant) = (Arc::clone(&self.store), tenant.to_string());
        blocking(move || store.list_deployments(&tenant, instance, &options)).await
    }

    pub async fn get_release(&self, tenant: &str, id: ReleaseId) -> Result<Release, Error> {
        let (store, tenant) = (Arc::clone(&self.store), tenant.to_string());
        blocking(move || store.get_release(&tenant, id)).await
    }

    pub async fn list_releases(
        &self,
        tenant: &str,
        instance: InstanceId,
        options: ListOptions,
    ) -> Result<ReleaseListResult, Error> {
        let (store, tenant) = (Arc::clone(&self.store), tenant.to_string());
        blocking(move || store.list_releases(&tenant, instance, &options)).await
    }

    pub async fn list_instances(&self, tenant: &str) -> Result<Vec<Instance>, Error> {
        let (store, tenant) = (Arc::clone(&self.store), tenant.to_string());
        blocking(move || store.list_instances(&tenant)).await
    }

    /// An instance by id (`inst_…`) or by name.
    pub async fn resolve_instance(
        &self,
        tenant: &str,
        id_or_name: &str,
    ) -> Result<Instance, Error> {
        let (store, tenant) = (Arc::clone(&self.store), tenant.to_string());
        refuse_nul("instance", id_or_name)?;
        let key = id_or_name.to_string();
        blocking(move || match InstanceId::parse(&key) {
            Ok(id) => store.get_instance(&tenant, id),
            Err(_) => store.find_instance(&tenant, &key),
        })
        .await
    }

    pub async fn read_logs(
        &self,
        tenant: &str,
        id: DeploymentId,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<LogEntry>, Error> {
        let (store, tenant) = (Arc::clone(&self.store), tenant.to_string());
        blocking(move || store.read_logs(&tenant, id, after_seq, limit)).await
    }
}
