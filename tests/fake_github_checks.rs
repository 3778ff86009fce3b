//! What deployment gates read of GitHub: a commit's check runs and combined status, a pull
//! request's reviews and base, and the comparison of two commits. The GitHub stand-in
//! answers them in the shapes of GitHub's OpenAPI description (src/sandbox/openapi), and
//! deploybot's client reads them, every page, into checks, approvers and "up to date".

#[path = "common/fake_github.rs"]
mod fake_github;

use deploybot::config::GithubConfig;
use deploybot::github::client::{CheckKind, CheckState, CommitCheck, GithubClient};
use fake_github::FakeGithub;
use serde_json::Value;

const TOKEN: &str = "ghp_checks";
const REPO: &str = "acme/web";
const HEAD: &str = "1111111111111111111111111111111111111111";
const OLD_HEAD: &str = "2222222222222222222222222222222222222222";
const MAIN: &str = "3333333333333333333333333333333333333333";

fn github() -> FakeGithub {
    let github = FakeGithub::start();
    github.add_repo(REPO);
    github.set_token(TOKEN);
    github.add_branch(REPO, "main", MAIN);
    github
}

fn client(github: &FakeGithub) -> GithubClient {
    let config = GithubConfig {
        api_url: github.url.clone(),
        token: Some(TOKEN.to_string()),
        ..GithubConfig::default()
    };
    GithubClient::from_config(&config).unwrap().unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

struct Answer {
    status: u16,
    link: Option<String>,
    body: Value,
}

/// A GET as deploybot sends it, answered raw.
fn get(github: &FakeGithub, path: &str) -> Answer {
    runtime().block_on(async {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", github.url))
            .header("User-Agent", "deploybot-tests")
            .header("Accept", "application/vnd.github+json")
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let link = response
            .headers()
            .get("link")
            .map(|v| v.to_str().unwrap().to_string());
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        Answer { status, link, body }
    })
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

const CHECK_RUNS_SHAPE: &str =
    include_str!("../src/sandbox/openapi/check-runs-for-ref.response.json");
const COMBINED_STATUS_SHAPE: &str =
    include_str!("../src/sandbox/openapi/combined-commit-status.response.json");
const REVIEWS_SHAPE: &str =
    include_str!("../src/sandbox/openapi/pull-request-reviews.response.json");
const COMPARE_SHAPE: &str = include_str!("../src/sandbox/openapi/commit-comparison.response.json");
const PULL_SHAPE: &str = include_str!("../src/sandbox/openapi/pull-request.response.json");

fn names_and_conclusions(body: &Value) -> Vec<(String, Value)> {
    let runs = body["check_runs"].as_array().unwrap();
    runs.iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["conclusion"].clone(),
            )
        })
        .collect()
}

// --- the stand-in's answers ---------------------------------------------------------------

#[test]
fn check_runs_list_the_newest_run_of_each_name_unless_all_are_asked_for() {
    let github = github();
    github.set_check_run(REPO, HEAD, "build", "completed", Some("failure"));
    github.set_check_run(REPO, HEAD, "test", "in_progress", None);
    github.rerun_check_run(REPO, HEAD, "build", "completed", Some("success"));
    github.set_check_run(REPO, OLD_HEAD, "build", "completed", Some("failure"));
    github.add_pull(REPO, 7, HEAD, false, "open");

    let latest = get(&github, &format!("/repos/{REPO}/commits/{HEAD}/check-runs"));
    assert_eq!(latest.status, 200, "{}", latest.body);
    assert_shape(CHECK_RUNS_SHAPE, &latest.body);
    assert_eq!(latest.body["total_count"], 2);
    assert_eq!(
        names_and_conclusions(&latest.body),
        vec![
            ("build".to_string(), "success".into()),
            ("test".to_string(), Value::Null)
        ]
    );
    let test = &latest.body["check_runs"][1];
    assert_eq!(test["status"], "in_progress");
    assert_eq!(test["head_sha"], HEAD);
    assert_eq!(test["app"]["slug"], "github-actions");
    assert_eq!(test["pull_requests"][0]["number"], 7);
    assert_eq!(test["pull_requests"][0]["base"]["ref"], "main");

    let all = get(
        &github,
        &format!("/repos/{REPO}/commits/{HEAD}/check-runs?filter=all"),
    );
    assert_eq!(all.body["total_count"], 3);
    let by_name = get(
        &github,
        &format!(
            "/repos/{REPO}/commits/{HEAD}/check-runs?filter=all&check_name=build&status=completed"
        ),
    );
    assert_eq!(
        names_and_conclusions(&by_name.body),
        vec![
            ("build".to_string(), "success".into()),
            ("build".to_string(), "failure".into())
        ]
    );
    // A branch names its head commit.
    github.add_branch(REPO, "feature/x", HEAD);
    let by_branch = get(
        &github,
        &format!("/repos/{REPO}/commits/feature/x/check-runs"),
    );
    assert_eq!(by_branch.body["total_count"], 2, "{}", by_branch.body);

    let bad_filter = get(
        &github,
        &format!("/repos/{REPO}/commits/{HEAD}/check-runs?filter=newest"),
    );
    assert_eq!(bad_filter.status, 422, "{}", bad_filter.body);
    assert_eq!(bad_filter.body["errors"][0]["field"], "filter");
    let no_commit = get(&github, &format!("/repos/{REPO}/commits/nope/check-runs"));
    assert_eq!(no_commit.status, 422, "{}", no_commit.body);
}

#[test]
fn check_runs_page_through_the_link_header_with_the_full_count_on_every_page() {
    let github = github();
    for n in 0..5 {
        github.set_check_run(REPO, HEAD, &format!("job-{n}"), "queued", None);
    }
    let first = get(
        &github,
        &format!("/repos/{REPO}/commits/{HEAD}/check-runs?per_page=2"),
    );
    assert_eq!(first.body["total_count"], 5);
    assert_eq!(first.body["check_runs"].as_array().unwrap().len(), 2);
    let link = first.link.expect("a Link header");
    assert!(link.contains("page=2>; rel=\"next\""), "{link}");
    assert!(link.contains("page=3>; rel=\"last\""), "{link}");
    let last = get(
        &github,
        &format!("/repos/{REPO}/commits/{HEAD}/check-runs?per_page=2&page=3"),
    );
    assert_eq!(last.body["total_count"], 5);
    assert_eq!(names_and_conclusions(&last.body)[0].0, "job-0");
    assert_eq!(last.link, None);
}

#[test]
fn the_combined_status_takes_the_newest_status_of_each_context() {
    let github = github();
    let status = |github: &FakeGithub| get(github, &format!("/repos/{REPO}/commits/{HEAD}/status"));
    let none = status(&github);
    assert_eq!(none.status, 200, "{}", none.body);
    assert_shape(COMBINED_STATUS_SHAPE, &none.body);
    assert_eq!(
        (
            none.body["state"].as_str(),
            none.body["total_count"].as_u64()
        ),
        (Some("pending"), Some(0))
    );

    github.set_commit_status(REPO, HEAD, "ci/test", "failure");
    github.set_commit_status(REPO, HEAD, "ci/lint", "success");
    github.set_commit_status(REPO, OLD_HEAD, "ci/test", "success");
    assert_eq!(status(&github).body["state"], "failure");
    github.set_commit_status(REPO, HEAD, "ci/test", "pending");
    assert_eq!(status(&github).body["state"], "pending");
    github.set_commit_status(REPO, HEAD, "ci/test", "success");
    let green = status(&github);
    assert_shape(COMBINED_STATUS_SHAPE, &green.body);
    assert_eq!(green.body["state"], "success");
    assert_eq!(green.body["sha"], HEAD);
    assert_eq!(green.body["total_count"], 2);
    let contexts: Vec<(&str, &str)> = green.body["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["context"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        contexts,
        vec![("ci/lint", "success"), ("ci/test", "success")]
    );
    assert_eq!(
        green.body["statuses"][1]["target_url"],
        format!("https://ci.example.com/{REPO}/ci/test/{HEAD}")
    );
}

#[test]
fn reviews_are_listed_oldest_first_and_a_pending_one_only_to_its_author() {
    let github = github();
    github.add_pull(REPO, 7, HEAD, false, "open");
    let approved = github.add_review(REPO, 7, "alice", "APPROVED", OLD_HEAD);
    github.add_review(REPO, 7, "bob", "CHANGES_REQUESTED", HEAD);
    github.add_review(REPO, 7, "carol", "PENDING", HEAD);
    github.add_review(REPO, 7, "deploybot", "PENDING", HEAD);
    github.dismiss_review(REPO, approved);

    let listed = get(&github, &format!("/repos/{REPO}/pulls/7/reviews"));
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_shape(REVIEWS_SHAPE, &listed.body);
    let summary: Vec<(&str, &str, &str)> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let login = r["user"]["login"].as_str().unwrap();
            (
                login,
                r["state"].as_str().unwrap(),
                r["commit_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("alice", "DISMISSED", OLD_HEAD),
            ("bob", "CHANGES_REQUESTED", HEAD),
            ("deploybot", "PENDING", HEAD)
        ]
    );
    assert!(listed.body[0]["submitted_at"].is_string());
    assert!(listed.body[2].get("submitted_at").is_none());

    let paged = get(
        &github,
        &format!("/repos/{REPO}/pulls/7/reviews?per_page=1"),
    );
    assert_eq!(paged.body.as_array().unwrap().len(), 1);
    assert!(paged.link.unwrap().contains("rel=\"next\""));
    assert_eq!(
        get(&github, &format!("/repos/{REPO}/pulls/8/reviews")).status,
        404
    );
}

#[test]
fn a_comparison_is_ahead_identical_behind_or_diverged() {
    let github = github();
    let compare = |base: &str, head: &str| {
        let answer = get(&github, &format!("/repos/{REPO}/compare/{base}...{head}"));
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_shape(COMPARE_SHAPE, &answer.body);
        let body = answer.body;
        (
            body["status"].as_str().unwrap().to_string(),
            body["ahead_by"].as_u64().unwrap(),
            body["behind_by"].as_u64().unwrap(),
            body["merge_base_commit"]["sha"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    };
    let diverged = compare("main", HEAD);
    assert_eq!(
        (diverged.0.as_str(), diverged.1, diverged.2),
        ("diverged", 1, 1)
    );
    assert_ne!(diverged.3, MAIN);

    github.mark_up_to_date(REPO, HEAD, MAIN);
    assert_eq!(compare("main", HEAD), ("ahead".into(), 1, 0, MAIN.into()));
    assert_eq!(compare(HEAD, "main"), ("behind".into(), 0, 1, MAIN.into()));
    assert_eq!(
        compare("main", MAIN),
        ("identical".into(), 0, 0, MAIN.into())
    );

    github.add_branch(REPO, "release/1.x", OLD_HEAD);
    assert_eq!(compare("release/1.x", HEAD).0, "diverged");
    github.mark_up_to_date(REPO, HEAD, OLD_HEAD);
    assert_eq!(compare("release/1.x", HEAD).0, "ahead");

    let unknown = get(&github, &format!("/repos/{REPO}/compare/gone...{HEAD}"));
    assert_eq!(unknown.status, 404);
}

#[test]
fn a_pull_request_names_its_base_branch_at_that_branchs_head() {
    let github = github();
    github.add_pull(REPO, 7, HEAD, false, "open");
    github.add_pull(REPO, 8, OLD_HEAD, true, "open");
    let pull = get(&github, &format!("/repos/{REPO}/pulls/7"));
    assert_shape(PULL_SHAPE, &pull.body);
    assert_eq!(pull.body["base"]["ref"], "main");
    assert_eq!(pull.body["base"]["sha"], MAIN);
    assert_shape(
        PULL_SHAPE,
        &get(&github, &format!("/repos/{REPO}/pulls/8")).body,
    );

    github.add_branch(REPO, "release/1.x", OLD_HEAD);
    github.set_pull_base(REPO, 7, "release/1.x");
    let pull = get(&github, &format!("/repos/{REPO}/pulls/7"));
    assert_eq!(pull.body["base"]["ref"], "release/1.x");
    assert_eq!(pull.body["base"]["sha"], OLD_HEAD);
    assert_eq!(pull.body["base"]["label"], "acme:release/1.x");
}

// --- deploybot's client -------------------------------------------------------------------

#[test]
fn commit_checks_read_every_page_of_check_runs_and_statuses() {
    let github = github();
    for n in 0..130 {
        github.set_check_run(
            REPO,
            HEAD,
            &format!("job-{n:03}"),
            "completed",
            Some("success"),
        );
    }
    github.set_check_run(REPO, HEAD, "build", "completed", Some("failure"));
    github.rerun_check_run(REPO, HEAD, "build", "in_progress", None);
    github.set_check_run(REPO, HEAD, "lint", "completed", Some("skipped"));
    github.set_check_run(REPO, HEAD, "e2e", "completed", Some("timed_out"));
    for n in 0..105 {
        github.set_commit_status(REPO, HEAD, &format!("status-{n:03}"), "success");
    }
    github.set_commit_status(REPO, HEAD, "ci/legacy", "success");
    github.set_commit_status(REPO, HEAD, "ci/legacy", "error");
    github.set_commit_status(REPO, HEAD, "ci/slow", "pending");
    github.set_commit_status(REPO, OLD_HEAD, "ci/other-commit", "success");

    let checks = runtime()
        .block_on(client(&github).commit_checks(REPO, None, HEAD))
        .unwrap();
    let of = |kind: CheckKind| checks.iter().filter(|c| c.kind == kind).count();
    assert_eq!((of(CheckKind::CheckRun), of(CheckKind::Status)), (133, 107));
    let find = |name: &str| checks.iter().find(|c| c.name == name).unwrap().clone();
    let build = find("build");
    assert_eq!(
        build.state,
        CheckState::Pending,
        "the re-run is what counts"
    );
    assert!(
        build.url.starts_with("https://github.com/acme/web/runs/"),
        "{}",
        build.url
    );
    assert_eq!(find("lint").state, CheckState::Success);
    assert_eq!(find("e2e").state, CheckState::Failure);
    assert_eq!(find("job-129").state, CheckState::Success);
    assert_eq!(
        find("ci/legacy"),
        CommitCheck {
            name: "ci/legacy".into(),
            state: CheckState::Failure,
            url: format!("https://ci.example.com/{REPO}/ci/legacy/{HEAD}"),
            kind: CheckKind::Status,
        }
    );
    assert_eq!(find("ci/slow").state, CheckState::Pending);
    assert_eq!(find("status-104").state, CheckState::Success);
    assert!(!checks.iter().any(|c| c.name == "ci/other-commit"));
}

#[test]
fn approving_reviewers_are_others_whose_latest_verdict_approves_the_head() {
    let github = github();
    github.add_pull(REPO, 7, HEAD, false, "open");
    github.add_review(REPO, 7, "octocat", "APPROVED", HEAD);
    github.add_review(REPO, 7, "Alice", "APPROVED", HEAD);
    github.add_review(REPO, 7, "bob", "APPROVED", OLD_HEAD);
    github.add_review(REPO, 7, "dave", "APPROVED", HEAD);
    github.add_review(REPO, 7, "dave", "CHANGES_REQUESTED", HEAD);
    let carol = github.add_review(REPO, 7, "carol", "APPROVED", HEAD);
    github.dismiss_review(REPO, carol);
    // Enough chatter to push the last verdicts onto the second page.
    for n in 0..110 {
        github.add_review(REPO, 7, &format!("watcher-{n}"), "COMMENTED", HEAD);
    }
    github.add_review(REPO, 7, "alice", "COMMENTED", HEAD);
    github.add_review(REPO, 7, "erin", "APPROVED", HEAD);

    let client = client(&github);
    let approvers = runtime()
        .block_on(client.approving_reviewers(REPO, None, 7, HEAD, "OctoCat"))
        .unwrap();
    assert_eq!(approvers, vec!["alice", "erin"]);
    // At the old head only bob's approval was written.
    let at_old = runtime()
        .block_on(client.approving_reviewers(REPO, None, 7, OLD_HEAD, "octocat"))
        .unwrap();
    assert_eq!(at_old, vec!["bob"]);
}

#[test]
fn contains_base_asks_github_whether_the_head_is_ahead_of_its_base_branch() {
    let github = github();
    github.add_branch(REPO, "release/1.x", OLD_HEAD);
    let client = client(&github);
    let contains = |base: &str, head: &str| {
        runtime()
            .block_on(client.contains_base(REPO, None, base, head))
            .unwrap()
    };
    assert!(!contains("main", HEAD));
    github.mark_up_to_date(REPO, HEAD, MAIN);
    assert!(contains("main", HEAD));
    assert!(contains("main", MAIN), "the base's own head is up to date");
    assert!(!contains("release/1.x", HEAD));
    github.mark_up_to_date(REPO, HEAD, OLD_HEAD);
    assert!(contains("release/1.x", HEAD));
    // The base branch moved on: the head no longer contains it.
    github.add_branch(REPO, "main", "4444444444444444444444444444444444444444");
    assert!(!contains("main", HEAD));
    let compared: Vec<String> = github
        .calls()
        .into_iter()
        .filter(|c| c.path.contains("/compare/"))
        .map(|c| c.path)
        .collect();
    assert!(
        compared.contains(&format!("/repos/{REPO}/compare/release/1.x...{HEAD}")),
        "{compared:?}"
    );
    let missing = runtime().block_on(client.contains_base(REPO, None, "gone", HEAD));
    assert!(missing.is_err(), "{missing:?}");
}

#[test]
fn a_pull_request_reads_its_base_and_author() {
    let github = github();
    github.add_pull(REPO, 7, HEAD, false, "open");
    github.add_branch(REPO, "release/1.x", OLD_HEAD);
    github.set_pull_base(REPO, 7, "release/1.x");
    let pull = runtime()
        .block_on(client(&github).pull(REPO, None, 7))
        .unwrap();
    assert_eq!(pull.base_ref, "release/1.x");
    assert_eq!(pull.base_sha, OLD_HEAD);
    assert_eq!(pull.author, "octocat");
    assert_eq!(pull.head_sha, HEAD);
}
