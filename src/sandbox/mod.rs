//! The GitHub stand-in used by `deploybot sandbox` and by the tests: a stateful stand-in
//! for the GitHub REST API, served over real HTTP on 127.0.0.1.
//!
//! It holds repositories, collaborators, pull requests with their reviews, tags, commit
//! statuses and check runs, deployments with their statuses, comments and reactions,
//! answers the endpoints deploybot uses the way GitHub does (status codes, error bodies,
//! rate-limit headers), validates request bodies against
//! excerpts of GitHub's own OpenAPI description (`openapi/`, copied from the npm package
//! `@octokit/openapi`), and records every request, so that a test can assert what
//! deploybot sent, in order. It sends webhooks as GitHub does, signed with the App's
//! secret, and lists and redelivers them.
//!
//! `deploybot sandbox` seeds it from the configuration (`seed`), serves the pull-request
//! pages from its state (`source`, `page`), lets people comment through it (`mount`), and
//! `setup` builds the configuration the bot runs with.
//! Request handling never panics: it faces browsers and curl. The setup methods of
//! [`FakeGithub`] assert their arguments, as a test wants.

mod checks;
mod deployments;
mod hooks;
mod http;
mod issues;
mod json;
pub mod mount;
pub mod openapi;
pub mod page;
mod reply;
mod routes;
pub mod seed;
pub mod setup;
mod source;
mod state;
mod teams;
mod types;
pub mod view;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use serde_json::Value;

pub use openapi::{
    CREATE_COMMENT_REACTION, CREATE_DEPLOYMENT, CREATE_DEPLOYMENT_STATUS,
    CREATE_INSTALLATION_TOKEN, CREATE_ISSUE_COMMENT, CREATE_ISSUE_REACTION,
    LIST_HOOK_DELIVERIES_PARAMETERS, LIST_HOOK_DELIVERIES_RESPONSE, OpenApiExcerpt,
    REDELIVER_HOOK_DELIVERY_RESPONSE, SchemaError, UPDATE_ISSUE_COMMENT, validate,
};
pub use types::{
    Call, CallAuth, FakeComment, FakeDeployment, FakeDeploymentStatus, HOOK_TIMEOUT, HookAttempt,
};

use hooks::{deliver_hook, hook_status};
use state::{
    AppConfig, CheckRun, CommitStatus, Fault, Pull, ROLES, Repo, Review, State, Subject, Tag,
    fake_sha, lock, now,
};
use types::{HookSend, HookTarget};

/// The login GitHub shows for requests made with the token given to [`FakeGithub::set_token`].
pub const TOKEN_LOGIN: &str = "deploybot";
/// The login GitHub shows for requests made with an installation token of the App.
pub const APP_BOT_LOGIN: &str = "deploybot[bot]";
/// `x-ratelimit-limit` of every answer; `x-ratelimit-remaining` counts down from it.
pub const RATE_LIMIT: u64 = 5000;

pub struct FakeGithub {
    /// `http://127.0.0.1:PORT`: use as `DEPLOYBOT_GITHUB_API_URL`.
    pub url: String,
    state: Arc<Mutex<State>>,
    server: ServerHandle,
    thread: Option<JoinHandle<()>>,
    /// `pull_request` payloads still to send to the bot (`announce_pulls`).
    announcements: Arc<Mutex<Vec<String>>>,
}

impl FakeGithub {
    /// Starts the server on a free port of 127.0.0.1, in its own thread and runtime.
    /// Panics when it cannot (tests want that); see [`FakeGithub::try_start`].
    pub fn start() -> FakeGithub {
        FakeGithub::try_start().expect("the GitHub stand-in starts on 127.0.0.1")
    }

    /// Starts the server on a free port of 127.0.0.1, in its own thread and runtime.
    pub fn try_start() -> std::io::Result<FakeGithub> {
        let state = Arc::new(Mutex::new(State::new()));
        let shared = web::Data::from(state.clone());
        let (sender, receiver) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("github-stand-in".into())
            .spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    let server = HttpServer::new(move || {
                        App::new()
                            .app_data(shared.clone())
                            .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
                            .default_service(web::to(http::serve))
                    })
                    .workers(1)
                    .disable_signals()
                    .shutdown_timeout(0)
                    .bind(("127.0.0.1", 0));
                    let server = match server {
                        Ok(server) => server,
                        Err(e) => {
                            let _ = sender.send(Err(e));
                            return;
                        }
                    };
                    let port = server.addrs().first().map_or(0, |a| a.port());
                    let server = server.run();
                    let _ = sender.send(Ok((port, server.handle())));
                    let _ = server.await;
                })
            })?;
        let (port, server) = receiver
            .recv()
            .map_err(|_| std::io::Error::other("the GitHub stand-in's thread ended"))??;
        let url = format!("http://127.0.0.1:{port}");
        lock(&state).base_url = url.clone();
        Ok(FakeGithub {
            url,
            state,
            server,
            thread: Some(thread),
            announcements: Arc::default(),
        })
    }

    /// The state, for a change or a look; counts as a change for the pages.
    fn state(&self) -> MutexGuard<'_, State> {
        let mut state = lock(&self.state);
        state.version += 1;
        state
    }

    // --- state setup -------------------------------------------------------------------

    /// Adds a repository, e.g. `"acme/web"`. Owner and name match case-insensitively.
    pub fn add_repo(&self, full_name: &str) {
        assert!(
            full_name.split('/').count() == 2,
            "GitHub stand-in: a repository is owner/name, not {full_name:?}"
        );
        let mut state = self.state();
        let id = state.next_id("repo");
        state.repos.insert(
            full_name.to_lowercase(),
            Repo {
                id,
                full_name: full_name.to_string(),
                roles: HashMap::new(),
                custom_roles: HashMap::new(),
                pulls: BTreeMap::new(),
                issues: Vec::new(),
                branches: BTreeMap::new(),
                tags: BTreeMap::new(),
                deployments: Vec::new(),
                comments: Vec::new(),
                reactions: Vec::new(),
                commit_statuses: Vec::new(),
                check_runs: Vec::new(),
                reviews: Vec::new(),
                contains: Default::default(),
            },
        );
    }

    /// Records a commit status (as CI would): `state` is error, failure, pending or
    /// success. A Deployment with `required_contexts` is created only when the newest
    /// status of each of those contexts on its commit is success. Its `target_url` is
    /// `https://ci.example.com/{repo}/{context}/{sha}`.
    pub fn set_commit_status(&self, repo: &str, sha: &str, context: &str, state: &str) {
        assert!(
            ["error", "failure", "pending", "success"].contains(&state),
            "GitHub stand-in: commit status state {state:?} is not error, failure, pending or success"
        );
        let mut guard = self.state();
        let id = guard.next_id("status");
        let repo_state = guard.repo_mut(repo);
        let sha = sha.to_lowercase();
        repo_state.commit_statuses.push(CommitStatus {
            id,
            target_url: format!(
                "https://ci.example.com/{}/{context}/{sha}",
                repo_state.full_name
            ),
            sha,
            context: context.to_string(),
            state: state.to_string(),
            created_at: now(),
        });
    }

    /// Records check run `name` of CI on commit `sha`: `status` is queued, in_progress or
    /// completed, and `conclusion` is given exactly when it is completed (success,
    /// failure, neutral, cancelled, skipped, timed_out or action_required). Updates the
    /// newest run of that name on `sha`, or starts the first one.
    pub fn set_check_run(
        &self,
        repo: &str,
        sha: &str,
        name: &str,
        status: &str,
        conclusion: Option<&str>,
    ) {
        self.check_run(repo, sha, name, (status, conclusion), false);
    }

    /// Runs check `name` on `sha` again, as GitHub's "Re-run": a new run with a higher id.
    /// The older runs stay; GitHub lists them only when asked for `filter=all`.
    pub fn rerun_check_run(
        &self,
        repo: &str,
        sha: &str,
        name: &str,
        status: &str,
        conclusion: Option<&str>,
    ) {
        self.check_run(repo, sha, name, (status, conclusion), true);
    }

    fn check_run(
        &self,
        repo: &str,
        sha: &str,
        name: &str,
        (status, conclusion): (&str, Option<&str>),
        new_run: bool,
    ) {
        const CONCLUSIONS: [&str; 7] = [
            "success",
            "failure",
            "neutral",
            "cancelled",
            "skipped",
            "timed_out",
            "action_required",
        ];
        assert!(
            ["queued", "in_progress", "completed"].contains(&status),
            "GitHub stand-in: check run status {status:?} is not queued, in_progress or completed"
        );
        match conclusion {
            None => assert!(
                status != "completed",
                "GitHub stand-in: a completed check run has a conclusion"
            ),
            Some(c) => assert!(
                status == "completed" && CONCLUSIONS.contains(&c),
                "GitHub stand-in: conclusion {c:?} needs status completed and one of {CONCLUSIONS:?}"
            ),
        }
        let mut guard = self.state();
        let id = guard.next_id("check_run");
        let repo = guard.repo_mut(repo);
        let sha = sha.to_lowercase();
        let completed_at = conclusion.map(|_| now());
        let conclusion = conclusion.map(str::to_string);
        let existing = repo
            .check_runs
            .iter_mut()
            .rev()
            .find(|r| r.sha == sha && r.name == name)
            .filter(|_| !new_run);
        match existing {
            Some(run) => {
                run.status = status.to_string();
                run.conclusion = conclusion;
                run.completed_at = completed_at;
            }
            None => repo.check_runs.push(CheckRun {
                id,
                sha,
                name: name.to_string(),
                status: status.to_string(),
                conclusion,
                started_at: now(),
                completed_at,
            }),
        }
    }

    /// `user` reviews pull request #`pull` at commit `commit_id`; `state` is APPROVED,
    /// CHANGES_REQUESTED, COMMENTED, DISMISSED or PENDING (not submitted: GitHub lists it
    /// only to its author). Answers the review's id.
    pub fn add_review(
        &self,
        repo: &str,
        pull: u64,
        user: &str,
        state: &str,
        commit_id: &str,
    ) -> u64 {
        const STATES: [&str; 5] = [
            "APPROVED",
            "CHANGES_REQUESTED",
            "COMMENTED",
            "DISMISSED",
            "PENDING",
        ];
        assert!(
            STATES.contains(&state),
            "GitHub stand-in: review state {state:?} is not one of {STATES:?}"
        );
        let mut guard = self.state();
        let id = guard.next_id("review");
        let repo = guard.repo_mut(repo);
        assert!(
            repo.pulls.contains_key(&pull),
            "GitHub stand-in: add_pull #{pull} first"
        );
        repo.reviews.push(Review {
            id,
            pull,
            user: user.to_string(),
            state: state.to_string(),
            commit_id: commit_id.to_lowercase(),
            submitted_at: (state != "PENDING").then(now),
        });
        id
    }

    /// A maintainer dismisses review `review_id`: its state becomes DISMISSED.
    pub fn dismiss_review(&self, repo: &str, review_id: u64) {
        let mut guard = self.state();
        let review = guard
            .repo_mut(repo)
            .reviews
            .iter_mut()
            .find(|r| r.id == review_id);
        review
            .unwrap_or_else(|| panic!("GitHub stand-in: no review {review_id}"))
            .state = "DISMISSED".to_string();
    }

    /// Pull request #`pull` merges into branch `base_ref` (`main` unless set); its `base`
    /// names that branch and the branch's head (see [`FakeGithub::add_branch`]).
    pub fn set_pull_base(&self, repo: &str, pull: u64, base_ref: &str) {
        let mut guard = self.state();
        let found = guard.repo_mut(repo).pulls.get_mut(&pull);
        found
            .unwrap_or_else(|| panic!("GitHub stand-in: add_pull #{pull} first"))
            .base_ref = base_ref.to_string();
    }

    /// Commit `head_sha` contains commit `base_sha` (its branch was brought up to date
    /// with that base head, or started from it): comparing `base_sha...head_sha` answers
    /// `ahead`. Pairs never marked have `diverged`, unless they are the same commit.
    pub fn mark_up_to_date(&self, repo: &str, head_sha: &str, base_sha: &str) {
        self.state()
            .repo_mut(repo)
            .contains
            .insert((head_sha.to_lowercase(), base_sha.to_lowercase()));
    }

    /// Gives `user` a role on `repo`: admin, maintain, write, triage, read or none.
    /// Users never given a role do not exist (the permission endpoint answers 404).
    pub fn set_permission(&self, repo: &str, user: &str, permission: &str) {
        assert!(
            ROLES.contains(&permission),
            "GitHub stand-in: permission {permission:?} is not one of {ROLES:?}"
        );
        self.state().repo_mut(repo).roles.insert(
            user.to_lowercase(),
            (user.to_string(), permission.to_string()),
        );
    }

    /// Gives `user` an organization's custom repository role `name` that inherits `base`
    /// (one of the five built-in roles): GitHub then answers the permission request with
    /// `role_name` = `name`, and `permission` and `user.permissions` from `base`.
    pub fn set_custom_role(&self, repo: &str, user: &str, name: &str, base: &str) {
        self.set_permission(repo, user, base);
        self.state()
            .repo_mut(repo)
            .custom_roles
            .insert(user.to_lowercase(), (name.to_string(), base.to_string()));
    }

    /// Adds a pull request (also an issue, as on GitHub). Its head branch is
    /// `feature-{number}`; a fork's head lives in `contributor/{name}`.
    pub fn add_pull(&self, repo: &str, number: u64, head_sha: &str, from_fork: bool, state: &str) {
        assert!(
            state == "open" || state == "closed",
            "GitHub stand-in: a pull request is open or closed, not {state:?}"
        );
        let mut guard = self.state();
        let repo = guard.repo_mut(repo);
        let head_ref = format!("feature-{number}");
        if !from_fork {
            repo.branches.insert(head_ref.clone(), head_sha.to_string());
        }
        let author = if from_fork { "contributor" } else { "octocat" };
        repo.pulls.insert(
            number,
            Pull {
                head_sha: head_sha.to_string(),
                head_ref,
                from_fork,
                state: state.to_string(),
                author: author.to_string(),
                created_at: now(),
                title: format!("Pull request #{number}"),
                body: String::new(),
                base_ref: "main".to_string(),
            },
        );
    }

    /// Someone pushes `head_sha` to pull request #`number`'s branch: GitHub moves its head
    /// (and sends `pull_request` `synchronize`, which the test sends to the bot).
    pub fn push_to_pull(&self, repo: &str, number: u64, head_sha: &str) {
        let mut guard = self.state();
        let repo = guard.repo_mut(repo);
        let pull = repo
            .pulls
            .get_mut(&number)
            .unwrap_or_else(|| panic!("GitHub stand-in: add_pull #{number} first"));
        pull.head_sha = head_sha.to_string();
        let (head_ref, from_fork) = (pull.head_ref.clone(), pull.from_fork);
        if !from_fork {
            repo.branches.insert(head_ref, head_sha.to_string());
        }
    }

    /// Adds a plain issue (not a pull request), so comments can be posted on it.
    pub fn add_issue(&self, repo: &str, number: u64) {
        self.state().repo_mut(repo).issues.push(number);
    }

    /// Adds a branch pointing at `commit_sha`, so deployments can name it as `ref`.
    pub fn add_branch(&self, repo: &str, branch: &str, commit_sha: &str) {
        self.state()
            .repo_mut(repo)
            .branches
            .insert(branch.to_string(), commit_sha.to_string());
    }

    /// Adds a tag. `annotated`: the ref points at a tag object that points at the commit.
    pub fn add_tag(&self, repo: &str, tag: &str, commit_sha: &str, annotated: bool) {
        let object_sha = annotated.then(|| fake_sha(&[repo, tag, commit_sha]));
        self.state().repo_mut(repo).tags.insert(
            tag.to_string(),
            Tag {
                commit_sha: commit_sha.to_string(),
                object_sha,
            },
        );
    }

    /// Seeds a comment written by someone else (e.g. the `/deploy` a webhook reports) and
    /// returns its id, so reactions on it can be created.
    pub fn add_comment(&self, repo: &str, issue: u64, user: &str, body: &str) -> u64 {
        let mut state = self.state();
        let id = state.next_id("comment");
        let repo = state.repo_mut(repo);
        assert!(
            repo.has_issue(issue),
            "GitHub stand-in: add_pull or add_issue #{issue} first"
        );
        let html_url = format!(
            "https://github.com/{}/pull/{issue}#issuecomment-{id}",
            repo.full_name
        );
        repo.comments
            .push(FakeComment::new(id, issue, body, user, html_url));
        id
    }

    /// The only accepted `Authorization: Bearer|token <t>` (besides installation tokens).
    pub fn set_token(&self, token: &str) {
        self.state().token = Some(token.to_string());
    }

    /// Registers a GitHub App: JWTs (RS256, `iss` = app id) verify with `public_key_pem`,
    /// and `POST /app/installations/{installation_id}/access_tokens` mints `installation_token`.
    pub fn set_app(
        &self,
        app_id: u64,
        public_key_pem: &str,
        installation_id: u64,
        installation_token: &str,
    ) {
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(public_key_pem.as_bytes())
            .expect("GitHub stand-in: set_app needs an RSA public key in PEM");
        self.state().app = Some(AppConfig {
            app_id,
            key,
            installation_id,
            installation_token: installation_token.to_string(),
        });
    }

    /// Expires every minted installation token: requests with one answer 401 until a
    /// new one is minted.
    pub fn expire_installation_tokens(&self) {
        self.state().installation_tokens.clear();
    }

    // --- fault injection ---------------------------------------------------------------

    /// The next `times` requests whose method is `method` (or `*`) and whose path starts
    /// with `path_prefix` answer `status` with a GitHub-shaped JSON error body and these
    /// headers (e.g. `Retry-After`, `x-ratelimit-remaining`), changing no state.
    pub fn fail_next(
        &self,
        method: &str,
        path_prefix: &str,
        times: usize,
        status: u16,
        headers: &[(&str, &str)],
    ) {
        self.state().faults.push(Fault {
            method: method.to_string(),
            path_prefix: path_prefix.to_string(),
            remaining: times,
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            after_applying: false,
        });
    }

    /// Like `fail_next`, but each matching request is carried out first (its state change
    /// is kept) and only its answer is replaced by `status`.
    pub fn fail_after_applying_next(
        &self,
        method: &str,
        path_prefix: &str,
        times: usize,
        status: u16,
    ) {
        self.state().faults.push(Fault {
            method: method.to_string(),
            path_prefix: path_prefix.to_string(),
            remaining: times,
            status,
            headers: Vec::new(),
            after_applying: true,
        });
    }

    /// Ends every injected fault: GitHub is healthy again.
    pub fn clear_faults(&self) {
        let mut state = self.state();
        state.faults.clear();
        state.delay = std::time::Duration::ZERO;
    }

    /// Every request waits this long before it is handled: GitHub is slow.
    pub fn set_delay(&self, delay: std::time::Duration) {
        self.state().delay = delay;
    }

    /// Requests whose method is `method` and whose path starts with `path_prefix` wait
    /// this long before they are handled: GitHub is slow to answer those.
    pub fn delay_path(&self, method: &str, path_prefix: &str, delay: std::time::Duration) {
        self.state()
            .slow_paths
            .push((method.to_string(), path_prefix.to_string(), delay));
    }

    // --- the App's webhook sender --------------------------------------------------------

    /// Where the App's webhooks go (`http://HOST:PORT/PATH`), signed with `secret`.
    pub fn set_webhook_target(&self, url: &str, secret: &str) {
        self.state().hook_target = Some(HookTarget {
            url: url.to_string(),
            secret: secret.to_string(),
            owner_secrets: HashMap::new(),
        });
    }

    /// The webhooks of `owner`'s repositories are signed with `secret` instead of the
    /// target's (a tenant with its own webhook secret). Set the target first.
    pub fn set_owner_webhook_secret(&self, owner: &str, secret: &str) {
        let mut state = self.state();
        let target = state.hook_target.as_mut();
        let target = target.expect("GitHub stand-in: set_webhook_target first");
        target
            .owner_secrets
            .insert(owner.to_lowercase(), secret.to_string());
    }

    /// Delivers an App webhook as GitHub does (a new GUID, GitHub's headers, signed),
    /// waits for the answer (at most [`HOOK_TIMEOUT`]) and records the attempt.
    pub fn send_webhook(&self, event: &str, payload: &Value) -> HookAttempt {
        deliver_hook(
            &self.state,
            HookSend {
                guid: uuid::Uuid::now_v7().to_string(),
                event: event.to_string(),
                body: payload.to_string(),
                redelivery: false,
            },
        )
    }

    /// Records an attempt without sending anything: GitHub tried `guid` and got
    /// `status_code` (e.g. the receiver stored it but its answer was lost).
    pub fn add_hook_attempt(&self, guid: &str, event: &str, payload: &Value, status_code: u16) {
        let mut state = self.state();
        let attempt = state.hook_attempt(
            HookSend {
                guid: guid.to_string(),
                event: event.to_string(),
                body: payload.to_string(),
                redelivery: false,
            },
            hook_status(status_code),
            0.01,
        );
        state.hook_attempts.push(attempt);
    }

    /// Every attempt of the App's webhook sender, oldest first.
    pub fn hook_attempts(&self) -> Vec<HookAttempt> {
        self.state().hook_attempts.clone()
    }

    // --- inspection --------------------------------------------------------------------

    /// Every request in arrival order.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// The deployments of `repo`, oldest first, each with its statuses oldest first.
    pub fn deployments(&self, repo: &str) -> Vec<FakeDeployment> {
        self.state().repo(repo).deployments.clone()
    }

    /// The comments on issue or pull request `issue`, oldest first (seeded ones included).
    pub fn comments(&self, repo: &str, issue: u64) -> Vec<FakeComment> {
        let state = self.state();
        let comments = &state.repo(repo).comments;
        comments
            .iter()
            .filter(|c| c.issue == issue)
            .cloned()
            .collect()
    }

    /// The reactions on a comment, oldest first, e.g. `["eyes", "rocket"]`.
    pub fn reactions(&self, repo: &str, comment_id: u64) -> Vec<String> {
        self.reactions_on(repo, Subject::Comment(comment_id))
    }

    /// The reactions on an issue or pull request itself, oldest first.
    pub fn issue_reactions(&self, repo: &str, issue: u64) -> Vec<String> {
        self.reactions_on(repo, Subject::Issue(issue))
    }

    fn reactions_on(&self, repo: &str, subject: Subject) -> Vec<String> {
        let state = self.state();
        let reactions = &state.repo(repo).reactions;
        let on_subject = reactions.iter().filter(|r| r.subject == subject);
        on_subject.map(|r| r.content.clone()).collect()
    }
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        // `stop` sends the command at once; the returned future only waits for it.
        drop(self.server.stop(false));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
