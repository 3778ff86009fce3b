//! Reloading a running server's configuration (`SIGHUP`, `deploybot reload`): the file is
//! read and checked whole, and either put in force for new work or refused, leaving the
//! configuration in force as it was.
//!
//! In force at once: instances (added ones are stored, removed ones keep their history
//! and have their queued deployments cancelled), API tokens, tenants and their webhook
//! secrets, locks' and freezes' settings, gates, pages, the command prefix and the secret
//! values masked in logs. A running deployment keeps the instance spec it started with.
//! Read only at start: the database, the listen address, `[github]`,
//! `[worker]`, `[retention]` and the session key; a reload that changes them says so.

use std::collections::BTreeSet;
use std::sync::{Arc, PoisonError, RwLock};

use crate::config::{Config, ConfigError, LiveConfig, ReloadReport, ReloadStatus};
use crate::deploy::service::blocking;
use crate::deploy::{Error, InstanceStore, QueueStore};
use crate::provider::catalog::{ConfigCatalog, LiveCatalog, secret_mask};
use crate::server::Reload;
use crate::store::DieselStore;
use crate::worker::MaskSlot;

/// Reads the configuration file again, as `serve` read it at start.
pub type LoadConfig = Arc<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

/// Who cancels the queued deployments of a removed instance, in the audit trail.
const RELOAD_ACTOR: &str = "deploybot";

/// The parts of a running server a reload replaces.
pub struct Reloader {
    load: LoadConfig,
    config: LiveConfig,
    catalog: Arc<LiveCatalog>,
    mask: MaskSlot,
    store: Arc<DieselStore>,
    wake: Arc<tokio::sync::Notify>,
    /// `serve --insecure-no-signature`: a file without webhook secrets is accepted.
    insecure_no_signature: bool,
    status: RwLock<ReloadStatus>,
    /// One reload at a time: a second waits for the first.
    one_at_a_time: tokio::sync::Mutex<()>,
}

/// What `Reloader::new` wires together.
pub struct ReloadParts {
    pub load: LoadConfig,
    pub config: LiveConfig,
    pub catalog: Arc<LiveCatalog>,
    pub mask: MaskSlot,
    pub store: Arc<DieselStore>,
    pub wake: Arc<tokio::sync::Notify>,
    pub insecure_no_signature: bool,
}

impl Reloader {
    pub fn new(parts: ReloadParts) -> Self {
        Reloader {
            load: parts.load,
            config: parts.config,
            catalog: parts.catalog,
            mask: parts.mask,
            store: parts.store,
            wake: parts.wake,
            insecure_no_signature: parts.insecure_no_signature,
            status: RwLock::new(ReloadStatus {
                loaded_at: chrono::Utc::now(),
                refused: None,
            }),
            one_at_a_time: tokio::sync::Mutex::new(()),
        }
    }

    /// Reads the file and puts it in force; on any problem nothing changes, and the refusal
    /// is logged, counted and kept for `/readyz`.
    pub async fn reload_now(&self) -> Result<ReloadReport, String> {
        let _one = self.one_at_a_time.lock().await;
        let outcome = self.apply().await;
        let metrics = crate::metrics::global();
        let mut status = self.status.write().unwrap_or_else(PoisonError::into_inner);
        match &outcome {
            Ok(report) => {
                status.loaded_at = chrono::Utc::now();
                status.refused = None;
                metrics.config_reloaded(true, status.loaded_at);
                tracing::info!(
                    instances = report.instances.len(),
                    added = ?report.added,
                    removed = ?report.removed,
                    cancelled = report.cancelled.len(),
                    "configuration reloaded"
                );
                for setting in &report.restart_needed {
                    tracing::warn!(
                        "configuration reload: {setting} changed; it takes effect after a restart"
                    );
                }
            }
            Err(reason) => {
                status.refused = Some((chrono::Utc::now(), reason.clone()));
                metrics.config_reloaded(false, status.loaded_at);
                tracing::error!(error = %reason, "configuration reload refused; the configuration in force stays");
            }
        }
        outcome
    }

    async fn apply(&self) -> Result<ReloadReport, String> {
        let next = self.read().await?;
        let catalog = ConfigCatalog::from_config(&next).map_err(|e| e.to_string())?;
        let previous = self.config.get();
        let next = Arc::new(next);
        self.store_instances(&next)
            .await
            .map_err(|e| e.to_string())?;
        let mut report = ReloadReport {
            source: next.source.as_ref().map(|p| p.display().to_string()),
            instances: instance_keys(&next).into_iter().collect(),
            restart_needed: restart_needed(&previous, &next),
            ..ReloadReport::default()
        };
        let (before, after) = (instance_keys(&previous), instance_keys(&next));
        report.added = after.difference(&before).cloned().collect();
        report.removed = before.difference(&after).cloned().collect();
        *self.mask.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(secret_mask(&next));
        self.catalog.replace(catalog);
        self.config.replace(next);
        for (tenant, name) in &report.removed {
            match self.cancel_queue(tenant, name).await {
                Ok(ids) => report
                    .cancelled
                    .extend(ids.into_iter().map(|id| (tenant.clone(), id))),
                Err(e) => {
                    tracing::warn!(error = %e, instance = %name, tenant = %tenant, "cannot cancel the queued deployments of a removed instance")
                }
            }
        }
        self.wake.notify_waiters();
        Ok(report)
    }

    /// The file, read and checked as `serve` does at start.
    async fn read(&self) -> Result<Config, String> {
        let load = Arc::clone(&self.load);
        let next = tokio::task::spawn_blocking(move || load())
            .await
            .map_err(|e| format!("the configuration could not be read: {e}"))?
            .map_err(|e| e.to_string())?;
        let problems = next.webhook_secret_problems();
        if !problems.is_empty() && !self.insecure_no_signature {
            return Err(format!("webhook secrets: {}", problems.join("; ")));
        }
        Ok(next)
    }

    /// Stores the configured instances (the added ones get their ids).
    async fn store_instances(&self, config: &Arc<Config>) -> Result<(), Error> {
        let (store, config) = (Arc::clone(&self.store), Arc::clone(config));
        blocking(move || {
            for i in &config.instances {
                store.upsert_instance(&i.tenant(), &i.name, &i.repo, &i.environment)?;
            }
            Ok(())
        })
        .await
    }

    /// Cancels the queued deployments of an instance the file no longer has.
    async fn cancel_queue(&self, tenant: &str, name: &str) -> Result<Vec<String>, Error> {
        let (store, tenant, name) = (
            Arc::clone(&self.store),
            tenant.to_string(),
            name.to_string(),
        );
        blocking(move || {
            let instance = store.find_instance(&tenant, &name)?;
            let reason = format!("instance {name} was removed from the configuration");
            let cancelled =
                store.cancel_instance_queue(&tenant, instance.id, RELOAD_ACTOR, &reason)?;
            Ok(cancelled.iter().map(|d| d.id.to_string()).collect())
        })
        .await
    }
}

#[async_trait::async_trait]
impl Reload for Reloader {
    async fn reload(&self) -> Result<ReloadReport, String> {
        self.reload_now().await
    }

    fn status(&self) -> ReloadStatus {
        self.status
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Each configured instance as (tenant, name).
fn instance_keys(config: &Config) -> BTreeSet<(String, String)> {
    config
        .instances
        .iter()
        .map(|i| (i.tenant(), i.name.clone()))
        .collect()
}

/// The settings read only at start that differ between the two configurations.
fn restart_needed(before: &Config, after: &Config) -> Vec<String> {
    let mut changed = Vec::new();
    let mut check = |name: &str, same: bool| {
        if !same {
            changed.push(name.to_string());
        }
    };
    check("database_url", before.database_url == after.database_url);
    check("listen", before.listen == after.listen);
    check("[github]", before.github == after.github);
    check("[worker]", before.worker == after.worker);
    check("[retention]", before.retention == after.retention);
    check(
        "DEPLOYBOT_SESSION_KEY",
        before.session_key == after.session_key,
    );
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_read_at_start_are_named_when_they_change() {
        let before = Config::default();
        let mut after = Config::default();
        assert!(restart_needed(&before, &after).is_empty());
        after.listen = "127.0.0.1:9999".into();
        after.worker.concurrency += 1;
        assert_eq!(restart_needed(&before, &after), ["listen", "[worker]"]);
    }
}
