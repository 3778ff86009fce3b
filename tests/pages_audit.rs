//! The audit page over real HTTP, on SQLite and PostgreSQL: `/audit` lists the signed-in
//! token's tenant's events newest first, escaped, with links to instances and deployments;
//! it shows exactly what `GET /v1/audit` answers the same token (a token limited to some
//! instances reads only their events); it pages with "Older"; it filters by instance and
//! the instance page links to that; and nothing, on the page or in the API, edits or
//! removes an event.

mod common;

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use chrono::{TimeDelta, Utc};
use common::TestDb;
use deploybot::config::{ApiConfig, ApiToken, Config, InstanceConfig, PagesConfig, Role};
use deploybot::deploy::provider::Provider;
use deploybot::deploy::{
    AuditEvent, AuditStore, CanarySteps, DeploymentId, Instance, InstanceSpec, InstanceStore,
    ListOptions, Service, ServiceStore,
};
use deploybot::provider::catalog::ConfigCatalog;
use deploybot::provider::noop::NoopProvider;
use deploybot::server::AppState;
use deploybot::server::pages::PageKeys;
use deploybot::store::DieselStore;
use sha2::{Digest, Sha256};

const OPS_TOKEN: &str = "ops-token-4d2a9c10";
const READER_TOKEN: &str = "reader-token-8b1f3e77";
const SCOPED_TOKEN: &str = "scoped-token-2e9d6a41";
const GLOBEX_TOKEN: &str = "globex-token-6c0b5f38";
const SESSION_KEY: &[u8] = b"pages-audit-test-master-key-0123456789ab";

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn token(name: &str, tenant: &str, secret: &str, role: Role, instances: &[&str]) -> ApiToken {
    ApiToken {
        name: name.into(),
        tenant: tenant.into(),
        sha256: sha256_hex(secret),
        role,
        instances: instances.iter().map(|s| s.to_string()).collect(),
    }
}

fn spec(name: &str, environment: &str) -> InstanceSpec {
    InstanceSpec {
        name: name.into(),
        environment: environment.into(),
        default_strategy: "canary".into(),
        supersede: false,
        provider: Arc::new(NoopProvider) as Arc<dyn Provider>,
        health: None,
        gates: Vec::new(),
        watch: None,
        canary: CanarySteps {
            steps: vec![100],
            pause: Duration::from_millis(10),
        },
        wait_for_github: false,
        env: Default::default(),
        control: Default::default(),
    }
}

/// A server with the pages and the REST API over a test database: tenant acme with
/// `web-production` and `web-staging` of `acme/web`, tenant globex with `api-production`.
struct Site {
    base: String,
    store: Arc<DieselStore>,
    production: Instance,
    staging: Instance,
    globex: Instance,
    handle: ServerHandle,
    http: reqwest::Client,
    _db: TestDb,
}

struct Answer {
    status: u16,
    location: String,
    body: String,
}

impl Answer {
    async fn from(response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = response.text().await.unwrap();
        Answer {
            status,
            location,
            body,
        }
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

    fn assert_lacks(&self, needles: &[&str]) {
        for needle in needles {
            assert!(
                !self.body.contains(needle),
                "{needle:?} should not be on:\n{}",
                self.body
            );
        }
    }

    /// The details in the page's table of events, top to bottom (HTML-escaped as shown).
    fn details(&self) -> Vec<String> {
        let marker = "<td class=\"detail\">";
        self.body
            .match_indices(marker)
            .map(|(at, _)| {
                let start = at + marker.len();
                let end = self.body[start..].find("</td>").unwrap() + start;
                self.body[start..end].to_string()
            })
            .collect()
    }

    /// The `href` of the element with `id`, unescaped.
    fn link(&self, id: &str) -> Option<String> {
        let marker = format!("id=\"{id}\"");
        let at = self.body.find(&marker)?;
        let tag_start = self.body[..at].rfind('<')?;
        let tag_end = self.body[at..].find('>')? + at;
        let tag = &self.body[tag_start..tag_end];
        let start = tag.find("href=\"")? + 6;
        let end = tag[start..].find('"')? + start;
        Some(tag[start..end].replace("&amp;", "&"))
    }
}

impl Site {
    async fn start(db: TestDb, public: bool) -> Site {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let config = Arc::new(Config {
            public_url: base.clone(),
            session_key: Some(SESSION_KEY.to_vec()),
            pages: PagesConfig { public },
            api: ApiConfig {
                tokens: vec![
                    token("ops", "acme", OPS_TOKEN, Role::Deploy, &[]),
                    token("reader", "acme", READER_TOKEN, Role::Read, &[]),
                    token("scoped", "acme", SCOPED_TOKEN, Role::Read, &["web-staging"]),
                    token("globex-ops", "globex", GLOBEX_TOKEN, Role::Admin, &[]),
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
                    "web-staging",
                    "acme/web",
                    "staging",
                    "ghcr.io/acme/web:{sha}",
                ),
                InstanceConfig::new(
                    "api-production",
                    "globex/api",
                    "production",
                    "ghcr.io/globex/api:{sha}",
                ),
            ],
            ..Config::default()
        });
        let store = Arc::clone(&db.store);
        let keys = PageKeys::load(&config, &*store).unwrap();
        let production = store
            .upsert_instance("acme", "web-production", "acme/web", "production")
            .unwrap();
        let staging = store
            .upsert_instance("acme", "web-staging", "acme/web", "staging")
            .unwrap();
        let globex = store
            .upsert_instance("globex", "api-production", "globex/api", "production")
            .unwrap();
        let mut catalog = ConfigCatalog::default();
        catalog.insert("acme", spec("web-production", "production"));
        catalog.insert("acme", spec("web-staging", "staging"));
        catalog.insert("globex", spec("api-production", "production"));
        let service = Service::new(
            Arc::clone(&store) as Arc<dyn ServiceStore>,
            Arc::new(catalog),
        );
        let state = web::Data::new(AppState {
            config: config.into(),
            store: store.clone(),
            service,
            worker_alive: tokio_util::sync::CancellationToken::new(),
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
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Site {
            base,
            store,
            production,
            staging,
            globex,
            handle,
            http,
            _db: db,
        }
    }

    async fn stop(self) {
        self.handle.stop(false).await;
    }

    /// Signs in with `token`: the `Cookie` header value of the session.
    async fn session(&self, token: &str) -> String {
        let answer = self
            .http
            .post(format!("{}/signin", self.base))
            .form(&[("token", token), ("next", "/")])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 303);
        let cookie = answer.headers()["set-cookie"].to_str().unwrap();
        cookie.split(';').next().unwrap().to_string()
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Answer {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        Answer::from(request.send().await.unwrap()).await
    }

    /// `GET /v1/audit` (all pages) as `token`: the events' details, newest first.
    async fn api_details(&self, token: &str, instance: Option<&str>) -> Vec<String> {
        let mut details = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("limit", "100".to_string())];
            if let Some(c) = &cursor {
                query.push(("cursor", c.clone()));
            }
            if let Some(i) = instance {
                query.push(("instance", i.to_string()));
            }
            let answer = self
                .http
                .get(format!("{}/v1/audit", self.base))
                .bearer_auth(token)
                .query(&query)
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status().as_u16(), 200);
            let page: serde_json::Value =
                serde_json::from_str(&answer.text().await.unwrap()).unwrap();
            for item in page["items"].as_array().unwrap() {
                details.push(item["detail"].as_str().unwrap().to_string());
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return details,
            }
        }
    }

    /// Every page of `/audit` from `path` on, following "Older": the details shown.
    async fn page_details(&self, path: &str, cookie: &str) -> Vec<String> {
        let mut details = Vec::new();
        let mut next = Some(path.to_string());
        while let Some(path) = next {
            let answer = self.get(&path, Some(cookie)).await;
            assert_eq!(answer.status, 200, "{path}: {}", answer.body);
            details.extend(answer.details());
            next = answer.link("older");
        }
        details
    }

    fn record(&self, tenant: &str, instance: Option<&Instance>, detail: &str, minutes_ago: i64) {
        let mut event = AuditEvent::new(tenant, "@alice", "lock", detail);
        event.at = Utc::now() - TimeDelta::minutes(minutes_ago);
        event.instance_id = instance.map(|i| i.id);
        self.store.record_audit(&event).unwrap();
    }

    fn stored_details(&self, tenant: &str) -> Vec<String> {
        let options = ListOptions {
            cursor: None,
            limit: Some(100),
        };
        self.store
            .list_audit(tenant, None, &options)
            .unwrap()
            .items
            .into_iter()
            .map(|e| e.detail)
            .collect()
    }
}

/// One event on each acme instance, one on every environment of acme/web, one of globex.
fn seed(site: &Site) {
    site.record("acme", Some(&site.production), "production locked", 30);
    site.record("acme", None, "every environment of acme/web locked", 20);
    site.record("acme", Some(&site.staging), "staging locked", 10);
    site.record("globex", Some(&site.globex), "globex api locked", 5);
}

/// A signed-in token reads its tenant's trail on `/audit`, newest first, with every column,
/// what people wrote escaped, and links to the instance and the deployment.
async fn the_audit_page_lists_the_tenants_events_newest_first(db: TestDb) {
    let site = Site::start(db, false).await;
    seed(&site);
    let deployment = DeploymentId::new();
    let mut event = AuditEvent::new(
        "acme",
        "token:ops",
        "rollback",
        "rollback: <script>alert(\"x\")</script> & 'quotes'",
    );
    event.instance_id = Some(site.production.id);
    event.deployment_id = Some(deployment);
    site.store.record_audit(&event).unwrap();

    let cookie = site.session(OPS_TOKEN).await;
    let page = site.get("/audit", Some(&cookie)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.assert_contains(&[
        "<title>Audit trail — deploybot</title>",
        "<th>When (UTC)</th><th>Who</th><th>What</th><th>Instance</th><th>Deployment</th><th>Detail</th>",
        "rollback: &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;quotes&#39;",
        "<td class=\"who\">token:ops</td><td class=\"what\"><code>rollback</code></td>",
        &format!(
            "<a href=\"/instances/{}\">web-production</a>",
            site.production.id
        ),
        &format!("<a href=\"/deployments/{deployment}\"><code>{deployment}</code></a>"),
        " UTC</time>",
    ]);
    page.assert_lacks(&["<script>alert", "globex api locked"]);
    assert_eq!(
        page.details(),
        [
            "rollback: &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;quotes&#39;",
            "staging locked",
            "every environment of acme/web locked",
            "production locked",
        ]
    );
    // Every page's navigation leads there.
    site.get("/", Some(&cookie))
        .await
        .assert_contains(&["<a class=\"nav\" href=\"/audit\">Audit</a>"]);
    // Another tenant's token reads its own tenant's trail only.
    let globex = site.session(GLOBEX_TOKEN).await;
    assert_eq!(
        site.get("/audit", Some(&globex)).await.details(),
        ["globex api locked"]
    );
    site.stop().await;
}

/// Without a sign-in there is no audit page: the visitor is sent to sign in, and comes
/// back to the same page.
async fn the_audit_page_needs_a_sign_in(db: TestDb) {
    let site = Site::start(db, false).await;
    seed(&site);
    let page = site.get("/audit?instance=web-staging", None).await;
    assert_eq!(page.status, 303);
    assert_eq!(
        page.location,
        "/signin?next=/audit%3Finstance%3Dweb-staging&reason=signin_required"
    );
    page.assert_lacks(&["staging locked"]);
    let form = site.get(&page.location, None).await;
    form.assert_contains(&["name=\"next\" value=\"/audit?instance=web-staging\""]);
    site.stop().await;
}

/// Public pages show the audit page to signed-in tokens only, and link to it only for them.
async fn public_pages_show_the_audit_page_only_after_a_sign_in(db: TestDb) {
    let site = Site::start(db, true).await;
    seed(&site);
    let page = site.get("/audit", None).await;
    assert_eq!(page.status, 303);
    assert!(page.location.starts_with("/signin?next=/audit"));
    let index = site.get("/", None).await;
    assert_eq!(index.status, 200);
    index.assert_lacks(&["href=\"/audit\""]);
    let scoped = site.session(SCOPED_TOKEN).await;
    assert_eq!(
        site.get("/audit", Some(&scoped)).await.details(),
        ["staging locked"]
    );
    site.stop().await;
}

/// What the page shows each token is exactly what `GET /v1/audit` answers it: a token of
/// one instance reads that instance's events only, without the repository-wide ones, and
/// cannot ask for another instance's.
async fn the_page_shows_what_the_api_answers_each_token(db: TestDb) {
    let site = Site::start(db, false).await;
    seed(&site);
    for (secret, expected) in [
        (
            OPS_TOKEN,
            &[
                "staging locked",
                "every environment of acme/web locked",
                "production locked",
            ][..],
        ),
        (
            READER_TOKEN,
            &[
                "staging locked",
                "every environment of acme/web locked",
                "production locked",
            ][..],
        ),
        (SCOPED_TOKEN, &["staging locked"][..]),
        (GLOBEX_TOKEN, &["globex api locked"][..]),
    ] {
        let cookie = site.session(secret).await;
        let shown = site.page_details("/audit", &cookie).await;
        assert_eq!(shown, expected, "token {secret}");
        assert_eq!(
            site.api_details(secret, None).await,
            shown,
            "token {secret}"
        );
        if secret == GLOBEX_TOKEN {
            continue;
        }
        let staging = site
            .page_details("/audit?instance=web-staging", &cookie)
            .await;
        assert_eq!(staging, ["staging locked"], "token {secret}");
        assert_eq!(site.api_details(secret, Some("web-staging")).await, staging);
    }
    // An instance outside the token's scope, or of another tenant, is not found.
    let scoped = site.session(SCOPED_TOKEN).await;
    let refused = site
        .get("/audit?instance=web-production", Some(&scoped))
        .await;
    assert_eq!(refused.status, 404);
    refused.assert_contains(&["Instance not found"]);
    refused.assert_lacks(&["production locked"]);
    let ops = site.session(OPS_TOKEN).await;
    let other_tenant = site.get("/audit?instance=api-production", Some(&ops)).await;
    assert_eq!(other_tenant.status, 404);
    other_tenant.assert_lacks(&["globex api locked"]);
    // The instance filter offers only the instances the token covers.
    let page = site.get("/audit", Some(&scoped)).await;
    page.assert_contains(&["<option value=\"web-staging\">web-staging</option>"]);
    page.assert_lacks(&["<option value=\"web-production\""]);
    site.stop().await;
}

/// "Older" pages through a long trail, newest first, without losing or repeating an event,
/// keeping the instance filter; a cursor that is not the page's is refused.
async fn older_pages_through_the_whole_trail(db: TestDb) {
    let site = Site::start(db, false).await;
    for n in 0..120 {
        site.record(
            "acme",
            Some(&site.staging),
            &format!("staging {n}"),
            1000 - n,
        );
        if n % 10 == 0 {
            site.record(
                "acme",
                Some(&site.production),
                &format!("production {n}"),
                999 - n,
            );
        }
    }
    let cookie = site.session(OPS_TOKEN).await;
    let first = site.get("/audit?instance=web-staging", Some(&cookie)).await;
    assert_eq!(first.details().len(), 50);
    assert_eq!(first.details()[0], "staging 119");
    assert!(first.link("newest").is_none());
    let older = first.link("older").expect("an Older link");
    assert!(older.contains("instance=web-staging"), "{older}");
    let second = site.get(&older, Some(&cookie)).await;
    assert_eq!(second.details()[0], "staging 69");
    assert_eq!(
        second.link("newest").as_deref(),
        Some("/audit?instance=web-staging")
    );
    let shown = site
        .page_details("/audit?instance=web-staging", &cookie)
        .await;
    let expected: Vec<String> = (0..120).rev().map(|n| format!("staging {n}")).collect();
    assert_eq!(shown, expected);
    assert_eq!(site.page_details("/audit", &cookie).await.len(), 132);
    // A cursor of the whole trail is not a page of one instance's.
    let whole = site.get("/audit", Some(&cookie)).await;
    let cursor_of_whole = whole.link("older").unwrap();
    let mixed = site
        .get(
            &format!("{cursor_of_whole}&instance=web-staging"),
            Some(&cookie),
        )
        .await;
    assert_eq!(mixed.status, 400);
    mixed.assert_contains(&["Not a page of the audit trail"]);
    let garbage = site.get("/audit?cursor=%3Cjunk%3E", Some(&cookie)).await;
    assert_eq!(garbage.status, 400);
    garbage.assert_lacks(&["<junk>"]);
    site.stop().await;
}

/// An instance's page links to its whole audit trail, which lists that instance's events.
async fn the_instance_page_links_to_its_audit_trail(db: TestDb) {
    let site = Site::start(db, false).await;
    seed(&site);
    let cookie = site.session(READER_TOKEN).await;
    let instance = site
        .get(&format!("/instances/{}", site.staging.id), Some(&cookie))
        .await;
    assert_eq!(instance.status, 200, "{}", instance.body);
    let link = instance.link("audit-trail").expect("an audit trail link");
    assert_eq!(link, "/audit?instance=web-staging");
    let trail = site.get(&link, Some(&cookie)).await;
    assert_eq!(trail.details(), ["staging locked"]);
    trail.assert_contains(&[
        "<strong id=\"audit-instance\">web-staging</strong>",
        "<option value=\"web-staging\" selected>",
    ]);
    site.stop().await;
}

/// No route edits or removes an audit event: PUT, PATCH, DELETE and POST on `/audit` and
/// `/v1/audit` are refused (404 or 405), with a session or an API token, and every event
/// is still there.
async fn nothing_edits_or_deletes_an_audit_event(db: TestDb) {
    let site = Site::start(db, false).await;
    seed(&site);
    let before = site.stored_details("acme");
    let cookie = site.session(OPS_TOKEN).await;
    for path in ["/audit", "/v1/audit"] {
        for method in ["PUT", "PATCH", "DELETE", "POST"] {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            for target in [path.to_string(), format!("{path}/1")] {
                let answer = site
                    .http
                    .request(method.clone(), format!("{}{target}", site.base))
                    .header("cookie", &cookie)
                    .header("origin", &site.base)
                    .bearer_auth(OPS_TOKEN)
                    .form(&[("detail", "rewritten"), ("id", "1")])
                    .send()
                    .await
                    .unwrap();
                let status = answer.status().as_u16();
                assert!(
                    status == 404 || status == 405,
                    "{method} {target} answered {status}"
                );
            }
        }
    }
    assert_eq!(site.stored_details("acme"), before);
    assert_eq!(site.stored_details("acme").len(), 3);
    site.stop().await;
}

both_backends_async!(
    the_audit_page_lists_the_tenants_events_newest_first,
    the_audit_page_needs_a_sign_in,
    public_pages_show_the_audit_page_only_after_a_sign_in,
    the_page_shows_what_the_api_answers_each_token,
    older_pages_through_the_whole_trail,
    the_instance_page_links_to_its_audit_trail,
    nothing_edits_or_deletes_an_audit_event,
);
