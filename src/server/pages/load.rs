//! What the pages show, loaded from the store within the tenants a viewer may see, and
//! the lookup of one deployment for a viewer (or the holder of its log token).

use std::sync::Arc;

use chrono::Utc;

use super::{LogTokenError, Viewer, configured_tenants, verify_log_token};
use crate::deploy::service::blocking;
use crate::deploy::{Deployment, DeploymentId, Error, Instance, ListOptions, LogEntry, Release};
use crate::server::{AppState, ServerStore};

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
    let config = &state.config;
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
