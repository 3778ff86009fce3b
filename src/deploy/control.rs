//! Deploy control: locks, freezes and what a pending deployment waits for, and the one
//! rule that decides whether a request runs, waits or is refused. Who asks (`Actor`) and
//! by which path (`Origin`) decide; the store keeps locks and the audit trail.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{DeployKind, Error, InstanceId};

/// What a pending deployment waits for before a worker may claim it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitKind {
    Lock,
    Freeze,
    Checks,
    Promotion,
    Approval,
}

impl WaitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitKind::Lock => "lock",
            WaitKind::Freeze => "freeze",
            WaitKind::Checks => "checks",
            WaitKind::Promotion => "promotion",
            WaitKind::Approval => "approval",
        }
    }
}

/// `waiting_for` of a pending deployment: what it waits for, in words, and until when
/// (when that is known).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingFor {
    pub kind: WaitKind,
    /// "locked by @alice: incident 42", "end-of-year freeze".
    pub reason: String,
    pub until: Option<DateTime<Utc>>,
    /// For `approval`: who asked, who approved, and how many approvals it needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalState>,
}

/// The approvals of a deployment that waits for them (the two-person rule).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalState {
    /// `@alice` or `token:ci`: who asked for the deployment; they may not approve it.
    pub requested_by: String,
    /// Who approved it so far, in order.
    pub approved_by: Vec<String>,
    /// How many approvals it needs in all.
    pub needed: u32,
}

impl ApprovalState {
    /// How many more approvals it needs.
    pub fn missing(&self) -> u32 {
        self.needed
            .saturating_sub(u32::try_from(self.approved_by.len()).unwrap_or(u32::MAX))
    }
}

impl WaitingFor {
    pub fn new(kind: WaitKind, reason: impl Into<String>, until: Option<DateTime<Utc>>) -> Self {
        WaitingFor {
            kind,
            reason: reason.into(),
            until,
            approval: None,
        }
    }

    /// One line for statuses, replies and pages: "waiting for the lock (locked by @alice:
    /// incident 42) until 2026-12-07 10:00 UTC".
    pub fn describe(&self) -> String {
        let what = match self.kind {
            WaitKind::Lock => "the lock to end",
            WaitKind::Freeze => "the freeze to end",
            WaitKind::Checks => "checks",
            WaitKind::Promotion => "promotion",
            WaitKind::Approval => "approval",
        };
        let mut line = format!("waiting for {what}");
        if !self.reason.is_empty() {
            line.push_str(&format!(" ({})", self.reason));
        }
        if let Some(approval) = self.approval.as_ref().filter(|a| !a.approved_by.is_empty()) {
            line.push_str(&format!(
                ", approved by {}, {} more needed",
                approval.approved_by.join(", "),
                approval.missing()
            ));
        }
        if let Some(until) = self.until {
            line.push_str(&format!(" until {}", until.format("%Y-%m-%d %H:%M UTC")));
        }
        line
    }
}

/// What a lock covers: one instance, or every instance of a repository (`--global`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "scope", rename_all = "snake_case")]
pub enum LockTarget {
    Instance {
        instance_id: InstanceId,
    },
    /// `owner/name`, lower-cased.
    Repo {
        repo: String,
    },
}

impl LockTarget {
    /// The stored key: `instance:<id>` or `repo:<owner/name>`.
    pub fn key(&self) -> String {
        match self {
            LockTarget::Instance { instance_id } => format!("instance:{instance_id}"),
            LockTarget::Repo { repo } => format!("repo:{}", repo.to_ascii_lowercase()),
        }
    }

    /// The target a stored key names; None for a key this version does not know.
    pub fn from_key(key: &str) -> Option<Self> {
        if let Some(id) = key.strip_prefix("instance:") {
            return id
                .parse()
                .ok()
                .map(|instance_id| LockTarget::Instance { instance_id });
        }
        key.strip_prefix("repo:").map(|repo| LockTarget::Repo {
            repo: repo.to_string(),
        })
    }
}

/// A held lock. Holders are GitHub logins written `@alice` and API tokens written
/// `token:ci` (see [`Actor`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub tenant_id: String,
    pub target: LockTarget,
    /// `owner/name` of the repository (lower-cased).
    pub repo: String,
    pub holder: String,
    pub reason: String,
    /// The pull request a `/lock` came from (`unlock_on_merge` releases it when merged).
    pub pull_request: Option<u64>,
    pub created_at: DateTime<Utc>,
    /// None: held until unlocked.
    pub expires_at: Option<DateTime<Utc>>,
}

impl Lock {
    /// Whether the lock is held at `now` (an expired lock is not, even before its row goes).
    pub fn live_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|until| until > now)
    }

    /// "locked by @alice since 09:12 UTC until 10:12 UTC: incident 42".
    pub fn describe(&self) -> String {
        let mut line = format!(
            "locked by {} since {}",
            self.holder,
            self.created_at.format("%Y-%m-%d %H:%M UTC")
        );
        match self.expires_at {
            Some(until) => line.push_str(&format!(" until {}", until.format("%Y-%m-%d %H:%M UTC"))),
            None => line.push_str(" until unlocked"),
        }
        if !self.reason.is_empty() {
            line.push_str(&format!(": {}", self.reason));
        }
        line
    }

    /// The waiting a push gets while this lock is held.
    pub fn waiting(&self) -> WaitingFor {
        let mut reason = format!("locked by {}", self.holder);
        if !self.reason.is_empty() {
            reason.push_str(&format!(": {}", self.reason));
        }
        WaitingFor::new(WaitKind::Lock, reason, self.expires_at)
    }
}

/// A freeze in force now: its reason and when it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveFreeze {
    pub reason: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl ActiveFreeze {
    /// The waiting a push gets during this freeze.
    pub fn waiting(&self) -> WaitingFor {
        WaitingFor::new(WaitKind::Freeze, self.reason.clone(), Some(self.end))
    }
}

/// Who asks for something: a GitHub login or an API token (also a page session's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// `@alice` or `token:ci`: how locks and the audit trail name them.
    pub id: String,
    /// May pass a lock (rollbacks) or a freeze with `force`: a deployer of the instance,
    /// or an admin token.
    pub may_force: bool,
}

impl Actor {
    pub fn login(login: &str, may_force: bool) -> Self {
        Actor {
            id: format!("@{}", login.to_ascii_lowercase()),
            may_force,
        }
    }

    pub fn token(name: &str, may_force: bool) -> Self {
        Actor {
            id: format!("token:{name}"),
            may_force,
        }
    }

    /// Whether this actor holds `lock`. Logins are stored lower-cased (GitHub's are
    /// case-insensitive); token names are compared exactly, as they are configured.
    pub fn holds(&self, lock: &Lock) -> bool {
        self.id == lock.holder
    }
}

/// By which path a request comes: pushes and tags wait; people are answered at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A push or a tag: it waits for locks and freezes.
    Push,
    /// A pull-request command, the API, the CLI or a page: refused while locked or frozen.
    Person,
}

/// What one request asks, as far as locks and freezes care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    pub kind: DeployKind,
    pub noop: bool,
    pub force: bool,
}

/// The decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// It runs; `forced` names what `force` passed (for the audit trail), if anything.
    Run { forced: Vec<String> },
    /// It is stored and waits.
    Wait(WaitingFor),
}

/// Decides whether a request runs, waits or is refused, given the lock on its instance
/// and the freeze in force (each None when there is none):
/// - pushes and tags wait for a lock, then for a freeze;
/// - the lock's holder deploys through it; a rollback passes another's lock only with
///   `force` by an actor who may force; anything else is refused (`Error::Locked`);
/// - a dry run passes a freeze (it changes nothing); anything else passes one only with
///   `force` by an actor who may force, else it is refused (`Error::Frozen`).
pub fn admit(
    origin: Origin,
    actor: &Actor,
    ask: Ask,
    lock: Option<&Lock>,
    freeze: Option<&ActiveFreeze>,
) -> Result<Admission, Error> {
    if origin == Origin::Push {
        if let Some(lock) = lock {
            return Ok(Admission::Wait(lock.waiting()));
        }
        if let Some(freeze) = freeze {
            return Ok(Admission::Wait(freeze.waiting()));
        }
        return Ok(Admission::Run { forced: Vec::new() });
    }
    let mut forced = Vec::new();
    if let Some(lock) = lock.filter(|lock| !actor.holds(lock)) {
        let passes = ask.kind == DeployKind::Rollback && ask.force && actor.may_force;
        if !passes {
            let hint = if ask.kind == DeployKind::Rollback && !ask.force {
                " A deployer may pass it with --force."
            } else if ask.kind == DeployKind::Rollback {
                " Only a deployer of this environment may pass it with --force."
            } else {
                " Ask its holder to unlock, or unlock it yourself if the reason no longer holds."
            };
            return Err(Error::Locked(format!("{}.{hint}", lock.describe())));
        }
        forced.push(format!("lock ({})", lock.describe()));
    }
    if let Some(freeze) = freeze.filter(|_| !ask.noop) {
        if !(ask.force && actor.may_force) {
            let hint = if ask.force {
                "only a deployer of this environment or an admin token may pass it with --force"
            } else {
                "a deployer may pass it with --force"
            };
            return Err(Error::Frozen(format!(
                "frozen until {}: {}; {hint}",
                freeze.end.format("%Y-%m-%d %H:%M UTC"),
                freeze.reason
            )));
        }
        forced.push(format!("freeze ({})", freeze.reason));
    }
    Ok(Admission::Run { forced })
}

/// One entry of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Assigned by the store (0 before it is stored).
    pub id: i64,
    pub tenant_id: String,
    pub at: DateTime<Utc>,
    /// `@alice`, `token:ci`, or `deploybot` for what the bot does by itself.
    pub actor: String,
    /// `deploy`, `noop`, `rollback`, `rollback.automatic`, `cancel`, `approve`, `lock`,
    /// `unlock`, `lock.expired`, `lock.released_on_merge`, `lock.on_rollback`,
    /// `gate.expired`, `force`, `refused`.
    pub action: String,
    pub instance_id: Option<InstanceId>,
    pub deployment_id: Option<super::DeploymentId>,
    /// What happened, in one sentence.
    pub detail: String,
}

impl AuditEvent {
    pub fn new(tenant_id: &str, actor: &str, action: &str, detail: impl Into<String>) -> Self {
        AuditEvent {
            id: 0,
            tenant_id: tenant_id.to_string(),
            at: super::now(),
            actor: actor.to_string(),
            action: action.to_string(),
            instance_id: None,
            deployment_id: None,
            detail: detail.into(),
        }
    }
}

/// One page of the audit trail, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    pub items: Vec<AuditEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::now;

    fn lock(holder: &str) -> Lock {
        Lock {
            tenant_id: "acme".into(),
            target: LockTarget::Repo {
                repo: "acme/web".into(),
            },
            repo: "acme/web".into(),
            holder: holder.into(),
            reason: "incident 42".into(),
            pull_request: None,
            created_at: now(),
            expires_at: None,
        }
    }

    #[test]
    fn logins_hold_whatever_their_case_and_token_names_exactly() {
        assert!(Actor::login("Alice", false).holds(&lock("@alice")));
        assert!(Actor::token("ci", false).holds(&lock("token:ci")));
        assert!(!Actor::token("CI", false).holds(&lock("token:ci")));
        assert!(!Actor::token("alice", true).holds(&lock("@alice")));
    }

    fn freeze() -> ActiveFreeze {
        ActiveFreeze {
            reason: "end-of-year freeze".into(),
            start: now(),
            end: now() + chrono::Duration::hours(1),
        }
    }

    const DEPLOY: Ask = Ask {
        kind: DeployKind::Deploy,
        noop: false,
        force: false,
    };

    #[test]
    fn pushes_wait_for_the_lock_first_then_the_freeze() {
        let bob = Actor::login("bob", false);
        let l = lock("@alice");
        let f = freeze();
        let waits = |lock, freeze| match admit(Origin::Push, &bob, DEPLOY, lock, freeze) {
            Ok(Admission::Wait(w)) => Some(w.kind),
            _ => None,
        };
        assert_eq!(waits(Some(&l), Some(&f)), Some(WaitKind::Lock));
        assert_eq!(waits(None, Some(&f)), Some(WaitKind::Freeze));
        assert_eq!(waits(None, None), None);
    }

    #[test]
    fn the_holder_deploys_through_the_lock_and_others_are_refused_with_its_reason() {
        let l = lock("@alice");
        let alice = Actor::login("Alice", false);
        assert!(matches!(
            admit(Origin::Person, &alice, DEPLOY, Some(&l), None),
            Ok(Admission::Run { .. })
        ));
        let bob = Actor::login("bob", true);
        let refused = admit(Origin::Person, &bob, DEPLOY, Some(&l), None).unwrap_err();
        assert!(
            matches!(&refused, Error::Locked(m) if m.contains("@alice") && m.contains("incident 42"))
        );
        let forced_deploy = Ask {
            force: true,
            ..DEPLOY
        };
        assert!(admit(Origin::Person, &bob, forced_deploy, Some(&l), None).is_err());
    }

    #[test]
    fn a_rollback_passes_a_lock_only_with_force_by_one_who_may_force() {
        let l = lock("@alice");
        let rollback = Ask {
            kind: DeployKind::Rollback,
            noop: false,
            force: true,
        };
        let deployer = Actor::login("carol", true);
        let other = Actor::login("dave", false);
        assert!(matches!(
            admit(Origin::Person, &deployer, rollback, Some(&l), None),
            Ok(Admission::Run { forced }) if forced.len() == 1
        ));
        assert!(admit(Origin::Person, &other, rollback, Some(&l), None).is_err());
        let unforced = Ask {
            force: false,
            ..rollback
        };
        assert!(admit(Origin::Person, &deployer, unforced, Some(&l), None).is_err());
    }

    #[test]
    fn a_freeze_refuses_people_unless_forced_and_lets_dry_runs_through() {
        let f = freeze();
        let admin = Actor::token("ops", true);
        let ci = Actor::token("ci", false);
        assert!(matches!(
            admit(Origin::Person, &ci, DEPLOY, None, Some(&f)),
            Err(Error::Frozen(m)) if m.contains("end-of-year")
        ));
        let forced = Ask {
            force: true,
            ..DEPLOY
        };
        assert!(admit(Origin::Person, &ci, forced, None, Some(&f)).is_err());
        assert!(matches!(
            admit(Origin::Person, &admin, forced, None, Some(&f)),
            Ok(Admission::Run { forced }) if forced.len() == 1
        ));
        let noop = Ask {
            noop: true,
            ..DEPLOY
        };
        assert!(matches!(
            admit(Origin::Person, &ci, noop, None, Some(&f)),
            Ok(Admission::Run { .. })
        ));
    }

    #[test]
    fn lock_targets_round_trip_through_their_keys() {
        let id = InstanceId::new();
        for target in [
            LockTarget::Instance { instance_id: id },
            LockTarget::Repo {
                repo: "acme/web".into(),
            },
        ] {
            assert_eq!(LockTarget::from_key(&target.key()), Some(target));
        }
        assert_eq!(LockTarget::from_key("bogus:1"), None);
    }
}
