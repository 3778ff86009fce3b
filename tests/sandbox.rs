//! `deploybot sandbox`, run as a person runs it: the real binary with a configuration like
//! config/deploybot.toml on a free port of 127.0.0.1, commented on with `deploybot simulate
//! comment`. What a person sees is checked: the pull request's conversation and
//! deployments as the sandbox shows them (`/sandbox/…/pull/1/view`, the page's data), and
//! the deployments through deploybot's API. Waits are bounded by deadlines; nothing is
//! asserted about time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_deploybot");
const SECRET: &str = "sandbox-test-secret";
/// The API token of the configuration (its SHA-256 is in `CONFIG`).
const API_TOKEN: &str = "dev-token";
/// A GitHub token in the user's environment, which the sandbox must never use.
const USERS_GITHUB_TOKEN: &str = "ghp_the_users_own_token_never_to_be_sent";
const LIMIT: Duration = Duration::from_secs(90);

const CONFIG: &str = r#"
[github]
api_url = "GITHUB_TRAP"

[[api.tokens]]
name = "laptop"
tenant = "acme"
sha256 = "c91cbbedf8c712e8e2b7517ddeca8fe4fde839ebd8339e0b2001363002b37712"

[pages]
public = true

[[instances]]
name = "web-staging"
repo = "acme/web"
environment = "staging"
image = "ghcr.io/acme/web:{short_sha}"
strategy = "rolling"
on_push = ["main"]
commands = true
allowed_permissions = ["write", "maintain", "admin"]

[instances.provider]
kind = "noop"
"#;

/// A listener standing where real GitHub would be: it records every request it gets.
struct RealGithubTrap {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl RealGithubTrap {
    fn start() -> RealGithubTrap {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the trap");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut stream = stream;
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut head = [0u8; 4096];
                let n = stream.read(&mut head).unwrap_or(0);
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head[..n]).into_owned());
                let _ = stream.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n");
            }
        });
        RealGithubTrap { url, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// A running `deploybot sandbox`, stopped when dropped.
struct Sandbox {
    child: Child,
    base: String,
    dir: tempfile::TempDir,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    _trap: Arc<RealGithubTrap>,
}

/// Where the user's own database would be, were DATABASE_URL used.
fn users_database(dir: &std::path::Path) -> String {
    format!("{}/users-own.db", dir.display())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Sandbox {
    fn start(trap: Arc<RealGithubTrap>) -> Sandbox {
        Sandbox::start_on(trap, free_port())
    }

    /// The sandbox listening on `port` of 127.0.0.1 (0: any free port, which it names in
    /// the address of its page).
    fn start_on(trap: Arc<RealGithubTrap>, port: u16) -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("deploybot.toml");
        std::fs::write(&config, CONFIG.replace("GITHUB_TRAP", &trap.url)).unwrap();
        let mut child = Command::new(BIN)
            .args(["sandbox", "--config"])
            .arg(&config)
            .current_dir(dir.path())
            .env(
                "DATABASE_URL",
                format!("sqlite://{}", users_database(dir.path())),
            )
            .env_remove("DEPLOYBOT_PUBLIC_URL")
            .env_remove("DEPLOYBOT_GITHUB_API_URL")
            .env_remove("GITHUB_APP_ID")
            .env_remove("GITHUB_APP_PRIVATE_KEY")
            .env_remove("GITHUB_APP_PRIVATE_KEY_PATH")
            .env("DEPLOYBOT_LISTEN", format!("127.0.0.1:{port}"))
            .env("DEPLOYBOT_WEBHOOK_SECRET", SECRET)
            .env("GITHUB_TOKEN", USERS_GITHUB_TOKEN)
            .env("DEPLOYBOT_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start deploybot sandbox");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::clone(&stdout);
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let text = Arc::clone(&stderr);
        let mut err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = err.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                text.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        let mut sandbox = Sandbox {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
            stdout,
            stderr,
            _trap: trap,
        };
        if port == 0 {
            sandbox.wait_until("the sandbox prints its page", || {
                sandbox.page_address().is_some()
            });
            let page = sandbox.page_address().unwrap();
            sandbox.base = page[..page.find("/sandbox/").unwrap()].to_string();
            assert!(!sandbox.base.ends_with(":0"), "it printed port 0: {page}");
        }
        sandbox.wait_until("the sandbox answers /readyz", || {
            get(&format!("{}/readyz", sandbox.base), None).0 == 200
        });
        sandbox
    }

    /// The address of the page the sandbox prints, once it has.
    fn page_address(&self) -> Option<String> {
        let stdout = self.stdout.lock().unwrap();
        stdout
            .iter()
            .find_map(|line| line.strip_prefix("sandbox: open "))
            .map(str::to_string)
    }

    fn wait_until(&self, what: &str, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            if start.elapsed() > LIMIT {
                let stderr = self.stderr.lock().unwrap().clone();
                panic!("gave up waiting until {what}; stderr:\n{stderr}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `deploybot simulate comment …` as a person types it; its exit code and output.
    fn comment(&self, user: &str, body: &str) -> (i32, String) {
        let output = Command::new(BIN)
            .args(["simulate", "comment", "--repo", "acme/web", "--pr", "1"])
            .args(["--user", user, "--body", body, "--url", &self.base])
            .env("DEPLOYBOT_WEBHOOK_SECRET", SECRET)
            .env_remove("DEPLOYBOT_CONFIG")
            .current_dir(self.dir.path())
            .output()
            .expect("run deploybot simulate");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code().unwrap_or(-1), text)
    }

    /// The pull request as the sandbox's page shows it.
    fn view(&self) -> Value {
        let (status, body) = get(&format!("{}/sandbox/acme/web/pull/1/view", self.base), None);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// The comments of pull request #1, each as (author, body, reactions).
    fn conversation(&self) -> Vec<(String, String, Vec<String>)> {
        let view = self.view();
        let comments = view["comments"].as_array().cloned().unwrap_or_default();
        comments
            .iter()
            .map(|c| {
                let reactions = c["reactions"].as_array().cloned().unwrap_or_default();
                (
                    c["author"].as_str().unwrap_or_default().to_string(),
                    c["body"].as_str().unwrap_or_default().to_string(),
                    reactions
                        .iter()
                        .map(|r| r["content"].as_str().unwrap_or_default().to_string())
                        .collect(),
                )
            })
            .collect()
    }

    /// The bot's replies, oldest first.
    fn replies(&self) -> Vec<String> {
        let conversation = self.conversation();
        let by_bot = conversation
            .into_iter()
            .filter(|(author, _, _)| author == "deploybot");
        by_bot.map(|(_, body, _)| body).collect()
    }

    /// The GitHub Deployments of `staging`, newest first.
    fn staging(&self) -> Vec<Value> {
        let view = self.view();
        let environments = view["environments"].as_array().cloned().unwrap_or_default();
        environments
            .into_iter()
            .find(|e| e["name"] == "staging")
            .and_then(|e| e["deployments"].as_array().cloned())
            .unwrap_or_default()
    }

    /// web-staging's deployments through deploybot's API, newest first.
    fn api_deployments(&self) -> Vec<Value> {
        let url = format!("{}/v1/instances/web-staging/deployments", self.base);
        let (status, body) = get(&url, Some(API_TOKEN));
        assert_eq!(status, 200, "{body}");
        let value: Value = serde_json::from_str(&body).unwrap();
        value["items"].as_array().cloned().unwrap_or_default()
    }

    fn wait_idle(&self) {
        self.wait_until("no deployment of web-staging is pending or running", || {
            self.api_deployments()
                .iter()
                .all(|d| !matches!(d["state"].as_str(), Some("pending" | "running")))
        });
    }
}

impl Sandbox {
    /// Stops the sandbox (SIGTERM) and waits until it has exited; the temporary directory
    /// of the test stays until the answer is dropped.
    fn child_stopped(mut self) -> tempfile::TempDir {
        self.stop();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn get(url: &str, token: Option<&str>) -> (u16, String) {
    runtime().block_on(async {
        let mut request = reqwest::Client::new().get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        match request.send().await {
            Ok(response) => (
                response.status().as_u16(),
                response.text().await.unwrap_or_default(),
            ),
            Err(_) => (0, String::new()),
        }
    })
}

/// A request's headers, by name.
type Headers<'a> = &'a [(&'a str, &'a str)];

/// What the comment route answered a raw request: its status, whether it carries the
/// sandbox's header, and its body as JSON (a string when it is not JSON).
struct Raw {
    status: u16,
    sandbox_header: bool,
    body: Value,
}

fn post_raw(url: &str, headers: Headers, body: String) -> Raw {
    runtime().block_on(async {
        let mut request = reqwest::Client::new().post(url).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("the sandbox answers");
        let status = response.status().as_u16();
        let sandbox_header = response.headers().contains_key("x-deploybot-sandbox");
        let text = response.text().await.unwrap_or_default();
        Raw {
            status,
            sandbox_header,
            body: serde_json::from_str(&text).unwrap_or(json!(text)),
        }
    })
}

fn post(url: &str, body: &Value) -> (u16, Value) {
    runtime().block_on(async {
        let response = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("the sandbox answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(json!(text)))
    })
}

fn sandbox() -> Sandbox {
    Sandbox::start(Arc::new(RealGithubTrap::start()))
}

#[test]
fn alice_deploys_the_pull_requests_head_to_staging_through_the_stand_in() {
    let sandbox = sandbox();
    let printed = sandbox.stdout.lock().unwrap().clone();
    let page = format!("sandbox: open {}/sandbox/acme/web/pull/1", sandbox.base);
    assert!(printed.contains(&page), "{printed:#?}");
    let head = sandbox.view()["head_sha"].as_str().unwrap().to_string();

    let (code, output) = sandbox.comment("alice", "/deploy staging");
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("202 Accepted"), "{output}");
    sandbox.wait_until("the bot's reply ends with success", || {
        sandbox
            .staging()
            .first()
            .is_some_and(|d| d["state"] == "success")
            && sandbox.replies().iter().any(|r| r.contains("succeeded"))
    });

    let deployments = sandbox.staging();
    assert_eq!(deployments.len(), 1, "{deployments:#?}");
    assert_eq!(deployments[0]["sha"], json!(head));
    assert_eq!(deployments[0]["active"], json!(true));
    let states: Vec<&str> = deployments[0]["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(states.last(), Some(&"success"), "{states:?}");
    let conversation = sandbox.conversation();
    let command = conversation
        .iter()
        .find(|(author, body, _)| author == "alice" && body == "/deploy staging")
        .expect("alice's comment is in the conversation");
    assert!(command.2.contains(&"eyes".to_string()), "{conversation:#?}");
    sandbox.wait_until("the rocket on alice's comment", || {
        sandbox.conversation().iter().any(|(author, _, reactions)| {
            author == "alice" && reactions.contains(&"rocket".to_string())
        })
    });
    let api = sandbox.api_deployments();
    assert_eq!(api[0]["state"], "succeeded", "{api:#?}");
    let release = api[0]["release_id"].as_str().unwrap();
    let (status, release) = get(
        &format!("{}/v1/releases/{release}", sandbox.base),
        Some(API_TOKEN),
    );
    assert_eq!(status, 200, "{release}");
    let release: Value = serde_json::from_str(&release).unwrap();
    assert_eq!(release["commit_sha"], json!(head), "{release:#}");
}

#[test]
fn bob_with_read_access_is_refused_and_nothing_is_deployed() {
    let sandbox = sandbox();
    let (code, output) = sandbox.comment("bob", "/deploy staging");
    assert_eq!(code, 0, "the webhook itself is accepted: {output}");
    sandbox.wait_until("the bot replies to bob", || !sandbox.replies().is_empty());
    let replies = sandbox.replies();
    assert!(
        replies[0].contains("bob") && replies[0].contains("read"),
        "the reply names bob's permission: {replies:#?}"
    );
    sandbox.wait_until("the confused reaction on bob's comment", || {
        sandbox.conversation().iter().any(|(author, _, reactions)| {
            author == "bob" && reactions.contains(&"confused".to_string())
        })
    });
    assert!(sandbox.staging().is_empty(), "{:#?}", sandbox.staging());
    assert!(sandbox.api_deployments().is_empty());
}

#[test]
fn rollback_after_two_deploys_returns_to_the_previous_release() {
    let sandbox = sandbox();
    for _ in 0..2 {
        let (code, output) = sandbox.comment("alice", "/deploy staging");
        assert_eq!(code, 0, "{output}");
        sandbox.wait_idle();
    }
    sandbox.wait_until("two successful deployments", || {
        sandbox.api_deployments().len() == 2
            && sandbox
                .api_deployments()
                .iter()
                .all(|d| d["state"] == "succeeded")
    });
    let (code, output) = sandbox.comment("alice", "/rollback staging");
    assert_eq!(code, 0, "{output}");
    sandbox.wait_until("the rollback succeeded", || {
        let api = sandbox.api_deployments();
        api.len() == 3 && api[0]["state"] == "succeeded"
    });
    let api = sandbox.api_deployments();
    let release = |d: &Value| d["release_id"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        release(&api[0]),
        release(&api[2]),
        "the rollback runs the first release again: {api:#?}"
    );
    assert_eq!(api[1]["state"], "rolled_back", "{api:#?}");
}

#[test]
fn the_sandbox_never_calls_github_with_the_users_token() {
    let trap = Arc::new(RealGithubTrap::start());
    let sandbox = Sandbox::start(Arc::clone(&trap));
    let (code, output) = sandbox.comment("alice", "/deploy staging");
    assert_eq!(code, 0, "{output}");
    sandbox.wait_until("the deployment reached the stand-in", || {
        sandbox
            .staging()
            .first()
            .is_some_and(|d| d["state"] == "success")
    });
    assert!(
        trap.requests().is_empty(),
        "the configured GitHub was called: {:#?}",
        trap.requests()
    );
    let stderr = sandbox.stderr.lock().unwrap().clone();
    let stdout = sandbox.stdout.lock().unwrap().join("\n");
    assert!(!stderr.contains(USERS_GITHUB_TOKEN) && !stdout.contains(USERS_GITHUB_TOKEN));
}

#[test]
fn the_sandbox_keeps_its_data_in_a_fresh_database_removed_at_exit() {
    let sandbox = sandbox();
    let users_own = users_database(sandbox.dir.path());
    let printed = sandbox.stdout.lock().unwrap().clone();
    let database = printed
        .iter()
        .find_map(|line| line.strip_prefix("sandbox: database sqlite://"))
        .expect("the sandbox says where its database is")
        .to_string();
    assert!(std::path::Path::new(&database).exists(), "{database}");
    let (code, output) = sandbox.comment("alice", "/deploy staging");
    assert_eq!(code, 0, "{output}");
    sandbox.wait_until("the deployment succeeded", || {
        sandbox
            .staging()
            .first()
            .is_some_and(|d| d["state"] == "success")
    });
    let _dir = sandbox.child_stopped();
    assert!(
        !std::path::Path::new(&database).exists(),
        "{database} is removed at exit"
    );
    assert!(
        !std::path::Path::new(&users_own).exists(),
        "DATABASE_URL is not used"
    );
}

#[test]
fn without_a_webhook_secret_the_sandbox_says_what_to_export() {
    let output = Command::new(BIN)
        .arg("sandbox")
        .env_remove("DEPLOYBOT_WEBHOOK_SECRET")
        .env_remove("DEPLOYBOT_CONFIG")
        .env("DEPLOYBOT_LISTEN", format!("127.0.0.1:{}", free_port()))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DEPLOYBOT_WEBHOOK_SECRET"), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("sandbox: open"), "{stdout}");
}

#[test]
fn the_comment_route_names_what_is_unknown_and_what_exists() {
    let sandbox = sandbox();
    let route = |path: &str| format!("{}/sandbox/{path}/comments", sandbox.base);
    let (status, answer) = post(
        &route("acme/nope/pull/1"),
        &json!({"user": "alice", "body": "/deploy staging"}),
    );
    assert_eq!(status, 404);
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("acme/nope") && message.contains("acme/web"),
        "{message}"
    );

    let (status, answer) = post(
        &route("acme/web/pull/7"),
        &json!({"user": "alice", "body": "/deploy staging"}),
    );
    assert_eq!(status, 404);
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("#7") && message.contains("#1"),
        "{message}"
    );

    let (status, answer) = post(
        &route("acme/web/pull/1"),
        &json!({"user": "mallory", "body": "/deploy staging"}),
    );
    assert_eq!(status, 422);
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("mallory") && message.contains("alice (write)"),
        "{message}"
    );

    let (status, answer) = post(&route("acme/web/pull/1"), &json!({"user": "alice"}));
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = post(
        &route("acme/web/pull/1"),
        &json!({"user": "alice", "body": "hi", "delivery": "a\r\nX-Injected: 1"}),
    );
    assert_eq!(status, 422, "{answer}");

    let (status, answer) = post(
        &route("acme/web/pull/1"),
        &json!({"user": "alice", "body": "Looks good to me"}),
    );
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["webhook_status"], 202, "{answer}");
    let id = answer["comment_id"].as_u64().unwrap();
    let conversation = sandbox.view()["comments"].clone();
    let ours = conversation
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id);
    assert_eq!(ours.unwrap()["body"], "Looks good to me");
}

#[test]
fn a_page_of_another_site_cannot_comment_as_a_user_of_the_sandbox() {
    let sandbox = sandbox();
    let route = format!("{}/sandbox/acme/web/pull/1/comments", sandbox.base);
    let deploy = json!({"user": "alice", "body": "/deploy staging"}).to_string();
    let json_type = ("content-type", "application/json");
    // What a page of another site can send without asking first, and what a browser adds
    // to a request a page of another site makes.
    let refused: [(Headers, String, u16, &str); 5] = [
        (
            &[("content-type", "text/plain")],
            deploy.clone(),
            415,
            "application/json",
        ),
        (
            &[("content-type", "application/x-www-form-urlencoded")],
            "user=alice&body=%2Fdeploy+staging".into(),
            415,
            "application/json",
        ),
        (
            &[json_type, ("origin", "http://evil.example")],
            deploy.clone(),
            403,
            "another site",
        ),
        (
            &[json_type, ("sec-fetch-site", "cross-site")],
            deploy.clone(),
            403,
            "another site",
        ),
        (
            &[("content-type", "text/plain"), ("origin", "null")],
            deploy.clone(),
            403,
            "another site",
        ),
    ];
    for (headers, body, status, says) in refused {
        let answer = post_raw(&route, headers, body);
        assert_eq!(answer.status, status, "{headers:?}: {}", answer.body);
        assert!(answer.sandbox_header, "{headers:?}");
        let message = answer.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{headers:?}: {}", answer.body);
    }
    // A page of another site whose name resolves to this machine (DNS rebinding) is
    // same-origin to the browser; its requests name that site in Host.
    let port = sandbox.base.rsplit(':').next().unwrap_or_default();
    let rebound = format!("evil.example:{port}");
    let rebound_origin = format!("http://{rebound}");
    let answer = post_raw(
        &route,
        &[
            json_type,
            ("host", &rebound),
            ("origin", &rebound_origin),
            ("sec-fetch-site", "same-origin"),
        ],
        deploy.clone(),
    );
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(answer.sandbox_header);
    let message = answer.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("evil.example"), "{}", answer.body);
    assert!(
        sandbox
            .conversation()
            .iter()
            .all(|(_, body, _)| body != "/deploy staging"),
        "a refused request left a comment"
    );
    assert!(
        sandbox.api_deployments().is_empty(),
        "a refused request deployed"
    );

    let own = post_raw(
        &route,
        &[
            json_type,
            ("origin", &sandbox.base),
            ("sec-fetch-site", "same-origin"),
        ],
        json!({"user": "alice", "body": "Looks good"}).to_string(),
    );
    assert_eq!(own.status, 201, "{}", own.body);
    assert!(own.sandbox_header);
}

#[test]
fn a_comment_as_long_as_github_allows_fits_and_a_larger_body_is_refused_in_json() {
    let sandbox = sandbox();
    let route = format!("{}/sandbox/acme/web/pull/1/comments", sandbox.base);
    let json_type = [("content-type", "application/json")];
    // 65,536 characters, each written as a JSON surrogate pair: 12 bytes a character.
    let longest = format!(
        "{{\"user\": \"alice\", \"body\": \"{}\"}}",
        "\\ud83d\\ude00".repeat(65536)
    );
    let answer = post_raw(&route, &json_type, longest);
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert!(answer.sandbox_header);

    let too_long = format!(
        "{{\"user\": \"alice\", \"body\": \"{}\"}}",
        "x".repeat(2 * 1024 * 1024)
    );
    let answer = post_raw(&route, &json_type, too_long);
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert!(answer.sandbox_header);
    assert_eq!(
        answer.body["error"]["code"], "payload_too_large",
        "{}",
        answer.body
    );
    let message = answer.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("65536 characters"), "{message}");
}

#[test]
fn on_port_0_the_sandbox_uses_the_port_it_was_given() {
    let sandbox = Sandbox::start_on(Arc::new(RealGithubTrap::start()), 0);
    let page = sandbox.page_address().unwrap();
    let (status, body) = get(&page, None);
    assert_eq!(status, 200, "{page}: {body}");
    let (status, answer) = post(
        &format!("{}/sandbox/acme/web/pull/1/comments", sandbox.base),
        &json!({"user": "alice", "body": "Looks good"}),
    );
    assert_eq!(status, 201, "{answer}");
    assert_eq!(
        answer["webhook_status"], 202,
        "the bot got the webhook: {answer}"
    );
}

#[test]
fn serve_has_no_sandbox_routes() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("deploybot.toml");
    std::fs::write(
        &config,
        CONFIG.replace("GITHUB_TRAP", "https://api.github.com"),
    )
    .unwrap();
    let port = free_port();
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/db.sqlite", dir.path().display()),
        )
        .env("DEPLOYBOT_LISTEN", format!("127.0.0.1:{port}"))
        .env("DEPLOYBOT_WEBHOOK_SECRET", SECRET)
        .env_remove("GITHUB_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while get(&format!("{base}/readyz"), None).0 != 200 {
        assert!(start.elapsed() < LIMIT, "serve did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get(&format!("{base}/sandbox/acme/web/pull/1"), None).0, 404);
    assert_eq!(
        get(&format!("{base}/sandbox/acme/web/pull/1/view"), None).0,
        404
    );
    let (status, _) = post(
        &format!("{base}/sandbox/acme/web/pull/1/comments"),
        &json!({"user": "alice", "body": "/deploy staging"}),
    );
    assert_eq!(status, 404);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}
