//! The README's five-minute tour, run the way a newcomer runs it: its `sh` block, line by
//! line, with the real binary on `PATH` as `deploybot`, in a directory holding a copy of
//! `config/`. The lines are taken from README.md as they are written there; only the port
//! differs (`DEPLOYBOT_LISTEN` names a free one), so the tour cannot drift from the README.
//!
//! A line ending in `&` runs in the background until the end; the next line waits until
//! the server answers, as a person waits for it to start. After every other line the test
//! waits, as a person reading the output would, until the server has nothing left to do:
//! no pending or running deployment (asked through the API with the tour's token) and no
//! report or job waiting for GitHub (`deploybot_outbox_pending` on `/metrics`). Those waits
//! are bounded by deadlines; they assert nothing about time.
//!
//! Then it checks what the newcomer is promised: every line exited 0; the sandbox's pull
//! request page shows alice's deployment and the bot's refusal to bob; `deploybot
//! deployments web-staging` shows the rollback; web-production runs v1.2.0.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_deploybot");
/// The heading of the README section that holds the tour.
const TOUR_HEADING: &str = "## Five-minute tour";
/// No foreground line may take longer than this.
const COMMAND_LIMIT: Duration = Duration::from_secs(90);
/// How long a background server may take to answer, and the server to become idle.
const SETTLE_LIMIT: Duration = Duration::from_secs(180);
/// The pull request page the tour tells the newcomer to open.
const PULL_PAGE: &str = "/sandbox/acme/web/pull/1";

/// Variables of the developer's shell that would change what the tour's commands do.
const SCRUBBED: &[&str] = &[
    "DATABASE_URL",
    "DEPLOYBOT_CONFIG",
    "DEPLOYBOT_LISTEN",
    "DEPLOYBOT_PUBLIC_URL",
    "DEPLOYBOT_WEBHOOK_SECRET",
    "DEPLOYBOT_URL",
    "DEPLOYBOT_TOKEN",
    "DEPLOYBOT_METRICS_TOKEN",
    "DEPLOYBOT_GITHUB_API_URL",
    "DEPLOYBOT_SESSION_KEY",
    "GITHUB_TOKEN",
    "GITHUB_APP_ID",
    "GITHUB_APP_PRIVATE_KEY",
    "GITHUB_APP_PRIVATE_KEY_PATH",
];

/// The tour's lines: the first `sh` block after [`TOUR_HEADING`].
fn tour_lines(readme: &str) -> Vec<String> {
    let section = readme
        .split_once(TOUR_HEADING)
        .map(|(_, rest)| rest)
        .expect("README.md has a \"## Five-minute tour\" section");
    let block = section
        .split_once("```sh\n")
        .map(|(_, rest)| rest)
        .expect("the tour section has a ```sh block");
    let block = block
        .split_once("\n```")
        .map(|(block, _)| block)
        .expect("the tour's ```sh block is closed");
    block
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// Splits a line into words as a POSIX shell does for the simple commands the tour uses:
/// blanks, single and double quotes, a `#` that starts a word begins a comment, and a `&`
/// word at the end. Anything else a shell would interpret is refused, so the README keeps
/// to lines this test runs exactly as a shell would.
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => words.extend(word.take()),
            '#' if word.is_none() => break,
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                for c in chars.by_ref().take_while(|&c| c != '\'') {
                    w.push(c);
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                for c in chars.by_ref().take_while(|&c| c != '"') {
                    assert!(
                        !matches!(c, '$' | '`' | '\\'),
                        "the tour line {line:?} uses {c:?} inside double quotes; keep tour lines literal"
                    );
                    w.push(c);
                }
            }
            '$' | '`' | '\\' | '|' | ';' | '<' | '>' | '(' | ')' | '*' | '?' | '~' => {
                panic!("the tour line {line:?} uses {c:?}; keep tour lines to simple commands")
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// A process the tour started with `&`; stopped (SIGTERM, then SIGKILL) when dropped.
struct Background {
    line: String,
    child: Child,
    log: PathBuf,
}

impl Background {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill only sends a signal to the child this test started.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let asked = Instant::now();
        while asked.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a foreground line did.
struct Ran {
    line: String,
    code: i32,
    stdout: String,
    stderr: String,
}

/// The tour in progress: its directory, the variables its `export` lines set, the port,
/// and what ran.
struct Tour {
    dir: tempfile::TempDir,
    env: BTreeMap<String, String>,
    port: u16,
    background: Vec<Background>,
    ran: Vec<Ran>,
    http: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Tour {
    fn new() -> Tour {
        let dir = tempfile::tempdir().unwrap();
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        copy_dir(&manifest.join("config"), &dir.path().join("config"));
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink(BIN, bin.join("deploybot")).unwrap();
        let port = free_port();
        let mut env = BTreeMap::new();
        let path = std::env::var("PATH").unwrap_or_default();
        env.insert("PATH".into(), format!("{}:{path}", bin.display()));
        env.insert("DEPLOYBOT_LISTEN".into(), format!("127.0.0.1:{port}"));
        Tour {
            dir,
            env,
            port,
            background: Vec::new(),
            ran: Vec::new(),
            http: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    /// A command as the tour's shell would start it: the developer's variables scrubbed,
    /// the tour's own set, in the tour's directory.
    fn command(&self, words: &[String]) -> Command {
        let mut command = Command::new(&words[0]);
        for name in SCRUBBED {
            command.env_remove(name);
        }
        command
            .args(&words[1..])
            .envs(&self.env)
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        command
    }

    fn run_line(&mut self, line: &str) {
        let mut words = words(line);
        if words.is_empty() {
            return;
        }
        if words[0] == "export" {
            for assignment in &words[1..] {
                let (name, value) = assignment
                    .split_once('=')
                    .unwrap_or_else(|| panic!("{line:?}: export takes NAME=VALUE"));
                self.env.insert(name.into(), value.into());
            }
            return;
        }
        assert_eq!(
            words[0], "deploybot",
            "the tour line {line:?} runs something other than deploybot"
        );
        if words.last().is_some_and(|w| w == "&") {
            words.pop();
            self.start_background(line, &words);
            self.wait_until_answering();
        } else {
            self.run_foreground(line, &words);
            self.wait_until_idle(line);
        }
    }

    fn start_background(&mut self, line: &str, words: &[String]) {
        let log = self
            .dir
            .path()
            .join(format!("background-{}.log", self.background.len()));
        let out = std::fs::File::create(&log).unwrap();
        let child = self
            .command(words)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("{line:?} did not start: {e}"));
        self.background.push(Background {
            line: line.into(),
            child,
            log,
        });
    }

    fn run_foreground(&mut self, line: &str, words: &[String]) {
        let out = self.dir.path().join("out");
        let err = self.dir.path().join("err");
        let mut child = self
            .command(words)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{line:?} did not start: {e}"));
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > COMMAND_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{line:?} did not end within {COMMAND_LIMIT:?}\n{}",
                    self.report()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.ran.push(Ran {
            line: line.into(),
            code: status.code().unwrap_or(-1),
            stdout: std::fs::read_to_string(&out).unwrap_or_default(),
            stderr: std::fs::read_to_string(&err).unwrap_or_default(),
        });
        let ran = self.ran.last().unwrap();
        assert_eq!(
            ran.code,
            0,
            "{line:?} exited {}\nstdout:\n{}\nstderr:\n{}\n{}",
            ran.code,
            ran.stdout,
            ran.stderr,
            self.report()
        );
    }

    /// Waits until the server started in the background answers `/readyz`.
    fn wait_until_answering(&mut self) {
        let started = Instant::now();
        loop {
            if let Ok((200, _)) = self.get("/readyz", false) {
                return;
            }
            let background = self.background.last_mut().unwrap();
            if let Ok(Some(status)) = background.child.try_wait() {
                panic!(
                    "{:?} exited with {status} before it answered:\n{}",
                    background.line,
                    background.log()
                );
            }
            assert!(
                started.elapsed() < SETTLE_LIMIT,
                "the server did not answer on 127.0.0.1:{} within {SETTLE_LIMIT:?}\n{}",
                self.port,
                self.report()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until no deployment is pending or running and nothing waits to be sent to
    /// GitHub: what the last line started has ended, as its reply on the page says.
    fn wait_until_idle(&mut self, line: &str) {
        if self.background.is_empty() {
            return;
        }
        let started = Instant::now();
        loop {
            let busy = self.busy();
            if busy.is_empty() {
                return;
            }
            assert!(
                started.elapsed() < SETTLE_LIMIT,
                "after {line:?} the server was still busy after {SETTLE_LIMIT:?}: {}\n{}",
                busy.join("; "),
                self.report()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// What the server still has to do, in words; empty when it is idle.
    fn busy(&self) -> Vec<String> {
        let mut busy = Vec::new();
        match self.get("/metrics", false) {
            Ok((200, text)) => match metric(&text, "deploybot_outbox_pending") {
                Some(0.0) => {}
                Some(n) => busy.push(format!("{n} reports or jobs wait for GitHub")),
                None => busy.push("/metrics has no deploybot_outbox_pending".into()),
            },
            other => busy.push(format!("/metrics answered {other:?}")),
        }
        let instances = match self.api("/v1/instances") {
            Ok(list) => list,
            Err(e) => {
                busy.push(e);
                return busy;
            }
        };
        for name in items(&instances).iter().filter_map(|i| i["name"].as_str()) {
            match self.api(&format!("/v1/instances/{name}/deployments?limit=100")) {
                Ok(list) => busy.extend(
                    items(&list)
                        .iter()
                        .filter(|d| matches!(d["state"].as_str(), Some("pending" | "running")))
                        .map(|d| format!("{name}: {} is {}", d["id"], d["state"])),
                ),
                Err(e) => busy.push(e),
            }
        }
        busy
    }

    /// GET `path` on the tour's server: (status, body).
    fn get(&self, path: &str, with_token: bool) -> Result<(u16, String), String> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let mut request = self.client.get(&url);
        if with_token {
            let token = self
                .env
                .get("DEPLOYBOT_TOKEN")
                .expect("the tour exports DEPLOYBOT_TOKEN before it calls the API");
            request = request.bearer_auth(token);
        }
        self.http.block_on(async {
            let answer = request
                .send()
                .await
                .map_err(|e| format!("GET {path}: {e}"))?;
            let status = answer.status().as_u16();
            let body = answer
                .text()
                .await
                .map_err(|e| format!("GET {path}: {e}"))?;
            Ok((status, body))
        })
    }

    /// GET an API route with the tour's token; its JSON when it answered 200.
    fn api(&self, path: &str) -> Result<Value, String> {
        match self.get(path, true)? {
            (200, body) => serde_json::from_str(&body).map_err(|e| format!("GET {path}: {e}")),
            (status, body) => Err(format!("GET {path} answered {status}: {body}")),
        }
    }

    /// The output of the tour line that starts with `prefix`.
    fn output_of(&self, prefix: &str) -> &Ran {
        self.ran
            .iter()
            .find(|r| r.line.starts_with(prefix))
            .unwrap_or_else(|| panic!("the tour has no line starting with {prefix:?}"))
    }

    /// Every line's output and the background servers' logs, for a failure message.
    fn report(&self) -> String {
        let mut out = String::new();
        for ran in &self.ran {
            out.push_str(&format!(
                "$ {}\n(exit {})\n{}{}\n",
                ran.line, ran.code, ran.stdout, ran.stderr
            ));
        }
        for background in &self.background {
            let log = background.log();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            out.push_str(&format!("--- the last lines of {:?}:\n", background.line));
            for line in tail.iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

/// What a browser shows of an HTML page: the text without tags, scripts and styles, with
/// entities decoded and blanks collapsed.
fn text_of(html: &str) -> String {
    let mut text = String::new();
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        text.push_str(&rest[..open]);
        text.push(' ');
        rest = &rest[open..];
        let closing = ["script", "style"]
            .into_iter()
            .find(|tag| rest[1..].starts_with(tag))
            .map_or(">".to_string(), |tag| format!("</{tag}>"));
        rest = rest
            .find(&closing)
            .map_or("", |end| &rest[end + closing.len()..]);
    }
    text.push_str(rest);
    let text = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The `items` of an API list (or the list itself).
fn items(list: &Value) -> Vec<Value> {
    list.get("items")
        .unwrap_or(list)
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The value of an unlabelled metric in Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter_map(|line| line.strip_prefix(name))
        .find_map(|rest| rest.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Copies a directory tree; file modes come along, so `config/ship.sh` stays executable.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn the_readme_tour_works_line_by_line() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let lines = tour_lines(&readme);
    assert!(
        lines.iter().any(|l| l.starts_with("deploybot sandbox")),
        "the tour starts the sandbox: {lines:#?}"
    );
    let mut tour = Tour::new();
    for line in &lines {
        tour.run_line(line);
    }

    // The pull request page, read as text, shows the conversation: alice's commands with
    // the bot's replies, bob's refusal, and alice's deployments among staging's.
    let (status, html) = tour.get(PULL_PAGE, false).unwrap();
    assert_eq!(status, 200, "{PULL_PAGE} answered {status}:\n{html}");
    let page = text_of(&html);
    for (expected, what) in [
        ("/deploy staging", "alice's /deploy comment"),
        (
            "Deployment of v2 to staging succeeded",
            "the bot's reply to alice's /deploy",
        ),
        (
            "/deploy on #1 by @alice",
            "alice's deployment among the deployments",
        ),
        (
            "@bob cannot run deploybot commands on acme/web",
            "the bot's refusal to bob",
        ),
        ("😕", "the confused reaction to bob's comment"),
        (
            "Rollback of staging to v1 succeeded",
            "the bot's reply to alice's /rollback",
        ),
        (
            "/rollback on #1 by @alice",
            "alice's rollback among the deployments",
        ),
    ] {
        assert!(
            page.contains(expected),
            "{PULL_PAGE} does not show {what} ({expected:?}):\n{page}\n{}",
            tour.report()
        );
    }

    // `deploybot deployments web-staging` shows the rollback and what it replaced.
    let listed = tour.output_of("deploybot deployments web-staging");
    let rows: Vec<&str> = listed.stdout.lines().collect();
    assert!(
        rows.iter()
            .any(|r| r.contains("(rollback)") && r.contains("succeeded")),
        "`deploybot deployments web-staging` shows no succeeded rollback:\n{}",
        listed.stdout
    );
    assert!(
        rows.iter().any(|r| r.contains("rolled_back")),
        "`deploybot deployments web-staging` shows no rolled back deployment:\n{}",
        listed.stdout
    );

    // Staging runs release v1 again; production runs v1.2.0, deployed by the tag.
    let instances = tour.api("/v1/instances").unwrap();
    let active = |name: &str| -> Value {
        items(&instances)
            .into_iter()
            .find(|i| i["name"] == name)
            .unwrap_or_else(|| panic!("no instance {name} in {instances}"))["active_release"]
            .clone()
    };
    assert_eq!(active("web-staging")["version"], 1, "{instances}");
    assert_eq!(
        active("web-production")["image"],
        "ghcr.io/acme/web:v1.2.0",
        "{instances}"
    );
    let production = tour
        .api("/v1/instances/web-production/deployments")
        .unwrap();
    let latest = &items(&production)[0];
    assert_eq!(latest["state"], "succeeded", "{production}");
    assert_eq!(latest["image"], "ghcr.io/acme/web:v1.2.0", "{production}");
    assert!(
        tour.output_of("deploybot instances")
            .stdout
            .contains("ghcr.io/acme/web:v1.2.0"),
        "`deploybot instances` does not show v1.2.0 on web-production:\n{}",
        tour.output_of("deploybot instances").stdout
    );
}
