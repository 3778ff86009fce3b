//! What a deploy script sees: a clean environment (a fixed PATH, HOME, LANG, the DEPLOY_*
//! values, the release env and the instance's `pass_env`), never the server's secrets;
//! env names that a loader, shell or runtime would read are refused wherever they come
//! from; and secret values never reach a stored log.

#[allow(dead_code)]
#[path = "github/bot.rs"]
mod bot;
#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bot::{Bot, SECRET, TOKEN, wait_until};
use common::TestDb;
use deploybot::deploy::DeployState;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const API_TOKEN: &str = "child-env-test-token";
const METRICS_TOKEN: &str = "metrics-token-for-child-env";
const AWS_PROFILE: &str = "deploy-profile";
const AWS_SECRET: &str = "aws-secret-access-key-value-42";
const SESSION_KEY: &str = "6b1f0c2d9e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c";
const SERVER_ONLY: &str = "server-only-value-not-passed";
const CHILD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Writes an executable script.
fn executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    let mut perms = std::fs::metadata(path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(path, perms).unwrap();
}

/// Prints the deploybot-specific part of the server's own environment, as a script running
/// as the bot's user can read it from `/proc`: what the log must mask.
const SERVER_ENV: &str = "tr '\\0' '\\n' < /proc/$PPID/environ | grep -E '^(DEPLOYBOT_|GITHUB_TOKEN)' | sed 's/^/SERVER /'";

/// The instance `web-env`: its deploy and health commands print their environment to the
/// log and save it (NUL-separated) under `dir`; it passes AWS_PROFILE and
/// AWS_SECRET_ACCESS_KEY (a secret) and lets the API set LOG_LEVEL.
fn extra_config(dir: &Path) -> String {
    std::fs::create_dir_all(dir.join("envs")).unwrap();
    let deploy = dir.join("deploy.sh");
    executable(
        &deploy,
        &format!(
            "#!/bin/bash\nenv\nenv -0 > \"$(mktemp '{}/envs/deploy.XXXXXX')\"\n{SERVER_ENV}\n",
            dir.display()
        ),
    );
    let health = dir.join("health.sh");
    executable(
        &health,
        &format!(
            "#!/bin/bash\nenv\nenv -0 > \"$(mktemp '{}/envs/health.XXXXXX')\"\n",
            dir.display()
        ),
    );
    format!(
        r#"
[[api.tokens]]
name = "child-env"
tenant = "acme"
sha256 = "{hash}"

[[instances]]
name = "web-env"
repo = "acme/web"
environment = "env-test"
image = "ghcr.io/acme/web:{{sha}}"
strategy = "recreate"
commands = false
env = {{ REGION = "eu" }}
pass_env = ["AWS_PROFILE", "AWS_SECRET_ACCESS_KEY"]
secret_env = ["AWS_SECRET_ACCESS_KEY"]
api_env = ["LOG_LEVEL"]

[instances.provider]
kind = "command"
run = ["{deploy}"]
timeout = "1m"

[instances.health]
command = ["{health}"]
timeout = "10s"
interval = "1s"
deadline = "30s"
"#,
        hash = hex::encode(Sha256::digest(API_TOKEN.as_bytes())),
        deploy = deploy.display(),
        health = health.display(),
    )
}

/// The serving process, started by the test with an environment full of secrets.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The bot with `web-env`, restarted with the bot's own secrets, a server-only variable
/// and the pass_env variables in its environment (no LANG, HOME in `home`).
fn start_with_secrets(db: TestDb, dir: &Path, home: &Path) -> (Bot, Server) {
    let mut bot = Bot::start(db, "exit 0", &extra_config(dir));
    bot.kill9();
    let child = Command::new(env!("CARGO_BIN_EXE_deploybot"))
        .args(["serve", "--config"])
        .arg(bot.dir().join("deploybot.toml"))
        .env("DATABASE_URL", &bot.db.url)
        .env("DEPLOYBOT_WEBHOOK_SECRET", SECRET)
        .env("GITHUB_TOKEN", TOKEN)
        .env("DEPLOYBOT_METRICS_TOKEN", METRICS_TOKEN)
        .env("DEPLOYBOT_SESSION_KEY", SESSION_KEY)
        .env("SERVER_ONLY_SETTING", SERVER_ONLY)
        .env("AWS_PROFILE", AWS_PROFILE)
        .env("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
        .env("HOME", home)
        .env_remove("LANG")
        .env_remove("DEPLOYBOT_GITHUB_API_URL")
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

/// A request with the API token: (status, JSON body or Null).
fn api(port: u16, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let body = body.map(Value::to_string).unwrap_or_default();
    let (status, body) = common::http(port, method, path, Some(API_TOKEN), &body);
    let json = body
        .find('{')
        .and_then(|start| body.rfind('}').map(|end| &body[start..=end]))
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

/// Every stored log line of a deployment, read through the API.
fn log_lines(port: u16, id: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = api(
            port,
            "GET",
            &format!("/v1/deployments/{id}/logs?after={after}"),
            None,
        );
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().unwrap();
        if items.is_empty() {
            return lines;
        }
        lines.extend(
            items
                .iter()
                .map(|i| i["line"].as_str().unwrap().to_string()),
        );
        after = page["next_after"].as_i64().unwrap();
    }
}

/// The environments the commands saved under `dir/envs`, by name prefix (`deploy`, `health`).
fn saved_envs(dir: &Path, prefix: &str) -> Vec<BTreeMap<String, String>> {
    let mut envs = Vec::new();
    for entry in std::fs::read_dir(dir.join("envs")).unwrap() {
        let path: PathBuf = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with(&format!("{prefix}.")) {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let env = bytes
            .split(|&b| b == 0)
            .filter(|pair| !pair.is_empty())
            .filter_map(|pair| {
                let pair = String::from_utf8_lossy(pair);
                let (k, v) = pair.split_once('=')?;
                Some((k.to_string(), v.to_string()))
            })
            .collect();
        envs.push(env);
    }
    envs
}

// ---------------------------------------------------------------------------------------

/// A deploy script that runs `env`, on a server whose environment holds its webhook
/// secret, GitHub token, metrics token and database URL: neither the command, nor the
/// health command, nor the stored log sees any of them. The script gets the fixed PATH,
/// the server's HOME, LANG C.UTF-8, the DEPLOY_* values, the release env and the pass_env
/// variables; the secret_env value reaches the script but shows as *** in the log.
fn a_deploy_script_printing_its_environment_shows_no_server_secret(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let (bot, _server) = start_with_secrets(db, dir.path(), home.path());
    let (status, answer) = api(
        bot.port,
        "POST",
        "/v1/instances/web-env/deploy",
        Some(&json!({"image": "ghcr.io/acme/web:v1", "env": {"LOG_LEVEL": "debug"}})),
    );
    assert_eq!(status, 201, "{answer}");
    let id = answer["id"].as_str().unwrap().to_string();
    let done = bot.wait_final(&id);
    assert_eq!(done.state, DeployState::Succeeded, "{}", done.error);

    let secrets = [
        SECRET,
        TOKEN,
        METRICS_TOKEN,
        SESSION_KEY,
        SERVER_ONLY,
        bot.db.url.as_str(),
    ];
    let lines = log_lines(bot.port, &id);
    let log = lines.join("\n");
    assert!(
        lines.iter().any(|l| l.starts_with("DEPLOY_ID=")),
        "the script's env output is in the log: {log}"
    );
    for secret in secrets.iter().chain([&AWS_SECRET]) {
        assert!(
            !log.contains(secret),
            "{secret} is in the stored log:\n{log}"
        );
    }
    for name in [
        "DEPLOYBOT_WEBHOOK_SECRET",
        "GITHUB_TOKEN",
        "DEPLOYBOT_METRICS_TOKEN",
        "DATABASE_URL",
        "SERVER_ONLY_SETTING",
    ] {
        assert!(
            !lines.iter().any(|l| l.starts_with(&format!("{name}="))),
            "{name} reached the script:\n{log}"
        );
    }
    assert!(
        lines.contains(&format!("AWS_PROFILE={AWS_PROFILE}")),
        "pass_env: {log}"
    );
    assert!(
        lines.contains(&"AWS_SECRET_ACCESS_KEY=***".to_string()),
        "secret_env is masked: {log}"
    );
    // The server's own secrets, read from /proc by the script, are masked too.
    for name in [
        "DEPLOYBOT_WEBHOOK_SECRET",
        "DEPLOYBOT_SESSION_KEY",
        "DEPLOYBOT_METRICS_TOKEN",
        "GITHUB_TOKEN",
    ] {
        assert!(
            lines.contains(&format!("SERVER {name}=***")),
            "{name} of the server is masked: {log}"
        );
    }

    // What the commands really got, as saved by them (not as logged).
    let deploys = saved_envs(dir.path(), "deploy");
    let healths = saved_envs(dir.path(), "health");
    assert!(!deploys.is_empty(), "the deploy command ran");
    assert!(!healths.is_empty(), "the health command ran");
    let home = home.path().display().to_string();
    for env in deploys.iter().chain(&healths) {
        let has = |k: &str| env.get(k).map(String::as_str);
        assert_eq!(has("PATH"), Some(CHILD_PATH), "{env:?}");
        assert_eq!(has("HOME"), Some(home.as_str()), "{env:?}");
        assert_eq!(has("LANG"), Some("C.UTF-8"), "{env:?}");
        assert_eq!(has("AWS_PROFILE"), Some(AWS_PROFILE), "{env:?}");
        assert_eq!(has("AWS_SECRET_ACCESS_KEY"), Some(AWS_SECRET), "{env:?}");
        assert_eq!(has("LOG_LEVEL"), Some("debug"), "{env:?}");
        assert_eq!(has("REGION"), Some("eu"), "{env:?}");
        assert_eq!(has("DEPLOY_ID"), Some(id.as_str()), "{env:?}");
        for (name, value) in env {
            // bash itself sets PWD, SHLVL and `_`.
            let expected = matches!(
                name.as_str(),
                "PATH"
                    | "HOME"
                    | "LANG"
                    | "AWS_PROFILE"
                    | "AWS_SECRET_ACCESS_KEY"
                    | "LOG_LEVEL"
                    | "REGION"
                    | "PWD"
                    | "SHLVL"
                    | "_"
            ) || name.starts_with("DEPLOY_");
            assert!(expected, "{name}={value} reached a command");
            for secret in secrets {
                assert!(!value.contains(secret), "{name} holds a server secret");
            }
        }
    }
}

/// Env names a loader, shell or runtime reads, malformed names and names the instance's
/// api_env does not list are each refused with a 422 that names them; nothing is deployed.
fn api_deploys_with_dangerous_env_names_are_refused_naming_them(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let bot = Bot::start(db, "exit 0", &extra_config(dir.path()));
    let long = "A".repeat(65);
    for name in [
        "BASH_FUNC_echo%%",
        "BASH_ENV",
        "LD_PRELOAD",
        "PATH",
        "log_level",
        long.as_str(),
        "REGION",
    ] {
        let (status, answer) = api(
            bot.port,
            "POST",
            "/v1/instances/web-env/deploy",
            Some(&json!({"image": "ghcr.io/acme/web:v1", "env": {name: "() { id; }"}})),
        );
        assert_eq!(status, 422, "{name}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_env", "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(name), "{name}: {message}");
    }
    let (_, answer) = api(
        bot.port,
        "POST",
        "/v1/instances/web-env/deploy",
        Some(&json!({"image": "ghcr.io/acme/web:v1", "env": {"REGION": "us"}})),
    );
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("api_env"), "{message}");
    assert!(
        bot.deployments("web-env").is_empty(),
        "a refused deploy was queued"
    );

    // A name the instance allows goes through.
    let (status, answer) = api(
        bot.port,
        "POST",
        "/v1/instances/web-env/deploy",
        Some(&json!({"image": "ghcr.io/acme/web:v1", "env": {"LOG_LEVEL": "debug"}})),
    );
    assert_eq!(status, 201, "{answer}");
    assert_eq!(bot.deployments("web-env").len(), 1);
}

/// A release stored with a name the rule refuses (written before the rule, or by hand in
/// the database) is not deployed again: the rollback to it is refused, naming the variable.
fn a_rollback_to_a_release_holding_a_refused_name_is_refused(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let bot = Bot::start(db, "exit 0", &extra_config(dir.path()));
    for tag in ["v1", "v2"] {
        let (status, answer) = api(
            bot.port,
            "POST",
            "/v1/instances/web-env/deploy",
            Some(&json!({"image": format!("ghcr.io/acme/web:{tag}")})),
        );
        assert_eq!(status, 201, "{answer}");
        let done = bot.wait_final(answer["id"].as_str().unwrap());
        assert_eq!(done.state, DeployState::Succeeded, "{}", done.error);
    }
    let changed = common::Sql::open(&bot.db.url)
        .execute(r#"UPDATE releases SET env = '{"LD_PRELOAD":"/tmp/evil.so"}' WHERE version = 1"#);
    assert_eq!(changed, 1);

    let (status, answer) = api(
        bot.port,
        "POST",
        "/v1/instances/web-env/rollback",
        Some(&json!({"version": 1})),
    );
    assert_eq!(status, 400, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("LD_PRELOAD"), "{message}");
    assert_eq!(bot.deployments("web-env").len(), 2, "a rollback was queued");
}

both_backends_owned!(
    a_deploy_script_printing_its_environment_shows_no_server_secret,
    api_deploys_with_dangerous_env_names_are_refused_naming_them,
    a_rollback_to_a_release_holding_a_refused_name_is_refused,
);

/// `deploybot config check` refuses env names a shell or loader reads, a pass_env naming
/// one of the bot's own secrets, and a secret_env that is not in pass_env, naming the key
/// and the instance each time.
#[test]
fn config_check_refuses_bad_env_names_and_passing_the_bots_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("deploybot.toml");
    std::fs::write(
        &file,
        r#"
[[instances]]
name = "web-production"
repo = "acme/web"
environment = "production"
image = "ghcr.io/acme/web:{sha}"
env = { LD_PRELOAD = "/tmp/evil.so" }
pass_env = ["GITHUB_TOKEN", "DEPLOYBOT_WEBHOOK_SECRET", "AWS_PROFILE"]
api_env = ["NODE_OPTIONS", "TAR_OPTIONS"]
secret_env = ["AWS_SECRET_ACCESS_KEY"]
"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_deploybot"))
        .args(["config", "check", "--config"])
        .arg(&file)
        .env_remove("DATABASE_URL")
        .env_remove("DEPLOYBOT_WEBHOOK_SECRET")
        .env_remove("GITHUB_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the config was accepted");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "instances[0] (web-production).env",
        "LD_PRELOAD",
        "instances[0] (web-production).pass_env[0]",
        "GITHUB_TOKEN",
        "instances[0] (web-production).pass_env[1]",
        "DEPLOYBOT_WEBHOOK_SECRET",
        "instances[0] (web-production).api_env[0]",
        "NODE_OPTIONS",
        // tar runs the program its options name (--checkpoint-action=exec=…).
        "instances[0] (web-production).api_env[1]",
        "TAR_OPTIONS",
        "instances[0] (web-production).secret_env[0]",
        "AWS_SECRET_ACCESS_KEY",
    ] {
        assert!(stderr.contains(needle), "{needle} missing from:\n{stderr}");
    }
}
