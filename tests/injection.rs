//! Command injection through GitHub: hostile branch names, tags, PR titles and comments
//! reach the deploy command only as environment values (sanitized in the image), never a
//! shell, and pages and the API show them escaped.
//!
//! The server runs with HOME in a temporary directory (holding a canary file) and a PATH
//! whose `reboot` only leaves a marker, so a regression in which the server itself handed
//! a name to a shell would fail the test instead of harming the machine. Deploy commands
//! get deploybot's fixed PATH, whatever the server's is.

#[allow(dead_code)]
#[path = "github/bot.rs"]
mod bot;
#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bot::{Bot, PR_SHA, SHA, fixture, pr_comment, push, wait_until};
use common::TestDb;
use deploybot::deploy::{DeployState, Deployment, Store};
use serde_json::Value;
use sha2::{Digest, Sha256};

const API_TOKEN: &str = "injection-test-token";

/// A sandbox for one test: the recording deploy script, markers and the server's HOME.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["calls", "home", "bin"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        std::fs::write(dir.path().join("home/canary"), "still here").unwrap();
        let sandbox = Sandbox { dir };
        // The deploy command: records its argv and its whole environment, byte for byte.
        sandbox.executable(
            "record.sh",
            &format!(
                "#!/bin/bash\nset -eu\nf=$(mktemp '{calls}/call.XXXXXX')\n\
                 env -0 > \"$f.env\"\nprintf '%s\\0' \"$@\" > \"$f.argv\"\n",
                calls = sandbox.path("calls").display()
            ),
        );
        sandbox.executable(
            "bin/reboot",
            &format!(
                "#!/bin/sh\ntouch '{}'\n",
                sandbox.path("reboot-ran").display()
            ),
        );
        sandbox
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn executable(&self, name: &str, text: &str) {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        let mut perms = std::fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&path, perms).unwrap();
    }

    /// Where a `$(touch …)` in a hostile name would leave its file.
    fn marker(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// Every call of the deploy command: (argv, environment).
    fn calls(&self) -> Vec<Call> {
        let mut calls = Vec::new();
        for entry in std::fs::read_dir(self.path("calls")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "env") {
                let env = std::fs::read(&path).unwrap();
                let argv = std::fs::read(path.with_extension("argv")).unwrap();
                let env = split_nul(&env)
                    .into_iter()
                    .filter_map(|pair| {
                        let at = pair.iter().position(|&b| b == b'=')?;
                        Some((
                            String::from_utf8_lossy(&pair[..at]).into_owned(),
                            pair[at + 1..].to_vec(),
                        ))
                    })
                    .collect();
                calls.push((split_nul(&argv), env));
            }
        }
        calls
    }

    /// The environments the deploy command got for one deployment (one per phase).
    fn envs_of(&self, deployment: &Deployment) -> Vec<BTreeMap<String, Vec<u8>>> {
        let id = deployment.id.to_string();
        let calls = self.calls();
        let mine: Vec<_> = calls
            .into_iter()
            .filter(|(_, env)| env.get("DEPLOY_ID").map(Vec::as_slice) == Some(id.as_bytes()))
            .collect();
        assert!(!mine.is_empty(), "the deploy command never ran for {id}");
        let home = self.path("home").display().to_string();
        for (argv, env) in &mine {
            assert!(argv.is_empty(), "arguments reached the command: {argv:?}");
            // The command gets the fixed PATH and the server's HOME.
            assert_eq!(
                env["PATH"], b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "PATH: {:?}",
                env["PATH"]
            );
            assert_eq!(env["HOME"], home.as_bytes());
        }
        mine.into_iter().map(|(_, env)| env).collect()
    }

    /// Nothing ran that a shell reading the hostile names would have run.
    fn assert_no_shell_ran(&self) {
        for marker in [
            "reboot-ran",
            "touched-1",
            "touched-2",
            "touched-3",
            "touched-4",
        ] {
            assert!(
                !self.path(marker).exists(),
                "{marker} exists: a hostile name reached a shell"
            );
        }
        assert_eq!(
            std::fs::read_to_string(self.path("home/canary")).unwrap(),
            "still here",
            "HOME was emptied: `rm -rf ~` ran"
        );
    }
}

/// One run of the deploy command: its arguments and its environment, as bytes.
type Call = (Vec<Vec<u8>>, BTreeMap<String, Vec<u8>>);

fn split_nul(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split(|&b| b == 0)
        .filter(|part| !part.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// The serving process, restarted by the test with the sandbox's HOME and PATH.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The bot with extra instances whose deploy command is the recorder: every branch, every
/// tag, and web-production (commands) too. Its server is restarted with the sandbox's HOME
/// and a PATH that starts with the sandbox's bin/.
fn start(db: TestDb, sandbox: &Sandbox) -> (Bot, Server) {
    let record = sandbox.path("record.sh").display().to_string();
    let extra = format!(
        r#"
[[api.tokens]]
name = "injection"
tenant = "acme"
sha256 = "{hash}"

[[instances]]
name = "web-branches"
repo = "acme/web"
environment = "branches"
image = "ghcr.io/acme/web:{{branch}}"
strategy = "recreate"
on_push = ["**"]
commands = false

[instances.provider]
kind = "command"
run = ["{record}"]
timeout = "1m"

[[instances]]
name = "web-tags"
repo = "acme/web"
environment = "tags"
image = "ghcr.io/acme/web:{{tag}}"
strategy = "recreate"
on_tag = ["**"]
commands = false
env = {{ LOG_LEVEL = "debug", REGION = "eu" }}
api_env = ["REGION", "EXTRA"]

[instances.provider]
kind = "command"
run = ["{record}"]
timeout = "1m"
"#,
        hash = hex::encode(Sha256::digest(API_TOKEN.as_bytes())),
    );
    let mut bot = Bot::start(db, &format!("exec '{record}' \"$@\""), &extra);
    bot.kill9();
    let path = format!(
        "{}:{}",
        sandbox.path("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let child = Command::new(env!("CARGO_BIN_EXE_deploybot"))
        .args(["serve", "--config"])
        .arg(bot.dir().join("deploybot.toml"))
        .env_remove("DATABASE_URL")
        .env_remove("DEPLOYBOT_WEBHOOK_SECRET")
        .env_remove("GITHUB_TOKEN")
        .env_remove("DEPLOYBOT_GITHUB_API_URL")
        .env("HOME", sandbox.path("home"))
        .env("PATH", path)
        .env(
            "DEPLOYBOT_LOG",
            std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let server = Server(child);
    let port = bot.port;
    wait_until("the server to listen", Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (bot, server)
}

/// A GET with optional bearer token: (status, body).
fn get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    common::http(port, "GET", path, token, "")
}

/// The only deployment of `instance`, once it has finished, and that it succeeded.
fn finished(bot: &Bot, instance: &str) -> Deployment {
    wait_until(
        &format!("a deployment of {instance}"),
        Duration::from_secs(30),
        || !bot.deployments(instance).is_empty(),
    );
    let deployments = bot.deployments(instance);
    assert_eq!(deployments.len(), 1, "{deployments:?}");
    let done = bot.wait_final(&deployments[0].id.to_string());
    assert_eq!(done.state, DeployState::Succeeded, "{}", done.error);
    done
}

/// What image tag `value` becomes: letters, digits, `.`, `_`, `-`; anything else `-`.
fn sanitized(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Each value reached the command only inside DEPLOY_IMAGE, sanitized; DEPLOY_COMMIT_SHA is
/// the commit; no variable holds the raw value or the notes it is part of.
fn assert_only_sanitized(
    sandbox: &Sandbox,
    deployment: &Deployment,
    image_prefix: &str,
    hostile: &str,
    sha: &str,
    notes: &str,
) {
    let expected_image = format!("{image_prefix}{}", sanitized(hostile));
    assert_eq!(deployment.image, expected_image);
    for env in sandbox.envs_of(deployment) {
        assert_eq!(
            String::from_utf8_lossy(&env["DEPLOY_IMAGE"]),
            expected_image,
            "DEPLOY_IMAGE byte for byte"
        );
        assert_eq!(env["DEPLOY_COMMIT_SHA"], sha.as_bytes());
        for (name, value) in &env {
            let value = String::from_utf8_lossy(value);
            assert!(
                !value.contains(hostile),
                "{name} holds the raw value {hostile:?}: {value:?}"
            );
            assert!(!value.contains(notes), "{name} holds the notes: {value:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------

/// Branches named `main;rm -rf ~`, `$(touch …)` and with backticks deploy with their
/// name sanitized into the image; nothing runs them.
fn hostile_branch_names_never_reach_a_shell(db: TestDb) {
    let sandbox = Sandbox::new();
    let (bot, _server) = start(db, &sandbox);
    let branches = [
        "main;rm -rf ~".to_string(),
        format!("$(touch {})", sandbox.marker("touched-1")),
        format!("x`touch {}`", sandbox.marker("touched-2")),
        format!("a\"; touch {} #", sandbox.marker("touched-3")),
    ];
    for (i, branch) in branches.iter().enumerate() {
        let sha = format!("{:040x}", 0xb0 + i);
        let (status, answer) = bot.send(
            "push",
            &push(&format!("refs/heads/{branch}"), &sha, "octocat"),
            &format!("branch-{i}"),
        );
        assert_eq!(status, 202, "{branch}: {answer}");
        assert_eq!(
            answer["deployments"].as_array().unwrap().len(),
            1,
            "{answer}"
        );
        let id = answer["deployments"][0].as_str().unwrap();
        let done = bot.wait_final(id);
        assert_eq!(
            done.state,
            DeployState::Succeeded,
            "{branch}: {}",
            done.error
        );
        let notes = format!("push to {branch} by @octocat");
        assert!(
            done.source.trigger.starts_with(&notes),
            "{}",
            done.source.trigger
        );
        let release = bot.db.store.get_release("acme", done.release_id).unwrap();
        assert!(
            release.notes.starts_with(&notes),
            "the notes keep the name as is"
        );
        assert_eq!(release.commit_sha, sha);
        assert_only_sanitized(&sandbox, &done, "ghcr.io/acme/web:", branch, &sha, &notes);
    }
    assert_eq!(
        sanitized("main;rm -rf ~"),
        "main-rm--rf--",
        "the documented example"
    );

    // A commit SHA that is not one never becomes DEPLOY_COMMIT_SHA: the deployment is
    // refused, with the reason in the answer.
    let evil_sha = format!("$(touch {})", sandbox.marker("touched-1"));
    let (status, answer) = bot.send(
        "push",
        &push("refs/heads/main;x", &evil_sha, "octocat"),
        "branch-sha",
    );
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["deployments"], serde_json::json!([]), "{answer}");
    let reason = answer["refused"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("is not a commit SHA"), "{reason}");
    assert_eq!(bot.deployments("web-branches").len(), branches.len());
    sandbox.assert_no_shell_ran();
}

/// A tag `$(reboot)`, pushed, and a tag with backticks, created (its commit resolved
/// through the GitHub API): sanitized into the image, never run.
fn hostile_tags_never_reach_a_shell(db: TestDb) {
    let sandbox = Sandbox::new();
    let (bot, _server) = start(db, &sandbox);
    let mut tag_push = fixture("push_tag");
    tag_push["ref"] = "refs/tags/$(reboot)".into();
    tag_push["after"] = SHA.into();
    tag_push["head_commit"]["id"] = SHA.into();
    let (status, answer) = bot.send("push", &tag_push, "tag-1");
    assert_eq!(status, 202, "{answer}");
    let done = finished(&bot, "web-tags");
    assert_eq!(done.image, "ghcr.io/acme/web:--reboot-");
    assert_only_sanitized(
        &sandbox,
        &done,
        "ghcr.io/acme/web:",
        "$(reboot)",
        SHA,
        "tag $(reboot) by @",
    );

    // A create event alone: the job asks GitHub for the tag's commit, by name.
    let tag = format!("v`touch {}`", sandbox.marker("touched-4"));
    bot.fake.add_tag("acme/web", &tag, PR_SHA, false);
    let mut create = fixture("create_tag");
    create["ref"] = tag.clone().into();
    let (status, answer) = bot.send("create", &create, "tag-2");
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["jobs"], 1, "{answer}");
    wait_until(
        "the created tag's deployment",
        Duration::from_secs(30),
        || bot.deployments("web-tags").len() == 2,
    );
    let second = bot.deployments("web-tags").remove(0);
    let second = bot.wait_final(&second.id.to_string());
    assert_eq!(second.state, DeployState::Succeeded, "{}", second.error);
    assert_only_sanitized(
        &sandbox,
        &second,
        "ghcr.io/acme/web:",
        &tag,
        PR_SHA,
        &format!("tag {tag} by @"),
    );
    sandbox.assert_no_shell_ran();
}

/// `/deploy` in a comment full of backticks and `$(…)`, on a PR whose title has them too:
/// the command deploys the PR's head commit; none of the text reaches the command.
fn pr_comments_and_titles_with_backticks_never_reach_a_shell(db: TestDb) {
    let sandbox = Sandbox::new();
    let (bot, _server) = start(db, &sandbox);
    bot.fake.set_permission("acme/web", "octocat", "write");
    bot.open_pull(42, PR_SHA, false, "open");
    let text = format!(
        "Ship it `touch {m}` and ``$(touch {m})``\n\n/deploy production\n\n$(touch {m}) `reboot`",
        m = sandbox.marker("touched-1")
    );
    let comment_id = bot.fake.add_comment("acme/web", 42, "octocat", &text);
    let mut comment = pr_comment(42, comment_id, "octocat", &text);
    comment["issue"]["title"] =
        format!("Fix `reboot` and $(touch {})", sandbox.marker("touched-2")).into();
    let (status, answer) = bot.send("issue_comment", &comment, "comment-1");
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["jobs"], 1, "the comment's job: {answer}");
    let done = finished(&bot, "web-production");
    assert_eq!(done.image, format!("ghcr.io/acme/web:{PR_SHA}"));
    for env in sandbox.envs_of(&done) {
        assert_eq!(String::from_utf8_lossy(&env["DEPLOY_IMAGE"]), done.image);
        assert_eq!(env["DEPLOY_COMMIT_SHA"], PR_SHA.as_bytes());
        for (name, value) in &env {
            let value = String::from_utf8_lossy(value);
            assert!(
                !value.contains("touch") && !value.contains('`'),
                "{name} holds comment or title text: {value:?}"
            );
        }
    }

    // A command with a hostile argument is refused, and the reply quotes it as code.
    let bad = "/deploy production `$(reboot)`";
    let (_, status, answer) = bot.comment(42, "octocat", bad, "comment-2");
    assert_eq!(status, 202, "{answer}");
    wait_until("the refusal", Duration::from_secs(30), || {
        bot.fake
            .comments("acme/web", 42)
            .iter()
            .any(|c| c.body.contains("does not take"))
    });
    let reply = bot
        .fake
        .comments("acme/web", 42)
        .into_iter()
        .find(|c| c.body.contains("does not take"))
        .unwrap();
    // The inline code's text is the argument; the reply shows it as code again.
    assert!(
        reply
            .body
            .starts_with("`/deploy` does not take `$(reboot)`"),
        "{}",
        reply.body
    );
    assert_eq!(bot.deployments("web-production").len(), 1);
    sandbox.assert_no_shell_ran();
}

/// A branch named like a script tag is shown escaped on the deployment page, and given
/// back exactly (as JSON, not markup) by the API.
fn hostile_names_are_escaped_on_pages_and_exact_in_the_api(db: TestDb) {
    let sandbox = Sandbox::new();
    let (bot, _server) = start(db, &sandbox);
    let branch = "<script>alert(1)</script>";
    let user = "<img src=x onerror=alert(2)>";
    let (status, answer) = bot.send(
        "push",
        &push(&format!("refs/heads/{branch}"), SHA, user),
        "page-1",
    );
    assert_eq!(status, 202, "{answer}");
    let done = finished(&bot, "web-branches");
    assert_eq!(done.image, "ghcr.io/acme/web:-script-alert-1---script-");

    let (status, page) = get(bot.port, &format!("/deployments/{}", done.id), None);
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(
            "push to &lt;script&gt;alert(1)&lt;/script&gt; by @&lt;img src=x onerror=alert(2)&gt;"
        ),
        "{page}"
    );
    assert!(
        !page.contains(branch),
        "the branch name is raw markup in the page"
    );
    assert!(!page.contains(user), "the sender is raw markup in the page");
    let (status, index) = get(bot.port, "/", None);
    assert_eq!(status, 200);
    assert!(!index.contains(branch) && !index.contains(user), "{index}");

    let (status, body) = get(
        bot.port,
        &format!("/v1/deployments/{}", done.id),
        Some(API_TOKEN),
    );
    assert_eq!(status, 200, "{body}");
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["initiator"], user);
    assert!(
        json["source"]["trigger"]
            .as_str()
            .unwrap()
            .starts_with(&format!("push to {branch} by @{user}")),
        "{json}"
    );
    let (status, body) = get(
        bot.port,
        &format!("/v1/releases/{}", done.release_id),
        Some(API_TOKEN),
    );
    assert_eq!(status, 200, "{body}");
    let json: Value = serde_json::from_str(&body).unwrap();
    assert!(
        json["notes"]
            .as_str()
            .unwrap()
            .starts_with(&format!("push to {branch}"))
    );
    sandbox.assert_no_shell_ran();
}

/// The instance's `env` reaches the deploy command with every release it makes, under the
/// env a request names (`POST /v1/instances/…/deploy`): for a key both name, the request's
/// value wins. The release keeps the merged env.
fn instance_env_reaches_the_command_under_the_request_env(db: TestDb) {
    let sandbox = Sandbox::new();
    let (bot, _server) = start(db, &sandbox);
    let mut tag_push = fixture("push_tag");
    tag_push["ref"] = "refs/tags/v1.0.0".into();
    tag_push["after"] = SHA.into();
    tag_push["head_commit"]["id"] = SHA.into();
    let (status, answer) = bot.send("push", &tag_push, "env-1");
    assert_eq!(status, 202, "{answer}");
    let first = finished(&bot, "web-tags");
    let envs = sandbox.envs_of(&first);
    assert!(!envs.is_empty());
    for env in &envs {
        assert_eq!(env.get("LOG_LEVEL").map(Vec::as_slice), Some(&b"debug"[..]));
        assert_eq!(env.get("REGION").map(Vec::as_slice), Some(&b"eu"[..]));
    }

    let body = serde_json::json!({
        "image": "ghcr.io/acme/web:v1.0.1",
        "env": {"REGION": "us", "EXTRA": "1"},
        "commit_sha": SHA,
    })
    .to_string();
    let bearer = format!("Bearer {API_TOKEN}");
    let (status, answer) = bot.post(
        "/v1/instances/web-tags/deploy",
        &[("Authorization", &bearer)],
        body.as_bytes(),
    );
    assert_eq!(status, 201, "{answer}");
    let second = bot.wait_final(answer["id"].as_str().unwrap());
    assert_eq!(second.state, DeployState::Succeeded, "{}", second.error);
    for env in sandbox.envs_of(&second) {
        assert_eq!(env.get("LOG_LEVEL").map(Vec::as_slice), Some(&b"debug"[..]));
        assert_eq!(env.get("REGION").map(Vec::as_slice), Some(&b"us"[..]));
        assert_eq!(env.get("EXTRA").map(Vec::as_slice), Some(&b"1"[..]));
    }
    let (status, release) = get(
        bot.port,
        &format!("/v1/releases/{}", second.release_id),
        Some(API_TOKEN),
    );
    assert_eq!(status, 200, "{release}");
    let release: Value = serde_json::from_str(&release).unwrap();
    assert_eq!(
        release["env"],
        serde_json::json!({"EXTRA": "1", "LOG_LEVEL": "debug", "REGION": "us"})
    );
}

both_backends_owned!(
    instance_env_reaches_the_command_under_the_request_env,
    hostile_branch_names_never_reach_a_shell,
    hostile_tags_never_reach_a_shell,
    pr_comments_and_titles_with_backticks_never_reach_a_shell,
    hostile_names_are_escaped_on_pages_and_exact_in_the_api,
);
