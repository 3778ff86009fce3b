//! `DEPLOYBOT_LOG_FORMAT=json` with the real binary: every line `deploybot serve` writes
//! is one JSON object with the same top-level keys, and the delivery, deployment,
//! instance and tenant a line is about are among them, so that a log collector can find
//! everything about one webhook or one deployment.

mod common;

use std::path::Path;

use common::serve::{Served, free_port};
use serde_json::Value;
use sha2::{Digest, Sha256};

const TOKEN: &str = "json-logs-test-token-77ad2c";
const SECRET: &str = "json-logs-test-webhook-secret";
const DELIVERY: &str = "d-json-logs-1";

/// The keys every line has.
const KEYS: [&str; 9] = [
    "timestamp",
    "level",
    "target",
    "message",
    "delivery",
    "deployment",
    "instance",
    "tenant",
    "fields",
];

fn write_config(dir: &Path, port: u16) -> std::path::PathBuf {
    let hash = hex::encode(Sha256::digest(TOKEN.as_bytes()));
    let path = dir.join("deploybot.toml");
    std::fs::write(
        &path,
        format!(
            r#"database_url = "sqlite://{db}"
listen = "127.0.0.1:{port}"
webhook_secrets = ["{SECRET}"]

[[api.tokens]]
name = "json-logs-test"
tenant = "acme"
sha256 = "{hash}"

[[instances]]
name = "web"
repo = "acme/web"
environment = "production"
image = "ghcr.io/acme/web:{{short_sha}}"
strategy = "recreate"
on_push = ["main"]

[instances.provider]
kind = "noop"
"#,
            db = dir.join("deploybot.db").display()
        ),
    )
    .unwrap();
    path
}

/// A push webhook deploys; every line of the server's log parses as a JSON object with
/// the same keys; a line names the delivery, and a line names the deployment with its
/// instance and tenant.
#[test]
fn every_json_line_names_its_delivery_deployment_instance_and_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port);
    let server = Served::start(
        dir.path(),
        &config,
        port,
        TOKEN,
        &[("DEPLOYBOT_LOG_FORMAT", "json"), ("DEPLOYBOT_LOG", "info")],
    );
    let id = server.push("acme/web", Some(DELIVERY));
    server.settle("web");
    let deployments = server.list("web", "deployments");
    assert_eq!(deployments[0]["state"], "succeeded", "{deployments:?}");
    server.stop();
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();

    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(lines.len() > 3, "{log}");
    for line in &lines {
        let object = line
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {line}"));
        for key in KEYS {
            assert!(object.contains_key(key), "no {key:?} in {line}");
        }
        assert!(line["message"].is_string(), "{line}");
        assert!(line["fields"].is_object(), "{line}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l["delivery"] == DELIVERY && l["tenant"] == "acme"),
        "no line names the delivery {DELIVERY} and its tenant:\n{log}"
    );
    assert!(
        lines.iter().any(|l| l["deployment"] == id.as_str()
            && l["instance"] == "web"
            && l["tenant"] == "acme"),
        "no line names the deployment {id} with its instance and tenant:\n{log}"
    );
}
