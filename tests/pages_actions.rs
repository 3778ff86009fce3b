//! The pages' deploy control over real HTTP, on SQLite and PostgreSQL: lock badges,
//! freezes, dry runs, parameters and what a pending deployment waits for; the actions
//! (lock, unlock, cancel, roll back) with their refusals — a foreign Origin, a missing form
//! token, a read-only or out-of-scope token, another's lock, an unconfirmed production
//! instance — each of which must change nothing; and, at the end, the same actions clicked
//! in a real headless Chromium.

mod common;

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use chrono::Utc;
use common::TestDb;
use common::chromium::{self, Chromium};
use deploybot::config::{
    ApiConfig, ApiToken, Config, FreezeWhen, FreezeWindow, InstanceConfig, PagesConfig, Role,
};
use deploybot::deploy::provider::Provider;
use deploybot::deploy::service::ControlSpec;
use deploybot::deploy::{
    Actor, ApprovalState, CanarySteps, DeployRequest, DeployState, Deployment, Error, Instance,
    InstanceSpec, InstanceStore, ListOptions, QueueStore, Service, ServiceStore, Source, WaitKind,
    WaitingFor,
};
use deploybot::provider::catalog::ConfigCatalog;
use deploybot::provider::noop::NoopProvider;
use deploybot::server::AppState;
use deploybot::server::pages::PageKeys;
use deploybot::store::DieselStore;
use sha2::{Digest, Sha256};

const OPS_TOKEN: &str = "ops-token-5b1e0c7d";
const ADMIN_TOKEN: &str = "admin-token-9a4f2e11";
const READER_TOKEN: &str = "reader-token-3c8d7f20";
const SCOPED_TOKEN: &str = "scoped-token-e6a1b9c4";
const SHA: &str = "a10867b14bb761a232cd80139fbd4c0d33264240";
const WORKER: &str = "pages-actions-test";
/// The pages' master key (`DEPLOYBOT_SESSION_KEY`), so a test can compute a form token.
const SESSION_KEY: &[u8] = b"pages-actions-test-master-key-0123456789";

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn token(name: &str, secret: &str, role: Role, instances: &[&str]) -> ApiToken {
    ApiToken {
        name: name.into(),
        tenant: "acme".into(),
        sha256: sha256_hex(secret),
        role,
        instances: instances.iter().map(|s| s.to_string()).collect(),
    }
}

fn spec(name: &str, environment: &str, control: ControlSpec) -> InstanceSpec {
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
        control,
    }
}

/// A server with private pages over a test database: tenant acme with `web-production`
/// (environment `production`) and `web-staging` of one repository, `acme/web`.
struct Site {
    base: String,
    store: Arc<DieselStore>,
    service: Service,
    production: Instance,
    staging: Instance,
    handle: ServerHandle,
    http: reqwest::Client,
    _db: TestDb,
}

/// An HTTP answer, read whole.
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

    /// The form token of the page's action forms.
    fn form_token(&self) -> String {
        let marker = "name=\"form_token\" value=\"";
        let start = self
            .body
            .find(marker)
            .unwrap_or_else(|| panic!("no action form on the page:\n{}", self.body))
            + marker.len();
        let end = self.body[start..].find('"').unwrap() + start;
        self.body[start..end].to_string()
    }
}

impl Site {
    /// `staging_freezes` hold on `web-staging` (and `web-staging` accepts the parameter
    /// `REGION`).
    async fn start(db: TestDb, staging_freezes: Vec<FreezeWindow>) -> Site {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let config = Arc::new(Config {
            public_url: base.clone(),
            session_key: Some(SESSION_KEY.to_vec()),
            pages: PagesConfig { public: false },
            api: ApiConfig {
                tokens: vec![
                    token("ops", OPS_TOKEN, Role::Deploy, &[]),
                    token("admin", ADMIN_TOKEN, Role::Admin, &[]),
                    token("reader", READER_TOKEN, Role::Read, &[]),
                    token("scoped", SCOPED_TOKEN, Role::Deploy, &["web-staging"]),
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
        let mut catalog = ConfigCatalog::default();
        catalog.insert(
            "acme",
            spec("web-production", "production", ControlSpec::default()),
        );
        catalog.insert(
            "acme",
            spec(
                "web-staging",
                "staging",
                ControlSpec {
                    params: vec!["REGION".into()],
                    freezes: staging_freezes,
                    lock_on_rollback: true,
                    ..ControlSpec::default()
                },
            ),
        );
        let service = Service::new(
            Arc::clone(&store) as Arc<dyn ServiceStore>,
            Arc::new(catalog),
        );
        let state = web::Data::new(AppState {
            config: config.into(),
            store: store.clone(),
            service: service.clone(),
            worker_alive: tokio_util::sync::CancellationToken::new(),
            keys,
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
            store,
            service,
            production,
            staging,
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

    async fn get(&self, path: &str, cookie: &str) -> Answer {
        let request = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", cookie);
        Answer::from(request.send().await.unwrap()).await
    }

    /// Posts a form as a browser on this site would (its own Origin).
    async fn post(&self, path: &str, cookie: &str, fields: &[(&str, &str)]) -> Answer {
        self.post_from(path, cookie, fields, Some(&self.base.clone()))
            .await
    }

    async fn post_from(
        &self,
        path: &str,
        cookie: &str,
        fields: &[(&str, &str)],
        origin: Option<&str>,
    ) -> Answer {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .form(fields);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        Answer::from(request.send().await.unwrap()).await
    }

    /// The form token of `cookie`'s session, read from a page it may act on.
    async fn form_token(&self, cookie: &str) -> String {
        self.get(&format!("/instances/{}", self.staging.id), cookie)
            .await
            .form_token()
    }

    fn request(&self, instance: &Instance, image: &str) -> DeployRequest {
        DeployRequest {
            instance_id: instance.id,
            image: image.into(),
            env: Default::default(),
            strategy: String::new(),
            notes: String::new(),
            commit_sha: SHA.into(),
            params: Default::default(),
            noop: false,
        }
    }

    /// A pending deployment of `image`, asked for through the API by `ci`.
    async fn queue(&self, instance: &Instance, image: &str) -> Deployment {
        self.service
            .deploy("acme", self.request(instance, image), "ci")
            .await
            .unwrap()
    }

    /// A release of `image` that ran and succeeded on `instance` (now its live release).
    async fn live(&self, instance: &Instance, image: &str) -> Deployment {
        let d = self.queue(instance, image).await;
        let mut running = self
            .store
            .claim_next(WORKER, Duration::from_secs(300))
            .unwrap()
            .expect("a pending deployment to claim");
        assert_eq!(running.id, d.id);
        running.transition(DeployState::Succeeded).unwrap();
        self.store.finish_deployment(&running, WORKER).unwrap();
        running
    }

    async fn lock_of(&self, instance: &Instance) -> Option<deploybot::deploy::Lock> {
        self.service
            .lock_covering("acme", instance.id)
            .await
            .unwrap()
    }

    async fn audit_actions(&self, instance: &Instance) -> Vec<(String, String)> {
        let page = self
            .service
            .list_audit(
                "acme",
                Some(instance.id),
                ListOptions {
                    cursor: None,
                    limit: Some(100),
                },
            )
            .await
            .unwrap();
        page.items
            .into_iter()
            .map(|e| (e.actor, e.action))
            .collect()
    }
}

fn has(events: &[(String, String)], actor: &str, action: &str) -> bool {
    events.iter().any(|(a, b)| a == actor && b == action)
}

/// A signed-in deploy token locks an instance with a reason and a duration: the instance
/// page, `/` and `/locks` show the holder, the reason and the end; another actor is then
/// refused; unlocking ends it. Both are in the audit trail as `token:ops`.
async fn a_lock_taken_on_the_page_shows_its_holder_reason_and_end(db: TestDb) {
    let site = Site::start(db, Vec::new()).await;
    let ops = site.session(OPS_TOKEN).await;
    let page_path = format!("/instances/{}", site.staging.id);
    let page = site.get(&page_path, &ops).await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.assert_contains(&[
        "Not locked, not frozen.",
        "<button type=\"submit\">Lock</button>",
    ]);
    let form_token = page.form_token();

    // A duration too short to hold anything is refused, never reported as a lock.
    for too_short in ["1ns", "500ms"] {
        let answer = site
            .post(
                &format!("/instances/{}/lock", site.staging.id),
                &ops,
                &[
                    ("form_token", &form_token),
                    ("reason", "blink"),
                    ("duration", too_short),
                ],
            )
            .await;
        assert_eq!(answer.status, 400, "{too_short}: {}", answer.body);
        answer.assert_contains(&["at least a second"]);
    }
    assert!(site.lock_of(&site.staging).await.is_none());

    let answer = site
        .post(
            &format!("/instances/{}/lock", site.staging.id),
            &ops,
            &[
                ("form_token", &form_token),
                ("back", &page_path),
                ("reason", "incident <42>"),
                ("duration", "2h"),
            ],
        )
        .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(answer.location, format!("{page_path}?notice=locked"));
    let lock = site.lock_of(&site.staging).await.expect("a lock");
    assert_eq!(lock.holder, "token:ops");
    assert_eq!(lock.reason, "incident <42>");
    let until = lock.expires_at.expect("a lock for 2h");
    let left = until - Utc::now();
    assert!(
        left > chrono::Duration::minutes(118) && left <= chrono::Duration::hours(2),
        "{left}"
    );

    let until_text = until.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    let page = site.get(&answer.location, &ops).await;
    page.assert_contains(&[
        "id=\"notice\"",
        "Locked: only the holder deploys here",
        "<span class=\"badge locked\">locked</span> by <strong class=\"holder\">token:ops</strong>",
        "incident &lt;42&gt;",
        &until_text,
        "(in 1 h)",
        "Unlock</button>",
    ]);
    assert!(!page.body.contains("Not locked"), "{}", page.body);
    let index = site.get("/", &ops).await;
    index.assert_contains(&["token:ops", "incident &lt;42&gt;", &until_text]);
    let locks = site.get("/locks", &ops).await;
    locks.assert_contains(&[
        "web-staging (staging)",
        "token:ops",
        "incident &lt;42&gt;",
        &until_text,
    ]);
    // The production instance of the same repository is not locked.
    assert!(site.lock_of(&site.production).await.is_none());

    // The lock holds for everyone else.
    let refused = site
        .service
        .deploy_as(
            "acme",
            site.request(&site.staging, "ghcr.io/acme/web:other"),
            &Actor::login("alice", false),
            false,
            Source::default(),
        )
        .await;
    assert!(
        matches!(&refused, Err(Error::Locked(m)) if m.contains("token:ops") && m.contains("incident <42>")),
        "{refused:?}"
    );

    let answer = site
        .post(
            &format!("/instances/{}/unlock", site.staging.id),
            &ops,
            &[("form_token", &form_token), ("back", &page_path)],
        )
        .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(answer.location, format!("{page_path}?notice=unlocked"));
    assert!(site.lock_of(&site.staging).await.is_none());
    let page = site.get(&answer.location, &ops).await;
    page.assert_contains(&["Unlocked: the newest push", "Not locked, not frozen."]);
    let locks = site.get("/locks", &ops).await;
    locks.assert_contains(&["Nothing is locked."]);

    let events = site.audit_actions(&site.staging).await;
    assert!(has(&events, "token:ops", "lock"), "{events:?}");
    assert!(has(&events, "token:ops", "unlock"), "{events:?}");
    let page = site.get(&page_path, &ops).await;
    page.assert_contains(&["id=\"audit\"", "<code>lock</code>", "<code>unlock</code>"]);
    site.stop().await;
}

/// An action on a production instance needs its environment's name typed: without it (or
/// with another word) the form comes back asking for it and nothing is locked.
async fn a_production_instance_needs_its_environment_typed(db: TestDb) {
    let site = Site::start(db, Vec::new()).await;
    let ops = site.session(OPS_TOKEN).await;
    let page_path = format!("/instances/{}", site.production.id);
    let page = site.get(&page_path, &ops).await;
    page.assert_contains(&[
        "Type <code>production</code> to confirm <input name=\"confirm\" required",
    ]);
    let form_token = page.form_token();
    let lock_path = format!("/instances/{}/lock", site.production.id);
    for confirm in ["", "staging", "Production "] {
        let answer = site
            .post(
                &lock_path,
                &ops,
                &[
                    ("form_token", &form_token),
                    ("reason", "release freeze"),
                    ("confirm", confirm),
                ],
            )
            .await;
        assert_eq!(answer.status, 200, "{confirm:?}: {}", answer.body);
        answer.assert_contains(&[
            "Confirm: lock web-production",
            "type <code>production</code> to confirm",
            &format!("action=\"{lock_path}\""),
            "name=\"reason\" value=\"release freeze\"",
            &format!("name=\"form_token\" value=\"{form_token}\""),
        ]);
        assert!(
            site.lock_of(&site.production).await.is_none(),
            "{confirm:?}"
        );
    }
    let answer = site
        .post(
            &lock_path,
            &ops,
            &[
                ("form_token", &form_token),
                ("reason", "release freeze"),
                ("confirm", "production"),
            ],
        )
        .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    let lock = site.lock_of(&site.production).await.expect("locked");
    assert_eq!(lock.reason, "release freeze");

    // Unlocking it needs the confirmation too.
    let unlock_path = format!("/instances/{}/unlock", site.production.id);
    let answer = site
        .post(&unlock_path, &ops, &[("form_token", &form_token)])
        .await;
    assert_eq!(answer.status, 200);
    answer.assert_contains(&["Confirm: unlock web-production"]);
    assert!(site.lock_of(&site.production).await.is_some());
    let answer = site
        .post(
            &unlock_path,
            &ops,
            &[("form_token", &form_token), ("confirm", "production")],
        )
        .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert!(site.lock_of(&site.production).await.is_none());

    // A lock on every environment of the repository covers production: it asks too.
    let answer = site
        .post(
            &format!("/instances/{}/lock", site.staging.id),
            &ops,
            &[("form_token", &form_token), ("global", "on")],
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.assert_contains(&["Confirm: lock every environment of acme/web"]);
    assert!(site.lock_of(&site.staging).await.is_none());
    site.stop().await;
}

/// A refused post: what is wrong with it, its fields, its Origin, and the refusal's title.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Option<&'a str>, &'a str);

/// A form posted without the session's form token, with another session's, or from
/// another site is refused with 403 and changes nothing.
async fn a_post_without_its_form_token_or_from_another_site_changes_nothing(db: TestDb) {
    let site = Site::start(db, Vec::new()).await;
    let ops = site.session(OPS_TOKEN).await;
    let admin = site.session(ADMIN_TOKEN).await;
    let form_token = site.form_token(&ops).await;
    let admin_form_token = site.form_token(&admin).await;
    assert_ne!(form_token, admin_form_token);
    let pending = site.queue(&site.staging, "ghcr.io/acme/web:v1").await;
    let lock_path = format!("/instances/{}/lock", site.staging.id);
    let cancel_path = format!("/deployments/{}/cancel", pending.id);

    let cases: [Case<'_>; 4] = [
        (
            "no form token",
            vec![("reason", "x")],
            Some(site.base.as_str()),
            "Refused: stale form",
        ),
        (
            "another session's form token",
            vec![("form_token", &admin_form_token), ("reason", "x")],
            Some(site.base.as_str()),
            "Refused: stale form",
        ),
        (
            "a forged form token",
            vec![
                ("form_token", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
                ("reason", "x"),
            ],
            None,
            "Refused: stale form",
        ),
        (
            "a foreign Origin",
            vec![("form_token", &form_token), ("reason", "x")],
            Some("https://evil.example"),
            "Refused: another site",
        ),
    ];
    for (case, fields, origin, title) in &cases {
        for path in [&lock_path, &cancel_path] {
            let answer = site.post_from(path, &ops, fields, *origin).await;
            assert_eq!(answer.status, 403, "{case} on {path}: {}", answer.body);
            answer.assert_contains(&[title, "Nothing was changed."]);
        }
    }
    // Proxy headers a client sends do not make a foreign Origin this site's.
    for (name, value) in [
        ("forwarded", "host=evil.example;proto=https"),
        ("x-forwarded-host", "evil.example"),
    ] {
        let request = site
            .http
            .post(format!("{}{lock_path}", site.base))
            .header("cookie", &ops)
            .header("origin", "https://evil.example")
            .header(name, value)
            .form(&[("form_token", form_token.as_str()), ("reason", "x")]);
        let answer = Answer::from(request.send().await.unwrap()).await;
        assert_eq!(answer.status, 403, "{name}: {}", answer.body);
    }
    assert!(site.lock_of(&site.staging).await.is_none());
    let still = site
        .service
        .get_deployment("acme", pending.id)
        .await
        .unwrap();
    assert_eq!(still.state, DeployState::Pending);

    // Without a session nothing is done either.
    let answer = site
        .post_from(&lock_path, "", &[("form_token", &form_token)], None)
        .await;
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert!(site.lock_of(&site.staging).await.is_none());
    let events = site.audit_actions(&site.staging).await;
    assert!(
        !events
            .iter()
            .any(|(_, action)| action == "lock" || action == "cancel"),
        "{events:?}"
    );

    // The same form with the right token and Origin goes through.
    let answer = site
        .post(&cancel_path, &ops, &[("form_token", &form_token)])
        .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    site.stop().await;
}

/// A read token sees no action on any page, and its posts (with its own valid form
/// token) are refused with 403 and change nothing.
async fn a_read_token_sees_no_buttons_and_its_posts_are_refused(db: TestDb) {
    let site = Site::start(db, Vec::new()).await;
    site.live(&site.staging, "ghcr.io/acme/web:v1").await;
    site.live(&site.staging, "ghcr.io/acme/web:v2").await;
    let pending = site.queue(&site.staging, "ghcr.io/acme/web:v3").await;
    let reader = site.session(READER_TOKEN).await;
    for path in [
        format!("/instances/{}", site.staging.id),
        format!("/instances/{}", site.production.id),
        format!("/deployments/{}", pending.id),
        "/".to_string(),
        "/locks".to_string(),
    ] {
        let page = site.get(&path, &reader).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        for action in [
            "form_token",
            "class=\"action",
            "Lock</button>",
            "Cancel this",
        ] {
            assert!(
                !page.body.contains(action),
                "{path} shows {action}:\n{}",
                page.body
            );
        }
    }
    // The reader's own session has a form token; its posts are refused for its role.
    let ops = site.session(OPS_TOKEN).await;
    let ops_page = site
        .get(&format!("/deployments/{}", pending.id), &ops)
        .await;
    ops_page.assert_contains(&["Cancel this deployment</button>"]);
    let reader_token = form_token_of(&reader);
    for (path, fields) in [
        (
            format!("/instances/{}/lock", site.staging.id),
            vec![("reason", "mine")],
        ),
        (format!("/instances/{}/rollback", site.staging.id), vec![]),
        (format!("/deployments/{}/cancel", pending.id), vec![]),
    ] {
        let mut fields = fields;
        fields.push(("form_token", reader_token.as_str()));
        let answer = site.post(&path, &reader, &fields).await;
        assert_eq!(answer.status, 403, "{path}: {}", answer.body);
        answer.assert_contains(&["Refused: read-only token", "role read"]);
    }
    assert!(site.lock_of(&site.staging).await.is_none());
    let still = site
        .service
        .get_deployment("acme", pending.id)
        .await
        .unwrap();
    assert_eq!(still.state, DeployState::Pending);
    let deployments = site
        .service
        .list_deployments("acme", site.staging.id, ListOptions::default())
        .await
        .unwrap();
    assert_eq!(deployments.total, 3, "no rollback was queued");
    site.stop().await;
}

/// The form token a session carries, computed as the server does (a read token's pages
/// show no form to read it from).
fn form_token_of(cookie: &str) -> String {
    use base64::Engine as _;
    use hmac::digest::{KeyInit, Mac};
    let value = cookie.strip_prefix("deploybot_session=").unwrap();
    let derive = |key: &[u8], message: &[u8]| {
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    };
    let session_key = derive(SESSION_KEY, b"deploybot/pages/session/v2");
    let mut message = b"form\n".to_vec();
    message.extend_from_slice(value.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(derive(&session_key, &message))
}

/// A token whose globs cover only `web-staging` finds nothing else to act on, and may not
/// lock every environment of the repository.
async fn a_scoped_token_acts_only_within_its_instances(db: TestDb) {
    let site = Site::start(db, Vec::new()).await;
    let scoped = site.session(SCOPED_TOKEN).await;
    let form_token = site.form_token(&scoped).await;
    let page = site
        .get(&format!("/instances/{}", site.staging.id), &scoped)
        .await;
    assert!(!page.body.contains("name=\"global\""), "{}", page.body);
    let answer = site
        .post(
            &format!("/instances/{}/lock", site.production.id),
            &scoped,
            &[("form_token", &form_token), ("confirm", "production")],
        )
        .await;
    assert_eq!(answer.status, 404, "{}", answer.body);
    let answer = site
        .post(
            &format!("/instances/{}/lock", site.staging.id),
            &scoped,
            &[
                ("form_token", &form_token),
                ("global", "on"),
                ("confirm", "production"),
            ],
        )
        .await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    answer.assert_contains(&["web-production is outside its instances"]);
    assert!(site.lock_of(&site.staging).await.is_none());
    assert!(site.lock_of(&site.production).await.is_none());
    let hidden = site
        .get(&format!("/instances/{}", site.production.id), &scoped)
        .await;
    assert_eq!(hidden.status, 404);
    site.stop().await;
}

/// Cancelling a pending deployment from its page cancels it at once, says so, and is
/// recorded as `token:ops`.
async fn cancel_a_pending_deployment(db: TestDb) {
    let site = Site::start(db, Vec::new()).await;
    let pending = site.queue(&site.staging, "ghcr.io/acme/web:v1").await;
    let ops = site.session(OPS_TOKEN).await;
    let path = format!("/deployments/{}", pending.id);
    let page = site.get(&path, &ops).await;
    page.assert_contains(&[
        &format!("action=\"/deployments/{}/cancel\"", pending.id),
        "Cancel this deployment</button>",
    ]);
    let answer = site
        .post(
            &format!("{path}/cancel"),
            &ops,
            &[("form_token", &page.form_token()), ("back", &path)],
        )
        .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(answer.location, format!("{path}?notice=cancelled"));
    let cancelled = site
        .service
        .get_deployment("acme", pending.id)
        .await
        .unwrap();
    assert_eq!(cancelled.state, DeployState::Cancelled);
    let page = site.get(&answer.location, &ops).await;
    page.assert_contains(&["Cancelled.", "s-cancelled"]);
    assert!(
        !page.body.contains("Cancel this deployment"),
        "{}",
        page.body
    );
    assert!(has(
        &site.audit_actions(&site.staging).await,
        "token:ops",
        "cancel"
    ));

    // A finished deployment cannot be cancelled again: 409, never a 500.
    let again = site
        .post(
            &format!("{path}/cancel"),
            &ops,
            &[("form_token", &page_token(&site, &ops).await)],
        )
        .await;
    assert_eq!(again.status, 409, "{}", again.body);
    site.stop().await;
}

/// A deployment waiting for approval shows an approve button; its requester's approval is
/// refused (403, nothing changes), another token's lets it run and is in the audit trail.
async fn another_token_approves_a_deployment_from_its_page(db: TestDb) {
    let site = Site::start(db, Vec::new()).await;
    let pending = site.queue(&site.staging, "ghcr.io/acme/web:v1").await;
    let mut waiting = WaitingFor::new(WaitKind::Approval, "1 approval", None);
    waiting.approval = Some(ApprovalState {
        requested_by: "token:ops".into(),
        approved_by: Vec::new(),
        needed: 1,
    });
    site.store
        .set_waiting("acme", pending.id, Some(&waiting))
        .unwrap();
    let path = format!("/deployments/{}", pending.id);
    let ops = site.session(OPS_TOKEN).await;
    let page = site.get(&path, &ops).await;
    page.assert_contains(&[
        &format!("action=\"/deployments/{}/approve\"", pending.id),
        "Approve this deployment</button>",
    ]);
    let own = site
        .post(
            &format!("{path}/approve"),
            &ops,
            &[("form_token", &page.form_token()), ("back", &path)],
        )
        .await;
    assert_eq!(own.status, 403, "{}", own.body);
    assert!(own.body.contains("cannot approve"), "{}", own.body);
    let still = site
        .service
        .get_deployment("acme", pending.id)
        .await
        .unwrap();
    assert_eq!(still.waiting_for.map(|w| w.kind), Some(WaitKind::Approval));

    let admin = site.session(ADMIN_TOKEN).await;
    let answer = site
        .post(
            &format!("{path}/approve"),
            &admin,
            &[
                ("form_token", &page_token(&site, &admin).await),
                ("back", &path),
            ],
        )
        .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(answer.location, format!("{path}?notice=approved"));
    let approved = site
        .service
        .get_deployment("acme", pending.id)
        .await
        .unwrap();
    assert_eq!(approved.waiting_for, None);
    assert_eq!(approved.state, DeployState::Pending);
    let events = site.audit_actions(&site.staging).await;
    assert!(has(&events, "token:admin", "approve"), "{events:?}");
    assert!(has(&events, "token:ops", "refused"), "{events:?}");
    site.stop().await;
}

async fn page_token(site: &Site, cookie: &str) -> String {
    site.form_token(cookie).await
}

/// A rollback from the page goes through the lock like any other: another's lock refuses
/// it (409, with the holder and reason), a deploy token's `force` does not pass it, an
/// admin's does and that is recorded; it returns to the previous release.
async fn a_rollback_passes_another_lock_only_with_an_admins_force(db: TestDb) {
    let site = Site::start(db, Vec::new()).await;
    let v1 = site.live(&site.staging, "ghcr.io/acme/web:v1").await;
    site.live(&site.staging, "ghcr.io/acme/web:v2").await;
    site.service
        .lock(
            "acme",
            &site.staging,
            false,
            &Actor::login("alice", false),
            "db migration",
            None,
            None,
        )
        .await
        .unwrap();
    let ops = site.session(OPS_TOKEN).await;
    let admin = site.session(ADMIN_TOKEN).await;
    let ops_page = site
        .get(&format!("/instances/{}", site.staging.id), &ops)
        .await;
    ops_page.assert_contains(&[
        "Roll back to v1</button>",
        "by <strong class=\"holder\">@alice</strong>",
    ]);
    assert!(
        !ops_page.body.contains("name=\"force\""),
        "only admins see force"
    );
    let admin_page = site
        .get(&format!("/instances/{}", site.staging.id), &admin)
        .await;
    admin_page.assert_contains(&["name=\"force\""]);
    let path = format!("/instances/{}/rollback", site.staging.id);

    for (cookie, page, force) in [
        (&ops, &ops_page, ""),
        (&ops, &ops_page, "on"),
        (&admin, &admin_page, ""),
    ] {
        let answer = site
            .post(
                &path,
                cookie,
                &[
                    ("form_token", &page.form_token()),
                    ("reason", "bad v2"),
                    ("force", force),
                ],
            )
            .await;
        assert_eq!(answer.status, 409, "force={force:?}: {}", answer.body);
        answer.assert_contains(&[
            "Refused: locked",
            "@alice",
            "db migration",
            "Nothing was changed.",
        ]);
    }
    let listed = site
        .service
        .list_deployments("acme", site.staging.id, ListOptions::default())
        .await
        .unwrap();
    assert_eq!(listed.total, 2, "nothing was queued");

    let answer = site
        .post(
            &path,
            &admin,
            &[
                ("form_token", &admin_page.form_token()),
                ("reason", "bad v2"),
                ("force", "on"),
            ],
        )
        .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert!(
        answer.location.ends_with("?notice=rollback_queued"),
        "{}",
        answer.location
    );
    let listed = site
        .service
        .list_deployments("acme", site.staging.id, ListOptions::default())
        .await
        .unwrap();
    let rollback = &listed.items[0];
    assert_eq!(rollback.release_id, v1.release_id);
    assert!(
        rollback.source.trigger.contains("bad v2"),
        "{:?}",
        rollback.source
    );
    let page = site.get(&answer.location, &admin).await;
    page.assert_contains(&["Rollback queued.", "rollback to v1"]);
    let events = site.audit_actions(&site.staging).await;
    assert!(has(&events, "token:admin", "force"), "{events:?}");
    assert!(has(&events, "token:admin", "rollback"), "{events:?}");
    assert!(has(&events, "token:ops", "refused"), "{events:?}");
    site.stop().await;
}

/// A dry run shows its badge and parameters; a pending push that waits for a lock says
/// what it waits for; a freeze in force and the next one show on the instance.
async fn dry_runs_parameters_waiting_and_freezes_show(db: TestDb) {
    let now = Utc::now();
    let freezes = vec![
        FreezeWindow {
            reason: "end-of-year freeze".into(),
            when: FreezeWhen::Fixed {
                start: now - chrono::Duration::hours(1),
                end: now + chrono::Duration::hours(3),
            },
        },
        FreezeWindow {
            reason: "launch week".into(),
            when: FreezeWhen::Fixed {
                start: now + chrono::Duration::days(10),
                end: now + chrono::Duration::days(12),
            },
        },
    ];
    let site = Site::start(db, freezes).await;
    let ops = site.session(OPS_TOKEN).await;
    let mut request = site.request(&site.staging, "ghcr.io/acme/web:plan");
    request.noop = true;
    request.params.insert("REGION".into(), "eu-west-1".into());
    let noop = site
        .service
        .deploy_as(
            "acme",
            request,
            &Actor::token("ops", false),
            false,
            Source::default(),
        )
        .await
        .unwrap();
    let page = site.get(&format!("/deployments/{}", noop.id), &ops).await;
    page.assert_contains(&[
        "id=\"dry-run\" class=\"badge dry-run\">dry run</span>",
        "<dd id=\"params\"><code>REGION=eu-west-1</code>",
    ]);

    let index = site.get("/", &ops).await;
    index.assert_contains(&[
        "<span class=\"badge frozen\">frozen</span>",
        "end-of-year freeze",
        "Next freeze: launch week",
    ]);
    let page = site
        .get(&format!("/instances/{}", site.staging.id), &ops)
        .await;
    page.assert_contains(&["end-of-year freeze", "launch week", "dry run"]);

    // A push to the production instance while it is locked waits for the lock.
    site.service
        .lock(
            "acme",
            &site.production,
            false,
            &Actor::login("alice", false),
            "incident 7",
            None,
            None,
        )
        .await
        .unwrap();
    let mut triggered = site
        .service
        .prepare(
            "acme",
            site.request(&site.production, "ghcr.io/acme/web:push"),
            "octocat",
            Source::default(),
        )
        .await
        .unwrap();
    site.service
        .hold_for_push("acme", &site.production, &mut triggered);
    let waiting = site.service.queue(triggered).await.unwrap().unwrap();
    let page = site
        .get(&format!("/deployments/{}", waiting.id), &ops)
        .await;
    page.assert_contains(&[
        "<span class=\"waiting\">Waiting for the lock to end (locked by @alice: incident 7)</span>",
    ]);
    let events = site
        .get(&format!("/deployments/{}/events", waiting.id), &ops)
        .await;
    events.assert_contains(&[
        "\"waiting\":\"Waiting for the lock to end (locked by @alice: incident 7)\"",
    ]);
    site.stop().await;
}

/// A lock on every environment of the repository covers both instances, shows on `/locks`
/// as such, and is released from there.
async fn a_repository_lock_is_listed_and_released_from_the_locks_page(db: TestDb) {
    let site = Site::start(db, Vec::new()).await;
    let ops = site.session(OPS_TOKEN).await;
    let form_token = site.form_token(&ops).await;
    let answer = site
        .post(
            &format!("/instances/{}/lock", site.staging.id),
            &ops,
            &[
                ("form_token", &form_token),
                ("global", "on"),
                ("reason", "freeze the repo"),
                ("confirm", "production"),
            ],
        )
        .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    for instance in [&site.staging, &site.production] {
        let lock = site.lock_of(instance).await.expect("covered");
        assert_eq!(lock.reason, "freeze the repo");
    }
    let locks = site.get("/locks", &ops).await;
    locks.assert_contains(&[
        "every environment of acme/web",
        "freeze the repo",
        "until unlocked",
        "name=\"global\" value=\"on\"",
        "Type <code>production</code> to confirm",
    ]);
    let answer = site
        .post(
            &format!("/instances/{}/unlock", site.staging.id),
            &ops,
            &[
                ("form_token", &form_token),
                ("global", "on"),
                ("back", "/locks"),
                ("confirm", "production"),
            ],
        )
        .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(answer.location, "/locks?notice=unlocked");
    assert!(site.lock_of(&site.production).await.is_none());
    assert!(site.lock_of(&site.staging).await.is_none());
    let locks = site.get(&answer.location, &ops).await;
    locks.assert_contains(&["Unlocked: the newest push", "Nothing is locked."]);
    site.stop().await;
}

/// During a freeze a rollback from the page is refused for a deploy token (409, with the
/// freeze's reason) and passes with an admin's `force`.
async fn a_rollback_during_a_freeze_needs_an_admins_force(db: TestDb) {
    let now = Utc::now();
    let freeze = FreezeWindow {
        reason: "end-of-year freeze".into(),
        when: FreezeWhen::Fixed {
            start: now - chrono::Duration::hours(1),
            end: now + chrono::Duration::hours(3),
        },
    };
    let site = Site::start(db, vec![freeze]).await;
    site.live(&site.staging, "ghcr.io/acme/web:v1").await;
    site.live(&site.staging, "ghcr.io/acme/web:v2").await;
    let path = format!("/instances/{}/rollback", site.staging.id);
    let ops = site.session(OPS_TOKEN).await;
    let answer = site
        .post(
            &path,
            &ops,
            &[
                ("form_token", &site.form_token(&ops).await),
                ("force", "on"),
            ],
        )
        .await;
    assert_eq!(answer.status, 409, "{}", answer.body);
    answer.assert_contains(&["Refused: frozen", "end-of-year freeze"]);
    let admin = site.session(ADMIN_TOKEN).await;
    let answer = site
        .post(
            &path,
            &admin,
            &[
                ("form_token", &site.form_token(&admin).await),
                ("force", "on"),
            ],
        )
        .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    let listed = site
        .service
        .list_deployments("acme", site.staging.id, ListOptions::default())
        .await
        .unwrap();
    assert_eq!(listed.total, 3);
    let events = site.audit_actions(&site.staging).await;
    assert!(has(&events, "token:ops", "refused"), "{events:?}");
    assert!(has(&events, "token:admin", "force"), "{events:?}");
    site.stop().await;
}

/// Real headless Chromium: sign in with the form, lock an instance with a reason and see
/// the badge, unlock it, lock the production instance (the form asks for its name), and
/// cancel a pending deployment with its button; all without a line of script of ours.
async fn a_browser_locks_unlocks_and_cancels(db: TestDb) {
    let Some(binary) = chromium::find_or_skip("pages actions browser test") else {
        return;
    };
    let site = Site::start(db, Vec::new()).await;
    let pending = site.queue(&site.staging, "ghcr.io/acme/web:v1").await;
    let base = site.base.clone();
    let staging = site.staging.id.to_string();
    let production = site.production.id.to_string();
    let pending_id = pending.id.to_string();
    let other = site.queue(&site.staging, "ghcr.io/acme/web:v2").await;
    let service = site.service.clone();
    let runtime = tokio::runtime::Handle::current();
    let screenshot = std::env::var_os("DEPLOYBOT_SCREENSHOT").map(std::path::PathBuf::from);
    let seen = tokio::task::spawn_blocking(move || {
        let mut browser = Chromium::launch(&binary);
        let tab = browser.open(&format!("{base}/signin"));
        submit(
            &mut browser,
            &tab,
            "form[action='/signin']",
            &[("token", OPS_TOKEN)],
        );
        browser.wait_until(&tab, "document.querySelector('.who') && document.querySelector('.who').innerText.includes('ops')");

        navigate(&mut browser, &tab, &format!("{base}/instances/{staging}"));
        submit(
            &mut browser,
            &tab,
            "form.lock",
            &[("reason", "incident 42"), ("duration", "90m")],
        );
        browser.wait_until(&tab, "document.getElementById('lock') !== null");
        let badge = browser.eval(&tab, "document.getElementById('lock').innerText");
        if let Some(path) = &screenshot {
            std::fs::write(path, browser.screenshot(&tab)).unwrap();
        }
        let notice = browser.eval(&tab, "document.getElementById('notice').innerText");

        submit(&mut browser, &tab, "form.unlock", &[]);
        browser.wait_until(&tab, "document.getElementById('unlocked') !== null");
        let unlocked = browser.eval(&tab, "document.getElementById('notice').innerText");

        navigate(&mut browser, &tab, &format!("{base}/instances/{production}"));
        if let Some(path) = &screenshot {
            std::fs::write(path.with_extension("forms.png"), browser.screenshot(&tab)).unwrap();
        }
        let required = browser.eval(
            &tab,
            "document.querySelector('form.lock input[name=confirm]').required",
        );
        submit(
            &mut browser,
            &tab,
            "form.lock",
            &[("reason", "release"), ("confirm", "production")],
        );
        browser.wait_until(&tab, "document.getElementById('lock') !== null");
        let production_badge = browser.eval(&tab, "document.getElementById('lock').innerText");

        navigate(&mut browser, &tab, &format!("{base}/deployments/{pending_id}"));
        submit(&mut browser, &tab, "form.cancel", &[]);
        browser.wait_until(&tab, "document.getElementById('state').textContent === 'cancelled'");
        let cancelled = browser.eval(&tab, "document.getElementById('notice').innerText");

        // A page left open loses its cancel button once the deployment is cancelled elsewhere.
        navigate(&mut browser, &tab, &format!("{base}/deployments/{}", other.id));
        assert_eq!(
            browser.eval(&tab, "document.querySelector('form.cancel').hidden"),
            serde_json::json!(false)
        );
        runtime
            .block_on(service.cancel("acme", other.id, "someone else"))
            .unwrap();
        browser.wait_until(
            &tab,
            "document.getElementById('state').textContent === 'cancelled' && document.querySelector('form.cancel').hidden",
        );
        (badge, notice, unlocked, required, production_badge, cancelled)
    })
    .await
    .unwrap();
    let (badge, notice, unlocked, required, production_badge, cancelled) = seen;
    let badge = badge.as_str().unwrap();
    assert!(
        badge.contains("locked by token:ops: incident 42")
            && badge.contains("until 20")
            && badge.contains("(in 1 h)"),
        "{badge}"
    );
    assert!(notice.as_str().unwrap().starts_with("Locked"), "{notice}");
    assert!(
        unlocked.as_str().unwrap().starts_with("Unlocked"),
        "{unlocked}"
    );
    assert_eq!(required, serde_json::json!(true));
    assert!(
        production_badge.as_str().unwrap().contains("release"),
        "{production_badge}"
    );
    assert_eq!(cancelled, serde_json::json!("Cancelled."));
    assert!(site.lock_of(&site.staging).await.is_none());
    assert_eq!(
        site.lock_of(&site.production).await.map(|l| l.holder),
        Some("token:ops".to_string())
    );
    let d = site
        .service
        .get_deployment("acme", pending.id)
        .await
        .unwrap();
    assert_eq!(d.state, DeployState::Cancelled);
    site.stop().await;
}

/// Opens `url` in the tab and waits until it has loaded.
fn navigate(browser: &mut Chromium, tab: &str, url: &str) {
    browser.eval(
        tab,
        &format!(
            "setTimeout(() => {{ location.href = {} }}, 0)",
            serde_json::json!(url)
        ),
    );
    std::thread::sleep(Duration::from_millis(700));
    browser.wait_until(
        tab,
        &format!(
            "location.href === {} && document.readyState === 'complete'",
            serde_json::json!(url)
        ),
    );
}

/// Fills `fields` of the form `selector` and submits it as a click on its button would,
/// then waits for the next page to load.
fn submit(browser: &mut Chromium, tab: &str, selector: &str, fields: &[(&str, &str)]) {
    let marker = format!("window.__left_{}", fields.len());
    let mut script = format!(
        "(() => {{ {marker} = true; const f = document.querySelector({}); if (!f) throw new Error({});",
        serde_json::json!(selector),
        serde_json::json!(format!("no form {selector}"))
    );
    for (name, value) in fields {
        script.push_str(&format!(
            "f.elements[{}].value = {};",
            serde_json::json!(name),
            serde_json::json!(value)
        ));
    }
    script.push_str(
        "setTimeout(() => f.querySelector('button[type=submit]').click(), 0); return true; })()",
    );
    browser.eval(tab, &script);
    // Let the navigation commit before the next evaluation (one that runs while the page is
    // replaced is answered with an error).
    std::thread::sleep(Duration::from_millis(700));
    // The next page has none of this page's script state.
    browser.wait_until(
        tab,
        &format!("typeof {marker} === 'undefined' && document.readyState === 'complete'"),
    );
}

both_backends_async!(
    a_lock_taken_on_the_page_shows_its_holder_reason_and_end,
    a_production_instance_needs_its_environment_typed,
    a_post_without_its_form_token_or_from_another_site_changes_nothing,
    a_read_token_sees_no_buttons_and_its_posts_are_refused,
    a_scoped_token_acts_only_within_its_instances,
    cancel_a_pending_deployment,
    another_token_approves_a_deployment_from_its_page,
    a_rollback_passes_another_lock_only_with_an_admins_force,
    dry_runs_parameters_waiting_and_freezes_show,
    a_repository_lock_is_listed_and_released_from_the_locks_page,
    a_rollback_during_a_freeze_needs_an_admins_force,
    a_browser_locks_unlocks_and_cancels,
);
