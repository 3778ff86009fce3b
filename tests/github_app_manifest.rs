//! `config/github-app-manifest.json`, the GitHub App manifest that creates deploybot's App
//! in one step: it parses, it subscribes to exactly the events the webhook route acts on,
//! and it grants every permission the GitHub client's requests need. The events and the
//! requests are read from the code itself, so a new event or endpoint without a matching
//! manifest entry fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use deploybot::github::webhook::events::{self, Event};
use serde_json::Value;

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn manifest() -> Value {
    let text = read("config/github-app-manifest.json");
    serde_json::from_str(&text).expect("config/github-app-manifest.json is valid JSON")
}

fn manifest_events() -> BTreeSet<String> {
    manifest()["default_events"]
        .as_array()
        .expect("default_events is a list")
        .iter()
        .map(|e| e.as_str().expect("each event is a string").to_string())
        .collect()
}

fn manifest_permissions() -> BTreeMap<String, String> {
    manifest()["default_permissions"]
        .as_object()
        .expect("default_permissions is an object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("a level").to_string()))
        .collect()
}

/// The event names `events::parse` has an arm for (`"push" => from_json(…)`).
fn routed_events() -> BTreeSet<String> {
    let source = read("src/github/webhook/events.rs");
    let start = source.find("pub fn parse(").expect("events::parse");
    let body = &source[start..];
    let body = &body[..body.find("\n}\n").expect("the end of parse")];
    body.lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line.strip_prefix('"')?;
            let (name, after) = rest.split_once('"')?;
            after
                .trim_start()
                .starts_with("=>")
                .then(|| name.to_string())
        })
        .collect()
}

#[test]
fn the_manifest_has_what_the_one_step_form_needs() {
    let m = manifest();
    for key in ["name", "url", "redirect_url"] {
        assert!(
            m[key].as_str().is_some_and(|v| !v.is_empty()),
            "the manifest needs {key}"
        );
    }
    let hook = m["hook_attributes"]["url"].as_str().expect("a webhook URL");
    assert!(hook.ends_with("/webhooks/github"), "{hook}");
    assert_eq!(m["hook_attributes"]["active"], Value::Bool(true));
    assert_eq!(m["public"], Value::Bool(false), "the App is private");
}

#[test]
fn the_manifest_subscribes_to_exactly_the_events_deploybot_acts_on() {
    let routed = routed_events();
    assert!(
        routed.contains("push") && routed.contains("ping"),
        "{routed:?}"
    );
    // GitHub sends `ping` to every new webhook; it is not an event one subscribes to.
    let expected: BTreeSet<String> = routed.into_iter().filter(|e| e != "ping").collect();
    assert_eq!(manifest_events(), expected);
    for event in manifest_events() {
        assert!(
            !matches!(events::parse(&event, b"{}"), Ok(Event::Other(_))),
            "the webhook route ignores {event}"
        );
    }
    assert!(matches!(
        events::parse("workflow_run", b"{}"),
        Ok(Event::Other(_))
    ));
}

/// A request of the GitHub client: its method and its path as written in client.rs.
#[derive(Debug)]
struct Request {
    method: &'static str,
    path: String,
}

/// Every API path written in src/github/client.rs (outside its unit tests), with the
/// method of the function that sends it.
fn client_requests() -> Vec<Request> {
    let source = read("src/github/client.rs");
    let code = &source[..source.find("#[cfg(test)]").unwrap_or(source.len())];
    let mut requests = Vec::new();
    for (at, _) in code.match_indices("\"/") {
        let literal = &code[at + 1..];
        let path = &literal[..literal.find('"').expect("a closed string")];
        if !["/repos/", "/app/", "/orgs/"]
            .iter()
            .any(|prefix| path.starts_with(prefix))
        {
            continue;
        }
        let path = path.split('?').next().unwrap_or(path).to_string();
        // The function around it: from the `fn` before to the `fn` after.
        let from = code[..at].rfind("fn ").unwrap_or(0);
        let to = code[at..].find("fn ").map_or(code.len(), |n| at + n);
        let function = &code[from..to];
        let method = if function.contains("Method::POST") {
            "POST"
        } else if function.contains("Method::PATCH") {
            "PATCH"
        } else if function.contains("Method::GET")
            || function.contains(".get(")
            || function.contains(".all_pages(")
        {
            "GET"
        } else {
            panic!("cannot tell the method of {path}:\n{function}");
        };
        requests.push(Request { method, path });
    }
    requests
}

/// The App permission a request needs, by its path; `None` for the App's own endpoints,
/// called with the App's JWT rather than an installation token.
fn permission_for(path: &str) -> Option<&'static str> {
    let rules: [(&str, Option<&str>); 11] = [
        ("/app/", None),
        ("/repos/{}/installation", None),
        ("/repos/{}/deployments", Some("deployments")),
        // Comments and reactions on pull requests go through the Issues API.
        ("/repos/{}/issues/", Some("issues")),
        ("/repos/{}/pulls/", Some("pull_requests")),
        ("/repos/{}/git/", Some("contents")),
        // Whether a pull request's branch contains its base (`require_up_to_date`).
        ("/repos/{}/compare/", Some("contents")),
        // The checks `required_checks` waits for: check runs, and commit statuses.
        ("/repos/{}/commits/{}/check-runs", Some("checks")),
        ("/repos/{}/commits/{}/status", Some("statuses")),
        ("/repos/{}/collaborators/", Some("metadata")),
        // Whether a deployer listed as `@org/team` is an active member of that team.
        ("/orgs/{}/teams/", Some("members")),
    ];
    match rules.iter().find(|(prefix, _)| path.starts_with(prefix)) {
        Some((_, permission)) => *permission,
        None => panic!(
            "src/github/client.rs calls {path}: add the App permission it needs to this test, \
             to config/github-app-manifest.json and to docs/github-app.md"
        ),
    }
}

#[test]
fn the_manifest_grants_what_every_github_request_needs() {
    let requests = client_requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    for expected in [
        "/repos/{}/deployments",
        "/repos/{}/issues/{issue}/comments",
        "/repos/{}/pulls/{number}",
        "/repos/{}/collaborators/{}/permission",
    ] {
        assert!(paths.contains(&expected), "{expected} in {paths:?}");
    }
    let granted = manifest_permissions();
    let mut needed: BTreeMap<&str, &str> = BTreeMap::new();
    for request in &requests {
        let Some(permission) = permission_for(&request.path) else {
            continue;
        };
        let level = if request.method == "GET" {
            "read"
        } else {
            "write"
        };
        let entry = needed.entry(permission).or_insert(level);
        if level == "write" {
            *entry = "write";
        }
        let has = granted.get(permission).map(String::as_str);
        let enough = match level {
            "read" => matches!(has, Some("read" | "write")),
            _ => has == Some("write"),
        };
        assert!(
            enough,
            "{} {} needs {permission}: {level}; the manifest grants {has:?}",
            request.method, request.path
        );
    }
    // Nothing more than what is used: every granted permission at the level it is used.
    let needed: BTreeMap<String, String> = needed
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(granted, needed, "granted (left) against used (right)");
    assert_eq!(needed["deployments"], "write");
    assert_eq!(needed["issues"], "write");
    assert_eq!(needed["pull_requests"], "read");
    assert_eq!(needed["contents"], "read");
    assert_eq!(needed["metadata"], "read");
}

#[test]
fn the_app_guide_lists_the_manifest_permissions_and_events() {
    let guide = read("docs/github-app.md");
    for (permission, level) in manifest_permissions() {
        let row = format!("| `{permission}` | {level} |");
        assert!(
            guide.contains(&row),
            "docs/github-app.md lacks the row {row}"
        );
    }
    for event in manifest_events() {
        assert!(
            guide.contains(&format!("`{event}`")),
            "docs/github-app.md does not name the {event} event"
        );
    }
}
