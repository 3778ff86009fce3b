//! What the reports, jobs and comment commands run with: the store, the service, the
//! configuration, the GitHub client (absent without credentials) and the deployment links.

use std::sync::Arc;

use super::client::GithubClient;
use super::outbox::OutboxItem;
use super::store::GithubStore;
use crate::config::{Config, InstanceConfig, LiveConfig};
use crate::deploy::service::blocking;
use crate::deploy::{Deployment, DeploymentId, Error, Instance, Release, Service};

/// Builds the `log_url` of a deployment: its page, with a read token when pages are private.
pub type LogUrl = Arc<dyn Fn(&Deployment) -> String + Send + Sync>;

/// Everything handling an outbox item may read, write or call.
pub struct Context {
    pub store: Arc<dyn GithubStore>,
    pub service: Service,
    /// The configuration in force; a reload replaces it (`config()` takes it).
    pub config: LiveConfig,
    pub client: Option<Arc<GithubClient>>,
    pub log_url: LogUrl,
}

impl Context {
    /// The client, or the log line of a report that cannot be sent.
    pub fn client_or_log(&self, item: &OutboxItem) -> Option<&GithubClient> {
        if self.client.is_none() {
            tracing::info!(kind = %item.kind, payload = %item.payload, "no GitHub credentials: would report");
        }
        self.client.as_deref()
    }

    /// A deployment with its release and instance, as they are now.
    pub(crate) async fn load(
        &self,
        tenant: &str,
        id: DeploymentId,
    ) -> Result<(Deployment, Release, Instance), Error> {
        let store = Arc::clone(&self.store);
        let tenant = tenant.to_string();
        blocking(move || store.get_deployment_context(&tenant, id)).await
    }

    /// The configuration in force now.
    pub fn config(&self) -> Arc<Config> {
        self.config.get()
    }

    /// The configuration of an instance, when it is still configured.
    pub(crate) fn instance_config(&self, tenant: &str, name: &str) -> Option<InstanceConfig> {
        self.config.get().instance(tenant, name).cloned()
    }
}
