//! What deployment gates read of a commit and a pull request on GitHub: the checks of a
//! commit (check runs and commit statuses, one state each) and who approved a pull request
//! at its head. The rules live here; `client` fetches the answers they read.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// A check's state, as a gate reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckState {
    /// Not finished yet (queued, in progress, or a pending status).
    Pending,
    /// Passed: a check run that concluded success, neutral or skipped; a success status.
    Success,
    /// Anything else that finished: failure, cancelled, timed out, action required, error.
    Failure,
}

/// Where a check comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CheckKind {
    /// A check run (GitHub Actions and other Checks API apps).
    CheckRun,
    /// A commit status (`POST /repos/{owner}/{repo}/statuses/{sha}`), named by its context.
    Status,
}

/// One check of a commit: the newest run of a check run's name, or the newest status of a
/// context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitCheck {
    /// The check run's name, or the status's context.
    pub name: String,
    pub state: CheckState,
    /// Where people see it: the check run's page (`html_url`, else `details_url`), or the
    /// status's `target_url`; empty when GitHub names none.
    pub url: String,
    pub kind: CheckKind,
}

/// A check run's state from its `status` and `conclusion`: not completed is pending;
/// success, neutral and skipped pass; every other conclusion fails.
pub fn check_run_state(status: &str, conclusion: Option<&str>) -> CheckState {
    if status != "completed" {
        return CheckState::Pending;
    }
    match conclusion {
        Some("success" | "neutral" | "skipped") => CheckState::Success,
        _ => CheckState::Failure,
    }
}

/// A commit status's state: pending, success, or (failure, error and anything unknown)
/// failure.
pub fn status_state(state: &str) -> CheckState {
    match state {
        "pending" => CheckState::Pending,
        "success" => CheckState::Success,
        _ => CheckState::Failure,
    }
}

/// The checks of a commit from GitHub's check runs and commit statuses (as listed by
/// `GET …/commits/{ref}/check-runs` and `…/status`): per kind and name the newest wins (the
/// highest id: a re-run, or a status posted again). Sorted by name, check runs first.
pub fn commit_checks(check_runs: &[Value], statuses: &[Value]) -> Vec<CommitCheck> {
    let mut newest: BTreeMap<(String, CheckKind), (u64, CommitCheck)> = BTreeMap::new();
    let mut keep = |id: u64, check: CommitCheck| {
        let key = (check.name.clone(), check.kind);
        if newest.get(&key).is_none_or(|(seen, _)| id >= *seen) {
            newest.insert(key, (id, check));
        }
    };
    for run in check_runs {
        let Some(name) = run["name"].as_str() else {
            continue;
        };
        let url = [&run["html_url"], &run["details_url"]]
            .into_iter()
            .find_map(|u| u.as_str().filter(|u| !u.is_empty()))
            .unwrap_or_default();
        let state = check_run_state(
            run["status"].as_str().unwrap_or_default(),
            run["conclusion"].as_str(),
        );
        let check = CommitCheck {
            name: name.to_string(),
            state,
            url: url.to_string(),
            kind: CheckKind::CheckRun,
        };
        keep(run["id"].as_u64().unwrap_or(0), check);
    }
    for status in statuses {
        let Some(context) = status["context"].as_str() else {
            continue;
        };
        let check = CommitCheck {
            name: context.to_string(),
            state: status_state(status["state"].as_str().unwrap_or_default()),
            url: status["target_url"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            kind: CheckKind::Status,
        };
        keep(status["id"].as_u64().unwrap_or(0), check);
    }
    newest.into_values().map(|(_, check)| check).collect()
}

/// The reviewers (lower-cased logins, sorted) who approve a pull request at `head_sha`,
/// from its reviews as GitHub lists them (oldest first): a reviewer's latest review that is
/// not a comment or still pending decides; it must be APPROVED and written at `head_sha`
/// (an approval of an older head is stale). The author never counts.
pub fn approving_reviewers(reviews: &[Value], head_sha: &str, author: &str) -> Vec<String> {
    let mut latest: BTreeMap<String, (u64, &str, &str)> = BTreeMap::new();
    for review in reviews {
        let (Some(login), Some(state)) =
            (review["user"]["login"].as_str(), review["state"].as_str())
        else {
            continue;
        };
        if matches!(state, "COMMENTED" | "PENDING") {
            continue;
        }
        let id = review["id"].as_u64().unwrap_or(0);
        let commit = review["commit_id"].as_str().unwrap_or_default();
        let login = login.to_lowercase();
        if latest.get(&login).is_none_or(|(seen, _, _)| id >= *seen) {
            latest.insert(login, (id, state, commit));
        }
    }
    let approvers: BTreeSet<String> = latest
        .into_iter()
        .filter(|(login, (_, state, commit))| {
            *state == "APPROVED"
                && commit.eq_ignore_ascii_case(head_sha)
                && !login.eq_ignore_ascii_case(author)
        })
        .map(|(login, _)| login)
        .collect();
    approvers.into_iter().collect()
}

/// Whether a comparison `base...head` (`GET …/compare/{base}...{head}`) says `head`
/// contains `base`: it is ahead of it or the same commit, never behind.
pub fn contains_base(comparison: &Value) -> bool {
    match comparison["status"].as_str() {
        Some("ahead" | "identical") => true,
        Some("behind" | "diverged") => false,
        _ => comparison["behind_by"].as_u64() == Some(0),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn check_runs_pass_only_when_completed_with_a_passing_conclusion() {
        use CheckState::*;
        assert_eq!(check_run_state("queued", None), Pending);
        assert_eq!(check_run_state("in_progress", None), Pending);
        assert_eq!(check_run_state("waiting", None), Pending);
        for passing in ["success", "neutral", "skipped"] {
            assert_eq!(
                check_run_state("completed", Some(passing)),
                Success,
                "{passing}"
            );
        }
        for failing in [
            "failure",
            "cancelled",
            "timed_out",
            "action_required",
            "stale",
        ] {
            assert_eq!(
                check_run_state("completed", Some(failing)),
                Failure,
                "{failing}"
            );
        }
        assert_eq!(check_run_state("completed", None), Failure);
    }

    #[test]
    fn statuses_are_pending_success_or_failure() {
        use CheckState::*;
        assert_eq!(status_state("pending"), Pending);
        assert_eq!(status_state("success"), Success);
        assert_eq!(status_state("failure"), Failure);
        assert_eq!(status_state("error"), Failure);
    }

    fn run(id: u64, name: &str, status: &str, conclusion: Option<&str>) -> Value {
        json!({
            "id": id, "name": name, "status": status, "conclusion": conclusion,
            "html_url": format!("https://github.com/acme/web/runs/{id}"),
            "details_url": "https://ci.example.com/details",
        })
    }

    #[test]
    fn the_newest_run_of_a_check_and_the_newest_status_of_a_context_win() {
        let runs = [
            run(7, "build", "completed", Some("failure")),
            run(9, "build", "completed", Some("success")),
            run(8, "test", "in_progress", None),
            run(5, "test", "completed", Some("success")),
        ];
        let statuses = [
            json!({"id": 3, "context": "ci/lint", "state": "success", "target_url": "https://ci/3"}),
            json!({"id": 4, "context": "ci/lint", "state": "error", "target_url": "https://ci/4"}),
            json!({"id": 2, "context": "build", "state": "pending", "target_url": null}),
        ];
        let checks = commit_checks(&runs, &statuses);
        let summary: Vec<(&str, CheckKind, CheckState, &str)> = checks
            .iter()
            .map(|c| (c.name.as_str(), c.kind, c.state, c.url.as_str()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "build",
                    CheckKind::CheckRun,
                    CheckState::Success,
                    "https://github.com/acme/web/runs/9"
                ),
                ("build", CheckKind::Status, CheckState::Pending, ""),
                (
                    "ci/lint",
                    CheckKind::Status,
                    CheckState::Failure,
                    "https://ci/4"
                ),
                (
                    "test",
                    CheckKind::CheckRun,
                    CheckState::Pending,
                    "https://github.com/acme/web/runs/8"
                ),
            ]
        );
    }

    #[test]
    fn a_check_run_without_a_page_links_its_details() {
        let mut without_page = run(1, "deploy-preview", "completed", Some("success"));
        without_page["html_url"] = Value::Null;
        let checks = commit_checks(&[without_page], &[]);
        assert_eq!(checks[0].url, "https://ci.example.com/details");
    }

    fn review(id: u64, user: &str, state: &str, commit: &str) -> Value {
        json!({"id": id, "user": {"login": user}, "state": state, "commit_id": commit})
    }

    #[test]
    fn approvals_count_at_the_head_by_others_than_the_author_with_their_latest_verdict() {
        let head = "a".repeat(40);
        let old = "b".repeat(40);
        let reviews = [
            review(1, "Alice", "APPROVED", &head),
            review(2, "alice", "COMMENTED", &head),
            review(3, "bob", "APPROVED", &head),
            review(4, "bob", "CHANGES_REQUESTED", &head),
            review(5, "carol", "APPROVED", &old),
            review(6, "Octocat", "APPROVED", &head),
            review(7, "dave", "APPROVED", &head.to_uppercase()),
            review(8, "erin", "APPROVED", &head),
            review(9, "erin", "DISMISSED", &head),
            review(10, "frank", "CHANGES_REQUESTED", &head),
            review(11, "frank", "APPROVED", &head),
            review(12, "frank", "PENDING", &head),
        ];
        assert_eq!(
            approving_reviewers(&reviews, &head, "octocat"),
            vec!["alice", "dave", "frank"]
        );
    }

    #[test]
    fn an_approval_of_an_older_head_is_stale() {
        let head = "a".repeat(40);
        let old = "b".repeat(40);
        let reviews = [
            review(1, "carol", "APPROVED", &old),
            review(2, "carol", "COMMENTED", &head),
        ];
        assert!(approving_reviewers(&reviews, &head, "octocat").is_empty());
        assert_eq!(
            approving_reviewers(&reviews, &old, "octocat"),
            vec!["carol"]
        );
    }

    #[test]
    fn a_head_contains_its_base_when_ahead_or_identical() {
        assert!(contains_base(&json!({"status": "ahead", "behind_by": 0})));
        assert!(contains_base(
            &json!({"status": "identical", "behind_by": 0})
        ));
        assert!(!contains_base(&json!({"status": "behind", "behind_by": 2})));
        assert!(!contains_base(
            &json!({"status": "diverged", "behind_by": 1})
        ));
        assert!(!contains_base(&json!({})));
    }
}
