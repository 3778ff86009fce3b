//! The HTML pages over real HTTP, on SQLite and PostgreSQL: what `/` and a deployment page
//! show, escaping, secrets, sign-in, log tokens and the live events endpoint — and, at the
//! end, a real headless Chromium that follows a running deployment's log as it grows.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{TimeDelta, Utc};
use common::TestDb;
use common::chromium::{self, Chromium};
use deploybot::config::{ApiConfig, ApiToken, Config, InstanceConfig, PagesConfig, Role};
use deploybot::deploy::provider::Provider;
use deploybot::deploy::{
    CanarySteps, DeployRequest, DeployState, Deployment, Instance, InstanceSpec, InstanceStore,
    LogStore, Progress, QueueStore, Service, ServiceStore,
};
use deploybot::github::outbox::OutboxStore;
use deploybot::provider::catalog::ConfigCatalog;
use deploybot::provider::command::CommandProvider;
use deploybot::provider::noop::NoopProvider;
use deploybot::server::AppState;
use deploybot::server::pages::{PageKeys, log_token, log_url};
use deploybot::store::DieselStore;
use deploybot::worker::{Worker, WorkerSettings};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "pages-test-webhook-secret";
const ACME_TOKEN: &str = "acme-pages-token-0f3c9a";
const GLOBEX_TOKEN: &str = "globex-pages-token-77d2e1";
const SHA: &str = "a10867b14bb761a232cd80139fbd4c0d33264240";
const OWNER: &str = "pages-test";

/// A running server with the pages on 127.0.0.1, over a test database.
struct Site {
    base: String,
    config: Arc<Config>,
    store: Arc<DieselStore>,
    service: Service,
    web: Instance,
    api: Instance,
    keys: PageKeys,
    handle: ServerHandle,
    shutdown: CancellationToken,
    http: reqwest::Client,
    /// Kept for as long as the server runs.
    _db: Arc<TestDb>,
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn spec(
    name: &str,
    environment: &str,
    strategy: &str,
    provider: Arc<dyn Provider>,
) -> InstanceSpec {
    InstanceSpec {
        name: name.into(),
        environment: environment.into(),
        default_strategy: strategy.into(),
        supersede: false,
        provider,
        health: None,
        gates: Vec::new(),
        watch: None,
        canary: CanarySteps {
            steps: vec![10, 50, 100],
            pause: Duration::from_millis(100),
        },
        wait_for_github: false,
        env: Default::default(),
        control: Default::default(),
    }
}

impl Site {
    /// Two tenants: acme (`web-production`, canary unless `web_provider` says otherwise)
    /// and globex (`api-staging`). With `worker`, a worker pool runs what is queued.
    async fn start(
        db: TestDb,
        public: bool,
        web_provider: Option<Arc<dyn Provider>>,
        worker: bool,
    ) -> Site {
        Site::start_with(Arc::new(db), None, public, web_provider, worker, |_| {}).await
    }

    /// A server with private pages on `db` (through `store`, or the test's own), with the
    /// configuration that `change` adjusts: another replica, or the same one restarted.
    async fn start_private(
        db: Arc<TestDb>,
        store: Option<Arc<DieselStore>>,
        change: impl FnOnce(&mut Config),
    ) -> Site {
        Site::start_with(db, store, false, None, false, change).await
    }

    async fn start_with(
        db: Arc<TestDb>,
        store: Option<Arc<DieselStore>>,
        public: bool,
        web_provider: Option<Arc<dyn Provider>>,
        worker: bool,
        change: impl FnOnce(&mut Config),
    ) -> Site {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let config = Config {
            public_url: base.clone(),
            webhook_secrets: vec![SECRET.into()],
            pages: PagesConfig { public },
            api: ApiConfig {
                tokens: vec![
                    ApiToken {
                        name: "ci".into(),
                        tenant: "acme".into(),
                        sha256: sha256_hex(ACME_TOKEN),
                        role: Role::Deploy,
                        instances: Vec::new(),
                    },
                    ApiToken {
                        name: "globex-ci".into(),
                        tenant: "globex".into(),
                        sha256: sha256_hex(GLOBEX_TOKEN),
                        role: Role::Read,
                        instances: Vec::new(),
                    },
                ],
            },
            instances: vec![
                InstanceConfig::new(
                    "web-production",
                    "acme/web",
                    "production",
                    "ghcr.io/acme/web:{sha}",
                ),
                InstanceConfig::new(
                    "api-staging",
                    "globex/api",
                    "staging",
                    "ghcr.io/globex/api:{sha}",
                ),
            ],
            ..Config::default()
        };
        let mut config = config;
        change(&mut config);
        let config = Arc::new(config);
        let store = store.unwrap_or_else(|| Arc::clone(&db.store));
        let keys = PageKeys::load(&config, &*store).unwrap();
        let web = store
            .upsert_instance("acme", "web-production", "acme/web", "production")
            .unwrap();
        let api = store
            .upsert_instance("globex", "api-staging", "globex/api", "staging")
            .unwrap();

        let (web_strategy, web_provider) = match web_provider {
            Some(p) => ("recreate", p),
            None => ("canary", Arc::new(NoopProvider) as Arc<dyn Provider>),
        };
        let mut catalog = ConfigCatalog::default();
        catalog.insert(
            "acme",
            spec("web-production", "production", web_strategy, web_provider),
        );
        catalog.insert(
            "globex",
            spec("api-staging", "staging", "rolling", Arc::new(NoopProvider)),
        );
        let service = Service::new(
            Arc::clone(&store) as Arc<dyn ServiceStore>,
            Arc::new(catalog),
        );
        let shutdown = CancellationToken::new();
        if worker {
            let settings = WorkerSettings {
                concurrency: 2,
                lease: Duration::from_secs(5),
                poll: Duration::from_millis(100),
                grace: Duration::from_secs(5),
                ..WorkerSettings::default()
            };
            tokio::spawn(
                Arc::new(Worker::new(store.clone(), &service, settings)).run(shutdown.clone()),
            );
        }

        let state = web::Data::new(AppState {
            config: Arc::clone(&config).into(),
            store: store.clone(),
            service: service.clone(),
            worker_alive: CancellationToken::new(),
            keys: keys.clone(),
            reload: None,
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .configure(deploybot::server::pages::routes)
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Site {
            base,
            config,
            store,
            service,
            web,
            api,
            keys,
            handle,
            shutdown,
            http,
            _db: db,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.handle.stop(false).await;
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Answer {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        Answer::from(request.send().await.unwrap()).await
    }

    async fn signin(&self, token: &str) -> Answer {
        let request = self
            .http
            .post(format!("{}/signin", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}&next=%2F"));
        Answer::from(request.send().await.unwrap()).await
    }

    async fn deploy(&self, tenant: &str, instance: &Instance, request: Req<'_>) -> Deployment {
        let request = DeployRequest {
            instance_id: instance.id,
            image: request.image.into(),
            env: request
                .env
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            strategy: String::new(),
            notes: request.notes.into(),
            commit_sha: SHA.into(),
            params: Default::default(),
            noop: false,
        };
        self.service
            .deploy(tenant, request, "octocat")
            .await
            .unwrap()
    }

    /// Claims `d` as a worker would, stores its progress and log lines.
    fn run(&self, d: &Deployment, progress: Progress, lines: &[(&str, &str)]) -> Deployment {
        let mut running = self
            .store
            .claim_next(OWNER, Duration::from_secs(300))
            .unwrap()
            .expect("a pending deployment to claim");
        assert_eq!(running.id, d.id, "the test claims deployments in order");
        running.progress = progress;
        self.store.record_progress(&running, OWNER).unwrap();
        let rows: Vec<(String, String)> = lines
            .iter()
            .map(|(s, l)| (s.to_string(), l.to_string()))
            .collect();
        self.store
            .append_logs(&d.tenant_id, d.id, 1, &rows)
            .unwrap();
        running
    }

    fn finish(&self, mut running: Deployment, state: DeployState, error: &str) -> Deployment {
        running.transition(state).unwrap();
        running.error = error.into();
        self.store.finish_deployment(&running, OWNER).unwrap();
        running
    }
}

/// What a test asks to deploy.
struct Req<'a> {
    image: &'a str,
    notes: &'a str,
    env: Vec<(&'a str, &'a str)>,
}

fn req(image: &str) -> Req<'_> {
    Req {
        image,
        notes: "push to main",
        env: vec![],
    }
}

/// An HTTP answer, read whole.
struct Answer {
    status: u16,
    location: String,
    set_cookie: String,
    content_type: String,
    csp: String,
    body: String,
}

impl Answer {
    async fn from(response: reqwest::Response) -> Answer {
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let (status, location, set_cookie, content_type, csp) = (
            response.status().as_u16(),
            header("location"),
            header("set-cookie"),
            header("content-type"),
            header("content-security-policy"),
        );
        let body = response.text().await.unwrap();
        Answer {
            status,
            location,
            set_cookie,
            content_type,
            csp,
            body,
        }
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn assert_contains(&self, needles: &[&str]) {
        for needle in needles {
            assert!(
                self.body.contains(needle),
                "{needle:?} is missing from:\n{}",
                self.body
            );
        }
    }
}

/// What `seed` created.
struct Seed {
    /// acme v1: succeeded, the active release.
    v1: Deployment,
    /// acme v2: failed with an error.
    v2: Deployment,
    /// acme v3: running canary at 50%, with a log; its notes, image and log hold markup,
    /// its env holds a secret value.
    v3: Deployment,
    /// acme v4: pending behind v3.
    v4: Deployment,
    /// globex v1: succeeded.
    globex: Deployment,
}

const NOTES_SCRIPT: &str = "fix <script>alert(\"notes\")</script> & more";
const LOG_SCRIPT: &str = "<script>alert('log')</script>";
const SECRET_VALUE: &str = "hunter2-never-on-a-page";

async fn seed(site: &Site) -> Seed {
    let v1 = site
        .deploy("acme", &site.web, req("ghcr.io/acme/web:v1"))
        .await;
    let run = site.run(&v1, Progress::default(), &[("stdout", "v1 is up")]);
    let v1 = site.finish(run, DeployState::Succeeded, "");

    let v2 = site
        .deploy("acme", &site.web, req("ghcr.io/acme/web:v2"))
        .await;
    let run = site.run(
        &v2,
        Progress::default(),
        &[("stderr", "connection refused")],
    );
    let v2 = site.finish(
        run,
        DeployState::Failed,
        "health check failed: <b>503</b> from /healthz",
    );

    let v3 = site
        .deploy(
            "acme",
            &site.web,
            Req {
                image: "ghcr.io/acme/web:v3<svg/onload=alert(1)>",
                notes: NOTES_SCRIPT,
                env: vec![("DATABASE_PASSWORD", SECRET_VALUE), ("LOG_LEVEL", "debug")],
            },
        )
        .await;
    let v3 = site.run(
        &v3,
        Progress {
            phase: "shift".into(),
            percent: 50,
            message: "sending 50% of traffic to the canary".into(),
        },
        &[
            ("deploybot", "[ 10%] start: starting the canary"),
            ("stdout", "pulling ghcr.io/acme/web:v3"),
            ("stdout", LOG_SCRIPT),
            ("stderr", "\u{1b}[33mwarning\u{1b}[0m: slow start"),
            (
                "deploybot",
                "[ 50%] shift: sending 50% of traffic to the canary",
            ),
        ],
    );
    let v4 = site
        .deploy("acme", &site.web, req("ghcr.io/acme/web:v4"))
        .await;

    let globex = site
        .deploy("globex", &site.api, req("ghcr.io/globex/api:v1"))
        .await;
    let run = site.run(&globex, Progress::default(), &[]);
    let globex = site.finish(run, DeployState::Succeeded, "");
    Seed {
        v1,
        v2,
        v3,
        v4,
        globex,
    }
}

/// A deployment started by a comment shows what started it and links to its pull
/// request; one started through the API says so and links nowhere.
async fn a_deployment_shows_its_trigger_and_pull_request(db: TestDb) {
    let site = Site::start(db, true, None, false).await;
    let request = DeployRequest {
        instance_id: site.web.id,
        image: "ghcr.io/acme/web:pr".into(),
        env: Default::default(),
        strategy: String::new(),
        notes: String::new(),
        commit_sha: SHA.into(),
        params: Default::default(),
        noop: false,
    };
    let source = deploybot::deploy::Source {
        trigger: "/deploy on #42 by @octocat".into(),
        pull_request: Some(42),
        comment_id: Some(7),
        ..Default::default()
    };
    let prepared = site
        .service
        .prepare("acme", request, "octocat", source)
        .await
        .unwrap();
    let from_pr = site.service.queue(prepared).await.unwrap().expect("queued");
    let page = site
        .get(&format!("/deployments/{}", from_pr.id), None)
        .await;
    assert_eq!(page.status, 200);
    page.assert_contains(&["<dt>Trigger</dt><dd>/deploy on #42 by @octocat · \
         <a href=\"https://github.com/acme/web/pull/42\">pull request #42</a></dd>"]);

    let from_api = site
        .deploy("acme", &site.web, req("ghcr.io/acme/web:api"))
        .await;
    let page = site
        .get(&format!("/deployments/{}", from_api.id), None)
        .await;
    page.assert_contains(&["<dt>Trigger</dt><dd>API (octocat)</dd>"]);
    assert!(!page.body.contains("/pull/"), "no pull request to link");
}

impl Site {
    /// Queues a deployment of web-production as if GitHub had started it from `source`.
    async fn deploy_from(&self, source: deploybot::deploy::Source) -> Deployment {
        let request = DeployRequest {
            instance_id: self.web.id,
            image: "ghcr.io/acme/web:gh".into(),
            env: Default::default(),
            strategy: String::new(),
            notes: String::new(),
            commit_sha: SHA.into(),
            params: Default::default(),
            noop: false,
        };
        let prepared = self
            .service
            .prepare("acme", request, "octocat", source)
            .await
            .unwrap();
        self.service.queue(prepared).await.unwrap().expect("queued")
    }

    /// Records that GitHub accepted `d` as its Deployment `github_id`.
    fn mirrored(&self, d: &Deployment, github_id: i64) {
        self.store
            .set_github_deployment_id(&d.tenant_id, d.id, github_id)
            .unwrap();
    }
}

fn pull_request_source(pr: u64) -> deploybot::deploy::Source {
    deploybot::deploy::Source {
        trigger: format!("/deploy on #{pr} by @octocat"),
        pull_request: Some(pr),
        comment_id: Some(7),
        ..Default::default()
    }
}

fn push_source() -> deploybot::deploy::Source {
    deploybot::deploy::Source {
        trigger: "push to main by @octocat (a10867b)".into(),
        ..Default::default()
    }
}

/// A deployment that GitHub mirrors links to its pull request and to the GitHub
/// Deployment on its environment's page; a push deployment links to the Deployment only,
/// and one GitHub has not accepted yet has no GitHub links.
async fn a_deployment_links_to_its_pull_request_and_github_deployment(db: TestDb) {
    let site = Site::start(db, true, None, false).await;
    let from_pr = site.deploy_from(pull_request_source(42)).await;
    site.mirrored(&from_pr, 9001);
    let page = site
        .get(&format!("/deployments/{}", from_pr.id), None)
        .await;
    assert_eq!(page.status, 200);
    page.assert_contains(&["<p class=\"lede github\">On GitHub: \
         <a href=\"https://github.com/acme/web/pull/42\">pull request #42</a> · \
         <a href=\"https://github.com/acme/web/deployments/production\">Deployment 9001 in production</a></p>"]);

    let pushed = site.deploy_from(push_source()).await;
    site.mirrored(&pushed, 9002);
    let page = site.get(&format!("/deployments/{}", pushed.id), None).await;
    assert_eq!(page.status, 200);
    page.assert_contains(&[
        "<dt>Trigger</dt><dd>push to main by @octocat (a10867b)</dd>",
        "On GitHub: <a href=\"https://github.com/acme/web/deployments/production\">Deployment 9002 in production</a>",
    ]);
    assert!(!page.body.contains("/pull/"), "a push has no pull request");

    let unmirrored = site.deploy_from(push_source()).await;
    let page = site
        .get(&format!("/deployments/{}", unmirrored.id), None)
        .await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("On GitHub"), "{}", page.body);
    assert!(!page.body.contains("/deployments/production"));
    site.stop().await;
}

/// The links follow the configured GitHub web address (GitHub Enterprise, or the
/// sandbox's own pages), escaped.
async fn github_links_use_the_configured_web_address(db: TestDb) {
    let site = Site::start_with(Arc::new(db), None, true, None, false, |config| {
        config.github.web_url = "https://ghe.example/a&b\"c/".into();
    })
    .await;
    let from_pr = site.deploy_from(pull_request_source(3)).await;
    site.mirrored(&from_pr, 77);
    let page = site
        .get(&format!("/deployments/{}", from_pr.id), None)
        .await;
    assert_eq!(page.status, 200);
    page.assert_contains(&[
        "<a href=\"https://ghe.example/a&amp;b&quot;c/acme/web/pull/3\">pull request #3</a>",
        "<a href=\"https://ghe.example/a&amp;b&quot;c/acme/web/deployments/production\">Deployment 77 in production</a>",
        &format!("href=\"https://ghe.example/a&amp;b&quot;c/acme/web/commit/{SHA}\""),
    ]);
    assert!(!page.body.contains("https://github.com"), "{}", page.body);
    site.stop().await;
}

/// `/` lists every instance with its active release and the latest deployments, each with
/// its state badge and a link to its page.
async fn index_lists_instances_and_latest_deployments(db: TestDb) {
    let site = Site::start(db, true, None, false).await;
    let seed = seed(&site).await;
    let page = site.get("/", None).await;
    assert_eq!(page.status, 200);
    assert!(
        page.content_type.starts_with("text/html"),
        "{}",
        page.content_type
    );
    page.assert_contains(&[
        "web-production",
        "acme/web",
        "production",
        "api-staging",
        "globex/api",
        "staging",
        // The active release of web-production: v1, by octocat, with its commit.
        "<strong>v1</strong> · <code>ghcr.io/acme/web:v1</code>",
        &format!("href=\"https://github.com/acme/web/commit/{SHA}\">a10867b</a>"),
        " by octocat",
        "class=\"badge s-succeeded\">succeeded<",
        "class=\"badge s-failed\">failed<",
        "class=\"badge s-running\">running 50%<",
        "class=\"badge s-pending\">pending<",
    ]);
    for d in [&seed.v1, &seed.v2, &seed.v3, &seed.v4, &seed.globex] {
        page.assert_contains(&[&format!("href=\"/deployments/{}\"", d.id)]);
    }
    // Newest first.
    let at = |d: &Deployment| page.body.find(&format!("/deployments/{}", d.id)).unwrap();
    assert!(
        at(&seed.v4) < at(&seed.v3) && at(&seed.v3) < at(&seed.v2) && at(&seed.v2) < at(&seed.v1)
    );
    site.stop().await;
}

/// A deployment page has the headline a person arriving from a pull request needs, the
/// release, the strategy, the progress and the log; a failed one shows its error.
async fn deployment_page_shows_release_strategy_progress_and_error(db: TestDb) {
    let site = Site::start(db, true, None, false).await;
    let seed = seed(&site).await;
    let page = site
        .get(&format!("/deployments/{}", seed.v3.id), None)
        .await;
    assert_eq!(page.status, 200);
    page.assert_contains(&[
        "<title>web-production · v3 · canary · running 50% — deploybot</title>",
        "web-production · v3 · canary</span> <span id=\"state\" class=\"badge s-running\">running 50%</span>",
        "<progress id=\"progress\" max=\"100\" value=\"50\">",
        "<strong>shift</strong> — sending 50% of traffic to the canary",
        &format!("href=\"https://github.com/acme/web/commit/{SHA}\">{SHA}</a>"),
        "<dt>Strategy</dt><dd>canary</dd>",
        "<dt>Initiator</dt><dd>octocat</dd>",
        "<dt>Version</dt><dd>v3</dd>",
        "pulling ghcr.io/acme/web:v3",
        // ANSI colours are stripped from log lines.
        ">warning: slow start\n",
        // The timeline comes from the strategy's progress lines.
        "<span class=\"pct\">50%</span> <strong>shift</strong>",
        "data-final=\"false\"",
        "data-after=\"5\"",
        "● following live",
    ]);
    assert!(page.csp.contains("script-src 'sha256-"), "{}", page.csp);

    let failed = site
        .get(&format!("/deployments/{}", seed.v2.id), None)
        .await;
    assert_eq!(failed.status, 200);
    failed.assert_contains(&[
        "web-production · v2 · canary · failed",
        "class=\"badge s-failed\">failed<",
        "health check failed: &lt;b&gt;503&lt;/b&gt; from /healthz",
        "data-final=\"true\"",
        "connection refused",
    ]);
    assert!(
        !failed
            .body
            .contains("<div id=\"error\" class=\"error\" hidden>")
    );
    // The running one has no error box showing.
    page.assert_contains(&["<div id=\"error\" class=\"error\" hidden>"]);
    site.stop().await;
}

/// Markup in notes, images and log lines is shown as text, never run.
async fn values_from_the_database_are_escaped(db: TestDb) {
    let site = Site::start(db, true, None, false).await;
    let seed = seed(&site).await;
    let page = site
        .get(&format!("/deployments/{}", seed.v3.id), None)
        .await;
    page.assert_contains(&[
        "fix &lt;script&gt;alert(&quot;notes&quot;)&lt;/script&gt; &amp; more",
        "&lt;script&gt;alert(&#39;log&#39;)&lt;/script&gt;",
        "ghcr.io/acme/web:v3&lt;svg/onload=alert(1)&gt;",
    ]);
    let index = site.get("/", None).await;
    for body in [&page.body, &index.body] {
        // The only script element is the page's own.
        assert_eq!(body.matches("<script").count(), 1, "{body}");
        assert!(!body.contains("<svg"), "{body}");
    }
    site.stop().await;
}

/// Env values are never shown (keys are), on the pages or in the events.
async fn env_values_never_appear(db: TestDb) {
    let site = Site::start(db, true, None, false).await;
    let seed = seed(&site).await;
    let page = site
        .get(&format!("/deployments/{}", seed.v3.id), None)
        .await;
    page.assert_contains(&[
        "<code>DATABASE_PASSWORD</code>, <code>LOG_LEVEL</code>",
        "values are not shown",
    ]);
    let index = site.get("/", None).await;
    let events = site
        .get(&format!("/deployments/{}/events", seed.v3.id), None)
        .await;
    assert_eq!(events.status, 200);
    for body in [&page.body, &index.body, &events.body] {
        assert!(!body.contains(SECRET_VALUE), "an env value leaked:\n{body}");
        assert!(!body.contains("debug"), "an env value leaked:\n{body}");
    }
    site.stop().await;
}

/// Private pages send people without a session to the sign-in form.
async fn private_pages_redirect_to_signin(db: TestDb) {
    let site = Site::start(db, false, None, false).await;
    let seed = seed(&site).await;
    let index = site.get("/", None).await;
    assert_eq!(index.status, 303);
    assert_eq!(index.location, "/signin?next=/&reason=signin_required");
    let page = site
        .get(&format!("/deployments/{}", seed.v3.id), None)
        .await;
    assert_eq!(page.status, 303);
    assert_eq!(
        page.location,
        format!(
            "/signin?next=/deployments/{}&reason=signin_required",
            seed.v3.id
        )
    );
    assert!(!page.body.contains("web-production"));
    let events = site
        .get(&format!("/deployments/{}/events", seed.v3.id), None)
        .await;
    assert_eq!(events.status, 401);
    assert_eq!(events.json()["error"]["code"], "unauthenticated");

    let form = site.get(&page.location, None).await;
    assert_eq!(form.status, 200);
    form.assert_contains(&[
        "Sign in to see deployments.",
        "<form method=\"post\" action=\"/signin\">",
        &format!("name=\"next\" value=\"/deployments/{}\"", seed.v3.id),
        "type=\"password\"",
    ]);
    // A `next` leading off-site is replaced by `/`.
    let offsite = site.get("/signin?next=//evil.example/x", None).await;
    offsite.assert_contains(&["name=\"next\" value=\"/\""]);
    site.stop().await;
}

/// Signing in with a tenant's API token shows that tenant only; signing out ends it.
async fn signin_with_a_valid_token_shows_only_its_tenant(db: TestDb) {
    let site = Site::start(db, false, None, false).await;
    let seed = seed(&site).await;
    let answer = site.signin(ACME_TOKEN).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(answer.location, "/");
    let cookie = &answer.set_cookie;
    assert!(cookie.starts_with("deploybot_session="), "{cookie}");
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain-http public_url, no Secure: {cookie}"
    );
    assert!(
        !cookie.contains(ACME_TOKEN),
        "the token itself is not stored: {cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();

    let index = site.get("/", Some(&session)).await;
    assert_eq!(index.status, 200);
    index.assert_contains(&["web-production", "signed in as <strong>ci</strong> (acme)"]);
    assert!(
        !index.body.contains("api-staging") && !index.body.contains("globex"),
        "{}",
        index.body
    );

    let own = site
        .get(&format!("/deployments/{}", seed.v3.id), Some(&session))
        .await;
    assert_eq!(own.status, 200);
    let other = site
        .get(&format!("/deployments/{}", seed.globex.id), Some(&session))
        .await;
    assert_eq!(other.status, 404);
    other.assert_contains(&["Deployment not found"]);
    assert!(!other.body.contains("api-staging"));
    let other_events = site
        .get(
            &format!("/deployments/{}/events", seed.globex.id),
            Some(&session),
        )
        .await;
    assert_eq!(other_events.status, 404);

    // A changed session value is worthless.
    let (name, value) = session.split_once('=').unwrap();
    let mut chars: Vec<char> = value.chars().collect();
    chars[5] = if chars[5] == 'A' { 'B' } else { 'A' };
    let tampered = format!("{name}={}", chars.into_iter().collect::<String>());
    assert_ne!(tampered, session);
    assert_eq!(site.get("/", Some(&tampered)).await.status, 303);

    let out = site
        .http
        .post(format!("{}/signout", site.base))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    let out = Answer::from(out).await;
    assert_eq!(out.status, 303);
    assert_eq!(out.location, "/signin?reason=signed_out");
    assert!(out.set_cookie.contains("deploybot_session=;") && out.set_cookie.contains("Max-Age=0"));
    site.stop().await;
}

/// A wrong token signs nobody in, and a sign-in posted from another site is refused.
async fn an_invalid_token_is_refused(db: TestDb) {
    let site = Site::start(db, false, None, false).await;
    let answer = site.signin("not-a-configured-token").await;
    assert_eq!(answer.status, 401);
    assert!(answer.set_cookie.is_empty(), "{}", answer.set_cookie);
    answer.assert_contains(&["does not match any configured API token"]);
    // The hash of a token is not a token.
    assert_eq!(site.signin(&sha256_hex(ACME_TOKEN)).await.status, 401);

    let cross_site = site
        .http
        .post(format!("{}/signin", site.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", "https://evil.example")
        .body(format!("token={ACME_TOKEN}"))
        .send()
        .await
        .unwrap();
    let cross_site = Answer::from(cross_site).await;
    assert_eq!(cross_site.status, 403);
    assert!(cross_site.set_cookie.is_empty());
    // The same post from this site works.
    let same_site = site
        .http
        .post(format!("{}/signin", site.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", site.base.as_str())
        .body(format!("token={GLOBEX_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(Answer::from(same_site).await.status, 303);
    site.stop().await;
}

/// The `log_url` token opens its one deployment without an account; a token for another
/// deployment, a changed one and an expired one do not.
async fn a_log_token_opens_exactly_its_deployment(db: TestDb) {
    let site = Site::start(db, false, None, false).await;
    let seed = seed(&site).await;
    let url = log_url(&site.config, &site.keys, seed.v3.id);
    let prefix = format!("{}/deployments/{}?token=", site.base, seed.v3.id);
    assert!(url.starts_with(&prefix), "{url}");
    let token = url[prefix.len()..].to_string();

    let page = site.get(&url[site.base.len()..], None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.assert_contains(&[
        "web-production · v3 · canary",
        &format!("data-token=\"{token}\""),
    ]);
    // No session: no link to the list, which it could not open.
    assert!(!page.body.contains("All deployments"));
    let events = site
        .get(
            &format!("/deployments/{}/events?after=0&token={token}", seed.v3.id),
            None,
        )
        .await;
    assert_eq!(events.status, 200);
    assert_eq!(events.json()["lines"].as_array().unwrap().len(), 5);

    // The globex deployment opens too (the token names the deployment, not a tenant).
    let globex_token = log_token(&site.keys, seed.globex.id, Utc::now() + TimeDelta::hours(1));
    let globex = site
        .get(
            &format!("/deployments/{}?token={globex_token}", seed.globex.id),
            None,
        )
        .await;
    assert_eq!(globex.status, 200);
    globex.assert_contains(&["api-staging · v1 · rolling · succeeded"]);

    let denied = |answer: &Answer, reason: &str| {
        assert_eq!(answer.status, 303, "{}", answer.body);
        assert!(
            answer.location.ends_with(&format!("&reason={reason}")),
            "{}",
            answer.location
        );
        assert!(!answer.body.contains("web-production"));
    };
    // Another deployment with this token.
    denied(
        &site
            .get(&format!("/deployments/{}?token={token}", seed.v2.id), None)
            .await,
        "link_invalid",
    );
    // A changed tag, and a changed expiry.
    let last = token.chars().last().unwrap();
    let changed = format!(
        "{}{}",
        &token[..token.len() - 1],
        if last == 'A' { 'B' } else { 'A' }
    );
    denied(
        &site
            .get(
                &format!("/deployments/{}?token={changed}", seed.v3.id),
                None,
            )
            .await,
        "link_invalid",
    );
    let (expires, tag) = token.split_once('.').unwrap();
    let later = format!("{}.{tag}", expires.parse::<i64>().unwrap() + 86_400);
    denied(
        &site
            .get(&format!("/deployments/{}?token={later}", seed.v3.id), None)
            .await,
        "link_invalid",
    );
    // Signed with another key.
    let foreign = log_token(
        &PageKeys::from_master(b"another-key-0123456789abcdef012345"),
        seed.v3.id,
        Utc::now() + TimeDelta::hours(1),
    );
    denied(
        &site
            .get(
                &format!("/deployments/{}?token={foreign}", seed.v3.id),
                None,
            )
            .await,
        "link_invalid",
    );
    // Genuine but expired.
    let expired = log_token(&site.keys, seed.v3.id, Utc::now() - TimeDelta::minutes(1));
    let answer = site
        .get(
            &format!("/deployments/{}?token={expired}", seed.v3.id),
            None,
        )
        .await;
    denied(&answer, "link_expired");
    let form = site.get(&answer.location, None).await;
    form.assert_contains(&["This deployment link has expired."]);
    let events = site
        .get(
            &format!("/deployments/{}/events?token={expired}", seed.v3.id),
            None,
        )
        .await;
    assert_eq!(events.status, 401);
    // The token opens no other page.
    assert_eq!(
        site.get(&format!("/?token={token}"), None).await.status,
        303
    );
    site.stop().await;
}

/// `/deployments/{id}/events?after=SEQ` answers the lines after SEQ, the state and progress.
async fn events_return_lines_after_seq(db: TestDb) {
    let site = Site::start(db, true, None, false).await;
    let seed = seed(&site).await;
    let events = site
        .get(&format!("/deployments/{}/events?after=2", seed.v3.id), None)
        .await;
    assert_eq!(events.status, 200);
    let json = events.json();
    let seqs: Vec<i64> = json["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [3, 4, 5]);
    assert_eq!(json["lines"][0]["line"], LOG_SCRIPT);
    assert_eq!(json["lines"][0]["stream"], "stdout");
    assert_eq!(json["lines"][1]["line"], "warning: slow start");
    assert_eq!(json["next_after"], 5);
    assert_eq!(json["state"], "running");
    assert_eq!(json["final"], false);
    assert_eq!(json["label"], "running 50%");
    assert_eq!(json["title"], "web-production · v3 · canary · running 50%");
    assert_eq!(
        json["progress"],
        json!({"phase": "shift", "percent": 50, "message": "sending 50% of traffic to the canary"})
    );

    let none = site
        .get(&format!("/deployments/{}/events?after=5", seed.v3.id), None)
        .await
        .json();
    assert_eq!(none["lines"], json!([]));
    assert_eq!(none["next_after"], 5);

    let failed = site
        .get(&format!("/deployments/{}/events", seed.v2.id), None)
        .await
        .json();
    assert_eq!(failed["final"], true);
    assert_eq!(
        failed["error"],
        "health check failed: <b>503</b> from /healthz"
    );

    let bad = site
        .get(
            &format!("/deployments/{}/events?after=abc", seed.v3.id),
            None,
        )
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["code"], "invalid_request");
    assert_eq!(
        site.get("/deployments/dep_nope/events", None).await.status,
        404
    );
    site.stop().await;
}

/// Unknown and malformed ids get a page that says so, with a way back.
async fn unknown_and_malformed_ids_get_a_friendly_404(db: TestDb) {
    let site = Site::start(db, true, None, false).await;
    let _seed = seed(&site).await;
    let unknown = deploybot::deploy::DeploymentId::new();
    for path in [
        format!("/deployments/{unknown}"),
        "/deployments/not-an-id".to_string(),
        "/deployments/inst_01h455vb4pex5vsknk084sn02q".to_string(),
        "/deployments/%3Cscript%3E".to_string(),
    ] {
        let page = site.get(&path, None).await;
        assert_eq!(page.status, 404, "{path}");
        assert!(page.content_type.starts_with("text/html"));
        page.assert_contains(&[
            "Deployment not found",
            "<a href=\"/\">Go to all deployments</a>",
        ]);
        assert_eq!(page.body.matches("<script").count(), 1, "{}", page.body);
    }
    site.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Real browser
// ---------------------------------------------------------------------------------------------

/// A deploy script that prints a line every 200 ms for about six seconds.
fn chatty_script(dir: &Path) -> PathBuf {
    let path = dir.join("deploy.sh");
    std::fs::write(
        &path,
        "#!/bin/bash\nfor i in $(seq 1 30); do echo \"building step $i of 30\"; sleep 0.2; done\n",
    )
    .unwrap();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).unwrap();
    path
}

/// Real headless Chromium loads `/` and a running deployment's page, and the page's script
/// appends the log lines the worker writes while the deployment runs, until it succeeds.
async fn a_browser_follows_a_running_deployment(db: TestDb) {
    let Some(binary) = chromium::find_or_skip("pages browser test") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let provider = Arc::new(CommandProvider {
        argv: vec![chatty_script(dir.path()).display().to_string()],
        noop_run: Vec::new(),
        timeout: Duration::from_secs(60),
        kill_grace: Duration::from_secs(2),
        pass_env: Vec::new(),
    });
    let site = Site::start(db, true, Some(provider), true).await;
    let d = site
        .deploy("acme", &site.web, req("ghcr.io/acme/web:live"))
        .await;
    // Wait until it runs and a few lines are stored, so the page starts mid-log.
    let started = Instant::now();
    loop {
        let lines = site.service.read_logs("acme", d.id, 0, 1000).await.unwrap();
        if lines
            .iter()
            .filter(|l| l.line.starts_with("building step"))
            .count()
            >= 3
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the deployment never started logging"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let base = site.base.clone();
    let id = d.id.to_string();
    let screenshot = std::env::var_os("DEPLOYBOT_SCREENSHOT").map(PathBuf::from);
    let seen = tokio::task::spawn_blocking(move || {
        let mut browser = Chromium::launch(&binary);

        let index = browser.open(&format!("{base}/"));
        if let Some(path) = &screenshot {
            std::fs::write(path.with_extension("index.png"), browser.screenshot(&index)).unwrap();
        }
        let text = browser.eval(&index, "document.querySelector('main').innerText");
        let text = text.as_str().unwrap();
        assert!(text.contains("web-production") && text.contains("acme/web"), "{text}");
        assert!(text.contains("running"), "{text}");

        let tab = browser.open(&format!("{base}/deployments/{id}"));
        let headline = browser.eval(&tab, "document.querySelector('h1').innerText");
        assert!(
            headline.as_str().unwrap().starts_with("web-production · v1 · recreate"),
            "{headline}"
        );
        let count = "document.querySelectorAll('#log .line').length";
        let rendered = browser.eval(&tab, count).as_u64().unwrap();
        assert!(rendered >= 3, "the server rendered {rendered} lines");
        // The script appends what the worker writes from now on.
        browser.wait_within(
            &tab,
            &format!("{count} > {rendered} && document.querySelectorAll('#log .line.live').length > 0"),
            Duration::from_secs(15),
        );
        let midway = browser.eval(&tab, count).as_u64().unwrap();
        if let Some(path) = &screenshot {
            std::fs::write(path, browser.screenshot(&tab)).unwrap();
        }
        // … until the deployment succeeds and the log is complete.
        browser.wait_within(
            &tab,
            "document.getElementById('state').textContent === 'succeeded' && document.getElementById('live').hidden",
            Duration::from_secs(60),
        );
        let seqs = browser.eval(&tab, "[...document.querySelectorAll('#log .line')].map(e => Number(e.dataset.seq))");
        let steps = browser.eval(
            &tab,
            "[...document.querySelectorAll('#log .line')].filter(e => e.textContent.includes('building step')).length",
        );
        let title = browser.eval(&tab, "document.title");
        (rendered, midway, seqs, steps, title)
    })
    .await
    .unwrap();
    let (rendered, midway, seqs, steps, title) = seen;
    assert!(
        midway > rendered,
        "{midway} lines midway, {rendered} at load"
    );
    assert_eq!(steps, json!(30), "every line of the script, once");
    let stored = site
        .service
        .read_logs("acme", d.id, 0, 10_000)
        .await
        .unwrap();
    let expected: Vec<i64> = stored.iter().map(|l| l.seq).collect();
    assert_eq!(
        seqs,
        json!(expected),
        "the page shows the stored log, in order, without gaps or repeats"
    );
    assert_eq!(
        title,
        "web-production · v1 · recreate · succeeded — deploybot"
    );
    let _ = writeln!(
        std::io::stderr(),
        "pages browser test: Chromium showed {rendered} lines at load, {midway} a moment later, {} at the end",
        expected.len()
    );
    site.stop().await;
}

impl Site {
    /// Signs in with `token` and returns the `Cookie` header value of the session.
    async fn session(&self, token: &str) -> String {
        let answer = self.signin(token).await;
        assert_eq!(answer.status, 303, "{}", answer.body);
        let cookie = answer.set_cookie.split(';').next().unwrap().to_string();
        assert!(cookie.starts_with("deploybot_session="), "{cookie}");
        cookie
    }

    /// Whether `cookie` is a session this server accepts (`/` shows who is signed in).
    async fn accepts(&self, cookie: &str) -> bool {
        let index = self.get("/", Some(cookie)).await;
        match index.status {
            200 => {
                index.assert_contains(&["signed in as <strong>"]);
                true
            }
            303 => {
                assert!(index.location.starts_with("/signin"), "{}", index.location);
                false
            }
            other => panic!("/ answered {other}: {}", index.body),
        }
    }

    /// Whether a `log_url` made elsewhere opens its deployment here.
    async fn opens(&self, log_url: &str) -> bool {
        let (_, path) = log_url.split_at(log_url.find("/deployments/").unwrap());
        let page = self.get(path, None).await;
        match page.status {
            200 => true,
            303 => {
                assert!(page.location.contains("reason=link_"), "{}", page.location);
                false
            }
            other => panic!("{path} answered {other}: {}", page.body),
        }
    }
}

/// HMAC-SHA256 of `message` under `key`, to forge tags with keys derived from the webhook secret.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    use hmac::digest::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// Someone who knows the webhook secret (whoever set up a webhook) mints a session cookie
/// and a log link with keys derived from it: both are refused, while the genuine session
/// with the same contents is accepted.
async fn a_session_or_log_link_signed_with_the_webhook_secret_is_refused(db: TestDb) {
    let site = Site::start(db, false, None, false).await;
    let deployment = site
        .deploy("acme", &site.web, req("ghcr.io/acme/web:v1"))
        .await;
    let genuine = site.session(ACME_TOKEN).await;
    assert!(site.accepts(&genuine).await);

    let value = genuine.strip_prefix("deploybot_session=").unwrap();
    let (payload, _) = value.split_once('.').unwrap();
    let payload = URL_SAFE_NO_PAD.decode(payload).unwrap();
    let expires = (Utc::now() + TimeDelta::days(7)).timestamp();
    let old_payload = format!("v1\nacme\nci\n{expires}").into_bytes();
    for label in ["deploybot/pages/session/v1", "deploybot/pages/session/v2"] {
        let key = hmac_sha256(SECRET.as_bytes(), label.as_bytes());
        for payload in [&payload, &old_payload] {
            let forged = format!(
                "deploybot_session={}.{}",
                URL_SAFE_NO_PAD.encode(payload),
                URL_SAFE_NO_PAD.encode(hmac_sha256(&key, payload))
            );
            assert!(!site.accepts(&forged).await, "{label}: {forged}");
        }
    }
    for label in [
        "deploybot/pages/log-token/v1",
        "deploybot/pages/log-token/v2",
    ] {
        let key = hmac_sha256(SECRET.as_bytes(), label.as_bytes());
        let message = format!("log:{}:{expires}", deployment.id);
        let token = format!(
            "{expires}.{}",
            URL_SAFE_NO_PAD.encode(hmac_sha256(&key, message.as_bytes()))
        );
        let url = format!("{}/deployments/{}?token={token}", site.base, deployment.id);
        assert!(!site.opens(&url).await, "{label}: {url}");
    }
    let genuine_link = log_url(&site.config, &site.keys, deployment.id);
    assert!(site.opens(&genuine_link).await);
    site.stop().await;
}

/// alice signs in with the `ci` token. A restart keeps her session; once the operator gives
/// `ci` a new value, or removes it, and restarts, her session is refused.
async fn a_session_ends_when_its_token_is_changed_or_removed_from_the_config(db: TestDb) {
    let db = Arc::new(db);
    let site = Site::start_private(Arc::clone(&db), None, |_| {}).await;
    let cookie = site.session(ACME_TOKEN).await;
    assert!(site.accepts(&cookie).await);
    site.stop().await;

    let site = Site::start_private(Arc::clone(&db), None, |_| {}).await;
    assert!(site.accepts(&cookie).await, "a restart keeps sessions");
    site.stop().await;

    let site = Site::start_private(Arc::clone(&db), None, |config| {
        let ci = config
            .api
            .tokens
            .iter_mut()
            .find(|t| t.name == "ci")
            .unwrap();
        ci.sha256 = sha256_hex("acme-pages-token-rotated");
    })
    .await;
    assert!(!site.accepts(&cookie).await, "the token has another value");
    let rotated = site.session("acme-pages-token-rotated").await;
    assert!(site.accepts(&rotated).await);
    site.stop().await;

    let site = Site::start_private(Arc::clone(&db), None, |config| {
        config.api.tokens.retain(|t| t.name != "ci");
    })
    .await;
    assert!(!site.accepts(&cookie).await, "the token is gone");
    assert!(!site.accepts(&rotated).await, "the token is gone");
    site.stop().await;
}

/// Without DEPLOYBOT_SESSION_KEY, replicas that start together on one database agree on
/// one generated key: a session from one server and a log link it posted are accepted by
/// the other.
async fn two_servers_on_one_database_accept_each_others_sessions_and_log_links(db: TestDb) {
    let db = Arc::new(db);
    let starting: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            std::thread::spawn(move || {
                let store = DieselStore::connect(&url).unwrap();
                PageKeys::load(&Config::default(), &store).unwrap()
            })
        })
        .collect();
    let keys: Vec<PageKeys> = starting.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(keys.windows(2).all(|w| w[0] == w[1]), "one key for all");

    let one = Site::start_private(Arc::clone(&db), None, |_| {}).await;
    let other_store = Arc::new(DieselStore::connect(&db.url).unwrap());
    let two = Site::start_private(Arc::clone(&db), Some(other_store), |_| {}).await;
    assert_eq!(one.keys, keys[0]);
    let deployment = one
        .deploy("acme", &one.web, req("ghcr.io/acme/web:v1"))
        .await;

    let from_one = one.session(ACME_TOKEN).await;
    let from_two = two.session(GLOBEX_TOKEN).await;
    assert!(two.accepts(&from_one).await);
    assert!(one.accepts(&from_two).await);
    assert!(
        two.opens(&log_url(&one.config, &one.keys, deployment.id))
            .await
    );
    assert!(
        one.opens(&log_url(&two.config, &two.keys, deployment.id))
            .await
    );
    one.stop().await;
    two.stop().await;
}

/// With DEPLOYBOT_SESSION_KEY set, that key signs sessions and log links: the key the
/// database holds no longer does, and a server on another database with the same key
/// accepts the sessions.
async fn with_a_session_key_set_that_key_signs_sessions_and_log_links(db: TestDb) {
    const KEY: &str = "6b1f0c9e2d7a4b3c8e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5";
    let from_env = Config::from_toml_str("", &|name| {
        (name == "DEPLOYBOT_SESSION_KEY").then(|| KEY.to_string())
    })
    .unwrap()
    .session_key;
    assert!(from_env.is_some());

    let db = Arc::new(db);
    let site = Site::start_private(Arc::clone(&db), None, |_| {}).await;
    let stored_key_session = site.session(ACME_TOKEN).await;
    let deployment = site
        .deploy("acme", &site.web, req("ghcr.io/acme/web:v1"))
        .await;
    let stored_key_link = log_url(&site.config, &site.keys, deployment.id);
    site.stop().await;

    let key = from_env.clone();
    let site = Site::start_private(Arc::clone(&db), None, move |c| c.session_key = key).await;
    assert!(!site.accepts(&stored_key_session).await);
    assert!(!site.opens(&stored_key_link).await);
    let link = log_url(
        &site.config,
        &PageKeys::from_master(&hex::decode(KEY).unwrap()),
        deployment.id,
    );
    assert!(site.opens(&link).await);
    let session = site.session(ACME_TOKEN).await;
    assert!(site.accepts(&session).await);

    let elsewhere = Site::start_private(Arc::new(TestDb::sqlite()), None, move |c| {
        c.session_key = from_env
    })
    .await;
    assert!(elsewhere.accepts(&session).await);
    site.stop().await;
    elsewhere.stop().await;
}

/// A dashboard token scoped to `api-*` signs in: `/` does not show `web-production`, and its
/// deployments are not found for that sign-in.
async fn a_session_shows_only_the_instances_its_token_covers(db: TestDb) {
    const API_TEAM: &str = "acme-api-team-token-5d1e";
    let site = Site::start_private(Arc::new(db), None, |config| {
        config.api.tokens.push(ApiToken {
            name: "api-team".into(),
            tenant: "acme".into(),
            sha256: sha256_hex(API_TEAM),
            role: Role::Read,
            instances: vec!["api-*".into()],
        });
    })
    .await;
    let deployment = site
        .deploy("acme", &site.web, req("ghcr.io/acme/web:v1"))
        .await;
    let everything = site.session(ACME_TOKEN).await;
    let scoped = site.session(API_TEAM).await;
    let page = format!("/deployments/{}", deployment.id);

    let index = site.get("/", Some(&everything)).await;
    index.assert_contains(&["web-production"]);
    assert_eq!(site.get(&page, Some(&everything)).await.status, 200);

    let index = site.get("/", Some(&scoped)).await;
    assert_eq!(index.status, 200);
    index.assert_contains(&["signed in as <strong>api-team</strong>"]);
    assert!(!index.body.contains("web-production"), "{}", index.body);
    let answer = site.get(&page, Some(&scoped)).await;
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert!(!answer.body.contains("ghcr.io/acme/web:v1"));
    let events = site
        .get(&format!("{page}/events?after=0"), Some(&scoped))
        .await;
    assert_ne!(events.status, 200, "{}", events.body);
    site.stop().await;
}

both_backends_async!(
    index_lists_instances_and_latest_deployments,
    a_deployment_shows_its_trigger_and_pull_request,
    a_deployment_links_to_its_pull_request_and_github_deployment,
    github_links_use_the_configured_web_address,
    deployment_page_shows_release_strategy_progress_and_error,
    values_from_the_database_are_escaped,
    env_values_never_appear,
    private_pages_redirect_to_signin,
    signin_with_a_valid_token_shows_only_its_tenant,
    an_invalid_token_is_refused,
    a_log_token_opens_exactly_its_deployment,
    events_return_lines_after_seq,
    unknown_and_malformed_ids_get_a_friendly_404,
    a_browser_follows_a_running_deployment,
    a_session_or_log_link_signed_with_the_webhook_secret_is_refused,
    a_session_ends_when_its_token_is_changed_or_removed_from_the_config,
    two_servers_on_one_database_accept_each_others_sessions_and_log_links,
    with_a_session_key_set_that_key_signs_sessions_and_log_links,
    a_session_shows_only_the_instances_its_token_covers,
);
