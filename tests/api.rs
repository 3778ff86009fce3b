//! The REST API over real HTTP: a real actix server on 127.0.0.1 in front of the real
//! Service and store, on SQLite and on PostgreSQL. No worker runs, so deployments stay
//! pending unless a test changes them through the store.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use deploybot::config::{ApiConfig, ApiToken, Config, InstanceConfig, Role};
use deploybot::deploy::{
    ApprovalState, CanarySteps, DeployState, Deployment, DeploymentId, Instance, InstanceSpec,
    InstanceStore, LogStore, QueueStore, Release, ReleaseId, ReleaseStore, Service, ServiceStore,
    WaitKind, WaitingFor,
};
use deploybot::github::outbox::{CommentReply, NewOutboxItem, OutboxResult, OutboxStore, Work};
use deploybot::provider::catalog::ConfigCatalog;
use deploybot::provider::noop::NoopProvider;
use deploybot::server::AppState;
use deploybot::server::pages::PageKeys;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use common::TestDb;

/// Tenant acme, token name "ci".
const ACME: &str = "acme-ci-token-0123456789";
/// Tenant acme, token name "ops".
const ACME_OPS: &str = "acme-ops-token-0123456789";
/// Tenant globex, token name "globex-ci".
const GLOBEX: &str = "globex-token-0123456789";
/// Tenant acme, one token per role: (role, token name, token).
const ROLE_TOKENS: [(Role, &str, &str); 3] = [
    (Role::Read, "dash", "acme-read-token-0123456789"),
    (Role::Deploy, "deployer", "acme-deploy-token-0123456789"),
    (Role::Admin, "root", "acme-admin-token-0123456789"),
];
/// Tenant acme, token name "web-team": role deploy, instances `w*` (covers `web`, not `api`).
const WEB_TEAM: &str = "acme-web-team-token-0123456789";
/// Tenant acme, token name "web-admin": role admin, instances `w*`.
const WEB_ADMIN: &str = "acme-web-admin-token-0123456789";

fn token(name: &str, tenant: &str, secret: &str) -> ApiToken {
    scoped_token(name, tenant, secret, Role::default(), &[])
}

fn scoped_token(
    name: &str,
    tenant: &str,
    secret: &str,
    role: Role,
    instances: &[&str],
) -> ApiToken {
    ApiToken {
        name: name.into(),
        tenant: tenant.into(),
        sha256: hex::encode(Sha256::digest(secret.as_bytes())),
        role,
        instances: instances.iter().map(|g| g.to_string()).collect(),
    }
}

fn spec(name: &str) -> InstanceSpec {
    InstanceSpec {
        name: name.into(),
        environment: "production".into(),
        default_strategy: "rolling".into(),
        supersede: false,
        provider: Arc::new(NoopProvider),
        health: None,
        gates: Vec::new(),
        watch: None,
        canary: CanarySteps {
            steps: vec![10, 50, 100],
            pause: Duration::from_millis(10),
        },
        wait_for_github: false,
        env: Default::default(),
        control: Default::default(),
    }
}

/// An answer: status, headers and body.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }

    /// Asserts an error answer in the API's shape, whose message contains every `needle`.
    #[track_caller]
    fn assert_error(&self, status: u16, code: &str, needles: &[&str]) {
        assert_eq!(self.status, status, "{}", self.text);
        let body = self.json();
        assert_eq!(body["error"]["code"], code, "{}", self.text);
        let message = body["error"]["message"].as_str().unwrap();
        for needle in needles {
            assert!(
                message.contains(needle),
                "message {message:?} does not contain {needle:?}"
            );
        }
    }

    fn deployment(&self) -> Deployment {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }
}

/// A running server with tenants acme (instances `web` and `api`) and globex (`web`).
struct Api {
    base: String,
    http: reqwest::Client,
    handle: ServerHandle,
    db: TestDb,
    service: Service,
    web: Instance,
    api: Instance,
    globex_web: Instance,
}

impl Api {
    async fn start(db: TestDb) -> Api {
        let web = db
            .store
            .upsert_instance("acme", "web", "acme/web", "production")
            .unwrap();
        let api = db
            .store
            .upsert_instance("acme", "api", "acme/api", "production")
            .unwrap();
        let globex_web = db
            .store
            .upsert_instance("globex", "web", "globex/web", "production")
            .unwrap();
        let mut catalog = ConfigCatalog::default();
        catalog.insert("acme", spec("web"));
        catalog.insert("acme", spec("api"));
        catalog.insert("globex", spec("web"));
        let service = Service::new(
            Arc::clone(&db.store) as Arc<dyn ServiceStore>,
            Arc::new(catalog),
        );
        let config = Config {
            api: ApiConfig {
                tokens: [
                    token("ci", "acme", ACME),
                    token("ops", "acme", ACME_OPS),
                    token("globex-ci", "globex", GLOBEX),
                    scoped_token("web-team", "acme", WEB_TEAM, Role::Deploy, &["w*"]),
                    scoped_token("web-admin", "acme", WEB_ADMIN, Role::Admin, &["w*"]),
                ]
                .into_iter()
                .chain(
                    ROLE_TOKENS
                        .iter()
                        .map(|(role, name, secret)| scoped_token(name, "acme", secret, *role, &[])),
                )
                .collect(),
            },
            // The API may set LOG_LEVEL on acme's web.
            instances: vec![InstanceConfig {
                api_env: vec!["LOG_LEVEL".into()],
                ..InstanceConfig::new("web", "acme/web", "production", "ghcr.io/acme/web:{sha}")
            }],
            ..Config::default()
        };
        let state = web::Data::new(AppState {
            config: Arc::new(config).into(),
            store: db.store.clone(),
            service: service.clone(),
            worker_alive: CancellationToken::new(),
            keys: PageKeys::from_master(b"api-test-session-key-0123456789abcdef"),
            reload: Some(Arc::new(common::UnchangedReload)),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .configure(deploybot::server::routes)
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .unwrap();
        let base = format!("http://{}", server.addrs()[0]);
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Api {
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            handle,
            db,
            service,
            web,
            api,
            globex_web,
        }
    }

    async fn stop(self) {
        self.handle.stop(true).await;
    }

    async fn call(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<(&str, &str)>,
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some((content_type, body)) = body {
            request = request
                .header("content-type", content_type)
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        Answer {
            status,
            headers,
            text,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.call(Some(ACME), "GET", path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.post_as(ACME, path, body).await
    }

    async fn post_as(&self, token: &str, path: &str, body: Value) -> Answer {
        self.call(
            Some(token),
            "POST",
            path,
            Some(("application/json", &body.to_string())),
        )
        .await
    }

    /// A new pending deployment of `instance` (acme), through the API.
    async fn deploy(&self, instance: &str, image: &str) -> Deployment {
        let answer = self
            .post(
                &format!("/v1/instances/{instance}/deploy"),
                json!({"image": image}),
            )
            .await;
        assert_eq!(answer.status, 201, "{}", answer.text);
        answer.deployment()
    }

    /// Marks the release of `deployment` active, as a successful run would.
    fn activate(&self, deployment: &Deployment) {
        self.db
            .store
            .activate_release(&deployment.tenant_id, deployment.release_id)
            .unwrap();
    }
}

// ---------------------------------------------------------------------------------------------

async fn every_route_answers_its_happy_path(db: TestDb) {
    let api = Api::start(db).await;

    // No releases yet.
    let answer = api.get("/v1/instances").await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let body = answer.json();
    let names: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["api", "web"]);
    assert!(body["items"][1]["active_release"].is_null());
    assert_eq!(body["items"][1]["id"], api.web.id.to_string());
    assert_eq!(body["items"][1]["configured"], true);

    // Deploy by name, with every field.
    let answer = api
        .post(
            "/v1/instances/web/deploy",
            json!({
                "image": "ghcr.io/acme/web:1.0.0",
                "env": {"LOG_LEVEL": "debug"},
                "strategy": "canary",
                "notes": "first",
                "commit_sha": "9fceb02d0ae598e95dc970b74767f19372d61af8",
            }),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let first = answer.deployment();
    assert_eq!(
        answer.header("location").unwrap(),
        format!("/v1/deployments/{}", first.id)
    );
    assert_eq!(first.state, DeployState::Pending);
    assert_eq!(first.instance_id, api.web.id);
    assert_eq!(first.image, "ghcr.io/acme/web:1.0.0");
    assert_eq!(first.strategy, "canary");
    assert_eq!(first.env["LOG_LEVEL"], "debug");
    // What the API answered is what the Service stored, in the domain's JSON.
    let stored = api.service.get_deployment("acme", first.id).await.unwrap();
    assert_eq!(stored, first);
    assert_eq!(answer.json(), serde_json::to_value(&stored).unwrap());

    // Deploy by instance id.
    let answer = api
        .post(
            &format!("/v1/instances/{}/deploy", api.web.id),
            json!({"image": "ghcr.io/acme/web:2.0.0"}),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let second = answer.deployment();
    assert_eq!(
        second.strategy, "rolling",
        "the instance's default strategy"
    );

    // Get a deployment.
    let answer = api.get(&format!("/v1/deployments/{}", first.id)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.deployment(), first);

    // List deployments, newest first.
    let answer = api.get("/v1/instances/web/deployments").await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let page = answer.json();
    assert_eq!(page["total"], 2);
    assert_eq!(page["items"][0]["id"], second.id.to_string());
    assert_eq!(page["items"][1]["id"], first.id.to_string());
    assert!(page.get("next_cursor").is_none());

    // Get a release, with what the deploy asked for.
    let answer = api.get(&format!("/v1/releases/{}", first.release_id)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let release: Release = serde_json::from_str(&answer.text).unwrap();
    let stored = api.service.get_release("acme", release.id).await.unwrap();
    assert_eq!(answer.json(), serde_json::to_value(&stored).unwrap());
    assert_eq!(release.version, 1);
    assert_eq!(release.notes, "first");
    assert_eq!(
        release.commit_sha,
        "9fceb02d0ae598e95dc970b74767f19372d61af8"
    );
    assert_eq!(
        api.service.get_release("acme", release.id).await.unwrap(),
        release
    );

    // List releases, highest version first.
    let answer = api
        .get(&format!("/v1/instances/{}/releases", api.web.id))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let page = answer.json();
    assert_eq!(page["total"], 2);
    assert_eq!(page["items"][0]["version"], 2);
    assert_eq!(page["items"][1]["version"], 1);

    // The active release shows in the instance list.
    api.activate(&first);
    api.activate(&second);
    let body = api.get("/v1/instances").await.json();
    assert_eq!(body["items"][1]["active_release"]["version"], 2);
    assert_eq!(body["items"][1]["active_release"]["active"], true);
    assert!(body["items"][0]["active_release"].is_null());

    // Rollback to a version, to a release id, and to the previous release.
    for (body, version) in [
        (json!({"version": 1}), 1),
        (json!({"release_id": second.release_id.to_string()}), 2),
        (json!({}), 1),
        (json!({"to": "previous"}), 1),
    ] {
        let answer = api.post("/v1/instances/web/rollback", body.clone()).await;
        assert_eq!(answer.status, 201, "{body}: {}", answer.text);
        let rollback = answer.deployment();
        assert_eq!(rollback.kind.as_str(), "rollback");
        let release = api
            .service
            .get_release("acme", rollback.release_id)
            .await
            .unwrap();
        assert_eq!(release.version, version, "{body}");
    }
    // A rollback without any body at all also means "previous".
    let answer = api
        .call(Some(ACME), "POST", "/v1/instances/web/rollback", None)
        .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    assert_eq!(answer.deployment().release_id, first.release_id);

    // Logs, followed with `after`.
    api.db
        .store
        .append_logs(
            "acme",
            first.id,
            1,
            &[
                ("stdout".into(), "one".into()),
                ("stderr".into(), "two".into()),
                ("deploybot".into(), "three".into()),
            ],
        )
        .unwrap();
    let answer = api.get(&format!("/v1/deployments/{}/logs", first.id)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let logs = answer.json();
    let lines: Vec<&str> = logs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_str().unwrap())
        .collect();
    assert_eq!(lines, ["one", "two", "three"]);
    assert_eq!(logs["items"][1]["stream"], "stderr");
    assert_eq!(logs["next_after"], 3);
    let logs = api
        .get(&format!(
            "/v1/deployments/{}/logs?after=1&limit=1",
            first.id
        ))
        .await
        .json();
    assert_eq!(logs["items"].as_array().unwrap().len(), 1);
    assert_eq!(logs["items"][0]["line"], "two");
    assert_eq!(logs["next_after"], 2);
    let logs = api
        .get(&format!("/v1/deployments/{}/logs?after=3", first.id))
        .await
        .json();
    assert_eq!(logs["items"], json!([]));
    assert_eq!(logs["next_after"], 3);

    // Cancel a pending deployment.
    let answer = api
        .post(&format!("/v1/deployments/{}/cancel", second.id), json!({}))
        .await;
    assert_eq!(answer.status, 204, "{}", answer.text);
    assert!(answer.text.is_empty());
    let cancelled = api.get(&format!("/v1/deployments/{}", second.id)).await;
    assert_eq!(cancelled.deployment().state, DeployState::Cancelled);

    api.stop().await;
}

async fn the_initiator_is_the_tokens_name(db: TestDb) {
    let api = Api::start(db).await;
    let by_ci = api.deploy("web", "ghcr.io/acme/web:1").await;
    assert_eq!(by_ci.initiator, "ci");
    // It ran: version 1 is a release a rollback may return to.
    api.activate(&by_ci);
    let answer = api
        .post_as(
            ACME_OPS,
            "/v1/instances/web/deploy",
            json!({"image": "ghcr.io/acme/web:2"}),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let by_ops = answer.deployment();
    assert_eq!(by_ops.initiator, "ops");
    let answer = api
        .post_as(
            ACME_OPS,
            "/v1/instances/web/rollback",
            json!({"version": 1}),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    assert_eq!(answer.deployment().initiator, "ops");
    // As stored.
    let stored = api.service.get_deployment("acme", by_ops.id).await.unwrap();
    assert_eq!(stored.initiator, "ops");
    let stored = api.service.get_deployment("acme", by_ci.id).await.unwrap();
    assert_eq!(stored.initiator, "ci");
    api.stop().await;
}

async fn another_tenants_things_are_not_found(db: TestDb) {
    let api = Api::start(db).await;
    let acme = api.deploy("api", "ghcr.io/acme/api:1").await;

    // globex sees only its own instance.
    let answer = api.call(Some(GLOBEX), "GET", "/v1/instances", None).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let body = answer.json();
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    assert_eq!(body["items"][0]["id"], api.globex_web.id.to_string());

    let dep = acme.id.to_string();
    let rel = acme.release_id.to_string();
    let inst = api.api.id.to_string();
    let cases: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("/v1/deployments/{dep}"), None),
        ("GET", format!("/v1/deployments/{dep}/logs"), None),
        ("POST", format!("/v1/deployments/{dep}/cancel"), None),
        ("GET", format!("/v1/releases/{rel}"), None),
        ("GET", format!("/v1/instances/{inst}/deployments"), None),
        ("GET", format!("/v1/instances/{inst}/releases"), None),
        ("GET", "/v1/instances/api/deployments".into(), None),
        (
            "POST",
            format!("/v1/instances/{inst}/deploy"),
            Some(json!({"image": "evil:1"})),
        ),
        (
            "POST",
            "/v1/instances/api/deploy".into(),
            Some(json!({"image": "evil:1"})),
        ),
        (
            "POST",
            format!("/v1/instances/{inst}/rollback"),
            Some(json!({"version": 1})),
        ),
    ];
    for (method, path, body) in cases {
        let body = body.map(|b| b.to_string());
        let answer = api
            .call(
                Some(GLOBEX),
                method,
                &path,
                body.as_deref().map(|b| ("application/json", b)),
            )
            .await;
        answer.assert_error(404, "not_found", &[]);
        assert!(
            !answer.text.contains("acme"),
            "{method} {path}: {}",
            answer.text
        );
    }
    // A rollback of globex's own instance to acme's release is not found either.
    let answer = api
        .call(
            Some(GLOBEX),
            "POST",
            "/v1/instances/web/rollback",
            Some(("application/json", &json!({"release_id": rel}).to_string())),
        )
        .await;
    answer.assert_error(404, "not_found", &[]);

    // The name `web` is globex's own instance for globex: acme's deployments stay hidden.
    api.deploy("web", "ghcr.io/acme/web:1").await;
    let answer = api
        .call(Some(GLOBEX), "GET", "/v1/instances/web/deployments", None)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.json()["total"], 0);

    // Nothing globex did touched acme's deployment, and nothing was queued for acme.
    let after = api.service.get_deployment("acme", acme.id).await.unwrap();
    assert_eq!(after.state, DeployState::Pending);
    let page = api.get("/v1/instances/api/deployments").await.json();
    assert_eq!(page["total"], 1);
    api.stop().await;
}

async fn a_missing_or_wrong_token_is_401(db: TestDb) {
    let api = Api::start(db).await;
    let headers: [Option<&str>; 6] = [
        None,
        Some("Basic YWNtZTpwdw=="),
        Some("Bearer"),
        Some("Bearer wrong-token"),
        Some("Bearer acme-ci-token-012345678"),
        Some("acme-ci-token-0123456789"),
    ];
    for header in headers {
        for (method, path) in [
            ("GET", "/v1/instances".to_string()),
            ("POST", "/v1/instances/web/deploy".to_string()),
            ("GET", format!("/v1/deployments/{}", DeploymentId::new())),
        ] {
            let method_ = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let mut request = api.http.request(method_, format!("{}{path}", api.base));
            if let Some(value) = header {
                request = request.header("authorization", value);
            }
            if method == "POST" {
                request = request
                    .header("content-type", "application/json")
                    .body(json!({"image": "x:1"}).to_string());
            }
            let response = request.send().await.unwrap();
            assert_eq!(
                response.status().as_u16(),
                401,
                "{header:?} {method} {path}"
            );
            let challenge = response
                .headers()
                .get("www-authenticate")
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            assert!(challenge.starts_with("Bearer"), "{challenge}");
            let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
            assert_eq!(body["error"]["code"], "unauthenticated");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(
                message.contains("Authorization: Bearer <token>")
                    && message.contains("[[api.tokens]]"),
                "{message}"
            );
            assert!(
                !message.contains("acme-ci-token"),
                "the token is echoed: {message}"
            );
        }
    }
    // Nothing was deployed by the refused requests.
    let page = api.get("/v1/instances/web/deployments").await.json();
    assert_eq!(page["total"], 0);
    api.stop().await;
}

async fn bad_bodies_are_400_naming_the_field(db: TestDb) {
    let api = Api::start(db).await;
    let deploy = "/v1/instances/web/deploy";
    let json_cases: Vec<(&str, &[&str])> = vec![
        (r#"{"image": 5}"#, &["`image`", "invalid type: integer `5`"]),
        (r#"{"imagee": "x:1"}"#, &["unknown field `imagee`"]),
        (
            r#"{"image": "x:1", "env": {"PORT": 8080}}"#,
            &["`env.PORT`", "expected a string"],
        ),
        (r#"{"image": "x:1", "env": []}"#, &["`env`"]),
        (r#"{"image": "x:1", "notes": null}"#, &["`notes`"]),
        (r#"{"image": "x:1""#, &["not valid JSON"]),
        (r#"{"image": "x:1"} trailing"#, &["not valid JSON"]),
        (r#"not json"#, &["not valid JSON"]),
        (r#"[]"#, &["invalid"]),
        (r#"{}"#, &["missing field `image`"]),
        (r#"{"image": ""}"#, &["image is empty"]),
        (
            r#"{"image": "x:1", "strategy": "yolo"}"#,
            &["unknown strategy", "yolo"],
        ),
        (r#"{"image": "x:1", "commit_sha": "zz"}"#, &["commit_sha"]),
    ];
    for (body, needles) in json_cases {
        let answer = api
            .call(Some(ACME), "POST", deploy, Some(("application/json", body)))
            .await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.text);
        answer.assert_error(400, "invalid_request", needles);
    }

    let rollback = "/v1/instances/web/rollback";
    let rollback_cases: Vec<(Value, &[&str])> = vec![
        (
            json!({"version": 1, "release_id": ReleaseId::new().to_string()}),
            &["at most one"],
        ),
        (json!({"release_id": "nope"}), &["`release_id`", "nope"]),
        (
            json!({"release_id": DeploymentId::new().to_string()}),
            &["`release_id`"],
        ),
        (json!({"version": "1"}), &["`version`"]),
        (json!({"version": 0}), &["version 0"]),
        (json!({"to": "next"}), &["next"]),
        (json!({"verison": 1}), &["unknown field `verison`"]),
        (json!({}), &["no previous release"]),
    ];
    for (body, needles) in rollback_cases {
        let answer = api.post(rollback, body.clone()).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.text);
        answer.assert_error(400, "invalid_request", needles);
    }

    // Not declared as JSON.
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let answer = api
            .call(
                Some(ACME),
                "POST",
                deploy,
                Some((content_type, r#"{"image": "x:1"}"#)),
            )
            .await;
        answer.assert_error(
            415,
            "unsupported_media_type",
            &["Content-Type: application/json"],
        );
    }
    // `application/json; charset=utf-8` and `+json` types are JSON.
    for content_type in [
        "application/json; charset=utf-8",
        "application/vnd.deploybot+json",
    ] {
        let answer = api
            .call(
                Some(ACME),
                "POST",
                deploy,
                Some((content_type, r#"{"image": "x:1"}"#)),
            )
            .await;
        assert_eq!(answer.status, 201, "{content_type}: {}", answer.text);
    }
    // Notes are counted in characters, as the document's `maxLength` counts them: 4096
    // two-byte characters are accepted, one more is refused.
    let notes = json!({"image": "x:1", "notes": "é".repeat(4096)});
    let answer = api.post(deploy, notes).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let answer = api
        .post(deploy, json!({"image": "x:1", "notes": "é".repeat(4097)}))
        .await;
    answer.assert_error(
        400,
        "invalid_request",
        &["notes are longer than 4096 characters"],
    );
    // Too large.
    let huge = json!({"image": "x:1", "notes": "n".repeat(300 * 1024)}).to_string();
    let answer = api
        .call(
            Some(ACME),
            "POST",
            deploy,
            Some(("application/json", &huge)),
        )
        .await;
    answer.assert_error(413, "payload_too_large", &["bytes"]);

    // Only the three good deploys were queued.
    let page = api.get("/v1/instances/web/deployments").await.json();
    assert_eq!(page["total"], 3);
    api.stop().await;
}

async fn bad_ids_cursors_and_limits_are_400(db: TestDb) {
    let api = Api::start(db).await;
    let d = api.deploy("web", "x:1").await;

    for path in [
        "/v1/deployments/nope".to_string(),
        format!("/v1/deployments/{}", d.release_id),
        format!("/v1/deployments/{}/logs", "dep_123"),
        format!("/v1/releases/{}", d.id),
        "/v1/releases/rel_".to_string(),
    ] {
        api.get(&path)
            .await
            .assert_error(400, "invalid_request", &["`id`"]);
    }
    api.post("/v1/deployments/nope/cancel", json!({}))
        .await
        .assert_error(400, "invalid_request", &["`id`", "nope"]);

    // Well-formed ids and names that do not exist.
    for path in [
        format!("/v1/deployments/{}", DeploymentId::new()),
        format!("/v1/deployments/{}/logs", DeploymentId::new()),
        format!("/v1/releases/{}", ReleaseId::new()),
        "/v1/instances/nope/deployments".to_string(),
        "/v1/instances/nope/releases".to_string(),
        format!(
            "/v1/instances/{}/deployments",
            deploybot::deploy::InstanceId::new()
        ),
    ] {
        api.get(&path).await.assert_error(404, "not_found", &[]);
    }
    api.post(
        &format!("/v1/deployments/{}/cancel", DeploymentId::new()),
        json!({}),
    )
    .await
    .assert_error(404, "not_found", &[]);

    for list in ["deployments", "releases"] {
        let base = format!("/v1/instances/web/{list}");
        for (query, needles) in [
            ("limit=0", &["`limit`", "1 to 100"][..]),
            ("limit=101", &["`limit`", "1 to 100"]),
            ("limit=-1", &["`limit`"]),
            ("limit=abc", &["`limit`", "abc"]),
            ("limit=1.5", &["`limit`"]),
            ("limit=", &["`limit`"]),
            ("cursor=garbage", &["cursor is invalid"]),
            ("cursor=", &["cursor is invalid"]),
            ("limt=5", &["unknown field `limt`"]),
            ("limit=1&limit=2", &["limit"]),
        ] {
            let answer = api.get(&format!("{base}?{query}")).await;
            assert_eq!(answer.status, 400, "{list}?{query}: {}", answer.text);
            answer.assert_error(400, "invalid_request", needles);
        }
        let answer = api.get(&format!("{base}?limit=100")).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
    }
    // A cursor of one list is refused by another.
    api.deploy("web", "x:2").await;
    let releases = api.get("/v1/instances/web/releases?limit=1").await.json();
    let cursor = releases["next_cursor"].as_str().unwrap().to_string();
    api.get(&format!("/v1/instances/web/deployments?cursor={cursor}"))
        .await
        .assert_error(400, "invalid_request", &["cursor is invalid"]);
    api.get(&format!("/v1/instances/api/releases?cursor={cursor}"))
        .await
        .assert_error(400, "invalid_request", &["cursor is invalid"]);
    // A deployments cursor forged with a time no deployment can have (PostgreSQL cannot
    // even compare with it): refused like any other bad cursor, never a 500.
    let deployments = api
        .get("/v1/instances/web/deployments?limit=1")
        .await
        .json();
    let cursor = deployments["next_cursor"].as_str().unwrap();
    let mut wire: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(cursor).unwrap()).unwrap();
    for t in [-300_000_000_000_000_000_i64, -1, i64::MAX] {
        wire["t"] = t.into();
        let forged = URL_SAFE_NO_PAD.encode(wire.to_string());
        api.get(&format!("/v1/instances/web/deployments?cursor={forged}"))
            .await
            .assert_error(
                400,
                "invalid_request",
                &["cursor is invalid", "out of range"],
            );
    }

    for (query, needle) in [
        ("after=-1", "`after`"),
        ("after=x", "`after`"),
        ("limit=0", "`limit`"),
        ("limit=1001", "`limit`"),
        ("aftr=1", "aftr"),
    ] {
        api.get(&format!("/v1/deployments/{}/logs?{query}", d.id))
            .await
            .assert_error(400, "invalid_request", &[needle]);
    }
    api.stop().await;
}

/// Stores a reply on issue `issue` of `tenant` and ends it as GitHub refusing it for good
/// with `error`; with no `error` it is left pending.
fn store_reply(api: &Api, tenant: &str, issue: u64, error: Option<&str>) {
    let key = format!("{tenant}/web#{issue}");
    let work = Work::CommentReply(CommentReply {
        repo: format!("{tenant}/web"),
        issue,
        body: "the text of a reply".into(),
        installation_id: None,
    });
    let store = &api.db.store;
    store
        .enqueue(&[NewOutboxItem {
            tenant_id: tenant.into(),
            ordering_key: key.clone(),
            deployment_id: None,
            work,
        }])
        .unwrap();
    let Some(error) = error else {
        return;
    };
    let claimed = store
        .claim_outbox("test", Duration::from_secs(60), 100)
        .unwrap();
    let item = claimed.iter().find(|i| i.ordering_key == key).unwrap();
    let failed = OutboxResult::Failed {
        error: error.into(),
    };
    store.complete_outbox(item.id, "test", &failed).unwrap();
}

/// GitHub refused three of acme's replies for good and one more waits; globex has a
/// refused reply too. Acme's admin lists acme's three, newest first, each with GitHub's
/// reason and without the reply's text; `limit` takes the newest; a bad limit is 400; a
/// deploy token, and an admin token scoped to some instances, are 403.
async fn an_admin_lists_the_tenants_failed_outbox_items_newest_first(db: TestDb) {
    let api = Api::start(db).await;
    for issue in 1..=3 {
        store_reply(
            &api,
            "acme",
            issue,
            Some(&format!("422 refused reply {issue}")),
        );
    }
    store_reply(&api, "acme", 4, None);
    store_reply(&api, "globex", 5, Some("422 refused globex's reply"));
    let admin = ROLE_TOKENS[2].2;

    let answer = api
        .call(Some(admin), "GET", "/v1/outbox/failed", None)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let items = answer.json()["items"].as_array().unwrap().clone();
    let errors: Vec<&str> = items
        .iter()
        .map(|i| i["last_error"].as_str().unwrap())
        .collect();
    assert_eq!(
        errors,
        [
            "422 refused reply 3",
            "422 refused reply 2",
            "422 refused reply 1"
        ]
    );
    for item in &items {
        assert_eq!(item["kind"], "comment.reply", "{item}");
        assert_eq!(item["state"], "failed", "{item}");
        assert_eq!(item["deployment_id"], Value::Null, "{item}");
        assert!(item.get("payload").is_none(), "{item}");
        assert!(!item.to_string().contains("the text of a reply"), "{item}");
    }

    let newest = api
        .call(Some(admin), "GET", "/v1/outbox/failed?limit=1", None)
        .await
        .json();
    assert_eq!(newest["items"].as_array().unwrap().len(), 1, "{newest}");
    assert_eq!(newest["items"][0]["last_error"], "422 refused reply 3");
    for (query, needles) in [
        ("limit=0", &["`limit`", "1 to 100"][..]),
        ("limit=101", &["`limit`", "1 to 100"]),
        ("limit=abc", &["`limit`", "abc"]),
        ("limt=5", &["unknown field `limt`"]),
    ] {
        api.call(
            Some(admin),
            "GET",
            &format!("/v1/outbox/failed?{query}"),
            None,
        )
        .await
        .assert_error(400, "invalid_request", needles);
    }
    api.call(Some(ACME), "GET", "/v1/outbox/failed", None)
        .await
        .assert_error(403, "forbidden", &["needs the admin role"]);
    api.call(Some(WEB_ADMIN), "GET", "/v1/outbox/failed", None)
        .await
        .assert_error(
            403,
            "forbidden",
            &["'web-admin' covers only", "without `instances`"],
        );
    api.stop().await;
}

async fn cancelling_a_finished_deployment_is_409(db: TestDb) {
    let api = Api::start(db).await;
    let d = api.deploy("web", "x:1").await;
    let path = format!("/v1/deployments/{}/cancel", d.id);
    let answer = api.call(Some(ACME), "POST", &path, None).await;
    assert_eq!(answer.status, 204, "{}", answer.text);
    api.call(Some(ACME), "POST", &path, None)
        .await
        .assert_error(409, "invalid_state", &["cancelled"]);
    let stored = api.service.get_deployment("acme", d.id).await.unwrap();
    assert_eq!(stored.state, DeployState::Cancelled);
    api.stop().await;
}

async fn pagination_walks_every_item(db: TestDb) {
    let api = Api::start(db).await;
    let mut deployed = Vec::new();
    for n in 1..=5 {
        deployed.push(api.deploy("web", &format!("x:{n}")).await.id.to_string());
    }
    // Another instance's deployments never show up.
    api.deploy("api", "y:1").await;
    deployed.reverse();

    let mut seen = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("?limit=2&cursor={c}"),
            None => "?limit=2".to_string(),
        };
        let answer = api
            .get(&format!("/v1/instances/web/deployments{query}"))
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        let page = answer.json();
        assert_eq!(page["total"], 5);
        pages += 1;
        for item in page["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_string());
        }
        match page.get("next_cursor").and_then(Value::as_str) {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(seen, deployed, "every deployment once, newest first");
    assert_eq!(pages, 3);

    let mut versions = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("?limit=3&cursor={c}"),
            None => "?limit=3".to_string(),
        };
        let page = api
            .get(&format!("/v1/instances/{}/releases{query}", api.web.id))
            .await
            .json();
        assert_eq!(page["total"], 5);
        for item in page["items"].as_array().unwrap() {
            versions.push(item["version"].as_i64().unwrap());
        }
        match page.get("next_cursor").and_then(Value::as_str) {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(versions, [5, 4, 3, 2, 1]);
    api.stop().await;
}

/// (method, path) of every route of DESIGN.md's REST table, plus the log and the document.
const EXPECTED_ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/instances"),
    ("POST", "/v1/instances/{instance}/deploy"),
    ("GET", "/v1/instances/{instance}/deployments"),
    ("GET", "/v1/deployments/{id}"),
    ("POST", "/v1/deployments/{id}/cancel"),
    ("POST", "/v1/deployments/{id}/approve"),
    ("GET", "/v1/deployments/{id}/logs"),
    ("POST", "/v1/instances/{instance}/rollback"),
    ("GET", "/v1/instances/{instance}/releases"),
    ("GET", "/v1/releases/{id}"),
    ("GET", "/v1/outbox/failed"),
    ("POST", "/v1/admin/reload"),
    ("GET", "/v1/openapi.json"),
    ("GET", "/v1/instances/{instance}/lock"),
    ("PUT", "/v1/instances/{instance}/lock"),
    ("DELETE", "/v1/instances/{instance}/lock"),
    ("GET", "/v1/locks"),
    ("GET", "/v1/audit"),
];

/// The lock route: `GET` and `DELETE` need a lock to answer 2xx, `PUT` takes one.
const LOCK_ROUTE: &str = "/v1/instances/{instance}/lock";

/// Before a request to the lock route: a lock held by the admin token to read or release,
/// or none for `PUT` to take.
async fn prepare_lock(api: &Api, method: &str) {
    let admin = Some(ROLE_TOKENS[2].2);
    if method == "PUT" {
        api.call(admin, "DELETE", "/v1/instances/web/lock", None)
            .await;
    } else {
        let answer = api
            .call(
                admin,
                "PUT",
                "/v1/instances/web/lock",
                Some(("application/json", "{}")),
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text);
    }
}

/// Before a request to the approve route: the deployment waits for one approval, asked
/// for by someone other than the tokens that call it.
fn prepare_approval(api: &Api, path: &str, d: &Deployment) {
    if !path.ends_with("/approve") {
        return;
    }
    let mut waiting = WaitingFor::new(WaitKind::Approval, "1 approval", None);
    waiting.approval = Some(ApprovalState {
        requested_by: "@someone".into(),
        approved_by: Vec::new(),
        needed: 1,
    });
    api.db
        .store
        .set_waiting("acme", d.id, Some(&waiting))
        .unwrap();
}

/// After a request to the lock route: no lock left to refuse the next deploys.
async fn clear_lock(api: &Api) {
    api.call(
        Some(ROLE_TOKENS[2].2),
        "DELETE",
        "/v1/instances/web/lock",
        None,
    )
    .await;
}

const METHODS: &[&str] = &["GET", "PUT", "POST", "DELETE", "PATCH"];

/// Checks that the top-level keys of `answer` fit the documented schema of `response`:
/// every required property is there and every key is a documented property.
fn assert_fits_schema(doc: &Value, response: &Value, answer: &Value, what: &str) {
    let Some(reference) = response["content"]["application/json"]["schema"]["$ref"].as_str() else {
        return;
    };
    let name = reference.rsplit('/').next().unwrap();
    let schema = &doc["components"]["schemas"][name];
    let properties = schema["properties"].as_object().unwrap();
    for required in schema["required"].as_array().into_iter().flatten() {
        let key = required.as_str().unwrap();
        assert!(
            answer.get(key).is_some(),
            "{what}: {key} is required by {name}: {answer}"
        );
    }
    for key in answer.as_object().unwrap().keys() {
        assert!(
            properties.contains_key(key),
            "{what}: {key} is not documented in {name}"
        );
    }
}

/// A token of tenant acme allowed to call the route: `ACME` (deploy), or the admin token
/// where the route needs more.
fn token_allowed(method: &str, path: &str) -> &'static str {
    let needed = NEEDED_ROLES
        .iter()
        .find(|(m, p, _)| *m == method && *p == path)
        .map_or(Role::Read, |(_, _, role)| *role);
    if needed <= Role::Deploy {
        return ACME;
    }
    ROLE_TOKENS
        .iter()
        .find(|(role, _, _)| *role >= needed)
        .map(|(_, _, secret)| *secret)
        .unwrap()
}

async fn the_openapi_document_lists_every_route_and_each_answers(db: TestDb) {
    let api = Api::start(db).await;
    // The document needs no token.
    let answer = api.call(None, "GET", "/v1/openapi.json", None).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let doc = answer.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with('3'));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // It is the document the library builds.
    assert_eq!(
        doc,
        serde_json::to_value(deploybot::server::api::openapi()).unwrap()
    );

    let mut documented = BTreeSet::new();
    let paths = doc["paths"].as_object().unwrap();
    for (path, item) in paths {
        for method in METHODS {
            if item.get(method.to_ascii_lowercase()).is_some() {
                documented.insert((method.to_string(), path.clone()));
            }
        }
    }
    let expected: BTreeSet<(String, String)> = EXPECTED_ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        documented, expected,
        "the document and DESIGN.md's routes differ"
    );

    // Every documented operation answers a valid request with a documented success status
    // and a body that fits its schema; every one but the document itself needs a token.
    let first = api.deploy("web", "x:0").await;
    api.db
        .store
        .append_logs("acme", first.id, 1, &[("stdout".into(), "hi".into())])
        .unwrap();
    // Version 1 ran: the rollback route has a release to return to.
    api.activate(&first);
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for (method, path) in &documented {
        let operation = &doc["paths"][path][method.to_ascii_lowercase()];
        let existing = api.deploy("web", "x:1").await;
        let concrete = if path.starts_with("/v1/deployments/") {
            path.replace("{id}", &existing.id.to_string())
        } else {
            path.replace("{id}", &existing.release_id.to_string())
        }
        .replace("{instance}", "web");
        let body = if path.ends_with("/deploy") {
            Some(json!({"image": "x:2"}).to_string())
        } else if path.ends_with("/rollback") {
            Some(json!({"version": 1}).to_string())
        } else {
            None
        };
        let what = format!("{method} {path}");
        if path == LOCK_ROUTE {
            prepare_lock(&api, method).await;
        }
        prepare_approval(&api, path, &existing);
        let answer = api
            .call(
                Some(token_allowed(method, path)),
                method,
                &concrete,
                body.as_deref().map(|b| ("application/json", b)),
            )
            .await;
        if path == LOCK_ROUTE {
            clear_lock(&api).await;
        }
        assert!(
            (200..300).contains(&answer.status),
            "{what}: {} {}",
            answer.status,
            answer.text
        );
        *by_status.entry(answer.status).or_default() += 1;
        let response = &operation["responses"][answer.status.to_string()];
        assert!(
            response.is_object(),
            "{what} answered {}, which its operation does not document",
            answer.status
        );
        if !answer.text.is_empty() {
            assert_fits_schema(&doc, response, &answer.json(), &what);
        }

        let secured = operation.get("security").is_some();
        let anonymous = api.call(None, method, &concrete, None).await;
        if path == "/v1/openapi.json" {
            assert!(!secured, "{what} is public");
            assert_eq!(anonymous.status, 200);
        } else {
            assert!(secured, "{what} documents no security");
            assert_eq!(
                operation["security"][0]["bearer"],
                json!([]),
                "{what} does not name the bearer scheme"
            );
            anonymous.assert_error(401, "unauthenticated", &[]);
            assert!(
                operation["responses"]["401"].is_object(),
                "{what} does not document its 401"
            );
        }

        // Methods the document does not list for this path are not served.
        for other in METHODS {
            if documented.contains(&(other.to_string(), path.clone())) {
                continue;
            }
            let answer = api.call(Some(ACME), other, &concrete, None).await;
            answer.assert_error(405, "method_not_allowed", &[]);
            let allow = answer.header("allow").unwrap();
            for (m, p) in &documented {
                if p == path {
                    assert!(allow.contains(m.as_str()), "{what}: Allow is {allow}");
                }
            }
        }
    }
    assert_eq!(
        by_status.get(&201),
        Some(&2),
        "deploy and rollback answer 201"
    );
    assert_eq!(
        by_status.get(&204),
        Some(&2),
        "cancel and unlock answer 204"
    );
    api.stop().await;
}

async fn unknown_routes_are_404_in_the_api_shape(db: TestDb) {
    let api = Api::start(db).await;
    for (method, path) in [
        ("GET", "/v1/nope"),
        ("GET", "/v1"),
        ("POST", "/v1/instances/web/deploy/now"),
        ("DELETE", "/v1/whatever/else"),
    ] {
        api.call(Some(ACME), method, path, None).await.assert_error(
            404,
            "not_found",
            &[path, "/v1/openapi.json"],
        );
        api.call(None, method, path, None)
            .await
            .assert_error(404, "not_found", &[]);
    }
    api.stop().await;
}

/// The role each route of /v1 needs; every route but the document is here (checked
/// against the routes the server registers).
const NEEDED_ROLES: &[(&str, &str, Role)] = &[
    ("GET", "/v1/instances", Role::Read),
    ("POST", "/v1/instances/{instance}/deploy", Role::Deploy),
    ("GET", "/v1/instances/{instance}/deployments", Role::Read),
    ("GET", "/v1/deployments/{id}", Role::Read),
    ("POST", "/v1/deployments/{id}/cancel", Role::Deploy),
    ("POST", "/v1/deployments/{id}/approve", Role::Deploy),
    ("GET", "/v1/deployments/{id}/logs", Role::Read),
    ("POST", "/v1/instances/{instance}/rollback", Role::Deploy),
    ("GET", "/v1/instances/{instance}/releases", Role::Read),
    ("GET", "/v1/releases/{id}", Role::Read),
    ("GET", "/v1/outbox/failed", Role::Admin),
    ("POST", "/v1/admin/reload", Role::Admin),
    ("GET", "/v1/instances/{instance}/lock", Role::Read),
    ("PUT", "/v1/instances/{instance}/lock", Role::Deploy),
    ("DELETE", "/v1/instances/{instance}/lock", Role::Deploy),
    ("GET", "/v1/locks", Role::Read),
    ("GET", "/v1/audit", Role::Read),
];

/// A dashboard token (read) can look at everything and change nothing; a deploy token can
/// also deploy, roll back and cancel; an admin token can do everything. Each route is
/// tried with each role; a refusal is a 403 that names the role needed and the token's.
async fn each_role_can_call_exactly_the_routes_its_role_allows(db: TestDb) {
    let api = Api::start(db).await;
    let mut registered = BTreeSet::new();
    for (path, item) in deploybot::server::api::openapi().paths.paths {
        for method in deploybot::server::api::methods_of(&item) {
            if path != "/v1/openapi.json" {
                registered.insert((method, path.clone()));
            }
        }
    }
    let tabled: BTreeSet<(String, String)> = NEEDED_ROLES
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        registered, tabled,
        "every route the server registers needs a row saying which role it needs"
    );
    let doc = deploybot::server::api::openapi();
    // Version 1 to roll back to: it ran.
    let first = api.deploy("web", "x:0").await;
    api.activate(&first);

    for (method, path, needed) in NEEDED_ROLES {
        for (role, name, secret) in ROLE_TOKENS {
            let existing = api.deploy("web", "x:1").await;
            let concrete = if path.starts_with("/v1/deployments/") {
                path.replace("{id}", &existing.id.to_string())
            } else {
                path.replace("{id}", &existing.release_id.to_string())
            }
            .replace("{instance}", "web");
            let body = if path.ends_with("/deploy") {
                Some(json!({"image": "x:2"}).to_string())
            } else if path.ends_with("/rollback") {
                Some(json!({"version": 1}).to_string())
            } else {
                None
            };
            if *path == LOCK_ROUTE {
                prepare_lock(&api, method).await;
            }
            prepare_approval(&api, path, &existing);
            let answer = api
                .call(
                    Some(secret),
                    method,
                    &concrete,
                    body.as_deref().map(|b| ("application/json", b)),
                )
                .await;
            if *path == LOCK_ROUTE {
                clear_lock(&api).await;
            }
            let what = format!("{method} {path} with the {role} token {name}");
            if role >= *needed {
                assert!(
                    (200..300).contains(&answer.status),
                    "{what}: {} {}",
                    answer.status,
                    answer.text
                );
            } else {
                answer.assert_error(
                    403,
                    "forbidden",
                    &[
                        &format!("{method} {concrete}"),
                        &format!("needs the {needed} role; token '{name}' has {role}"),
                    ],
                );
                // Nothing changed.
                let after = api
                    .service
                    .get_deployment("acme", existing.id)
                    .await
                    .unwrap();
                assert_eq!(after.state, DeployState::Pending, "{what}");
                let item = &doc.paths.paths[*path];
                let operation = match *method {
                    "POST" => item.post.as_ref(),
                    "PUT" => item.put.as_ref(),
                    "DELETE" => item.delete.as_ref(),
                    _ => item.get.as_ref(),
                };
                assert!(
                    operation.unwrap().responses.responses.contains_key("403"),
                    "{what}: the document does not say it can be 403"
                );
            }
        }
    }
    // Read tokens started nothing: every deployment is the deploy role's or the admin's.
    let page = api
        .get("/v1/instances/web/deployments?limit=100")
        .await
        .json();
    for item in page["items"].as_array().unwrap() {
        assert_ne!(item["initiator"], "dash", "{item}");
    }
    api.stop().await;
}

/// A token scoped to `w*` sees and touches `web` only: `api` is not listed, and deploying,
/// rolling back, cancelling or reading anything of `api` is a 404, as if it did not exist.
async fn a_token_scoped_to_some_instances_cannot_see_or_touch_the_others(db: TestDb) {
    let api = Api::start(db).await;
    let web = api.deploy("web", "web:1").await;
    let other = api.deploy("api", "api:1").await;
    api.db
        .store
        .append_logs(
            "acme",
            other.id,
            1,
            &[("stdout".into(), "secret-ish".into())],
        )
        .unwrap();

    let listed = api.call(Some(WEB_TEAM), "GET", "/v1/instances", None).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let names: Vec<Value> = listed.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].clone())
        .collect();
    assert_eq!(names, [json!("web")]);

    // Its own instance works as usual.
    let deployed = api
        .post_as(
            WEB_TEAM,
            "/v1/instances/web/deploy",
            json!({"image": "web:2"}),
        )
        .await;
    assert_eq!(deployed.status, 201, "{}", deployed.text);
    for path in [
        format!("/v1/deployments/{}", web.id),
        format!("/v1/releases/{}", web.release_id),
        "/v1/instances/web/deployments".to_string(),
    ] {
        let answer = api.call(Some(WEB_TEAM), "GET", &path, None).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.text);
    }

    // The other instance, by name and by id, and what belongs to it.
    for key in ["api".to_string(), api.api.id.to_string()] {
        api.post_as(
            WEB_TEAM,
            &format!("/v1/instances/{key}/deploy"),
            json!({"image": "api:evil"}),
        )
        .await
        .assert_error(404, "not_found", &[&key]);
        api.post_as(
            WEB_TEAM,
            &format!("/v1/instances/{key}/rollback"),
            json!({}),
        )
        .await
        .assert_error(404, "not_found", &[&key]);
        for list in ["deployments", "releases"] {
            api.call(
                Some(WEB_TEAM),
                "GET",
                &format!("/v1/instances/{key}/{list}"),
                None,
            )
            .await
            .assert_error(404, "not_found", &[&key]);
        }
    }
    for path in [
        format!("/v1/deployments/{}", other.id),
        format!("/v1/deployments/{}/logs", other.id),
        format!("/v1/releases/{}", other.release_id),
    ] {
        api.call(Some(WEB_TEAM), "GET", &path, None)
            .await
            .assert_error(404, "not_found", &[]);
    }
    api.call(
        Some(WEB_TEAM),
        "POST",
        &format!("/v1/deployments/{}/cancel", other.id),
        None,
    )
    .await
    .assert_error(404, "not_found", &[&other.id.to_string()]);

    // Nothing happened to `api`: one deployment, still pending.
    let page = api.service.list_deployments(
        "acme",
        api.api.id,
        deploybot::deploy::ListOptions::default(),
    );
    let page = page.await.unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(page.items[0].state, DeployState::Pending);
    // An unscoped token of the same tenant still sees it.
    let answer = api.get(&format!("/v1/deployments/{}", other.id)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    api.stop().await;
}

both_backends_async!(
    every_route_answers_its_happy_path,
    the_initiator_is_the_tokens_name,
    another_tenants_things_are_not_found,
    a_missing_or_wrong_token_is_401,
    bad_bodies_are_400_naming_the_field,
    bad_ids_cursors_and_limits_are_400,
    cancelling_a_finished_deployment_is_409,
    pagination_walks_every_item,
    the_openapi_document_lists_every_route_and_each_answers,
    unknown_routes_are_404_in_the_api_shape,
    each_role_can_call_exactly_the_routes_its_role_allows,
    a_token_scoped_to_some_instances_cannot_see_or_touch_the_others,
    an_admin_lists_the_tenants_failed_outbox_items_newest_first,
);
