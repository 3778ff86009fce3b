//! The fake GitHub answers like GitHub: happy paths, GitHub's error shapes, validation
//! driven by GitHub's own OpenAPI excerpts, fault injection and the App JWT flow. The
//! client side is a few lines of HTTP/1.1 over a TcpStream, so every header is explicit.

#[path = "common/fake_github.rs"]
mod fake_github;

use std::io::{Read, Write};
use std::net::TcpStream;

use fake_github::{CallAuth, FakeGithub, TEST_APP_PRIVATE_KEY, TEST_APP_PUBLIC_KEY};
use serde_json::{Value, json};

const TOKEN: &str = "ghp_test_token";
const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
const OTHER_SHA: &str = "89abcdef0123456789abcdef0123456789abcdef";

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        let found = self
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name));
        found.map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request with exactly these headers (plus Host, Connection, Content-Length).
fn send(url: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
    let address = url.strip_prefix("http://").expect("http URL");
    let mut stream = TcpStream::connect(address).expect("connect to the fake");
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).expect("send");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read the answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok());
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Response {
        status: status.expect("a status line"),
        headers,
        body: body.to_string(),
    }
}

/// A client that sends what deploybot should send: User-Agent, Accept, API version, token.
struct Client<'a> {
    url: &'a str,
    auth: String,
}

impl<'a> Client<'a> {
    fn new(github: &'a FakeGithub, token: &str) -> Client<'a> {
        Client {
            url: &github.url,
            auth: format!("Bearer {token}"),
        }
    }

    fn headers(&self) -> Vec<(&str, &str)> {
        vec![
            ("User-Agent", "deploybot-tests"),
            ("Accept", "application/vnd.github+json"),
            ("X-GitHub-Api-Version", "2022-11-28"),
            ("Authorization", self.auth.as_str()),
        ]
    }

    fn get(&self, path: &str) -> Response {
        send(self.url, "GET", path, &self.headers(), "")
    }

    fn post(&self, path: &str, body: Value) -> Response {
        self.post_raw(path, &body.to_string())
    }

    fn post_raw(&self, path: &str, body: &str) -> Response {
        let mut headers = self.headers();
        headers.push(("Content-Type", "application/json"));
        send(self.url, "POST", path, &headers, body)
    }
}

fn github() -> FakeGithub {
    let github = FakeGithub::start();
    github.add_repo("acme/web");
    github.set_token(TOKEN);
    github
}

/// Checks an answer against one of GitHub's response schemas in src/sandbox/openapi.
fn assert_shape(fixture: &str, value: &Value) {
    let document: Value = serde_json::from_str(fixture).expect("fixture is JSON");
    let errors = fake_github::validate(&document["schema"], value);
    assert!(
        errors.is_empty(),
        "{} breaks GitHub's schema: {errors:#?}\n{value:#}",
        document["operation"]
    );
}

fn deploy(client: &Client, environment: &str) -> u64 {
    let response = client.post(
        "/repos/acme/web/deployments",
        json!({"ref": SHA, "environment": environment, "auto_merge": false, "required_contexts": []}),
    );
    assert_eq!(response.status, 201, "{}", response.body);
    response.json()["id"].as_u64().expect("deployment id")
}

fn set_status(client: &Client, deployment: u64, body: Value) -> Response {
    client.post(
        &format!("/repos/acme/web/deployments/{deployment}/statuses"),
        body,
    )
}

// --- collaborators, pulls, tags -----------------------------------------------------------

#[test]
fn permission_reports_legacy_permission_and_role_name() {
    let github = github();
    for (user, role) in [
        ("alice", "admin"),
        ("mona", "maintain"),
        ("bob", "write"),
        ("tri", "triage"),
        ("rita", "read"),
        ("nora", "none"),
    ] {
        github.set_permission("acme/web", user, role);
    }
    let client = Client::new(&github, TOKEN);
    let expected = [
        ("alice", "admin", "admin"),
        ("MONA", "write", "maintain"),
        ("bob", "write", "write"),
        ("tri", "read", "triage"),
        ("rita", "read", "read"),
        ("nora", "none", "none"),
    ];
    for (user, permission, role) in expected {
        let response = client.get(&format!("/repos/acme/web/collaborators/{user}/permission"));
        assert_eq!(response.status, 200, "{}", response.body);
        let body = response.json();
        assert_eq!(body["permission"], permission, "{user}");
        assert_eq!(body["role_name"], role, "{user}");
        assert_shape(
            include_str!("../src/sandbox/openapi/repository-collaborator-permission.response.json"),
            &body,
        );
    }
    let mona = client
        .get("/repos/acme/web/collaborators/mona/permission")
        .json();
    assert_eq!(mona["user"]["login"], "mona");
    assert_eq!(mona["user"]["permissions"]["maintain"], true);
    assert_eq!(mona["user"]["permissions"]["admin"], false);

    let stranger = client.get("/repos/acme/web/collaborators/stranger/permission");
    assert_eq!(stranger.status, 404);
    let unknown_repo = client.get("/repos/acme/nope/collaborators/alice/permission");
    assert_eq!(unknown_repo.status, 404);
    assert_eq!(unknown_repo.json()["message"], "Not Found");
    assert!(
        unknown_repo.json()["documentation_url"]
            .as_str()
            .unwrap()
            .starts_with("https://docs.github.com/")
    );
}

#[test]
fn pull_requests_carry_head_sha_fork_flag_and_state() {
    let github = github();
    github.add_pull("acme/web", 7, SHA, false, "open");
    github.add_pull("acme/web", 8, OTHER_SHA, true, "closed");
    let client = Client::new(&github, TOKEN);

    let own = client.get("/repos/acme/web/pulls/7").json();
    assert_eq!(own["number"], 7);
    assert_eq!(own["state"], "open");
    assert_eq!(own["head"]["sha"], SHA);
    assert_eq!(own["head"]["repo"]["full_name"], "acme/web");
    assert_eq!(own["head"]["repo"]["fork"], false);
    assert_eq!(own["base"]["repo"]["full_name"], "acme/web");
    assert_eq!(own["html_url"], "https://github.com/acme/web/pull/7");
    assert!(own["user"]["login"].is_string());

    let fork = client.get("/repos/acme/web/pulls/8").json();
    assert_eq!(fork["state"], "closed");
    assert_eq!(fork["head"]["sha"], OTHER_SHA);
    assert_eq!(fork["head"]["repo"]["fork"], true);
    assert_ne!(fork["head"]["repo"]["full_name"], "acme/web");
    assert_eq!(fork["base"]["repo"]["full_name"], "acme/web");

    assert_eq!(client.get("/repos/acme/web/pulls/9").status, 404);
    assert_eq!(client.get("/repos/acme/other/pulls/7").status, 404);
}

#[test]
fn annotated_tags_dereference_to_their_commit() {
    let github = github();
    github.add_tag("acme/web", "v1.0.0", SHA, false);
    github.add_tag("acme/web", "v2.0.0", OTHER_SHA, true);
    let client = Client::new(&github, TOKEN);

    let light = client.get("/repos/acme/web/git/ref/tags/v1.0.0").json();
    assert_eq!(light["ref"], "refs/tags/v1.0.0");
    assert_eq!(
        light["object"],
        json!({"sha": SHA, "type": "commit", "url": light["object"]["url"]})
    );
    assert_shape(
        include_str!("../src/sandbox/openapi/git-ref.response.json"),
        &light,
    );

    let annotated = client.get("/repos/acme/web/git/ref/tags/v2.0.0").json();
    assert_eq!(annotated["object"]["type"], "tag");
    let tag_sha = annotated["object"]["sha"].as_str().unwrap().to_string();
    assert_ne!(
        tag_sha, OTHER_SHA,
        "an annotated tag's ref points at the tag object"
    );
    assert_eq!(tag_sha.len(), 40);

    let tag = client
        .get(&format!("/repos/acme/web/git/tags/{tag_sha}"))
        .json();
    assert_eq!(tag["sha"], tag_sha);
    assert_eq!(tag["tag"], "v2.0.0");
    assert_eq!(tag["object"]["type"], "commit");
    assert_eq!(tag["object"]["sha"], OTHER_SHA);
    assert_shape(
        include_str!("../src/sandbox/openapi/git-tag.response.json"),
        &tag,
    );

    assert_eq!(
        client.get("/repos/acme/web/git/ref/tags/v3.0.0").status,
        404
    );
    assert_eq!(
        client
            .get(&format!("/repos/acme/web/git/tags/{SHA}"))
            .status,
        404
    );
}

// --- deployments ------------------------------------------------------------------------------

#[test]
fn create_deployment_stores_every_field_and_counts_ids_up() {
    let github = github();
    let client = Client::new(&github, TOKEN);
    let body = json!({
        "ref": SHA,
        "environment": "staging",
        "auto_merge": false,
        "required_contexts": [],
        "description": "v3 from push to main",
        "payload": {"deploybot": {"deployment": "dep_01", "version": 3}},
        "production_environment": false,
        "transient_environment": true,
    });
    let created = client.post("/repos/acme/web/deployments", body.clone());
    assert_eq!(created.status, 201, "{}", created.body);
    let first = created.json();
    assert_shape(
        include_str!("../src/sandbox/openapi/deployment.response.json"),
        &first,
    );
    assert_eq!(first["ref"], SHA);
    assert_eq!(first["sha"], SHA);
    assert_eq!(first["environment"], "staging");
    assert_eq!(first["description"], "v3 from push to main");
    assert_eq!(first["payload"]["deploybot"]["version"], 3);
    assert_eq!(first["production_environment"], false);
    assert_eq!(first["transient_environment"], true);
    assert_eq!(first["task"], "deploy");
    assert_eq!(first["creator"]["login"], fake_github::TOKEN_LOGIN);

    let second = client
        .post("/repos/acme/web/deployments", json!({"ref": SHA}))
        .json();
    assert_eq!(second["id"].as_u64(), first["id"].as_u64().map(|id| id + 1));
    assert_eq!(
        second["environment"], "production",
        "GitHub's default environment"
    );
    assert_eq!(second["production_environment"], true);
    assert_eq!(second["payload"], json!({}));

    let fetched = client.get(&format!("/repos/acme/web/deployments/{}", first["id"]));
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.json()["environment"], "staging");
    let listed = client
        .get("/repos/acme/web/deployments?environment=staging")
        .json();
    assert_eq!(listed.as_array().map(Vec::len), Some(1));

    let stored = github.deployments("acme/web");
    assert_eq!(stored.len(), 2);
    assert!(!stored[0].auto_merge);
    assert_eq!(stored[0].required_contexts, Some(vec![]));
    assert!(stored[1].auto_merge, "auto_merge defaults to true");
    assert_eq!(stored[1].required_contexts, None);
}

#[test]
fn create_deployment_refuses_what_github_refuses() {
    let github = github();
    github.add_tag("acme/web", "v1.0.0", OTHER_SHA, true);
    let client = Client::new(&github, TOKEN);
    let path = "/repos/acme/web/deployments";

    let missing_ref = client.post(path, json!({"environment": "production"}));
    assert_eq!(missing_ref.status, 422);
    let body = missing_ref.json();
    assert_eq!(body["message"], "Validation Failed");
    assert_eq!(body["errors"][0]["resource"], "Deployment");
    assert_eq!(body["errors"][0]["field"], "ref");
    assert_eq!(body["errors"][0]["code"], "missing_field");
    assert_eq!(
        body["documentation_url"],
        "https://docs.github.com/rest/deployments/deployments#create-a-deployment"
    );

    let wrong_types = client.post(
        path,
        json!({"ref": SHA, "auto_merge": "no", "required_contexts": "ci", "payload": 5}),
    );
    assert_eq!(wrong_types.status, 422);
    let mut fields: Vec<String> = wrong_types.json()["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["field"].as_str().unwrap(),
                e["code"].as_str().unwrap()
            )
        })
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "auto_merge:invalid",
            "payload:invalid",
            "required_contexts:invalid"
        ]
    );

    let unknown_ref = client.post(path, json!({"ref": "no-such-branch"}));
    assert_eq!(unknown_ref.status, 422);
    assert_eq!(
        unknown_ref.json()["message"],
        "No ref found for: no-such-branch"
    );

    // Required contexts: the newest status of each on the commit must be success.
    let contexts = || {
        client.post(
            path,
            json!({"ref": SHA, "required_contexts": ["ci/build", "ci/test"]}),
        )
    };
    let refused = contexts();
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(
        refused.json()["errors"][0]["contexts"],
        json!([{"context": "ci/build", "state": "missing"}, {"context": "ci/test", "state": "missing"}])
    );
    github.set_commit_status("acme/web", SHA, "ci/build", "success");
    github.set_commit_status("acme/web", SHA, "ci/test", "success");
    github.set_commit_status("acme/web", SHA, "ci/test", "failure");
    github.set_commit_status("acme/web", OTHER_SHA, "ci/build", "failure");
    let refused = contexts();
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(
        refused.json()["errors"][0]["contexts"],
        json!([{"context": "ci/test", "state": "failure"}]),
        "the newest status of a context counts, on this commit only"
    );

    let bad_json = client.post_raw(path, "{\"ref\": ");
    assert_eq!(bad_json.status, 400);
    assert_eq!(bad_json.json()["message"], "Problems parsing JSON");

    let unknown_repo = client.post("/repos/acme/nope/deployments", json!({"ref": SHA}));
    assert_eq!(unknown_repo.status, 404);
    assert!(
        github.deployments("acme/web").is_empty(),
        "nothing refused is stored"
    );

    github.set_commit_status("acme/web", SHA, "ci/test", "success");
    let accepted = contexts();
    assert_eq!(accepted.status, 201, "{}", accepted.body);

    let tag = client.post(path, json!({"ref": "v1.0.0"})).json();
    assert_eq!(tag["sha"], OTHER_SHA, "a tag ref resolves to its commit");
}

#[test]
fn deployment_statuses_follow_github_rules() {
    let github = github();
    let client = Client::new(&github, TOKEN);
    let id = deploy(&client, "production");

    let queued = set_status(
        &client,
        id,
        json!({"state": "queued", "log_url": "http://bot/deployments/dep_1"}),
    );
    assert_eq!(queued.status, 201, "{}", queued.body);
    let queued = queued.json();
    assert_shape(
        include_str!("../src/sandbox/openapi/deployment-status.response.json"),
        &queued,
    );
    assert_eq!(queued["state"], "queued");
    assert_eq!(queued["environment"], "production");
    assert_eq!(queued["log_url"], "http://bot/deployments/dep_1");
    assert_eq!(
        queued["target_url"], "http://bot/deployments/dep_1",
        "log_url also sets target_url"
    );

    let progress = set_status(
        &client,
        id,
        json!({"state": "in_progress", "description": "canary 50% — healthy"}),
    );
    assert_eq!(progress.status, 201);
    let success = set_status(
        &client,
        id,
        json!({"state": "success", "environment_url": "https://web.acme.dev", "auto_inactive": true}),
    );
    assert_eq!(success.status, 201);
    assert_eq!(success.json()["environment_url"], "https://web.acme.dev");

    let done = set_status(&client, id, json!({"state": "done"}));
    assert_eq!(done.status, 422);
    let error = &done.json()["errors"][0];
    assert_eq!(error["field"], "state");
    assert_eq!(error["code"], "invalid");
    assert_eq!(error["resource"], "DeploymentStatus");
    assert!(
        error["message"].as_str().unwrap().contains("in_progress"),
        "{error}"
    );

    let missing = set_status(&client, id, json!({"description": "no state"}));
    assert_eq!(
        (missing.status, missing.json()["errors"][0]["field"].clone()),
        (422, json!("state"))
    );
    let long = set_status(
        &client,
        id,
        json!({"state": "failure", "description": "x".repeat(141)}),
    );
    assert_eq!(long.status, 422);
    assert_eq!(long.json()["errors"][0]["field"], "description");
    let wrong_type = set_status(
        &client,
        id,
        json!({"state": "failure", "auto_inactive": "yes"}),
    );
    assert_eq!(wrong_type.json()["errors"][0]["field"], "auto_inactive");
    assert_eq!(
        set_status(&client, 999, json!({"state": "success"})).status,
        404
    );

    let listed = client
        .get(&format!("/repos/acme/web/deployments/{id}/statuses"))
        .json();
    let states: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        ["success", "in_progress", "queued"],
        "GitHub lists the newest first"
    );
    assert_eq!(
        github.deployments("acme/web")[0].states(),
        ["queued", "in_progress", "success"]
    );
    assert_eq!(
        github.deployments("acme/web")[0].statuses[1].description,
        "canary 50% — healthy"
    );
}

#[test]
fn auto_inactive_marks_earlier_successful_deployments_of_the_environment() {
    let github = github();
    let client = Client::new(&github, TOKEN);
    let first = deploy(&client, "production");
    let staging = deploy(&client, "staging");
    let failed = deploy(&client, "production");
    let second = deploy(&client, "production");
    set_status(&client, first, json!({"state": "success"}));
    set_status(&client, staging, json!({"state": "success"}));
    set_status(&client, failed, json!({"state": "failure"}));
    set_status(
        &client,
        second,
        json!({"state": "success", "auto_inactive": true}),
    );

    let states = |id: u64| {
        let all = github.deployments("acme/web");
        all.into_iter().find(|d| d.id == id).unwrap().states()
    };
    assert_eq!(states(first), ["success", "inactive"]);
    assert_eq!(
        states(staging),
        ["success"],
        "another environment is left alone"
    );
    assert_eq!(
        states(failed),
        ["failure"],
        "only deployments that had succeeded"
    );
    assert_eq!(states(second), ["success"]);

    let third = deploy(&client, "production");
    set_status(
        &client,
        third,
        json!({"state": "success", "auto_inactive": false}),
    );
    assert_eq!(
        states(second),
        ["success"],
        "auto_inactive: false keeps it active"
    );
}

// --- comments and reactions ---------------------------------------------------------------------

#[test]
fn comments_are_created_listed_and_validated() {
    let github = github();
    github.add_pull("acme/web", 7, SHA, false, "open");
    let client = Client::new(&github, TOKEN);
    let path = "/repos/acme/web/issues/7/comments";

    let created = client.post(path, json!({"body": "Deployed v3 to production."}));
    assert_eq!(created.status, 201, "{}", created.body);
    let comment = created.json();
    assert_shape(
        include_str!("../src/sandbox/openapi/issue-comment.response.json"),
        &comment,
    );
    assert_eq!(comment["body"], "Deployed v3 to production.");
    assert_eq!(comment["user"]["login"], fake_github::TOKEN_LOGIN);
    assert!(
        comment["html_url"]
            .as_str()
            .unwrap()
            .starts_with("https://github.com/acme/web/pull/7#issuecomment-")
    );

    for bad in [json!({}), json!({"body": ""}), json!({"body": 3})] {
        let refused = client.post(path, bad.clone());
        assert_eq!(refused.status, 422, "{bad}");
        assert_eq!(refused.json()["errors"][0]["field"], "body", "{bad}");
    }
    assert_eq!(
        client
            .post("/repos/acme/web/issues/8/comments", json!({"body": "hi"}))
            .status,
        404
    );

    client.post(path, json!({"body": "second"}));
    client.post(path, json!({"body": "third"}));
    let page = client.get(&format!("{path}?per_page=2"));
    let bodies: Vec<String> = page
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(bodies, ["Deployed v3 to production.", "second"]);
    assert!(
        page.header("link")
            .unwrap()
            .contains("page=2>; rel=\"next\""),
        "{:?}",
        page.header("link")
    );

    let stored = github.comments("acme/web", 7);
    assert_eq!(
        stored.iter().map(|c| c.body.as_str()).collect::<Vec<_>>(),
        ["Deployed v3 to production.", "second", "third"]
    );
}

#[test]
fn comments_are_edited_in_place_by_their_author_only() {
    let github = github();
    github.add_pull("acme/web", 7, SHA, false, "open");
    let someone_else = github.add_comment("acme/web", 7, "octocat", "/deploy");
    let client = Client::new(&github, TOKEN);
    let created = client.post(
        "/repos/acme/web/issues/7/comments",
        json!({"body": "queued"}),
    );
    let id = created.json()["id"].as_u64().unwrap();
    let patch = |comment: u64, body: &str| {
        let mut headers = client.headers();
        headers.push(("Content-Type", "application/json"));
        let path = format!("/repos/acme/web/issues/comments/{comment}");
        send(client.url, "PATCH", &path, &headers, body)
    };

    let edited = patch(id, &json!({"body": "running"}).to_string());
    assert_eq!(edited.status, 200, "{}", edited.body);
    let answer = edited.json();
    assert_shape(
        include_str!("../src/sandbox/openapi/issue-comment.response.json"),
        &answer,
    );
    assert_eq!(answer["id"], id);
    assert_eq!(answer["body"], "running");
    assert_eq!(patch(id, &json!({"body": "done"}).to_string()).status, 200);

    // Checked against GitHub's own request schema for the operation.
    for bad in [json!({}), json!({"body": ""}), json!({"body": 3})] {
        let refused = patch(id, &bad.to_string());
        assert_eq!(refused.status, 422, "{bad}");
        assert_eq!(refused.json()["errors"][0]["field"], "body", "{bad}");
    }
    assert_eq!(
        patch(id + 100, &json!({"body": "x"}).to_string()).status,
        404
    );
    // Nobody edits another user's comment.
    let refused = patch(someone_else, &json!({"body": "hijacked"}).to_string());
    assert_eq!(refused.status, 403, "{}", refused.body);

    let comments = github.comments("acme/web", 7);
    let mine = comments.iter().find(|c| c.id == id).unwrap();
    assert_eq!(mine.body, "done");
    assert_eq!(mine.history, ["queued", "running"]);
    assert_eq!(mine.edits(), 2);
    let theirs = comments.iter().find(|c| c.id == someone_else).unwrap();
    assert_eq!((theirs.body.as_str(), theirs.edits()), ("/deploy", 0));
    assert_eq!(comments.len(), 2, "an edit never adds a comment");
    let listed = client.get("/repos/acme/web/issues/7/comments").json();
    assert_eq!(listed[1]["body"], "done");
}

#[test]
fn reactions_are_created_once_per_user_and_content() {
    let github = github();
    github.add_pull("acme/web", 7, SHA, false, "open");
    let command = github.add_comment("acme/web", 7, "alice", "/deploy production");
    let client = Client::new(&github, TOKEN);
    let path = format!("/repos/acme/web/issues/comments/{command}/reactions");

    let eyes = client.post(&path, json!({"content": "eyes"}));
    assert_eq!(eyes.status, 201, "{}", eyes.body);
    assert_shape(
        include_str!("../src/sandbox/openapi/reaction.response.json"),
        &eyes.json(),
    );
    let again = client.post(&path, json!({"content": "eyes"}));
    assert_eq!(again.status, 200, "the same reaction again answers 200");
    assert_eq!(again.json()["id"], eyes.json()["id"]);
    assert_eq!(client.post(&path, json!({"content": "rocket"})).status, 201);

    let party = client.post(&path, json!({"content": "party"}));
    assert_eq!(party.status, 422);
    assert_eq!(party.json()["errors"][0]["field"], "content");
    assert_eq!(client.post(&path, json!({})).status, 422);
    let unknown = client.post(
        "/repos/acme/web/issues/comments/424242/reactions",
        json!({"content": "eyes"}),
    );
    assert_eq!(unknown.status, 404);
    assert_eq!(github.reactions("acme/web", command), ["eyes", "rocket"]);

    let on_pull = client.post(
        "/repos/acme/web/issues/7/reactions",
        json!({"content": "confused"}),
    );
    assert_eq!(on_pull.status, 201);
    assert_eq!(github.issue_reactions("acme/web", 7), ["confused"]);
}

// --- protocol: auth, headers, faults, unknown routes --------------------------------------------

#[test]
fn credentials_and_user_agent_are_enforced() {
    let github = github();
    let path = "/repos/acme/web/pulls/1";

    let no_agent = send(
        &github.url,
        "GET",
        path,
        &[("Authorization", "token ghp_test_token")],
        "",
    );
    assert_eq!(no_agent.status, 403);
    assert!(no_agent.body.contains("User-Agent"), "{}", no_agent.body);

    let anonymous = send(&github.url, "GET", path, &[("User-Agent", "t")], "");
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.json()["message"], "Requires authentication");

    let wrong =
        Client::new(&github, "ghp_wrong").post("/repos/acme/web/deployments", json!({"ref": SHA}));
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json()["message"], "Bad credentials");
    assert!(github.deployments("acme/web").is_empty());

    let token_scheme = send(
        &github.url,
        "GET",
        "/repos/acme/web/pulls/1",
        &[
            ("User-Agent", "t"),
            ("Authorization", "token ghp_test_token"),
        ],
        "",
    );
    assert_eq!(
        token_scheme.status, 404,
        "`token` is accepted like `Bearer`; the pull does not exist"
    );

    let calls = github.calls();
    let seen: Vec<(u16, CallAuth)> = calls.iter().map(|c| (c.status, c.auth)).collect();
    assert_eq!(
        seen,
        [
            (403, CallAuth::None),
            (401, CallAuth::None),
            (401, CallAuth::Refused),
            (404, CallAuth::Token)
        ]
    );
}

#[test]
fn every_answer_carries_rate_limit_headers_and_calls_record_headers() {
    let github = github();
    github.add_pull("acme/web", 7, SHA, false, "open");
    let client = Client::new(&github, TOKEN);
    let first = client.get("/repos/acme/web/pulls/7");
    let second = client.get("/repos/acme/web/pulls/404");
    for response in [&first, &second] {
        assert_eq!(response.header("x-ratelimit-limit"), Some("5000"));
        assert!(
            response
                .header("x-ratelimit-reset")
                .unwrap()
                .parse::<u64>()
                .is_ok()
        );
        assert!(response.header("x-github-request-id").is_some());
    }
    let remaining = |r: &Response| {
        r.header("x-ratelimit-remaining")
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(remaining(&second), remaining(&first) - 1);
    assert_ne!(
        first.header("x-github-request-id"),
        second.header("x-github-request-id")
    );

    client.post(
        "/repos/acme/web/issues/7/comments?x=1",
        json!({"body": "hi"}),
    );
    let calls = github.calls();
    let call = calls.last().unwrap();
    assert_eq!(
        (
            call.method.as_str(),
            call.path.as_str(),
            call.query.as_str()
        ),
        ("POST", "/repos/acme/web/issues/7/comments", "x=1")
    );
    assert_eq!(call.body, Some(json!({"body": "hi"})));
    assert_eq!(call.status, 201);
    assert_eq!(call.accept.as_deref(), Some("application/vnd.github+json"));
    assert_eq!(call.api_version.as_deref(), Some("2022-11-28"));
    assert_eq!(call.user_agent.as_deref(), Some("deploybot-tests"));
}

#[test]
fn injected_faults_answer_then_recover_without_changing_state() {
    let github = github();
    let client = Client::new(&github, TOKEN);
    let path = "/repos/acme/web/deployments";
    github.fail_next("POST", path, 2, 500, &[]);
    github.fail_next("POST", path, 1, 429, &[("Retry-After", "7")]);
    github.fail_next(
        "POST",
        path,
        1,
        403,
        &[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1700000000"),
        ],
    );

    let body = json!({"ref": SHA});
    let answers: Vec<Response> = (0..5).map(|_| client.post(path, body.clone())).collect();
    let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 500, 429, 403, 201]);
    assert_eq!(answers[0].json()["message"], "Server Error");
    assert_eq!(answers[2].header("retry-after"), Some("7"));
    assert!(
        answers[2].json()["message"]
            .as_str()
            .unwrap()
            .contains("secondary rate limit")
    );
    assert_eq!(answers[3].header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(answers[3].header("x-ratelimit-reset"), Some("1700000000"));
    assert!(
        answers[3].json()["message"]
            .as_str()
            .unwrap()
            .starts_with("API rate limit exceeded")
    );

    assert_eq!(
        github.deployments("acme/web").len(),
        1,
        "failed attempts create nothing"
    );
    let recorded: Vec<u16> = github.calls().iter().map(|c| c.status).collect();
    assert_eq!(recorded, [500, 500, 429, 403, 201]);
    assert_eq!(
        client.get("/repos/acme/web/deployments").status,
        200,
        "GETs were never affected"
    );
}

#[test]
fn unknown_endpoints_answer_404_and_are_recorded() {
    let github = github();
    let client = Client::new(&github, TOKEN);
    let response = client.post("/repos/acme/web/merges", json!({"base": "main"}));
    assert_eq!(response.status, 404);
    assert_eq!(response.json()["message"], "Not Found");
    let calls = github.calls();
    assert_eq!(
        (calls[0].path.as_str(), calls[0].status),
        ("/repos/acme/web/merges", 404)
    );
}

#[test]
fn the_server_stops_when_dropped() {
    let github = github();
    let address = github.url.trim_start_matches("http://").to_string();
    drop(github);
    assert!(TcpStream::connect(address).is_err());
}

// --- GitHub App ---------------------------------------------------------------------------------

fn app_jwt(key_pem: &str, iss: Value, lifetime: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"iat": now - 30, "exp": now - 30 + lifetime, "iss": iss});
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.as_bytes()).expect("RSA key");
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .expect("sign")
}

#[test]
fn app_jwt_mints_installation_tokens_that_act_as_the_bot() {
    let github = FakeGithub::start();
    github.add_repo("acme/web");
    github.add_pull("acme/web", 7, SHA, false, "open");
    github.set_app(4242, TEST_APP_PUBLIC_KEY, 77, "ghs_installation");
    let jwt = app_jwt(TEST_APP_PRIVATE_KEY, json!(4242), 540);
    let app = Client::new(&github, &jwt);

    let installation = app.get("/repos/acme/web/installation");
    assert_eq!(installation.status, 200, "{}", installation.body);
    assert_eq!(installation.json()["id"], 77);
    assert_eq!(app.get("/repos/acme/nope/installation").status, 404);

    let minted = app.post("/app/installations/77/access_tokens", json!({}));
    assert_eq!(minted.status, 201, "{}", minted.body);
    assert_eq!(minted.json()["token"], "ghs_installation");
    let expires = minted.json()["expires_at"].as_str().unwrap().to_string();
    assert!(chrono::DateTime::parse_from_rfc3339(&expires).unwrap() > chrono::Utc::now());
    assert_eq!(
        app.post("/app/installations/78/access_tokens", json!({}))
            .status,
        404
    );
    let bad_body = app.post(
        "/app/installations/77/access_tokens",
        json!({"repositories": "web"}),
    );
    assert_eq!(bad_body.status, 422);

    let bot = Client::new(&github, "ghs_installation");
    let comment = bot.post(
        "/repos/acme/web/issues/7/comments",
        json!({"body": "on it"}),
    );
    assert_eq!(comment.status, 201);
    assert_eq!(comment.json()["user"]["login"], fake_github::APP_BOT_LOGIN);
    assert_eq!(comment.json()["user"]["type"], "Bot");
    assert_eq!(
        github.calls().last().unwrap().auth,
        CallAuth::InstallationToken
    );

    github.expire_installation_tokens();
    assert_eq!(bot.get("/repos/acme/web/pulls/7").status, 401);
    assert_eq!(
        app.post("/app/installations/77/access_tokens", json!({}))
            .status,
        201
    );
    assert_eq!(
        bot.get("/repos/acme/web/pulls/7").status,
        200,
        "a fresh token works again"
    );
}

#[test]
fn app_endpoints_refuse_anything_but_a_valid_app_jwt() {
    let github = FakeGithub::start();
    github.add_repo("acme/web");
    github.set_token(TOKEN);
    github.set_app(4242, TEST_APP_PUBLIC_KEY, 77, "ghs_installation");
    let path = "/app/installations/77/access_tokens";
    let refused = |credential: &str| {
        Client::new(&github, credential)
            .post(path, json!({}))
            .status
    };

    assert_eq!(
        refused(&app_jwt(TEST_APP_PRIVATE_KEY, json!("4242"), 540)),
        201,
        "iss may be a string"
    );
    assert_eq!(refused(TOKEN), 401, "a personal token is no JWT");
    assert_eq!(
        refused(&app_jwt(OTHER_PRIVATE_KEY, json!(4242), 540)),
        401,
        "signed by another key"
    );
    assert_eq!(
        refused(&app_jwt(TEST_APP_PRIVATE_KEY, json!(1), 540)),
        401,
        "another app id"
    );
    assert_eq!(
        refused(&app_jwt(TEST_APP_PRIVATE_KEY, json!(4242), 3600)),
        401,
        "exp more than 10 minutes after iat"
    );
    assert_eq!(
        refused(&app_jwt(TEST_APP_PRIVATE_KEY, json!(4242), -200)),
        401,
        "expired"
    );
    let jwt = app_jwt(TEST_APP_PRIVATE_KEY, json!(4242), 540);
    assert_eq!(
        Client::new(&github, &jwt)
            .get("/repos/acme/web/pulls/1")
            .status,
        401,
        "a JWT is not a repository token"
    );
}

// --- the schema excerpts --------------------------------------------------------------------------

#[test]
fn request_schemas_come_from_github_openapi_with_the_fields_deploybot_sends() {
    let deployment = fake_github::CREATE_DEPLOYMENT.document();
    assert_eq!(deployment["operationId"], "repos/create-deployment");
    assert!(
        deployment["source"]
            .as_str()
            .unwrap()
            .starts_with("@octokit/openapi@")
    );
    let properties = &deployment["schema"]["properties"];
    for field in [
        "ref",
        "environment",
        "description",
        "required_contexts",
        "payload",
        "auto_merge",
        "production_environment",
        "transient_environment",
    ] {
        assert!(
            properties.get(field).is_some(),
            "create-deployment lacks {field}"
        );
    }
    assert_eq!(deployment["schema"]["required"], json!(["ref"]));

    let status = fake_github::CREATE_DEPLOYMENT_STATUS.document();
    let properties = &status["schema"]["properties"];
    for field in [
        "state",
        "environment",
        "log_url",
        "environment_url",
        "auto_inactive",
        "description",
    ] {
        assert!(
            properties.get(field).is_some(),
            "create-deployment-status lacks {field}"
        );
    }
    let mut states: Vec<&str> = properties["state"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    states.sort();
    assert_eq!(
        states,
        [
            "error",
            "failure",
            "in_progress",
            "inactive",
            "pending",
            "queued",
            "success"
        ]
    );
}

/// Another RSA key, to sign JWTs the fake must refuse. Test-only.
const OTHER_PRIVATE_KEY: &str = "\
-----BEGIN RSA PRIVATE KEY-----\n\
MIIEpAIBAAKCAQEAwkDN8dGXQwT/sNMF2TK2WxtiGqrwWpOZcYMqhdXv0EobKSRw\n\
qtfgtnbb2K5MZIGIHcsICi32wHfBmoQD7miUjJTLK9x+1h0mOqfdowNi1/ztXMYJ\n\
pfUZ8//Mj0HwLwxivMhgwhKSlysjKd1r94klwNgh0w9MQaZDBpLTbNcMj38KYUYt\n\
N+bXhJXxirs3N5sVnvezkSPLFoaiZgxHYEH3vVwuuDFmGUNDxC2MZOuHVT6ijjOT\n\
VKWRv+QEfpdOXvaWHzHailTlZ0ahkgWFFNRffiZs0Kf8sC4xuVmbmPaqQ8NCpn9L\n\
Suk8xon+qF+qRGJrQAjwyii3mgsz6NhMi1VmbQIDAQABAoIBAAkoqQ0nxqwARlX9\n\
/R6ah4KQLfX37VE3+FojxxN8XMxDUjiEYVOMzimMPR1gSnXKrbJJ6l0ggavdeaFh\n\
bBYHlEl0kofE464QvcayN38CH9zzLfXb2ISco9afTvPKNhrhyJ4CDJ3Z5lN+UzAc\n\
IoUPUFphVmbvJ7dIsYxTy+gr04nIbIoKpTvP14koQ0EVgVSYKY1WBChecmiCO11h\n\
EcOBFkV8EKwfpX/9phvwBqnO9gceN6XIGP5inlUvCq561M1e7UOmy/ViixaXgco4\n\
wNoaq+YiuHvEcmgHHeZhMS0SwfLqKZzvaUy5tNXCsFxXA2vUZG8AjLoD6MTSNEUf\n\
+ccP58ECgYEA8bTJycFk8M5Tp2lu9+Q9foFE2isB/giSkT9lwJ2HX0MRBUNqgKPR\n\
E43aUKZiMyCkIbOXHdaIWwl6j5UikfRAqCu9wMla2Z2cnRUZaOgWy+Oa7slFpWen\n\
XvRYFma1v9g2cclfp011SB+C5Wexxyk/Cj/5Czdn5jrci/xhFwNZmZkCgYEAzb2e\n\
v2LdwDAP4kr9ge1WyN3Gm+TW15RyAZuYg2YzPaEJ3WLa+gj8Xs6WnyzrxAsoxciS\n\
SYsSDXh+WHOvyH7yr+7PGZK0vvn/fCSPuoJHb2pGrWCd+h95PgQ2FSn5aoe1iIeK\n\
KdxlaS5GYmera+agye+TpbvLBqpT2NwKmoUG//UCgYEAvdr6HcYRGa2XvApvJbxc\n\
KUA06wGZQQdOyVR5AoE6UjOF7RJ1V7JVifyEnZDz1aEwC2DbtI5M8OVTJfFJBEhN\n\
eUtSc1o2SHUrDaADI4oaTfDsQ+BJGpF+wHFBt+bZoGWe7mX1Ap8vHoXR9Ywr8nqN\n\
j+mMH6lXrVpS3opRYRg6ixECgYBzdrOc3TNuJIsFiOh0/mnyGOTZoLgiDKFe3Z/e\n\
PoELWVFb+ZrDMD/SRUaq1l8Kiui69zGCLJZZEQJ3SZWhg/1XV0LLK1Zcx5jmZu5y\n\
0aKdmJtJuitusDMu5tYjUoczji4HDWowzAvt15aQq3W8/JXIPrgyDw6GExkzX2pk\n\
BbxD8QKBgQDfstnU7TJM+wKJhqcEx3vr1uUtb192+pKTfNShzRf7mlmqp0wYNMrV\n\
MtqBUzbHFOCGjo6YRSteBj4AAy3/4YHdADcylLEjvgk2870FqKcRLBE8LihlEC1X\n\
FwEPfS1Jb1P7pXeQDFh1LTvV6pVBHQMQqvRa8xmUQF/ZA5nZ2ehN9g==\n\
-----END RSA PRIVATE KEY-----\n\
";
