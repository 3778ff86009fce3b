//! The GitHub stand-in's state: repositories with their pull requests, branches, tags,
//! deployments, comments and reactions; credentials, injected faults and recorded calls.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use super::RATE_LIMIT;
use super::types::{Call, FakeComment, FakeDeployment, HookAttempt, HookSend, HookTarget};

pub(super) const DOCS: &str = "https://docs.github.com/rest";
pub(super) const ROLES: [&str; 6] = ["admin", "maintain", "write", "triage", "read", "none"];

pub(super) struct Pull {
    pub(super) head_sha: String,
    pub(super) head_ref: String,
    pub(super) from_fork: bool,
    pub(super) state: String,
    pub(super) author: String,
    pub(super) created_at: String,
    pub(super) title: String,
    /// The description (Markdown); empty for none.
    pub(super) body: String,
    /// The branch it merges into (`main` unless set).
    pub(super) base_ref: String,
}

/// A commit status, as CI posts it.
pub(super) struct CommitStatus {
    pub(super) id: u64,
    pub(super) sha: String,
    pub(super) context: String,
    /// error, failure, pending or success.
    pub(super) state: String,
    pub(super) target_url: String,
    pub(super) created_at: String,
}

/// A check run of a CI app on a commit.
pub(super) struct CheckRun {
    pub(super) id: u64,
    pub(super) sha: String,
    pub(super) name: String,
    /// queued, in_progress or completed.
    pub(super) status: String,
    /// Set once completed: success, failure, neutral, cancelled, skipped, timed_out or
    /// action_required.
    pub(super) conclusion: Option<String>,
    pub(super) started_at: String,
    pub(super) completed_at: Option<String>,
}

/// A review of a pull request.
pub(super) struct Review {
    pub(super) id: u64,
    pub(super) pull: u64,
    pub(super) user: String,
    /// APPROVED, CHANGES_REQUESTED, COMMENTED, DISMISSED or PENDING.
    pub(super) state: String,
    /// The pull request's head when the review was written.
    pub(super) commit_id: String,
    /// `None` while PENDING (not submitted).
    pub(super) submitted_at: Option<String>,
}

pub(super) struct Tag {
    pub(super) commit_sha: String,
    /// The SHA of the tag object, for annotated tags.
    pub(super) object_sha: Option<String>,
}

pub(super) struct Reaction {
    pub(super) id: u64,
    pub(super) subject: Subject,
    pub(super) content: String,
    pub(super) user: String,
    pub(super) created_at: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Subject {
    Comment(u64),
    Issue(u64),
}

pub(super) struct Repo {
    pub(super) id: u64,
    pub(super) full_name: String,
    /// Lower-cased login → (login, role).
    pub(super) roles: HashMap<String, (String, String)>,
    /// Organization custom repository roles: lower-cased login → (role name, the base
    /// role it inherits).
    pub(super) custom_roles: HashMap<String, (String, String)>,
    pub(super) pulls: BTreeMap<u64, Pull>,
    pub(super) issues: Vec<u64>,
    pub(super) branches: BTreeMap<String, String>,
    pub(super) tags: BTreeMap<String, Tag>,
    pub(super) deployments: Vec<FakeDeployment>,
    pub(super) comments: Vec<FakeComment>,
    pub(super) reactions: Vec<Reaction>,
    /// Commit statuses, oldest first.
    pub(super) commit_statuses: Vec<CommitStatus>,
    /// Check runs, oldest first (a re-run is a newer run of the same name).
    pub(super) check_runs: Vec<CheckRun>,
    /// Reviews of its pull requests, oldest first.
    pub(super) reviews: Vec<Review>,
    /// The stand-in keeps no commit graph. What the compare endpoint knows of history is
    /// this set of (head, base) commit pairs, lower-cased: `head` contains `base` (a
    /// branch updated with, or started from, that base commit). Compared, `head` is then
    /// `ahead` of `base` and `base` `behind` `head`; the same commit is `identical`; any
    /// other pair has `diverged`, one commit on each side.
    pub(super) contains: std::collections::BTreeSet<(String, String)>,
}

impl Repo {
    pub(super) fn owner(&self) -> &str {
        self.full_name.split('/').next().unwrap_or_default()
    }

    pub(super) fn name(&self) -> &str {
        self.full_name.split('/').nth(1).unwrap_or_default()
    }

    pub(super) fn has_issue(&self, number: u64) -> bool {
        self.pulls.contains_key(&number) || self.issues.contains(&number)
    }
}

pub(super) struct AppConfig {
    pub(super) app_id: u64,
    pub(super) key: jsonwebtoken::DecodingKey,
    pub(super) installation_id: u64,
    pub(super) installation_token: String,
}

pub(super) struct Fault {
    pub(super) method: String,
    pub(super) path_prefix: String,
    pub(super) remaining: usize,
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    /// The request is carried out, then its answer replaced: GitHub did the work but the
    /// client never heard (a 502 from GitHub's edge after the write, a dropped connection).
    pub(super) after_applying: bool,
}

/// Everything the stand-in knows, behind one lock.
pub(super) struct State {
    pub(super) base_url: String,
    pub(super) repos: BTreeMap<String, Repo>,
    pub(super) token: Option<String>,
    pub(super) app: Option<AppConfig>,
    /// Installation tokens minted and not expired.
    pub(super) installation_tokens: Vec<String>,
    pub(super) faults: Vec<Fault>,
    /// How long every answer waits (a slow GitHub).
    pub(super) delay: std::time::Duration,
    /// Requests (method, path prefix) whose answer waits this long.
    pub(super) slow_paths: Vec<(String, String, std::time::Duration)>,
    pub(super) calls: Vec<Call>,
    pub(super) rate_remaining: u64,
    pub(super) rate_reset: u64,
    pub(super) next_id: BTreeMap<&'static str, u64>,
    /// The App's webhook: where it is sent, every attempt, and redeliveries to make.
    pub(super) hook_target: Option<HookTarget>,
    pub(super) hook_attempts: Vec<HookAttempt>,
    pub(super) hook_sends: Vec<HookSend>,
    /// Grows with every change, so that pages can ask cheaply whether to refresh.
    pub(super) version: u64,
    /// (org, team, login), lower-cased: active team memberships.
    pub(super) team_members: std::collections::BTreeSet<(String, String, String)>,
}

impl State {
    pub(super) fn new() -> State {
        State {
            base_url: String::new(),
            repos: BTreeMap::new(),
            token: None,
            app: None,
            installation_tokens: Vec::new(),
            faults: Vec::new(),
            delay: std::time::Duration::ZERO,
            slow_paths: Vec::new(),
            calls: Vec::new(),
            rate_remaining: RATE_LIMIT,
            rate_reset: unix_now() + 3600,
            next_id: BTreeMap::new(),
            hook_target: None,
            hook_attempts: Vec::new(),
            hook_sends: Vec::new(),
            version: 0,
            team_members: Default::default(),
        }
    }

    /// Ids count up per kind of object, from 1, like GitHub's (which are just larger).
    pub(super) fn next_id(&mut self, kind: &'static str) -> u64 {
        let id = self.next_id.entry(kind).or_insert(0);
        *id += 1;
        *id
    }

    pub(super) fn repo(&self, full_name: &str) -> &Repo {
        self.repos
            .get(&full_name.to_lowercase())
            .unwrap_or_else(|| panic!("GitHub stand-in: add_repo(\"{full_name}\") first"))
    }

    pub(super) fn repo_mut(&mut self, full_name: &str) -> &mut Repo {
        self.repos
            .get_mut(&full_name.to_lowercase())
            .unwrap_or_else(|| panic!("GitHub stand-in: add_repo(\"{full_name}\") first"))
    }
}
pub(super) fn lock<T>(state: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock must not hide later assertions.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

pub(super) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(super) fn stable_number(text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// A 40-hex-digit SHA-like name, stable for the same parts.
pub(super) fn fake_sha(parts: &[&str]) -> String {
    let joined = parts.join("\u{0}");
    let first = stable_number(&joined);
    let second = stable_number(&format!("{joined}\u{1}"));
    let third = stable_number(&format!("{joined}\u{2}"));
    format!("{first:016x}{second:016x}{:08x}", third as u32)
}

pub(super) fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
