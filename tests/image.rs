//! The Docker image's defaults, checked without a Docker engine: the binary is started the
//! way the image's last stage starts it (its `ENV`, `ENTRYPOINT` and `CMD`, read from the
//! Dockerfile), with only the variables `docker run -e` would add and no configuration
//! mounted. It must refuse to start, saying what to mount and which variables to set; the
//! image must carry nothing of the repository's `config/` (the laptop example's published
//! token and public pages).

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_deploybot");

/// The instructions of the Dockerfile's last stage, continuation lines joined.
fn last_stage() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile"))
        .expect("the Dockerfile is readable");
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if current.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        if let Some(start) = line.strip_suffix('\\') {
            current.push_str(start);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        let (word, rest) = current.split_once(' ').unwrap_or((&current, ""));
        instructions.push((word.to_ascii_uppercase(), rest.trim().to_string()));
        current.clear();
    }
    let last_from = instructions
        .iter()
        .rposition(|(word, _)| word == "FROM")
        .expect("the Dockerfile has a FROM");
    instructions.split_off(last_from)
}

/// `ENV A=1 B=2` instructions of the last stage.
fn image_env(stage: &[(String, String)]) -> BTreeMap<String, String> {
    stage
        .iter()
        .filter(|(word, _)| word == "ENV")
        .flat_map(|(_, rest)| {
            rest.split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.to_string(), v.trim_matches('"').to_string()))
        })
        .collect()
}

/// An exec-form `["a", "b"]` instruction's words.
fn exec_form(stage: &[(String, String)], word: &str) -> Vec<String> {
    let (_, rest) = stage
        .iter()
        .rfind(|(w, _)| w == word)
        .unwrap_or_else(|| panic!("the image has no {word}"));
    serde_json::from_str(rest).unwrap_or_else(|e| panic!("{word} is not exec form: {e}"))
}

#[test]
fn the_image_started_without_a_configuration_refuses_and_says_what_to_mount() {
    let stage = last_stage();
    let env = image_env(&stage);
    let config = env
        .get("DEPLOYBOT_CONFIG")
        .expect("the image names its configuration file");
    assert!(
        !std::path::Path::new(config).exists(),
        "{config} exists on this machine; the test cannot stand for an image without it"
    );
    let entrypoint = exec_form(&stage, "ENTRYPOINT");
    let cmd = exec_form(&stage, "CMD");
    assert_eq!(entrypoint, ["deploybot"]);
    let workdir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(BIN);
    command
        .args(&cmd)
        .env_clear()
        .envs(&env)
        // The volume's path does not exist here: the database goes to a directory of the test.
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/deploybot.db", data.path().display()),
        )
        // What a user passes with `docker run -e`.
        .env("DEPLOYBOT_WEBHOOK_SECRET", "image-test-secret")
        .env("DEPLOYBOT_LISTEN", "127.0.0.1:0")
        .current_dir(workdir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    // A server that started would not exit by itself: give it a bounded time to refuse.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the image's command started serving without a configuration");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for needle in [
        config.as_str(),
        "does not exist",
        "mount",
        "DEPLOYBOT_WEBHOOK_SECRET",
        "GITHUB_APP_ID",
    ] {
        assert!(stderr.contains(needle), "{needle:?} missing from: {stderr}");
    }
    assert!(
        !data.path().join("deploybot.db").exists(),
        "the database was opened before the configuration was read"
    );
}

#[test]
fn the_image_carries_nothing_of_the_repositorys_config() {
    let stage = last_stage();
    let copies: Vec<&String> = stage
        .iter()
        .filter(|(word, _)| word == "COPY" || word == "ADD")
        .map(|(_, rest)| rest)
        .collect();
    assert!(!copies.is_empty());
    for copy in copies {
        assert!(
            copy.starts_with("--from=build "),
            "the runtime stage copies from the build context: {copy}"
        );
    }
    let env = image_env(&stage);
    assert!(
        !env.keys()
            .any(|k| k.contains("TOKEN") || k.contains("SECRET")),
        "the image sets a credential: {env:?}"
    );
}
