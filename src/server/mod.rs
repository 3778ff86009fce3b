//! The HTTP server: webhooks, the REST API, pages, health and metrics, over one shared
//! state. `app` builds that state and runs this server beside the worker and the GitHub
//! sender.

pub mod api;
pub mod auth;
pub mod error;
mod health;
pub mod pages;
mod scrape;
pub mod webhook;

use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, LiveConfig, ReloadReport, ReloadStatus};
use crate::deploy::{InstanceStore, LogStore, QueueStore, ReleaseStore, Service};
use crate::github::outbox::OutboxStore;
use crate::github::store::DeliveryStore;
use crate::store::{KeyStore, SchemaStore};

/// What the handlers read and write directly (what queues or cancels a deployment goes
/// through the `Service`): deployments, instances, logs, the queue's counts, deliveries,
/// the outbox, the shared keys and the schema's state.
pub trait ServerStore:
    ReleaseStore
    + InstanceStore
    + LogStore
    + QueueStore
    + DeliveryStore
    + OutboxStore
    + KeyStore
    + SchemaStore
{
}

impl<T> ServerStore for T where
    T: ReleaseStore
        + InstanceStore
        + LogStore
        + QueueStore
        + DeliveryStore
        + OutboxStore
        + KeyStore
        + SchemaStore
        + ?Sized
{
}

/// What every handler can reach.
pub struct AppState {
    /// The configuration in force; a reload replaces it (`config()` takes it).
    pub config: LiveConfig,
    pub store: Arc<dyn ServerStore>,
    pub service: Service,
    /// Cancelled when the worker stops (readiness turns false).
    pub worker_alive: CancellationToken,
    /// The keys that sign page sessions and log links.
    pub keys: pages::PageKeys,
    /// What re-reads the configuration (`POST /v1/admin/reload`); `None` where nothing can.
    pub reload: Option<Arc<dyn Reload>>,
}

/// Re-reads a running server's configuration file and puts it in force, or refuses it
/// whole and keeps the configuration in force.
#[async_trait::async_trait]
pub trait Reload: Send + Sync {
    /// Reads, checks and applies the file; `Err` names why it was refused.
    async fn reload(&self) -> Result<ReloadReport, String>;

    /// When the configuration in force was loaded, and the last refusal since.
    fn status(&self) -> ReloadStatus;
}

impl AppState {
    /// The configuration in force now: a request takes it once and keeps it.
    pub fn config(&self) -> Arc<Config> {
        self.config.get()
    }
}

/// Routes whoever runs the server adds to it (`deploybot sandbox`: its pages and comment
/// route); registered for each worker.
pub type ExtraRoutes = Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>;

/// The HTTP server for `state` on `listener` (bound by the caller); it serves once awaited,
/// until its handle stops it (it does not watch signals itself). `extra` routes are added
/// to every route of the server.
pub fn http_server(
    state: web::Data<AppState>,
    settings: webhook::WebhookSettings,
    listener: std::net::TcpListener,
    extra: Option<ExtraRoutes>,
) -> std::io::Result<Server> {
    let settings = web::Data::new(settings);
    Ok(HttpServer::new(move || {
        let extra = extra.clone();
        App::new()
            .app_data(state.clone())
            .app_data(settings.clone())
            .configure(routes)
            .configure(move |cfg| {
                if let Some(extra) = &extra {
                    extra(cfg);
                }
            })
    })
    .disable_signals()
    .shutdown_timeout(10)
    .listen(listener)?
    .run())
}

/// Every route of the server.
pub fn routes(cfg: &mut web::ServiceConfig) {
    health::routes(cfg);
    webhook::routes(cfg);
    pages::routes(cfg);
    api::routes(cfg);
    scrape::routes(cfg);
}
