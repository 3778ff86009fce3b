//! What the pages show, loaded from the store within the tenants a viewer may see, and
//! the lookup of one deployment for a viewer (or the holder of its log token).

use std::sync::Arc;

use chrono::Utc;

use super::{LogTokenError, Viewer, configured_tenants, verify_log_token};
use crate::config::Config;
use crate::deploy::service::blocking;
use crate::deploy::{
    ActiveFreeze, AuditEvent, Deployment, DeploymentId, Error, Instance, InstanceId, ListOptions,
    Lock, LockTarget, LogEntry, Release,
};
use crate::server::{AppState, ServerStore};

/// Audit events shown on an instance's page.
const AUDIT_EVENTS: u32 = 20;

/// Deployments listed per instance on `/`.
const LATEST: u32 = 10;
/// Log lines rendered with the page; the script fetches the rest.
const PAGE_LOG_LINES: u32 = 10_000;

/// `/`, loaded.
pub(super) struct IndexView {
    pub(super) tenants: Vec<TenantView>,
    pub(super) github: String,
}

pub(super) struct TenantView {
    pub(super) tenant: String,
    pub(super) instances: Vec<InstanceView>,
}

/// One instance on `/`.
pub(super) struct InstanceView {
    pub(super) instance: Instance,
    pub(super) active: Option<Release>,
    /// The deployment that made the active release live (its time and initiator).
    pub(super) live_since: Option<Deployment>,
    pub(super) deployments: Vec<DeploymentRow>,
    pub(super) total: i64,
    /// Its lock, freezes and whether it is a production instance.
    pub(super) control: Control,
}

/// What holds or guards an instance: the lock covering it, the freeze in force and the
/// next one, and whether actions on it need a typed confirmation.
#[derive(Debug, Clone, Default)]
pub(super) struct Control {
    pub(super) lock: Option<Lock>,
    pub(super) freeze: Option<ActiveFreeze>,
    pub(super) next_freeze: Option<ActiveFreeze>,
    /// `production_environment = true`, or the environment is named `production`: every
    /// action on it must be confirmed by typing the environment's name.
    pub(super) production: bool,
}

/// Whether actions on the instance `name` of `tenant` need a typed confirmation.
pub(super) fn is_production(config: &Config, tenant: &str, instance: &Instance) -> bool {
    let configured = config
        .instance(tenant, &instance.name)
        .and_then(|i| i.production_environment)
        .unwrap_or(false);
    configured || instance.environment.eq_ignore_ascii_case("production")
}

/// The environment name an action on `instance` must be confirmed with, if any: its own
/// when it is a production instance; for an action on every environment of its repository
/// (`global`), that of the first production instance among `repo_instances`.
pub(super) fn confirmation(
    config: &Config,
    tenant: &str,
    instance: &Instance,
    repo_instances: &[Instance],
    global: bool,
) -> Option<String> {
    if is_production(config, tenant, instance) {
        return Some(instance.environment.clone());
    }
    if !global {
        return None;
    }
    repo_instances
        .iter()
        .filter(|i| i.repo.eq_ignore_ascii_case(&instance.repo))
        .find(|i| is_production(config, tenant, i))
        .map(|i| i.environment.clone())
}

/// The live lock among `locks` that covers `instance`: its own, else its repository's.
pub(super) fn covering<'a>(
    locks: &'a [Lock],
    instance: &Instance,
    now: chrono::DateTime<Utc>,
) -> Option<&'a Lock> {
    let own = LockTarget::Instance {
        instance_id: instance.id,
    };
    let repo = LockTarget::Repo {
        repo: instance.repo.to_ascii_lowercase(),
    };
    let live = || locks.iter().filter(move |l| l.live_at(now));
    live()
        .find(|l| l.target == own)
        .or_else(|| live().find(|l| l.target == repo))
}

/// The control of `instance` given its tenant's live `locks`.
pub(super) fn control_of(
    state: &AppState,
    tenant: &str,
    instance: &Instance,
    locks: &[Lock],
    now: chrono::DateTime<Utc>,
) -> Control {
    Control {
        lock: covering(locks, instance, now).cloned(),
        freeze: state.service.freeze_now(tenant, &instance.name, now),
        next_freeze: state.service.next_freeze(tenant, &instance.name, now),
        production: is_production(&state.config(), tenant, instance),
    }
}

/// Adds each instance's control (locks, freezes) to a loaded `/`.
pub(super) async fn add_control(state: &AppState, view: &mut IndexView) -> Result<(), Error> {
    let now = Utc::now();
    for tenant in &mut view.tenants {
        if tenant.instances.is_empty() {
            continue;
        }
        let locks = state.service.locks(&tenant.tenant).await?;
        for instance in &mut tenant.instances {
            instance.control = control_of(state, &tenant.tenant, &instance.instance, &locks, now);
        }
    }
    Ok(())
}

/// An instance's own page, loaded.
pub(super) struct InstancePage {
    pub(super) tenant: String,
    pub(super) view: InstanceView,
    /// The release a rollback from the page returns to.
    pub(super) previous: Option<Release>,
    /// The latest events of the instance's audit trail, newest first.
    pub(super) audit: Vec<AuditEvent>,
    /// The names of every instance of the same repository in the tenant (a global lock
    /// covers them).
    pub(super) siblings: Vec<String>,
    /// The environment name an action on every environment of the repository must be
    /// confirmed with, if any.
    pub(super) global_confirm: Option<String>,
    pub(super) github: String,
}

/// The instance `id` among `tenants`, with its tenant.
pub(super) fn find_instance(
    store: &dyn ServerStore,
    tenants: &[String],
    id: InstanceId,
) -> Result<Option<(String, Instance)>, Error> {
    for tenant in tenants {
        match store.get_instance(tenant, id) {
            Ok(instance) => return Ok(Some((tenant.clone(), instance))),
            Err(Error::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// `/instances/{id}` for an instance of `tenant`.
pub(super) async fn load_instance_page(
    state: &AppState,
    tenant: String,
    instance: Instance,
) -> Result<InstancePage, Error> {
    let store = Arc::clone(&state.store);
    let (tenant_owned, id) = (tenant.clone(), instance.id);
    let repo = instance.repo.clone();
    let (view, previous, siblings) = blocking(move || {
        let view = load_instance(store.as_ref(), &tenant_owned, instance)?;
        let previous = store.previous_release(&tenant_owned, id)?;
        let siblings: Vec<Instance> = store
            .list_instances(&tenant_owned)?
            .into_iter()
            .filter(|i| i.repo.eq_ignore_ascii_case(&repo))
            .collect();
        Ok((view, previous, siblings))
    })
    .await?;
    let mut view = view;
    let global_confirm = confirmation(&state.config(), &tenant, &view.instance, &siblings, true);
    let siblings = siblings.into_iter().map(|i| i.name).collect();
    let locks = state.service.locks(&tenant).await?;
    view.control = control_of(state, &tenant, &view.instance, &locks, Utc::now());
    let audit = state
        .service
        .list_audit(
            &tenant,
            Some(id),
            ListOptions {
                cursor: None,
                limit: Some(AUDIT_EVENTS),
            },
        )
        .await?
        .items;
    Ok(InstancePage {
        tenant,
        view,
        previous,
        audit,
        siblings,
        global_confirm,
        github: super::github_web(&state.config()),
    })
}

/// One lock on `/locks`: the instance it is on (or, for a repository's lock, one of the
/// repository's instances, through which it is released).
pub(super) struct LockRow {
    pub(super) lock: Lock,
    pub(super) instance: Option<Instance>,
    /// Whether the viewer may release it here.
    pub(super) releasable: bool,
    /// The environment name releasing it must be confirmed with, if any.
    pub(super) confirm: Option<String>,
}

/// `/locks`, loaded: each visible tenant's live locks.
pub(super) struct LocksView {
    pub(super) tenants: Vec<(String, Vec<LockRow>)>,
}

pub(super) struct DeploymentRow {
    pub(super) deployment: Deployment,
    pub(super) version: Option<i64>,
}

/// `/deployments/{id}`, loaded.
pub(super) struct DeploymentView {
    pub(super) deployment: Deployment,
    pub(super) release: Option<Release>,
    pub(super) instance: Option<Instance>,
    pub(super) log: Vec<LogEntry>,
    pub(super) log_truncated: bool,
    pub(super) github: String,
    /// Whether cancelling it needs a typed confirmation (see [`Control::production`]).
    pub(super) production: bool,
}

/// `/` for the viewer's `tenants`: each instance with its active release and latest
/// deployments.
pub(super) fn load_index(
    store: &dyn ServerStore,
    tenants: &[String],
    github: String,
) -> Result<IndexView, Error> {
    let mut views = Vec::new();
    for tenant in tenants {
        let instances = store
            .list_instances(tenant)?
            .into_iter()
            .map(|instance| load_instance(store, tenant, instance))
            .collect::<Result<_, Error>>()?;
        views.push(TenantView {
            tenant: tenant.clone(),
            instances,
        });
    }
    Ok(IndexView {
        tenants: views,
        github,
    })
}

/// One instance on `/`: its active release, since when it is live, and its latest
/// deployments with their release versions.
fn load_instance(
    store: &dyn ServerStore,
    tenant: &str,
    instance: Instance,
) -> Result<InstanceView, Error> {
    let active = store.active_release(tenant, instance.id)?;
    let live_since = match &active {
        Some(release) => store
            .last_succeeded(tenant, instance.id)?
            .filter(|d| d.release_id == release.id),
        None => None,
    };
    let page = store.list_deployments(
        tenant,
        instance.id,
        &ListOptions {
            cursor: None,
            limit: Some(LATEST),
        },
    )?;
    // Most deployments are of recent releases: one query finds their versions.
    let recent = store.list_releases(
        tenant,
        instance.id,
        &ListOptions {
            cursor: None,
            limit: Some(ListOptions::MAX_LIMIT),
        },
    )?;
    let mut deployments = Vec::new();
    for deployment in page.items {
        let version = match recent.items.iter().find(|r| r.id == deployment.release_id) {
            Some(release) => Some(release.version),
            None => match store.get_release(tenant, deployment.release_id) {
                Ok(release) => Some(release.version),
                Err(Error::NotFound { .. }) => None,
                Err(e) => return Err(e),
            },
        };
        deployments.push(DeploymentRow {
            deployment,
            version,
        });
    }
    Ok(InstanceView {
        instance,
        active,
        live_since,
        deployments,
        total: page.total,
        control: Control::default(),
    })
}

/// The deployment and its tenant, trying each of `tenants` (see the module documentation).
fn find_deployment(
    store: &dyn ServerStore,
    tenants: &[String],
    id: DeploymentId,
) -> Result<Option<(String, Deployment)>, Error> {
    for tenant in tenants {
        match store.get_deployment(tenant, id) {
            Ok(deployment) => return Ok(Some((tenant.clone(), deployment))),
            Err(Error::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// `Ok(None)` for a row that is not found.
pub(super) fn optional<T>(result: Result<T, Error>) -> Result<Option<T>, Error> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `/deployments/{id}` for a deployment of `tenant`, with the first lines of its log.
pub(super) fn load_deployment(
    store: &dyn ServerStore,
    tenant: &str,
    deployment: Deployment,
    github: String,
) -> Result<DeploymentView, Error> {
    let release = optional(store.get_release(tenant, deployment.release_id))?;
    let instance = optional(store.get_instance(tenant, deployment.instance_id))?;
    let log = store.read_logs(tenant, deployment.id, 0, PAGE_LOG_LINES)?;
    let log_truncated = log.len() >= PAGE_LOG_LINES as usize;
    Ok(DeploymentView {
        deployment,
        release,
        instance,
        log,
        log_truncated,
        github,
        production: false,
    })
}

/// What a request for one deployment may see.
pub(super) enum Lookup {
    /// Visible; `via_token` when only the log token allowed it.
    Found {
        tenant: String,
        deployment: Box<Deployment>,
        via_token: bool,
    },
    /// No such deployment for this viewer.
    NotFound,
    /// The viewer must sign in first (the reason is shown on the sign-in page).
    Denied(&'static str),
}

/// The deployment `id` as `viewer` may see it, or as its log `token` opens it.
pub(super) async fn lookup(
    state: &AppState,
    viewer: &Viewer,
    id: DeploymentId,
    token: Option<&str>,
) -> Result<Lookup, Error> {
    let config = &state.config();
    let store = Arc::clone(&state.store);
    let tenants = viewer.tenants(config);
    let found = blocking(move || {
        let Some((tenant, deployment)) = find_deployment(store.as_ref(), &tenants, id)? else {
            return Ok(None);
        };
        let instance = optional(store.get_instance(&tenant, deployment.instance_id))?;
        Ok(Some((tenant, deployment, instance)))
    })
    .await?;
    // A deployment of an instance outside a signed-in token's globs is not found for it
    // (a log token may still open it).
    let found = found.filter(|(_, _, instance)| match (viewer, instance) {
        (Viewer::Public(_), _) => true,
        (_, Some(instance)) => viewer.covers(&instance.name),
        (_, None) => false,
    });
    if let Some((tenant, deployment, _)) = found {
        return Ok(Lookup::Found {
            tenant,
            deployment: Box::new(deployment),
            via_token: false,
        });
    }
    let Some(token) = token else {
        return Ok(match viewer {
            Viewer::Anonymous => Lookup::Denied("signin_required"),
            _ => Lookup::NotFound,
        });
    };
    match verify_log_token(&state.keys, id, token, Utc::now()) {
        Ok(()) => {}
        Err(LogTokenError::Expired) => return Ok(Lookup::Denied("link_expired")),
        Err(LogTokenError::Invalid | LogTokenError::Malformed) => {
            return Ok(Lookup::Denied("link_invalid"));
        }
    }
    let store = Arc::clone(&state.store);
    let tenants = configured_tenants(config);
    Ok(
        match blocking(move || find_deployment(store.as_ref(), &tenants, id)).await? {
            Some((tenant, deployment)) => Lookup::Found {
                tenant,
                deployment: Box::new(deployment),
                via_token: true,
            },
            None => Lookup::NotFound,
        },
    )
}

/// `/locks` for `viewer`: the live locks of each tenant it sees, on instances it covers.
pub(super) async fn load_locks(state: &AppState, viewer: &Viewer) -> Result<LocksView, Error> {
    let now = Utc::now();
    let mut tenants = Vec::new();
    for tenant in viewer.tenants(&state.config()) {
        let locks = state.service.locks(&tenant).await?;
        let instances = if locks.is_empty() {
            Vec::new()
        } else {
            state.service.list_instances(&tenant).await?
        };
        let acts_on = |i: &Instance| viewer.actor(&tenant, &i.name).is_some();
        let mut rows = Vec::new();
        for lock in locks.into_iter().filter(|l| l.live_at(now)) {
            let (instance, visible, releasable) = match &lock.target {
                LockTarget::Instance { instance_id } => {
                    let instance = instances.iter().find(|i| i.id == *instance_id);
                    let visible = instance.is_some_and(|i| viewer.covers(&i.name));
                    (instance.cloned(), visible, instance.is_some_and(acts_on))
                }
                LockTarget::Repo { repo } => {
                    let of_repo: Vec<&Instance> = instances
                        .iter()
                        .filter(|i| i.repo.eq_ignore_ascii_case(repo))
                        .collect();
                    let visible = of_repo.iter().any(|i| viewer.covers(&i.name));
                    let releasable = !of_repo.is_empty() && of_repo.iter().all(|i| acts_on(i));
                    (of_repo.first().map(|i| (*i).clone()), visible, releasable)
                }
            };
            if visible {
                let global = matches!(lock.target, LockTarget::Repo { .. });
                let confirm = instance
                    .as_ref()
                    .and_then(|i| confirmation(&state.config(), &tenant, i, &instances, global));
                rows.push(LockRow {
                    lock,
                    instance,
                    releasable,
                    confirm,
                });
            }
        }
        tenants.push((tenant, rows));
    }
    Ok(LocksView { tenants })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::now;

    fn lock(target: LockTarget, reason: &str, expires_in: Option<i64>) -> Lock {
        Lock {
            tenant_id: "acme".into(),
            target,
            repo: "acme/web".into(),
            holder: "@alice".into(),
            reason: reason.into(),
            pull_request: None,
            created_at: now(),
            expires_at: expires_in.map(|s| now() + chrono::Duration::seconds(s)),
        }
    }

    #[test]
    fn the_instance_lock_covers_before_the_repository_lock_and_expired_ones_do_not() {
        let instance = Instance {
            id: InstanceId::new(),
            created_at: now(),
            updated_at: now(),
            tenant_id: "acme".into(),
            name: "web-staging".into(),
            repo: "Acme/Web".into(),
            environment: "staging".into(),
        };
        let own = LockTarget::Instance {
            instance_id: instance.id,
        };
        let repo = LockTarget::Repo {
            repo: "acme/web".into(),
        };
        let other = LockTarget::Instance {
            instance_id: InstanceId::new(),
        };
        let at = Utc::now();
        let locks = vec![
            lock(repo.clone(), "repository", None),
            lock(own.clone(), "own", Some(600)),
        ];
        assert_eq!(covering(&locks, &instance, at).unwrap().reason, "own");
        let locks = vec![
            lock(own, "expired", Some(-1)),
            lock(repo, "repository", None),
        ];
        assert_eq!(
            covering(&locks, &instance, at).unwrap().reason,
            "repository"
        );
        assert!(covering(&[lock(other, "another instance", None)], &instance, at).is_none());
    }
}
