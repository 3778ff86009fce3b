//! What a person sees of a deployment's gates and of why it ended, on its page and in the
//! API: a real actix server on 127.0.0.1 with the pages and /v1, over the real Service and
//! store, on SQLite and PostgreSQL. No worker runs: the test claims and settles
//! deployments through the store as a worker would.

mod common;

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use chrono::{TimeDelta, Utc};
use common::TestDb;
use deploybot::config::{ApiConfig, ApiToken, Config, InstanceConfig, PagesConfig, Role};
use deploybot::deploy::provider::GateReading;
use deploybot::deploy::{
    CanarySteps, DeployRequest, DeployState, Deployment, Instance, InstanceSpec, InstanceStore,
    QueueStore, Service, ServiceStore,
};
use deploybot::provider::catalog::ConfigCatalog;
use deploybot::provider::noop::NoopProvider;
use deploybot::server::AppState;
use deploybot::server::pages::PageKeys;
use deploybot::store::DieselStore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "acme-gates-token-5b1e07";
const SHA: &str = "a10867b14bb761a232cd80139fbd4c0d33264240";
const OWNER: &str = "gate-readings-test";

/// The pages (public) and /v1 on 127.0.0.1, over `db`.
struct Site {
    base: String,
    store: Arc<DieselStore>,
    service: Service,
    web: Instance,
    handle: ServerHandle,
    http: reqwest::Client,
    _db: TestDb,
}

impl Site {
    async fn start(db: TestDb) -> Site {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let config = Arc::new(Config {
            public_url: base.clone(),
            webhook_secrets: vec!["gate-readings-secret".into()],
            pages: PagesConfig { public: true },
            api: ApiConfig {
                tokens: vec![ApiToken {
                    name: "dash".into(),
                    tenant: "acme".into(),
                    sha256: hex::encode(Sha256::digest(TOKEN.as_bytes())),
                    role: Role::Read,
                    instances: Vec::new(),
                }],
            },
            instances: vec![InstanceConfig::new(
                "web-production",
                "acme/web",
                "production",
                "ghcr.io/acme/web:{sha}",
            )],
            ..Config::default()
        });
        let store = Arc::clone(&db.store);
        let keys = PageKeys::load(&config, &*store).unwrap();
        let web = store
            .upsert_instance("acme", "web-production", "acme/web", "production")
            .unwrap();
        let mut catalog = ConfigCatalog::default();
        catalog.insert(
            "acme",
            InstanceSpec {
                name: "web-production".into(),
                environment: "production".into(),
                default_strategy: "canary".into(),
                supersede: false,
                provider: Arc::new(NoopProvider),
                health: None,
                gates: Vec::new(),
                watch: None,
                canary: CanarySteps::default(),
                wait_for_github: false,
                env: Default::default(),
                control: Default::default(),
            },
        );
        let service = Service::new(
            Arc::clone(&store) as Arc<dyn ServiceStore>,
            Arc::new(catalog),
        );
        let state = web::Data::new(AppState {
            config: config.into(),
            store: store.clone(),
            service: service.clone(),
            worker_alive: CancellationToken::new(),
            keys,
            reload: None,
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .configure(deploybot::server::pages::routes)
                .configure(deploybot::server::api::routes)
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Site {
            base,
            store,
            service,
            web,
            handle,
            http: reqwest::Client::new(),
            _db: db,
        }
    }

    /// Queues a deployment of `image`, claims it and settles it in `state` with `error`,
    /// `gates` and `watch_until`, as a worker would.
    async fn settled(
        &self,
        image: &str,
        state: DeployState,
        error: &str,
        gates: Vec<GateReading>,
        watch_until: Option<chrono::DateTime<Utc>>,
    ) -> Deployment {
        let request = DeployRequest {
            instance_id: self.web.id,
            image: image.into(),
            env: Default::default(),
            strategy: String::new(),
            notes: String::new(),
            commit_sha: SHA.into(),
            params: Default::default(),
            noop: false,
        };
        let queued = self
            .service
            .deploy("acme", request, "octocat")
            .await
            .unwrap();
        let mut running = self
            .store
            .claim_next(OWNER, Duration::from_secs(300))
            .unwrap()
            .expect("a deployment to claim");
        assert_eq!(running.id, queued.id);
        running.transition(state).unwrap();
        running.error = error.into();
        running.gates = gates;
        running.watch_until = watch_until;
        self.store.finish_deployment(&running, OWNER).unwrap();
        running
    }

    async fn page(&self, path: &str) -> String {
        let answer = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 200, "{path}");
        answer.text().await.unwrap()
    }

    async fn api(&self, path: &str) -> Value {
        let answer = self
            .http
            .get(format!("{}/v1{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 200, "{path}");
        serde_json::from_str(&answer.text().await.unwrap()).unwrap()
    }
}

fn reading(gate: &str, value: &str, bound: &str, passed: bool, at: &str) -> GateReading {
    GateReading {
        gate: gate.into(),
        value: value.into(),
        bound: bound.into(),
        passed,
        at: at.into(),
    }
}

fn assert_contains(body: &str, needles: &[&str]) {
    for needle in needles {
        assert!(body.contains(needle), "{needle:?} is missing from:\n{body}");
    }
}

/// A succeeded deployment under watch shows each gate's last value and "watching until";
/// one that rolled back shows why, in the error box and at the end of its timeline, with
/// the failing gate marked; the API carries the same readings, the reason and the watch.
async fn gates_and_reasons_show_on_the_page_and_in_the_api(db: TestDb) {
    let site = Site::start(db).await;
    let until = Utc::now() + TimeDelta::minutes(10);
    let good = site
        .settled(
            "ghcr.io/acme/web:v1",
            DeployState::Succeeded,
            "",
            vec![reading("error rate", "0.003", "≤ 0.01", true, "promotion")],
            Some(until),
        )
        .await;
    let reason = "error rate 0.042 > 0.01 at canary 50%; restored v1";
    let bad = site
        .settled(
            "ghcr.io/acme/web:v2",
            DeployState::RolledBack,
            reason,
            vec![
                reading("error rate", "0.042", "≤ 0.01", false, "canary 50%"),
                reading("p99 <latency>", "0.21", "≤ 0.5", true, "canary 50%"),
            ],
            None,
        )
        .await;

    let page = site.page(&format!("/deployments/{}", good.id)).await;
    assert_contains(
        &page,
        &[
            "<section id=\"gates\"><h2>Gates</h2>",
            "<th>Gate</th><th>Last value</th><th>Bound</th><th>Result</th><th>Measured at</th>",
            "<tr class=\"passed\"><td>error rate</td><td class=\"value\">0.003</td><td>≤ 0.01</td><td class=\"result\">passed</td><td>promotion</td></tr>",
            "<p id=\"watching\" class=\"watching\">Watching until ",
        ],
    );

    let page = site.page(&format!("/deployments/{}", bad.id)).await;
    let shown = "error rate 0.042 &gt; 0.01 at canary 50%; restored v1";
    assert_contains(
        &page,
        &[
            "<strong id=\"error-label\">Rolled back</strong>",
            &format!(
                "<li id=\"timeline-outcome\" class=\"outcome\"><strong>Rolled back:</strong> {shown}"
            ),
            "<tr class=\"failed\"><td>error rate</td><td class=\"value\">0.042</td><td>≤ 0.01</td><td class=\"result\">failed</td><td>canary 50%</td></tr>",
            "<td>p99 &lt;latency&gt;</td>",
        ],
    );
    assert!(!page.contains("Watching until"), "not watched");

    let json = site.api(&format!("/deployments/{}", bad.id)).await;
    assert_eq!(json["state"], "rolled_back");
    assert_eq!(json["error"], reason);
    assert_eq!(
        json["gates"],
        json!([
            {"gate": "error rate", "value": "0.042", "bound": "≤ 0.01", "passed": false, "at": "canary 50%"},
            {"gate": "p99 <latency>", "value": "0.21", "bound": "≤ 0.5", "passed": true, "at": "canary 50%"},
        ])
    );
    assert!(json.get("watch_until").is_none(), "{json}");
    let json = site.api(&format!("/deployments/{}", good.id)).await;
    assert_eq!(json["gates"][0]["value"], "0.003");
    let watched: chrono::DateTime<Utc> = json["watch_until"].as_str().unwrap().parse().unwrap();
    assert!((watched - until).num_seconds().abs() < 1, "{json}");
    let list = site
        .api(&format!("/instances/{}/deployments", site.web.id))
        .await;
    assert_eq!(list["items"][0]["gates"][0]["passed"], false, "{list}");

    let events = site.api_events(bad.id).await;
    assert_eq!(events["error_label"], "Rolled back");
    site.handle.stop(false).await;
}

impl Site {
    /// The page script's `/events` JSON for deployment `id`.
    async fn api_events(&self, id: deploybot::deploy::DeploymentId) -> Value {
        let answer = self
            .http
            .get(format!("{}/deployments/{id}/events?after=0", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 200);
        serde_json::from_str(&answer.text().await.unwrap()).unwrap()
    }
}

both_backends_async!(gates_and_reasons_show_on_the_page_and_in_the_api);
