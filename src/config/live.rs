//! The configuration a running server acts on. `serve` reads it once at start; a reload
//! (`SIGHUP`, or `POST /v1/admin/reload`) replaces it whole. Whoever needs it takes the
//! configuration in force with `get` and keeps that one for the work in hand, so a
//! request, a command or a deployment never sees half of one file and half of another.

use std::sync::{Arc, PoisonError, RwLock};

use super::Config;

/// A shared handle on the configuration in force; clones share it.
#[derive(Clone)]
pub struct LiveConfig(Arc<RwLock<Arc<Config>>>);

impl LiveConfig {
    pub fn new(config: Arc<Config>) -> Self {
        LiveConfig(Arc::new(RwLock::new(config)))
    }

    /// The configuration in force now.
    pub fn get(&self) -> Arc<Config> {
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Puts `config` in force for everything that asks from now on.
    pub fn replace(&self, config: Arc<Config>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = config;
    }
}

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// The file read (`None`: defaults and the environment only).
    pub source: Option<String>,
    /// Instances configured now, as (tenant, name).
    pub instances: Vec<(String, String)>,
    /// Instances the file added, as (tenant, name).
    pub added: Vec<(String, String)>,
    /// Instances the file removed, as (tenant, name); their history stays readable.
    pub removed: Vec<(String, String)>,
    /// Queued deployments of removed instances, cancelled, as (tenant, deployment id).
    pub cancelled: Vec<(String, String)>,
    /// Settings that changed but are read only at start: they take effect after a restart.
    pub restart_needed: Vec<String>,
}

/// When the configuration in force was loaded, and the last reload refused since then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadStatus {
    pub loaded_at: chrono::DateTime<chrono::Utc>,
    /// When the last reload was refused, and why; cleared by a reload that succeeds.
    pub refused: Option<(chrono::DateTime<chrono::Utc>, String)>,
}

impl From<Config> for LiveConfig {
    fn from(config: Config) -> Self {
        LiveConfig::new(Arc::new(config))
    }
}

impl From<Arc<Config>> for LiveConfig {
    fn from(config: Arc<Config>) -> Self {
        LiveConfig::new(config)
    }
}

impl std::fmt::Debug for LiveConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LiveConfig").field(&self.get()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replacement_reaches_every_clone_and_spares_what_was_taken() {
        let live = LiveConfig::from(Config::default());
        let other = live.clone();
        let taken = live.get();
        live.replace(Arc::new(Config {
            command_prefix: '.',
            ..Config::default()
        }));
        assert_eq!(other.get().command_prefix, '.');
        assert_eq!(taken.command_prefix, '/');
    }
}
