//! Wiring: config → store → service, worker, GitHub sender and server. This is the one
//! place that builds the concrete Diesel store; everything else takes the store traits
//! it needs. `serve` starts the parts in order and stops them in order.

use std::sync::Arc;

use actix_web::dev::ServerHandle;
use actix_web::web;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cli::{EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE};
use crate::config::{Config, LiveConfig};
use crate::deploy::{Error, InstanceStore, Service};
use crate::github::client::GithubClient;
use crate::github::context::{Context, LogUrl};
use crate::github::dispatch::Dispatch;
use crate::github::outbox::Sender;
use crate::github::webhook::redeliver::{self, Redeliverer};
use crate::provider::catalog::{ConfigCatalog, LiveCatalog, secret_mask};
use crate::server::pages::{self, PageKeys};
use crate::server::{self, AppState, webhook};
use crate::store::DieselStore;
use crate::worker::{LogCap, Worker, WorkerSettings};

pub mod reload;

use reload::{LoadConfig, ReloadParts, Reloader};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Webhooks could not be verified (`Config::webhook_secret_problems`).
    #[error(
        "webhook secrets: {}; or, for local experiments only, start with --insecure-no-signature",
        .0.join("; ")
    )]
    NoWebhookSecret(Vec<String>),
    /// `deploybot sandbox` has no webhook secret to sign its stand-in's webhooks with.
    #[error(
        "webhook secrets: {}; the sandbox signs its webhooks with it, and `deploybot simulate` \
         too: e.g. export DEPLOYBOT_WEBHOOK_SECRET=dev-secret",
        .0.join("; ")
    )]
    SandboxWithoutSecret(Vec<String>),
    #[error(transparent)]
    Store(#[from] Error),
    #[error("cannot set up instance {instance}: {message}")]
    Instance { instance: String, message: String },
    #[error("GitHub credentials: {0}")]
    Github(String),
    #[error(
        "cannot listen on {listen}: {}; set DEPLOYBOT_LISTEN or `listen`",
        listen_reason(.source)
    )]
    Listen {
        listen: String,
        source: std::io::Error,
    },
    #[error("the HTTP server failed: {0}")]
    Http(std::io::Error),
}

impl ServeError {
    /// The exit code of `serve` stopping with this error (see `cli::EXIT_CODES_HELP`).
    pub fn exit_code(&self) -> u8 {
        match self {
            ServeError::NoWebhookSecret(_)
            | ServeError::SandboxWithoutSecret(_)
            | ServeError::Github(_)
            | ServeError::Listen { .. } => EXIT_USAGE,
            ServeError::Store(e) => store_exit_code(e),
            ServeError::Instance { .. } | ServeError::Http(_) => EXIT_FAILED,
        }
    }
}

/// The exit code of a command that stopped with a store error: 3 when the database cannot
/// be reached, 2 when its URL is wrong, else 1.
pub fn store_exit_code(error: &Error) -> u8 {
    match error {
        Error::Unavailable(_) => EXIT_UNREACHABLE,
        Error::InvalidRequest(_) => EXIT_USAGE,
        _ => EXIT_FAILED,
    }
}

/// Why the listen address cannot be bound, in a person's words.
fn listen_reason(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::AddrInUse => "address already in use".into(),
        std::io::ErrorKind::AddrNotAvailable => "no network interface has this address".into(),
        std::io::ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need privileges)".into()
        }
        _ => error.to_string(),
    }
}

/// Pending connections the kernel queues for the listener (actix-web's own default).
const LISTEN_BACKLOG: i32 = 2048;

/// Binds the listen address. `serve` does this before it opens the database, so that a
/// port in use stops it before anything is migrated or started.
pub fn bind(listen: &str) -> Result<std::net::TcpListener, ServeError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let failed = |source| ServeError::Listen {
        listen: listen.to_string(),
        source,
    };
    let addr: std::net::SocketAddr = listen
        .parse()
        .map_err(|e| failed(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(failed)?;
    socket.set_reuse_address(true).map_err(failed)?;
    socket.bind(&addr.into()).map_err(failed)?;
    socket.listen(LISTEN_BACKLOG).map_err(failed)?;
    Ok(socket.into())
}

/// Options of `deploybot serve` that are not configuration.
#[derive(Clone, Default)]
pub struct ServeOptions {
    /// Accept unsigned webhooks (local experiments only; logged loudly).
    pub insecure_no_signature: bool,
    /// Reads the configuration again, as it was read at start, for `SIGHUP` and
    /// `POST /v1/admin/reload`; without it the server cannot reload.
    pub reload: Option<LoadConfig>,
}

/// Opens the database named by the configuration and applies the migrations that have
/// not run yet; returns the store and the names of the migrations applied.
pub fn open_store(config: &Config) -> Result<(DieselStore, Vec<String>), Error> {
    let store = DieselStore::connect(&config.database_url).map_err(|e| match e {
        Error::Unavailable(message) => Error::Unavailable(format!(
            "{message}\nThe database URL comes from --database-url, else DATABASE_URL, else \
             `database_url` in the configuration file (the sandbox reads only --database-url)."
        )),
        other => other,
    })?;
    let applied = store.migrate()?;
    Ok((store, applied))
}

/// Opens the store, applies migrations and upserts the configured instances.
pub fn prepare_store(config: &Config) -> Result<Arc<DieselStore>, ServeError> {
    let (store, applied) = open_store(config)?;
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

/// The tasks running beside the HTTP server, stopped in order by `shut_down`.
struct Running {
    /// Cancelled first: no new work; running deployments get the grace period.
    shutdown: CancellationToken,
    http: ServerHandle,
    worker: JoinHandle<()>,
    redeliverer: Option<JoinHandle<()>>,
    /// Cancelled once the worker has stopped, so the last reports are sent.
    stop_sending: CancellationToken,
    sender: JoinHandle<()>,
}

/// Runs the server until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn serve(config: Config, options: ServeOptions) -> Result<(), ServeError> {
    serve_on(config, options, None, None).await
}

/// `serve` with `extra` routes on the HTTP server (the sandbox's), on `listener` when the
/// caller bound it already, else on the listen address.
async fn serve_on(
    config: Config,
    options: ServeOptions,
    extra: Option<server::ExtraRoutes>,
    listener: Option<std::net::TcpListener>,
) -> Result<(), ServeError> {
    announce(&config);
    check_signatures(&config, &options)?;
    // Listening from the start: a SIGHUP during the migrations must not end the process
    // (its default action), and a SIGTERM then still shuts down in order.
    let signals = Signals::listen();
    let listener = match listener {
        Some(listener) => listener,
        None => bind(&config.listen)?,
    };
    let config = Arc::new(config);
    let store = {
        let config = Arc::clone(&config);
        tokio::task::spawn_blocking(move || prepare_store(&config))
            .await
            .map_err(|e| ServeError::Store(Error::Internal(e.to_string())))??
    };
    let catalog = Arc::new(LiveCatalog::new(build_catalog(&config)?));
    crate::metrics::global().config_loaded_at(chrono::Utc::now());
    let service = Service::new(Arc::clone(&store) as _, Arc::clone(&catalog) as _);
    let shutdown = CancellationToken::new();
    let worker = build_worker(&config, &store, &service);
    let live = LiveConfig::new(Arc::clone(&config));
    let reloader = options
        .reload
        .clone()
        .map(|load| reloader(load, &live, catalog, &worker, &store, &service, &options));
    let client = github_client(&config)?;
    let redeliverer = start_redeliverer(&config, client.as_ref(), &store, &shutdown);
    let keys = load_keys(&config, &store).await?;
    let stop_sending = CancellationToken::new();
    let sender = start_sender(&live, &store, &service, client, &keys, &stop_sending);
    let worker_alive = CancellationToken::new();
    let worker = start_worker(worker, &shutdown, &worker_alive);
    let state = web::Data::new(AppState {
        config: live,
        store,
        service,
        worker_alive,
        keys,
        reload: reloader.clone().map(|r| r as Arc<dyn server::Reload>),
    });
    let settings = webhook::WebhookSettings {
        insecure_no_signature: options.insecure_no_signature,
    };
    let http = server::http_server(state, settings, listener, extra).map_err(|source| {
        ServeError::Listen {
            listen: config.listen.clone(),
            source,
        }
    })?;
    tracing::info!(listen = %config.listen, public_url = %config.public_url, instances = config.instances.len(), "deploybot is serving");
    let handle = http.handle();
    let http = tokio::spawn(http);

    signals.wait(reloader.as_deref()).await;
    shut_down(Running {
        shutdown,
        http: handle,
        worker,
        redeliverer,
        stop_sending,
        sender,
    })
    .await;
    match http.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ServeError::Http(e)),
        Err(e) => Err(ServeError::Http(std::io::Error::other(e))),
    }
}

/// What reloads the configuration of the parts it swaps.
fn reloader(
    load: LoadConfig,
    live: &LiveConfig,
    catalog: Arc<LiveCatalog>,
    worker: &Worker,
    store: &Arc<DieselStore>,
    service: &Service,
    options: &ServeOptions,
) -> Arc<Reloader> {
    Arc::new(Reloader::new(ReloadParts {
        load,
        config: live.clone(),
        catalog,
        mask: worker.mask_slot(),
        store: Arc::clone(store),
        wake: Arc::clone(service.wake()),
        insecure_no_signature: options.insecure_no_signature,
    }))
}

/// Logs which file was read and what in it looks wrong without being an error.
fn announce(config: &Config) {
    match config.source_message() {
        Ok(read) => tracing::info!("{read}"),
        Err(none) => tracing::warn!("{none}"),
    }
    for warning in config.image_warnings() {
        tracing::warn!("{warning}");
    }
}

/// Options of `deploybot sandbox` that are not configuration.
#[derive(Debug, Clone, Default)]
pub struct SandboxOptions {
    /// The database to use instead of a fresh SQLite file in a temporary directory.
    pub database_url: Option<String>,
}

/// `deploybot sandbox`: starts the GitHub stand-in on 127.0.0.1, seeds it from the
/// configuration's repositories, and runs the bot as `serve` does against it (with a token
/// only the stand-in accepts and, unless named, a fresh database removed at exit), with the
/// sandbox's pages and comment route on the bot's server. Prints where the pages are.
pub async fn sandbox(config: Config, options: SandboxOptions) -> Result<(), ServeError> {
    use crate::sandbox::{FakeGithub, setup};
    let secret_problems = config.webhook_secret_problems();
    if !secret_problems.is_empty() {
        return Err(ServeError::SandboxWithoutSecret(secret_problems));
    }
    // A port in use stops the sandbox before it says where its pages are; the port it
    // really bound (port 0 asks for any) is the one its pages and webhooks use.
    let listener = bind(&config.listen)?;
    let config = bound_config(config, &listener)?;
    let standin = FakeGithub::try_start().map_err(ServeError::Http)?;
    let token = setup::sandbox_token();
    standin.set_token(&token);
    let (database_url, scratch) = match options.database_url {
        Some(url) => (url, None),
        None => {
            let dir = setup::ScratchDir::create().map_err(ServeError::Http)?;
            (setup::sqlite_url(dir.path()), Some(dir))
        }
    };
    let config = setup::sandbox_config(config, &standin.url, &token, &database_url);
    let seeded = standin.seed(&config, &setup::webhook_url(&config.listen));
    println!(
        "sandbox: GitHub stand-in at {} (in this process)",
        standin.url
    );
    println!(
        "sandbox: database {}",
        crate::config::redact_url(&database_url)
    );
    if seeded.is_empty() {
        println!("sandbox: the configuration has no instances, so no repositories to try");
    }
    for repo in &seeded {
        let page = setup::pull_page_url(&config, &repo.repo, crate::sandbox::seed::PULL_NUMBER);
        println!("sandbox: open {page}");
    }
    standin.announce_pulls();
    let routes: server::ExtraRoutes = Arc::new(standin.routes());
    let served = serve_on(
        config,
        ServeOptions::default(),
        Some(routes),
        Some(listener),
    )
    .await;
    drop(standin);
    drop(scratch);
    served
}

/// `config` with the address `listener` really bound as its listen address, and as its
/// public URL when that was the listen address.
fn bound_config(
    mut config: Config,
    listener: &std::net::TcpListener,
) -> Result<Config, ServeError> {
    let bound = listener.local_addr().map_err(|source| ServeError::Listen {
        listen: config.listen.clone(),
        source,
    })?;
    if config.public_url == format!("http://{}", config.listen) {
        config.public_url = format!("http://{bound}");
    }
    config.listen = bound.to_string();
    Ok(config)
}

/// Refuses to start when webhooks could not be verified, unless asked to accept unsigned
/// ones (which is logged loudly).
fn check_signatures(config: &Config, options: &ServeOptions) -> Result<(), ServeError> {
    let secret_problems = config.webhook_secret_problems();
    if !secret_problems.is_empty() && !options.insecure_no_signature {
        return Err(ServeError::NoWebhookSecret(secret_problems));
    }
    if options.insecure_no_signature {
        tracing::warn!(
            "!!! --insecure-no-signature: webhook signatures are NOT verified; anyone who can reach this server can deploy. Never use this outside a laptop. !!!"
        );
    }
    Ok(())
}

/// The configured instances as the domain sees them.
fn build_catalog(config: &Config) -> Result<ConfigCatalog, ServeError> {
    ConfigCatalog::from_config(config).map_err(|e| ServeError::Instance {
        instance: "(health check)".into(),
        message: e.to_string(),
    })
}

/// The worker pool, configured but not started.
fn build_worker(config: &Config, store: &Arc<DieselStore>, service: &Service) -> Arc<Worker> {
    let settings = WorkerSettings {
        concurrency: config.worker.concurrency,
        lease: config.worker.lease,
        grace: config.worker.grace,
        retention: config.retention,
        ..WorkerSettings::default()
    };
    Arc::new(
        Worker::new(Arc::clone(store) as _, service, settings)
            .masking(secret_mask(config))
            .with_log_cap(LogCap {
                lines: config.worker.log_lines,
                bytes: config.worker.log_bytes,
            }),
    )
}

/// Runs the worker until `shutdown`; `alive` is cancelled when it has stopped.
fn start_worker(
    worker: Arc<Worker>,
    shutdown: &CancellationToken,
    alive: &CancellationToken,
) -> JoinHandle<()> {
    let (shutdown, alive) = (shutdown.clone(), alive.clone());
    tokio::spawn(async move {
        worker.run(shutdown).await;
        alive.cancel();
    })
}

/// The GitHub API client, when credentials are configured; its rate limit is reported
/// in the metrics.
fn github_client(config: &Config) -> Result<Option<Arc<GithubClient>>, ServeError> {
    let client = GithubClient::from_config(&config.github)
        .map_err(ServeError::Github)?
        .map(Arc::new);
    crate::metrics::global().track_rate_limit(
        client
            .clone()
            .map(|c| Box::new(move || c.rate_limit_remaining()) as crate::metrics::RateLimitSource),
    );
    Ok(client)
}

/// With App credentials: missed webhook deliveries are asked for again, at start and
/// every `github.redeliver_interval`, until shutdown begins.
fn start_redeliverer(
    config: &Config,
    client: Option<&Arc<GithubClient>>,
    store: &Arc<DieselStore>,
    shutdown: &CancellationToken,
) -> Option<JoinHandle<()>> {
    client.filter(|c| c.is_app()).map(|client| {
        let redeliverer = Arc::new(Redeliverer::new(
            Arc::clone(client),
            Arc::clone(store) as _,
            redeliver::Settings::new(
                config.github.redeliver_interval,
                config.github.redeliver_lookback,
            ),
        ));
        tokio::spawn(redeliverer.run(shutdown.clone()))
    })
}

/// The keys that sign page sessions and log links (from the environment, or shared
/// through the database).
async fn load_keys(config: &Arc<Config>, store: &Arc<DieselStore>) -> Result<PageKeys, ServeError> {
    let (config, store) = (Arc::clone(config), Arc::clone(store));
    tokio::task::spawn_blocking(move || PageKeys::load(&config, store.as_ref()))
        .await
        .map_err(|e| ServeError::Store(Error::Internal(e.to_string())))?
        .map_err(ServeError::Store)
}

/// Starts the outbox sender. It outlives the worker's grace period, so that the reports
/// of the deployments finishing in it are sent, and stops at `stop`.
fn start_sender(
    config: &LiveConfig,
    store: &Arc<DieselStore>,
    service: &Service,
    client: Option<Arc<GithubClient>>,
    keys: &PageKeys,
    stop: &CancellationToken,
) -> JoinHandle<()> {
    let live = config.clone();
    let log_keys = keys.clone();
    // Private pages: the link carries a read token for that one deployment.
    let log_url: LogUrl = Arc::new(move |d: &crate::deploy::Deployment| {
        let log_config = live.get();
        if log_config.pages.public {
            format!("{}/deployments/{}", log_config.public_url, d.id)
        } else {
            pages::log_url(&log_config, &log_keys, d.id)
        }
    });
    let context = || Context {
        store: Arc::clone(store) as _,
        service: service.clone(),
        config: config.clone(),
        client: client.clone(),
        log_url: Arc::clone(&log_url),
    };
    // The checks gate reads GitHub beside the sender, and stops with it.
    let checks = Arc::new(crate::github::gates::ChecksWatcher::new(context()));
    tokio::spawn(checks.run(stop.clone()));
    let handler = Dispatch::new(context());
    let wake = Arc::clone(service.wake());
    let sender = Arc::new(Sender::new(Arc::clone(store) as _, Arc::new(handler), wake));
    tokio::spawn(sender.run(stop.clone()))
}

/// Stops in order: no new work, the HTTP server, the worker (after its grace period),
/// the redeliverer, and last the sender.
async fn shut_down(running: Running) {
    tracing::info!("shutting down: no new work; running deployments get the grace period");
    running.shutdown.cancel();
    running.http.stop(true).await;
    let _ = running.worker.await;
    if let Some(task) = running.redeliverer {
        let _ = task.await;
    }
    running.stop_sending.cancel();
    let _ = running.sender.await;
}

/// The signals `serve` acts on, listened for from its start.
struct Signals(Option<[tokio::signal::unix::Signal; 3]>);

impl Signals {
    fn listen() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(term), Ok(int), Ok(hup)) => Signals(Some([term, int, hup])),
            _ => Signals(None),
        }
    }

    /// Waits for SIGTERM or SIGINT; each SIGHUP meanwhile reloads the configuration.
    async fn wait(self, reloader: Option<&Reloader>) {
        let Some([mut term, mut int, mut hup]) = self.0 else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => return tracing::info!("SIGTERM received"),
                _ = int.recv() => return tracing::info!("SIGINT received"),
                _ = hup.recv() => match reloader {
                    Some(reloader) => {
                        tracing::info!("SIGHUP received: reloading the configuration");
                        // Refusals are logged and kept for /readyz by the reloader.
                        let _ = reloader.reload_now().await;
                    }
                    None => tracing::warn!("SIGHUP received, but this server cannot reload its configuration (the sandbox): restart it"),
                },
            }
        }
    }
}
