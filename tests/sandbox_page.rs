//! The sandbox's pull-request and deployments pages over real HTTP on 127.0.0.1, served from
//! a pull-request source whose state the tests change: the conversation with rendered and
//! escaped Markdown, reactions, each environment's deployments as GitHub shows them, and the
//! 404s. Then a real headless Chromium: the page follows the source's changes without a
//! reload, and its screenshot is decoded and checked.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer};
use deploybot::sandbox::page;
use deploybot::sandbox::view::{
    CommentView, DeploymentView, EnvironmentView, PullSource, PullView, ReactionCount,
    RepositoryView, StatusView,
};
use serde_json::{Value, json};

use common::chromium::{self, Chromium, HEIGHT, WIDTH};

const HEAD: &str = "3f786850e387550fdab836ed7e6dc881de23001b";
const OLD: &str = "89e6c98d92887913cadf06b2adb97f26cde4849b";

// ---------------------------------------------------------------------------------------------
// A pull-request source with fixed views that a test changes
// ---------------------------------------------------------------------------------------------

/// The pull request acme/web#1, its environments, and a version bumped on every change.
struct Source {
    state: Mutex<(PullView, u64)>,
}

impl Source {
    fn new() -> Arc<Source> {
        Arc::new(Source {
            state: Mutex::new((pull(), 1)),
        })
    }

    /// Changes the pull request's view, as the stand-in's state moves.
    fn change(&self, edit: impl FnOnce(&mut PullView)) {
        let mut state = self.state.lock().unwrap();
        edit(&mut state.0);
        state.1 += 1;
    }
}

impl PullSource for Source {
    fn pull_view(&self, repo: &str, number: u64) -> Option<PullView> {
        let state = self.state.lock().unwrap();
        (repo.eq_ignore_ascii_case("acme/web") && number == 1).then(|| state.0.clone())
    }

    fn environments(&self, repo: &str) -> Option<Vec<EnvironmentView>> {
        let state = self.state.lock().unwrap();
        repo.eq_ignore_ascii_case("acme/web")
            .then(|| state.0.environments.clone())
    }

    fn version(&self) -> u64 {
        self.state.lock().unwrap().1
    }

    fn repositories(&self) -> Vec<RepositoryView> {
        vec![RepositoryView {
            repo: "acme/web".into(),
            pulls: vec![1],
        }]
    }
}

fn status(state: &str, description: &str, at: &str) -> StatusView {
    StatusView {
        state: state.into(),
        description: description.into(),
        log_url: String::new(),
        environment_url: String::new(),
        creator: "deploybot[bot]".into(),
        created_at: at.into(),
    }
}

fn deployment(id: u64, sha: &str, state: &str, statuses: Vec<StatusView>) -> DeploymentView {
    DeploymentView {
        created_at: statuses[0].created_at.clone(),
        id,
        git_ref: "feature/greeting".into(),
        sha: sha.into(),
        task: "deploy".into(),
        description: format!("deploy {}", &sha[..7]),
        creator: "deploybot[bot]".into(),
        state: state.into(),
        active: false,
        statuses,
    }
}

fn comment(id: u64, author: &str, bot: bool, body: &str) -> CommentView {
    CommentView {
        id,
        author: author.into(),
        author_is_bot: bot,
        body: body.into(),
        created_at: format!("2026-12-07T03:0{id}:00Z"),
        reactions: Vec::new(),
    }
}

fn reaction(content: &str, count: u32) -> ReactionCount {
    ReactionCount {
        content: content.into(),
        count,
    }
}

/// Staging: v2 active (with its links), v1 made inactive by it. Production: a failure,
/// and a newer deployment in progress.
fn environments() -> Vec<EnvironmentView> {
    let mut v2_success = status("success", "v2 deployed (rolling)", "2026-12-07T03:05:30Z");
    v2_success.log_url = "http://127.0.0.1:8080/deployments/dep_02".into();
    v2_success.environment_url = "https://staging.acme.example".into();
    let mut staging_v2 = deployment(
        202,
        HEAD,
        "success",
        vec![
            status("queued", "v2 queued", "2026-12-07T03:05:00Z"),
            status("in_progress", "v2 rolling started", "2026-12-07T03:05:10Z"),
            v2_success,
        ],
    );
    staging_v2.active = true;
    let staging_v1 = deployment(
        201,
        OLD,
        "inactive",
        vec![
            status("success", "v1 deployed (rolling)", "2026-12-07T03:01:00Z"),
            status("inactive", "replaced by v2", "2026-12-07T03:05:30Z"),
        ],
    );
    let production_failed = deployment(
        301,
        OLD,
        "failure",
        vec![
            status("queued", "v1 queued", "2026-12-07T03:02:00Z"),
            status(
                "failure",
                "v1 failed: health check never passed",
                "2026-12-07T03:03:00Z",
            ),
        ],
    );
    let production_running = deployment(
        302,
        HEAD,
        "in_progress",
        vec![
            status("queued", "v2 queued", "2026-12-07T03:06:00Z"),
            status("in_progress", "v2 canary 10%", "2026-12-07T03:06:10Z"),
        ],
    );
    vec![
        EnvironmentView {
            name: "production".into(),
            deployments: vec![production_running, production_failed],
        },
        EnvironmentView {
            name: "staging".into(),
            deployments: vec![staging_v2, staging_v1],
        },
    ]
}

const BOT_REPLY: &str = "🚀 Deployment of **v2** to **staging** succeeded (rolling, \
    `ghcr.io/acme/web:3f78685`).\n\n<details>\n<summary>Provider output</summary>\n\n\
    ```\nrolled 3 of 3 replicas\n```\n\n</details>\n\nCommit `3f78685` · \
    [deployment dep_02](http://127.0.0.1:8080/deployments/dep_02)\n\n\
    <!-- deploybot:reply:c2 -->";

const HOSTILE: &str = "Looks fine <script>document.title='owned'</script> to me \
    <img src=x onerror=\"document.title='owned'\"> [click](javascript:alert(1))";

fn pull() -> PullView {
    let mut deploy = comment(1, "alice", false, "/deploy staging");
    deploy.reactions = vec![
        reaction("+1", 2),
        reaction("rocket", 1),
        reaction("eyes", 1),
    ];
    PullView {
        repo: "acme/web".into(),
        number: 1,
        title: "Greet visitors by name".into(),
        state: "open".into(),
        author: "octocat".into(),
        head_ref: "feature/greeting".into(),
        head_sha: HEAD.into(),
        base_ref: "main".into(),
        body: "The home page says hello.\n\n- greets by name\n- falls back to *friend*".into(),
        created_at: "2026-12-07T02:59:00Z".into(),
        comments: vec![
            deploy,
            comment(2, "deploybot[bot]", true, BOT_REPLY),
            comment(3, "bob", false, HOSTILE),
        ],
        environments: environments(),
    }
}

// ---------------------------------------------------------------------------------------------
// The pages over HTTP
// ---------------------------------------------------------------------------------------------

/// The pages served on a free port of 127.0.0.1.
struct Site {
    base: String,
    handle: ServerHandle,
    http: reqwest::Client,
}

struct Answer {
    status: u16,
    content_type: String,
    csp: String,
    body: String,
}

impl Site {
    async fn start(source: Arc<Source>) -> Site {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = HttpServer::new(move || {
            let source: Arc<dyn PullSource> = source.clone();
            App::new().configure(|cfg| page::routes(cfg, source))
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
            handle,
            http: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str) -> Answer {
        let answer = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let header = |name: &str| {
            answer
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        };
        let (content_type, csp) = (header("content-type"), header("content-security-policy"));
        Answer {
            status: answer.status().as_u16(),
            content_type,
            csp,
            body: answer.text().await.unwrap(),
        }
    }

    async fn stop(self) {
        self.handle.stop(true).await;
    }
}

impl Answer {
    fn assert_contains(&self, parts: &[&str]) {
        for part in parts {
            assert!(
                self.body.contains(part),
                "the page lacks {part:?}:\n{}",
                self.body
            );
        }
    }
}

/// The text of the element that follows `marker` up to `end`, for asserting on one part.
fn section<'a>(body: &'a str, marker: &str, end: &str) -> &'a str {
    let start = body
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in:\n{body}"));
    let rest = &body[start..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pull_request_page_shows_the_conversation_as_github_would() {
    let site = Site::start(Source::new()).await;
    let page = site.get("/sandbox/acme/web/pull/1").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.content_type.starts_with("text/html"),
        "{}",
        page.content_type
    );
    assert!(page.csp.contains("script-src 'self'"), "{}", page.csp);
    page.assert_contains(&[
        "<title>Greet visitors by name by octocat · Pull Request #1 · acme/web</title>",
        "<span class=\"pr-title\">Greet visitors by name</span> <span class=\"pr-number\">#1</span>",
        "<span class=\"state state-open\">Open</span>",
        "<strong class=\"author\">octocat</strong> wants to merge into <code class=\"branch\">main</code> \
         from <code class=\"branch\">feature/greeting</code>",
        &format!("<code class=\"sha\" title=\"{HEAD}\">3f78685</code>"),
        // The description, rendered: a bullet list and emphasis.
        "<li>greets by name</li>\n<li>falls back to <em>friend</em></li>",
        "<strong class=\"author\">alice</strong> commented",
        "/deploy staging",
        // The bot's reply: labelled, its Markdown rendered, the collapsed block kept.
        "<strong class=\"author\">deploybot</strong> <span class=\"label\">bot</span> commented",
        "Deployment of <strong>v2</strong> to <strong>staging</strong> succeeded",
        "<details>\n<summary>Provider output</summary>",
        "<pre><code>rolled 3 of 3 replicas\n</code></pre>",
        "<a href=\"http://127.0.0.1:8080/deployments/dep_02\">deployment dep_02</a>",
    ]);
    // Comments oldest first, after the description.
    let order: Vec<usize> = [
        "id=\"pull-description\"",
        "id=\"comment-1\"",
        "id=\"comment-2\"",
        "id=\"comment-3\"",
    ]
    .iter()
    .map(|id| page.body.find(id).unwrap_or_else(|| panic!("no {id}")))
    .collect();
    assert!(order.is_sorted(), "{order:?}");
    // Deployments of the branch appear in the conversation as GitHub's events, in time order.
    let conversation = section(&page.body, "id=\"conversation\"", "<aside");
    let event = section(conversation, "id=\"deployed-202\"", "</div></div>");
    assert!(
        event.contains(
            "<strong>deploybot</strong> <span class=\"label\">bot</span> deployed to \
             <strong class=\"env-name\">staging</strong> \
             <span class=\"badge badge-active\">Active</span>"
        ),
        "{event}"
    );
    assert!(
        event.contains("<a href=\"https://staging.acme.example\">View deployment</a>"),
        "{event}"
    );
    let order: Vec<usize> = [
        "id=\"comment-1\"",
        "id=\"deployed-201\"",
        "id=\"comment-3\"",
        "id=\"deployed-202\"",
    ]
    .iter()
    .map(|id| conversation.find(id).unwrap_or_else(|| panic!("no {id}")))
    .collect();
    assert!(order.is_sorted(), "{order:?}");
    // The HTML comment that marks the bot's reply stays invisible, as on GitHub.
    assert!(!page.body.contains("deploybot:reply"), "{}", page.body);
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_html_in_a_comment_shows_as_text() {
    let site = Site::start(Source::new()).await;
    let page = site.get("/sandbox/acme/web/pull/1").await;
    let bob = section(&page.body, "id=\"comment-3\"", "</article>");
    assert!(
        bob.contains("&lt;script&gt;document.title='owned'&lt;/script&gt;"),
        "{bob}"
    );
    assert!(
        bob.contains("&lt;img src=x onerror=&quot;document.title=&#39;owned&#39;&quot;&gt;"),
        "{bob}"
    );
    assert!(!bob.contains("javascript:"), "{bob}");
    // The only script on the page is its own.
    assert_eq!(page.body.matches("<script").count(), 1, "{}", page.body);
    assert!(!page.body.contains("<img"), "{}", page.body);
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commenters_image_is_a_link_and_the_page_loads_no_image_from_elsewhere() {
    let source = Source::new();
    source.change(|pull| {
        pull.comments.push(comment(
            9,
            "mallory",
            false,
            "look ![tracking pixel](https://evil.example/p.png)",
        ));
    });
    let site = Site::start(source).await;
    let page = site.get("/sandbox/acme/web/pull/1").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let policy: Vec<&str> = page.csp.split(';').map(str::trim).collect();
    assert!(policy.contains(&"img-src 'self' data:"), "{}", page.csp);
    assert!(!page.csp.contains("https:"), "{}", page.csp);
    let mallory = section(&page.body, "id=\"comment-9\"", "</article>");
    assert!(
        mallory.contains("<a href=\"https://evil.example/p.png\">tracking pixel</a>"),
        "{mallory}"
    );
    assert!(!page.body.contains("<img"), "{}", page.body);
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_show_under_their_comment_with_counts() {
    let site = Site::start(Source::new()).await;
    let page = site.get("/sandbox/acme/web/pull/1").await;
    let alice = section(&page.body, "id=\"comment-1\"", "</article>");
    for (name, emoji, count) in [("+1", "👍", 2), ("rocket", "🚀", 1), ("eyes", "👀", 1)] {
        let pill = format!(
            "<span class=\"reaction\" data-content=\"{name}\" title=\"{count} {name}\">\
             <span class=\"emoji\">{emoji}</span> <span class=\"count\">{count}</span></span>"
        );
        assert!(alice.contains(&pill), "no {pill} in {alice}");
    }
    let bot = section(&page.body, "id=\"comment-2\"", "</article>");
    assert!(!bot.contains("class=\"reaction\""), "{bot}");
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_environment_lists_its_deployments_with_their_state_statuses_and_links() {
    let site = Site::start(Source::new()).await;
    for path in ["/sandbox/acme/web/pull/1", "/sandbox/acme/web/deployments"] {
        let page = site.get(path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        let staging = section(&page.body, "data-environment=\"staging\"", "</section>");
        let production = section(&page.body, "data-environment=\"production\"", "</section>");
        // Newest first, each with the word GitHub shows.
        let v2 = section(staging, "id=\"deployment-202\"", "id=\"deployment-201\"");
        assert!(
            v2.contains("<span class=\"badge badge-active\">Active</span>"),
            "{v2}"
        );
        assert!(
            staging.find("deployment-202").unwrap() < staging.find("deployment-201").unwrap(),
            "{staging}"
        );
        let v1 = section(staging, "id=\"deployment-201\"", "</ol>\n</section>");
        assert!(v1.contains(">Inactive</span>"), "{v1}");
        assert!(
            production.contains("id=\"deployment-302\" data-state=\"In progress\""),
            "{production}"
        );
        assert!(
            production.contains("id=\"deployment-301\" data-state=\"Failure\""),
            "{production}"
        );
        assert!(
            production.contains(
                "<span class=\"status-description\">v1 failed: health check never passed</span>"
            ),
            "{production}"
        );
        // The statuses in order, and the newest status's links.
        let words: Vec<usize> = ["v2 queued", "v2 rolling started", "v2 deployed (rolling)"]
            .iter()
            .map(|d| v2.find(d).unwrap_or_else(|| panic!("no {d} in {v2}")))
            .collect();
        assert!(words.is_sorted(), "{v2}");
        assert!(
            v2.contains("<a class=\"button\" href=\"http://127.0.0.1:8080/deployments/dep_02\">View logs</a>"),
            "{v2}"
        );
        assert!(
            v2.contains(
                "<a class=\"button\" href=\"https://staging.acme.example\">View deployment</a>"
            ),
            "{v2}"
        );
        assert!(!v1.contains("View logs"), "{v1}");
    }
    let deployments = site.get("/sandbox/acme/web/deployments").await;
    deployments.assert_contains(&[
        "<title>Deployments · acme/web</title>",
        "<a class=\"tab\" href=\"/sandbox/acme/web/pull/1\">Pull request #1</a>",
    ]);
    assert!(!deployments.body.contains("commented"), "the panel alone");
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_links_of_the_bots_pages_open_one_environment_or_one_commit() {
    let site = Site::start(Source::new()).await;
    let production = site.get("/sandbox/acme/web/deployments/production").await;
    assert_eq!(production.status, 200, "{}", production.body);
    assert!(
        production.body.contains("id=\"deployment-302\""),
        "{}",
        production.body
    );
    assert!(
        !production.body.contains("id=\"deployment-202\""),
        "staging is left out"
    );
    let commit = site
        .get(&format!("/sandbox/acme/web/commit/{}", &OLD[..12]))
        .await;
    assert_eq!(commit.status, 200, "{}", commit.body);
    for shown in ["id=\"deployment-201\"", "id=\"deployment-301\""] {
        assert!(commit.body.contains(shown), "{shown} in {}", commit.body);
    }
    for hidden in ["id=\"deployment-202\"", "id=\"deployment-302\""] {
        assert!(
            !commit.body.contains(hidden),
            "{hidden} is another commit's"
        );
    }
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_page_of_a_repository_without_deployments_is_a_404() {
    let source = Source::new();
    source.change(|pull| pull.environments.clear());
    let site = Site::start(source).await;
    let page = site.get("/sandbox/acme/web/deployments/staging").await;
    assert_eq!(page.status, 404, "{}", page.body);
    page.assert_contains(&["acme/web has no environment “staging”: it has no deployments yet."]);
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_repositories_and_pull_requests_get_a_404_that_says_what_exists() {
    let site = Site::start(Source::new()).await;
    for (path, says) in [
        (
            "/sandbox/acme/nope/pull/1",
            "There is no repository acme/nope in this sandbox.",
        ),
        (
            "/sandbox/acme/web/pull/7",
            "acme/web has no pull request #7.",
        ),
        (
            "/sandbox/acme/web/pull/seven",
            "“seven” is not a pull request number",
        ),
        (
            "/sandbox/acme/web/pull/99999999999999999999999",
            "is not a pull request number",
        ),
        (
            "/sandbox/globex/api/deployments",
            "There is no repository globex/api in this sandbox.",
        ),
        (
            "/sandbox/acme/%3Cscript%3E/pull/1",
            "There is no repository acme/&lt;script&gt; in",
        ),
        (
            "/sandbox/acme/web/deployments/qa",
            "acme/web has no environment “qa”; its environments: production, staging.",
        ),
        (
            "/sandbox/acme/web/commit/not-a-sha",
            "“not-a-sha” is not a commit SHA",
        ),
    ] {
        let page = site.get(path).await;
        assert_eq!(page.status, 404, "{path}: {}", page.body);
        assert!(page.content_type.starts_with("text/html"), "{path}");
        page.assert_contains(&[
            says,
            "<a href=\"/sandbox/acme/web/pull/1\">pull request #1</a>",
            "<a href=\"/sandbox/acme/web/deployments\">deployments</a>",
        ]);
        assert!(!page.body.contains("<script"), "{path}: {}", page.body);
    }
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_asks_whether_anything_changed_and_gets_the_new_content() {
    let source = Source::new();
    let site = Site::start(source.clone()).await;
    let page = site.get("/sandbox/acme/web/pull/1").await;
    page.assert_contains(&[
        "data-live=\"/sandbox/acme/web/pull/1\" data-version=\"1\"",
        "<script src=\"/sandbox/assets/page.js\" defer></script>",
        "<noscript><meta http-equiv=\"refresh\" content=\"5\"></noscript>",
    ]);
    let unchanged = site.get("/sandbox/acme/web/pull/1?since=1").await;
    assert_eq!(unchanged.status, 204);
    assert_eq!(unchanged.body, "");

    source.change(|pull| pull.comments.push(comment(4, "alice", false, "ship it")));
    let changed = site.get("/sandbox/acme/web/pull/1?since=1").await;
    assert_eq!(changed.status, 200);
    let json: Value = serde_json::from_str(&changed.body).unwrap();
    assert_eq!(json["version"], 2);
    assert!(
        json["html"].as_str().unwrap().contains("<p>ship it</p>"),
        "{json}"
    );
    assert!(
        !json["html"].as_str().unwrap().contains("<html"),
        "only the content"
    );

    let missing = site.get("/sandbox/acme/web/pull/9?since=1").await;
    assert_eq!(missing.status, 404);
    let json: Value = serde_json::from_str(&missing.body).unwrap();
    assert_eq!(json["error"], "acme/web has no pull request #9.");

    for (asset, kind) in [("page.js", "text/javascript"), ("page.css", "text/css")] {
        let answer = site.get(&format!("/sandbox/assets/{asset}")).await;
        assert_eq!(answer.status, 200, "{asset}");
        assert!(
            answer.content_type.starts_with(kind),
            "{asset}: {}",
            answer.content_type
        );
    }
    site.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Headless Chromium
// ---------------------------------------------------------------------------------------------

/// A decoded screenshot, RGBA or RGB.
struct Picture {
    width: u32,
    height: u32,
    channels: usize,
    pixels: Vec<u8>,
}

impl Picture {
    fn decode(png_bytes: &[u8]) -> Picture {
        let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes))
            .read_info()
            .unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let frame = reader.next_frame(&mut pixels).unwrap();
        pixels.truncate(frame.buffer_size());
        let channels = match frame.color_type {
            png::ColorType::Rgba => 4,
            png::ColorType::Rgb => 3,
            other => panic!("a screenshot in {other:?}"),
        };
        assert_eq!(frame.bit_depth, png::BitDepth::Eight);
        Picture {
            width: frame.width,
            height: frame.height,
            channels,
            pixels,
        }
    }

    /// The colours of the pixels inside a rectangle (CSS pixels, scale 1).
    fn colours(&self, (x, y, w, h): (u32, u32, u32, u32)) -> Vec<[u8; 3]> {
        let mut out = Vec::new();
        for row in y..(y + h).min(self.height) {
            for col in x..(x + w).min(self.width) {
                let at = (row as usize * self.width as usize + col as usize) * self.channels;
                out.push([self.pixels[at], self.pixels[at + 1], self.pixels[at + 2]]);
            }
        }
        out
    }
}

/// The rectangle of the element `selector` in the tab, in whole CSS pixels.
fn rectangle(browser: &mut Chromium, tab: &str, selector: &str) -> (u32, u32, u32, u32) {
    let rect = browser.eval(
        tab,
        &format!(
            "(() => {{ const r = document.querySelector({}).getBoundingClientRect(); \
             return [r.x, r.y, r.width, r.height].map(Math.floor); }})()",
            json!(selector)
        ),
    );
    let n = |i: usize| rect[i].as_u64().unwrap() as u32;
    (n(0), n(1), n(2), n(3))
}

fn close_to(colour: [u8; 3], target: [u8; 3]) -> bool {
    colour.iter().zip(target).all(|(a, b)| a.abs_diff(b) <= 6)
}

/// In a real browser, the page follows the source: a new success status turns production's
/// running deployment Active and a new bot reply appears, without a reload; a `<details>`
/// the reader opened stays open. Its screenshot shows the panel as GitHub would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_the_page_follows_deployments_without_a_reload() {
    let Some(binary) = chromium::find_or_skip("sandbox page browser test") else {
        return;
    };
    let source = Source::new();
    let site = Site::start(source.clone()).await;
    let url = format!("{}/sandbox/acme/web/pull/1", site.base);
    let changer = source.clone();
    let shot_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sandbox-page.png");
    let path = shot_path.clone();
    let (shot, panel, badge) = tokio::task::spawn_blocking(move || {
        let mut browser = Chromium::launch(&binary);
        let tab = browser.open(&url);
        let production = "document.getElementById('deployment-302').dataset.state";
        assert_eq!(browser.eval(&tab, production), json!("In progress"));
        assert_eq!(browser.eval(&tab, "document.title"), json!("Greet visitors by name by octocat · Pull Request #1 · acme/web"));
        // Hostile markup stayed text: nothing ran.
        let bob = browser.eval(&tab, "document.querySelector('#comment-3 .comment-body').innerText");
        assert!(bob.as_str().unwrap().contains("<script>document.title='owned'</script>"), "{bob}");
        // The reader opens the bot's collapsed block, and the page is marked to catch a reload.
        browser.eval(&tab, "document.querySelector('#comment-2 details').open = true; window.stillHere = 1");

        changer.change(|pull| {
            let running = &mut pull.environments[0].deployments[0];
            let mut done = status("success", "v2 deployed (canary)", "2026-12-07T03:07:00Z");
            done.environment_url = "https://web.acme.example".into();
            running.statuses.push(done);
            running.state = "success".into();
            running.active = true;
            let mut reply = comment(4, "deploybot[bot]", true, "🚀 Deployment of **v2** to **production** succeeded (canary).");
            reply.reactions = vec![reaction("hooray", 1)];
            pull.comments.push(reply);
        });
        browser.wait_until(&tab, &format!("{production} === 'Active'"));
        browser.wait_until(&tab, "!!document.getElementById('comment-4')");
        let dom = browser.eval(&tab, "document.documentElement.outerHTML");
        let dom = dom.as_str().unwrap();
        assert!(dom.contains("Deployment of <strong>v2</strong> to <strong>production</strong> succeeded (canary)."), "{dom}");
        assert!(dom.contains("<span class=\"status-description\">v2 deployed (canary)</span>"), "{dom}");
        assert!(dom.contains("<a class=\"button\" href=\"https://web.acme.example\">View deployment</a>"), "{dom}");
        assert_eq!(browser.eval(&tab, "window.stillHere"), json!(1), "the page reloaded");
        assert_eq!(browser.eval(&tab, "document.querySelector('#comment-2 details').open"), json!(true));
        assert_eq!(browser.eval(&tab, "document.querySelector('.counter').textContent"), json!("4"));

        // Close the block again for the picture, then take it.
        browser.eval(&tab, "document.querySelector('#comment-2 details').open = false");
        let shot = browser.screenshot(&tab);
        std::fs::write(&path, &shot).unwrap();
        let panel = rectangle(&mut browser, &tab, "#deployments");
        let badge = rectangle(&mut browser, &tab, "#deployment-302 .badge");
        (shot, panel, badge)
    })
    .await
    .unwrap();

    let picture = Picture::decode(&shot);
    assert_eq!(
        (picture.width, picture.height),
        (WIDTH, HEIGHT),
        "the window's size"
    );
    let panel_colours = picture.colours(panel);
    let distinct: std::collections::HashSet<[u8; 3]> = panel_colours.iter().copied().collect();
    let ink = panel_colours
        .iter()
        .filter(|c| **c != [255, 255, 255])
        .count();
    assert!(panel.2 >= 300 && panel.3 >= 300, "the panel is {panel:?}");
    assert!(
        distinct.len() >= 20,
        "{} colours in the deployments panel",
        distinct.len()
    );
    assert!(
        ink * 20 > panel_colours.len(),
        "{ink} of {} pixels drawn",
        panel_colours.len()
    );
    // The Active badge is drawn in GitHub's green on its light green.
    let green = picture
        .colours(badge)
        .into_iter()
        .filter(|c| close_to(*c, [0xda, 0xfb, 0xe1]))
        .count();
    assert!(
        green > 50,
        "{green} light green pixels in the Active badge {badge:?}"
    );
    let _ = writeln!(
        std::io::stderr(),
        "sandbox page screenshot: {} ({} colours in the deployments panel)",
        shot_path.display(),
        distinct.len()
    );
    site.stop().await;
}

// ---------------------------------------------------------------------------------------------
// End to end: the real `deploybot sandbox` in Chromium
// ---------------------------------------------------------------------------------------------

const BIN: &str = env!("CARGO_BIN_EXE_deploybot");

/// Variables of the person running the tests that must not reach the binaries.
const SCRUBBED: [&str; 10] = [
    "DATABASE_URL",
    "DEPLOYBOT_CONFIG",
    "DEPLOYBOT_LISTEN",
    "DEPLOYBOT_PUBLIC_URL",
    "DEPLOYBOT_URL",
    "DEPLOYBOT_TOKEN",
    "GITHUB_TOKEN",
    "GITHUB_APP_ID",
    "GITHUB_APP_PRIVATE_KEY",
    "GITHUB_APP_PRIVATE_KEY_PATH",
];

/// `deploybot sandbox` with the shipped example configuration on a free port; stopped when
/// dropped.
struct Sandbox {
    child: Child,
    base: String,
    config: PathBuf,
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn start() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let shipped = std::fs::read_to_string(root.join("config/deploybot.toml")).unwrap();
        let ship = root.join("config/ship.sh");
        let config = shipped
            .replace(
                "listen = \"127.0.0.1:8080\"",
                &format!("listen = \"127.0.0.1:{port}\""),
            )
            .replace(
                "\"config/ship.sh\"",
                &format!("{:?}", ship.display().to_string()),
            );
        assert!(
            config.contains(&format!(":{port}\"")),
            "the example sets listen"
        );
        let path = dir.path().join("deploybot.toml");
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("sandbox.log")).unwrap();
        let mut command = Command::new(BIN);
        for name in SCRUBBED {
            command.env_remove(name);
        }
        let mut child = command
            .args(["sandbox", "--config"])
            .arg(&path)
            .env("DEPLOYBOT_WEBHOOK_SECRET", "sandbox-page-test-secret")
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let page = format!("{base}/sandbox/acme/web/pull/1");
        let printed = wait_for_line(child.stdout.take().unwrap(), &page);
        let mut sandbox = Sandbox {
            child,
            base,
            config: path,
            dir,
        };
        if !printed {
            let log = sandbox.log();
            let _ = sandbox.child.kill();
            panic!("`deploybot sandbox` never printed {page}:\n{log}");
        }
        sandbox
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sandbox.log")).unwrap_or_default()
    }

    /// `deploybot simulate comment` on acme/web#1 as `user`.
    fn comment(&self, user: &str, body: &str) -> std::process::Output {
        let mut command = Command::new(BIN);
        for name in SCRUBBED {
            command.env_remove(name);
        }
        command
            .args(["simulate", "comment", "--repo", "acme/web", "--pr", "1"])
            .args(["--user", user, "--body", body, "--config"])
            .arg(&self.config)
            .env("DEPLOYBOT_URL", &self.base)
            .env("DEPLOYBOT_WEBHOOK_SECRET", "sandbox-page-test-secret")
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // SIGTERM first, so that the sandbox removes its temporary database.
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: a signal to the child this test started, which has not been waited for.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        chromium::wait_or_kill(&mut self.child, Duration::from_secs(10));
    }
}

/// True once the child prints a line containing `wanted` (within 60 s); the rest of its
/// output is read and dropped, so that it never blocks on a full pipe.
fn wait_for_line(stdout: std::process::ChildStdout, wanted: &str) -> bool {
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            let _ = sender.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(wanted) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
}

/// The tour in a real browser: the sandbox's page for acme/web#1, then alice's
/// `/deploy staging` through `deploybot simulate comment`; the open page shows her comment,
/// the bot's reply and a staging deployment that becomes Active, without a reload.
#[test]
fn in_chromium_a_deploy_comment_in_the_sandbox_becomes_an_active_staging_deployment() {
    let Some(binary) = chromium::find_or_skip("sandbox end-to-end browser test") else {
        return;
    };
    let sandbox = Sandbox::start();
    let mut browser = Chromium::launch(&binary);
    let tab = browser.open(&format!("{}/sandbox/acme/web/pull/1", sandbox.base));
    let heading = browser.eval(&tab, "document.querySelector('.pr-header').innerText");
    assert!(heading.as_str().unwrap().contains("#1"), "{heading}");
    assert_eq!(
        browser.eval(&tab, "document.querySelectorAll('.deployment').length"),
        json!(0),
        "no deployment before the comment"
    );
    browser.eval(&tab, "window.stillHere = 1");

    let sent = sandbox.comment("alice", "/deploy staging");
    assert!(
        sent.status.success(),
        "simulate comment: {}\n{}\n{}",
        String::from_utf8_lossy(&sent.stdout),
        String::from_utf8_lossy(&sent.stderr),
        sandbox.log()
    );
    let staging = "document.querySelector('[data-environment=\"staging\"] .deployment')";
    browser.wait_until(
        &tab,
        &format!("!!{staging} && {staging}.dataset.state === 'Active'"),
    );
    browser.wait_until(
        &tab,
        "[...document.querySelectorAll('.comment.bot .comment-body')].some(b => b.innerText.includes('succeeded'))",
    );
    let text = browser.eval(&tab, "document.getElementById('conversation').innerText");
    let text = text.as_str().unwrap();
    assert!(text.contains("alice commented"), "{text}");
    assert!(text.contains("/deploy staging"), "{text}");
    let statuses = browser.eval(
        &tab,
        &format!("[...{staging}.querySelectorAll('.status')].map(s => s.dataset.state)"),
    );
    assert_eq!(
        statuses.as_array().unwrap().last(),
        Some(&json!("success")),
        "{statuses}"
    );
    let logs = browser.eval(
        &tab,
        &format!("{staging}.querySelector('.links a').textContent"),
    );
    assert_eq!(logs, json!("View logs"));
    let href = browser.eval(&tab, &format!("{staging}.querySelector('.links a').href"));
    let deployment_page = format!("{}/deployments/dep_", sandbox.base);
    assert!(
        href.as_str().unwrap().starts_with(&deployment_page),
        "{href}"
    );
    // The deployment was made for the head commit: its SHA shows once, not again as a ref.
    assert_eq!(
        browser.eval(&tab, &format!("{staging}.querySelectorAll('.ref').length")),
        json!(0)
    );
    assert_eq!(
        browser.eval(&tab, "window.stillHere"),
        json!(1),
        "the page reloaded"
    );
    // For a person to look at: what the tour shows.
    let shot = browser.screenshot(&tab);
    let picture = Picture::decode(&shot);
    assert_eq!((picture.width, picture.height), (WIDTH, HEIGHT));
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sandbox-tour.png");
    std::fs::write(&path, &shot).unwrap();
}
