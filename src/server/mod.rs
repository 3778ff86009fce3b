//! The server: one process that answers HTTP (webhooks, REST API, pages, health) and runs
//! the worker, sharing one store. Start-up applies migrations and records the configured
//! instances so their ids stay stable across restarts.

pub mod api;
pub mod auth;
pub mod error;
mod health;
pub mod pages;
mod scrape;
pub mod webhook;

use std::sync::Arc;

use actix_web::{App, HttpServer, web};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::deploy::{Error, Service, Store};
use crate::provider::catalog::ConfigCatalog;
use crate::store::DieselStore;
use crate::worker::{Worker, WorkerSettings};

/// What every handler can reach.
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<DieselStore>,
    pub service: Service,
    /// Cancelled when the worker stops (readiness turns false).
    pub worker_alive: CancellationToken,
    /// The keys that sign page sessions and log links.
    pub keys: pages::PageKeys,
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Webhooks could not be verified (`Config::webhook_secret_problems`).
    #[error(
        "webhook secrets: {}; or, for local experiments only, start with --insecure-no-signature",
        .0.join("; ")
    )]
    NoWebhookSecret(Vec<String>),
    #[error(transparent)]
    Store(#[from] Error),
    #[error("cannot set up instance {instance}: {message}")]
    Instance { instance: String, message: String },
    #[error("GitHub credentials: {0}")]
    Github(String),
    #[error("cannot listen on {listen}: {source}")]
    Listen {
        listen: String,
        source: std::io::Error,
    },
    #[error("the HTTP server failed: {0}")]
    Http(std::io::Error),
}

/// Options of `deploybot serve` that are not configuration.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Accept unsigned webhooks (local experiments only; logged loudly).
    pub insecure_no_signature: bool,
}

/// Opens the store, applies migrations and upserts the configured instances.
pub fn prepare_store(config: &Config) -> Result<Arc<DieselStore>, ServeError> {
    let store = DieselStore::connect(&config.database_url)?;
    let applied = store.migrate()?;
    for name in &applied {
        tracing::info!(migration = %name, "migration applied");
    }
    for instance in &config.instances {
        store
            .upsert_instance(
                &instance.tenant(),
                &instance.name,
                &instance.repo,
                &instance.environment,
            )
            .map_err(|e| ServeError::Instance {
                instance: instance.name.clone(),
                message: e.to_string(),
            })?;
    }
    Ok(Arc::new(store))
}

/// Runs the server until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn serve(config: Config, options: ServeOptions) -> Result<(), ServeError> {
    let secret_problems = config.webhook_secret_problems();
    if !secret_problems.is_empty() && !options.insecure_no_signature {
        return Err(ServeError::NoWebhookSecret(secret_problems));
    }
    if options.insecure_no_signature {
        tracing::warn!(
            "!!! --insecure-no-signature: webhook signatures are NOT verified; anyone who can reach this server can deploy. Never use this outside a laptop. !!!"
        );
    }
    let config = Arc::new(config);
    let store = {
        let config = Arc::clone(&config);
        tokio::task::spawn_blocking(move || prepare_store(&config))
            .await
            .map_err(|e| ServeError::Store(Error::Internal(e.to_string())))??
    };
    let catalog = ConfigCatalog::from_config(&config).map_err(|e| ServeError::Instance {
        instance: "(health check)".into(),
        message: e.to_string(),
    })?;
    let service = Service::new(Arc::clone(&store) as Arc<dyn Store>, Arc::new(catalog));

    let shutdown = CancellationToken::new();
    let worker_alive = CancellationToken::new();
    let worker = Arc::new(
        Worker::new(
            &service,
            WorkerSettings {
                concurrency: config.worker.concurrency,
                lease: config.worker.lease,
                grace: config.worker.grace,
                ..WorkerSettings::default()
            },
        )
        .masking(crate::provider::catalog::secret_mask(&config))
        .with_log_cap(crate::worker::LogCap {
            lines: config.worker.log_lines,
            bytes: config.worker.log_bytes,
        }),
    );
    let client = crate::github::client::GithubClient::from_config(&config.github)
        .map_err(ServeError::Github)?
        .map(Arc::new);
    crate::metrics::global().track_rate_limit(
        client
            .clone()
            .map(|c| Box::new(move || c.rate_limit_remaining()) as crate::metrics::RateLimitSource),
    );
    // With App credentials: missed webhook deliveries are asked for again, at start and
    // every `github.redeliver_interval`, until shutdown begins.
    let redeliver_task = client.as_ref().filter(|c| c.is_app()).map(|client| {
        let redeliverer = Arc::new(crate::github::redeliver::Redeliverer::new(
            Arc::clone(client),
            Arc::clone(&store) as Arc<dyn Store>,
            crate::github::redeliver::Settings::new(
                config.github.redeliver_interval,
                config.github.redeliver_lookback,
            ),
        ));
        tokio::spawn(redeliverer.run(shutdown.clone()))
    });
    let keys = {
        let (config, store) = (Arc::clone(&config), Arc::clone(&store));
        tokio::task::spawn_blocking(move || pages::PageKeys::load(&config, &store))
            .await
            .map_err(|e| ServeError::Store(Error::Internal(e.to_string())))??
    };
    let log_config = Arc::clone(&config);
    let log_keys = keys.clone();
    // Private pages: the link carries a read token for that one deployment.
    let log_url: crate::github::outbox::LogUrl = Arc::new(move |d: &crate::deploy::Deployment| {
        if log_config.pages.public {
            format!("{}/deployments/{}", log_config.public_url, d.id)
        } else {
            pages::log_url(&log_config, &log_keys, d.id)
        }
    });
    let sender = Arc::new(crate::github::outbox::Sender::new(
        Arc::clone(&store) as Arc<dyn Store>,
        service.clone(),
        Arc::clone(&config),
        client,
        log_url,
    ));
    // The sender outlives the worker's grace period, so that the reports of the
    // deployments finishing in it are sent, and stops after it.
    let stop_sending = CancellationToken::new();
    let sender_task = tokio::spawn(sender.run(stop_sending.clone()));
    let worker_task = {
        let (shutdown, alive) = (shutdown.clone(), worker_alive.clone());
        tokio::spawn(async move {
            worker.run(shutdown).await;
            alive.cancel();
        })
    };

    let state = web::Data::new(AppState {
        config: Arc::clone(&config),
        store,
        service,
        worker_alive,
        keys,
    });
    let webhook_settings = web::Data::new(webhook::WebhookSettings {
        insecure_no_signature: options.insecure_no_signature,
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(webhook_settings.clone())
            .configure(routes)
    })
    .disable_signals()
    .shutdown_timeout(10)
    .bind(config.listen.as_str())
    .map_err(|source| ServeError::Listen {
        listen: config.listen.clone(),
        source,
    })?
    .run();
    tracing::info!(listen = %config.listen, public_url = %config.public_url, instances = config.instances.len(), "deploybot is serving");
    let handle = server.handle();
    let http = tokio::spawn(server);

    wait_for_signal().await;
    tracing::info!("shutting down: no new work; running deployments get the grace period");
    shutdown.cancel();
    handle.stop(true).await;
    let _ = worker_task.await;
    if let Some(task) = redeliver_task {
        let _ = task.await;
    }
    stop_sending.cancel();
    let _ = sender_task.await;
    match http.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ServeError::Http(e)),
        Err(e) => Err(ServeError::Http(std::io::Error::other(e))),
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Every route of the server.
pub fn routes(cfg: &mut web::ServiceConfig) {
    health::routes(cfg);
    webhook::routes(cfg);
    pages::routes(cfg);
    api::routes(cfg);
    scrape::routes(cfg);
}
