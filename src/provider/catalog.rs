//! The configured instances as the domain sees them: each with its provider, health
//! check, metric gates and canary steps, built once from the configuration.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use super::child_env::{self, SecretMask};
use super::command::CommandProvider;
use super::health::{CommandHealth, HttpHealth, Probe};
use super::noop::NoopProvider;
use super::prometheus::PrometheusGate;
use crate::config::{Config, FreezeWindow, InstanceConfig, ProviderKind};
use crate::deploy::provider::{HealthCheck, MetricGate, Provider, ProviderError};
use crate::deploy::service::ControlSpec;
use crate::deploy::{CanarySteps, Catalog, InstanceSpec};

/// Instance specs by (tenant, name).
#[derive(Default)]
pub struct ConfigCatalog {
    specs: HashMap<(String, String), Arc<InstanceSpec>>,
}

impl ConfigCatalog {
    pub fn from_config(config: &Config) -> Result<Self, ProviderError> {
        let mut specs = HashMap::new();
        for instance in &config.instances {
            specs.insert(
                (instance.tenant(), instance.name.clone()),
                Arc::new(spec_of(instance, &config.freezes)?),
            );
        }
        Ok(Self { specs })
    }

    /// Adds or replaces one spec (tests and tools build catalogs by hand).
    pub fn insert(&mut self, tenant: &str, spec: InstanceSpec) {
        self.specs
            .insert((tenant.to_string(), spec.name.clone()), Arc::new(spec));
    }
}

impl Catalog for ConfigCatalog {
    fn spec(&self, tenant: &str, name: &str) -> Option<Arc<InstanceSpec>> {
        self.specs
            .get(&(tenant.to_string(), name.to_string()))
            .cloned()
    }
}

/// The catalog of the configuration in force; a reload replaces it whole. A spec already
/// handed out stays as it was, so a running deployment finishes under the configuration it
/// started with.
#[derive(Default)]
pub struct LiveCatalog(RwLock<Arc<ConfigCatalog>>);

impl LiveCatalog {
    pub fn new(catalog: ConfigCatalog) -> Self {
        LiveCatalog(RwLock::new(Arc::new(catalog)))
    }

    /// Puts `catalog` in force for every spec asked for from now on.
    pub fn replace(&self, catalog: ConfigCatalog) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(catalog);
    }
}

impl Catalog for LiveCatalog {
    fn spec(&self, tenant: &str, name: &str) -> Option<Arc<InstanceSpec>> {
        let catalog = Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner));
        catalog.spec(tenant, name)
    }
}

/// The spec of one configured instance; `freezes` are the top-level `[[freeze]]` windows.
pub fn spec_of(
    instance: &InstanceConfig,
    freezes: &[FreezeWindow],
) -> Result<InstanceSpec, ProviderError> {
    let provider: Arc<dyn Provider> = match instance.provider.kind {
        ProviderKind::Noop => Arc::new(NoopProvider),
        ProviderKind::Command => Arc::new(CommandProvider {
            argv: instance.provider.run.clone(),
            noop_run: instance.provider.noop_run.clone(),
            timeout: instance.provider.timeout,
            kill_grace: instance.provider.kill_grace,
            pass_env: child_env::passed(&instance.pass_env),
        }),
    };
    let health: Option<Arc<dyn HealthCheck>> = match &instance.health {
        None => None,
        Some(h) => {
            let probe = Probe {
                timeout: h.timeout,
                interval: h.interval,
                deadline: h.deadline,
            };
            match (&h.url, &h.command) {
                (Some(url), _) => Some(Arc::new(HttpHealth::new(url, probe)?)),
                (None, Some(argv)) => Some(Arc::new(CommandHealth::new(
                    argv.clone(),
                    probe,
                    child_env::passed(&instance.pass_env),
                ))),
                (None, None) => None,
            }
        }
    };
    Ok(InstanceSpec {
        name: instance.name.clone(),
        environment: instance.environment.clone(),
        default_strategy: instance.strategy.as_str().to_string(),
        supersede: instance.supersede,
        provider,
        health,
        gates: metric_gates(instance)?,
        watch: instance.watch,
        canary: CanarySteps {
            steps: instance.canary.steps.clone(),
            pause: instance.canary.pause,
        },
        wait_for_github: !instance.required_contexts.is_empty(),
        env: instance.env.clone(),
        control: ControlSpec {
            params: instance.params.clone(),
            freezes: instance.freezes.iter().chain(freezes).cloned().collect(),
            lock_on_rollback: instance.lock_on_rollback,
            gates: instance.gates.clone(),
        },
    })
}

/// The instance's `[[instances.gates]]`, each asking its Prometheus server.
fn metric_gates(instance: &InstanceConfig) -> Result<Vec<Arc<dyn MetricGate>>, ProviderError> {
    instance
        .metric_gates
        .iter()
        .map(|gate| Ok(Arc::new(PrometheusGate::new(gate)?) as Arc<dyn MetricGate>))
        .collect()
}

/// What stored logs mask: every secret value of the configuration
/// ([`Config::secret_values`]) and the server's values of each instance's `secret_env`.
pub fn secret_mask(config: &Config) -> SecretMask {
    let mut values = config.secret_values();
    for instance in &config.instances {
        values.extend(
            child_env::passed(&instance.secret_env)
                .into_iter()
                .map(|(_, value)| value),
        );
    }
    SecretMask::new(values)
}
