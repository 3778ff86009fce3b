//! Deploy control through pull-request comments, against the real server and the fake
//! GitHub on both databases: a lock refuses everyone but its holder, `--force` is a
//! deployer's alone and is recorded, freezes refuse deploys, parameters reach the
//! deployment, dry runs are queued as dry runs, the configured prefix is the only one
//! heard and replies write commands with it, a replayed `/lock` acts once, a closed pull
//! request gives its locks back, a global lock needs leave on every environment, and a
//! lock's reason in a reply mentions nobody.

use std::time::Duration;

use chrono::Utc;
use deploybot::deploy::{
    AuditEvent, AuditStore, DeployKind, DeployState, Deployment, ListOptions, LockStore,
    LockTarget, WaitKind,
};

use crate::bot::{Bot, PR_SHA, fixture, wait_until};
use crate::both_backends_owned;
use crate::common::TestDb;

/// People who comment in these tests; every other comment is the bot's.
const PEOPLE: [&str; 5] = ["alice", "bob", "carol", "dave", "mallory"];

/// Each run ends at once.
const QUICK: &str = "echo deployed";

/// The bot with web-production configured with `production` (TOML lines), alice, bob,
/// carol and dave allowed to write, and pull request #42 open.
fn start(db: TestDb, production: &str) -> Bot {
    let bot = Bot::start_configured(db, QUICK, production);
    allow_everyone(&bot);
    bot
}

fn allow_everyone(bot: &Bot) {
    for user in ["alice", "bob", "carol", "dave"] {
        bot.fake.set_permission("acme/web", user, "write");
    }
    bot.open_pull(42, PR_SHA, false, "open");
}

/// The bot's comments on pull request `pr`.
fn replies(bot: &Bot, pr: u64) -> Vec<String> {
    bot.fake
        .comments("acme/web", pr)
        .into_iter()
        .filter(|c| !PEOPLE.contains(&c.user.as_str()))
        .map(|c| c.body)
        .collect()
}

/// `user` comments `body` on #`pr` (a fresh delivery); the comment's id.
fn say(bot: &Bot, pr: u64, user: &str, body: &str) -> u64 {
    let delivery = format!("c-{}", uuid::Uuid::now_v7().simple());
    let (id, status, answer) = bot.comment(pr, user, body, &delivery);
    assert!((200..300).contains(&status), "{status} {answer}");
    id
}

/// Waits for a reply on #`pr` holding every one of `parts`, and returns it.
fn reply_with(bot: &Bot, pr: u64, parts: &[&str]) -> String {
    let mut found = None;
    let what = format!("a reply with {parts:?}");
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(&what, Duration::from_secs(30), || {
            found = replies(bot, pr)
                .into_iter()
                .find(|r| parts.iter().all(|p| r.contains(p)));
            found.is_some()
        })
    }));
    if waited.is_err() {
        panic!(
            "no reply with {parts:?}; the replies: {:#?}",
            replies(bot, pr)
        );
    }
    found.unwrap()
}

/// Sends `/help` as `user` and waits for its answer: the pull request's earlier jobs have
/// all run by then (they run in order).
fn barrier(bot: &Bot, pr: u64, user: &str, prefix: char) {
    let before = replies(bot, pr)
        .iter()
        .filter(|r| r.contains("deploybot commands"))
        .count();
    say(bot, pr, user, &format!("{prefix}help"));
    wait_until("the answer to /help", Duration::from_secs(30), || {
        replies(bot, pr)
            .iter()
            .filter(|r| r.contains("deploybot commands"))
            .count()
            > before
    });
}

fn production(bot: &Bot) -> Vec<Deployment> {
    bot.deployments("web-production")
}

/// Waits until web-production has `n` deployments; the newest.
fn nth_deployment(bot: &Bot, n: usize) -> Deployment {
    wait_until(
        &format!("deployment number {n}"),
        Duration::from_secs(30),
        || production(bot).len() >= n,
    );
    production(bot).into_iter().next().unwrap()
}

fn audit(bot: &Bot) -> Vec<AuditEvent> {
    bot.db
        .store
        .list_audit(
            "acme",
            None,
            &ListOptions {
                cursor: None,
                limit: Some(100),
            },
        )
        .unwrap()
        .items
}

fn audited(bot: &Bot, actor: &str, action: &str) -> Vec<AuditEvent> {
    audit(bot)
        .into_iter()
        .filter(|e| e.actor == actor && e.action == action)
        .collect()
}

fn production_lock(bot: &Bot) -> Option<deploybot::deploy::Lock> {
    let target = LockTarget::Instance {
        instance_id: bot.instance("web-production").id,
    };
    bot.db.store.get_lock("acme", &target).unwrap()
}

/// What GitHub renders of `markdown` outside inline code spans: there a mention mentions
/// and an image loads. A run of backticks opens a span that the next run of the same
/// length closes.
fn outside_code(markdown: &str) -> String {
    let mut out = String::new();
    let mut rest = markdown;
    while let Some(at) = rest.find('`') {
        out.push_str(&rest[..at]);
        let run = rest[at..].chars().take_while(|&c| c == '`').count();
        let after = &rest[at + run..];
        let fence = "`".repeat(run);
        let close = after.char_indices().map(|(i, _)| i).find(|&i| {
            after[i..].starts_with(&fence)
                && !after[i + run..].starts_with('`')
                && !after[..i].ends_with('`')
        });
        match close {
            Some(i) => rest = &after[i + run..],
            None => {
                out.push_str(&rest[at..at + run]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Restarts the bot with web-staging taking commands too, its deployers `staging` (a TOML
/// value).
fn with_staging_deployers(bot: &mut Bot, staging: &str) {
    bot.sigterm();
    let path = bot.dir().join("deploybot.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    assert!(config.contains("commands = false"), "{config}");
    let config = config.replace("commands = false", &format!("deployers = {staging}"));
    std::fs::write(&path, config).unwrap();
    bot.restart();
}

/// alice locks production with a reason and an end; bob's deploy is refused with all
/// three; alice deploys through her own lock; `/locks` shows it; bob may unlock it, and
/// the reply says whose lock it was.
fn a_lock_refuses_everyone_but_its_holder_until_unlocked(db: TestDb) {
    let bot = start(db, "");
    say(
        &bot,
        42,
        "alice",
        "/lock production --for 2h --reason db migration",
    );
    let locked = reply_with(&bot, 42, &["Locked `production`", "@alice", "db migration"]);
    let lock = production_lock(&bot).expect("alice holds the lock");
    assert_eq!(lock.holder, "@alice");
    assert_eq!(lock.pull_request, Some(42));
    let until = lock.expires_at.expect("a lock for 2h ends");
    let left = until - Utc::now();
    assert!(
        left > chrono::Duration::minutes(110) && left <= chrono::Duration::minutes(120),
        "{left}"
    );
    let until_text = until.format("%Y-%m-%d %H:%M UTC").to_string();
    assert!(locked.contains(&until_text), "{locked}");

    say(&bot, 42, "bob", "/lock production --reason mine now");
    let taken = reply_with(&bot, 42, &["@bob cannot lock `production`"]);
    assert!(
        taken.contains("locked by @alice") && taken.contains("db migration"),
        "{taken}"
    );
    assert_eq!(
        production_lock(&bot).map(|l| l.holder),
        Some("@alice".into())
    );

    let bobs = say(&bot, 42, "bob", "/deploy production");
    let refusal = reply_with(&bot, 42, &["@bob cannot deploy `production`"]);
    for part in ["locked by @alice", "db migration", until_text.as_str()] {
        assert!(refusal.contains(part), "{part} missing: {refusal}");
    }
    wait_until("bob's 😕", Duration::from_secs(30), || {
        bot.fake
            .reactions("acme/web", bobs)
            .contains(&"confused".to_string())
    });
    assert!(
        production(&bot).is_empty(),
        "bob's deploy went through the lock"
    );
    assert_eq!(
        audited(&bot, "@bob", "refused").len(),
        1,
        "{:#?}",
        audit(&bot)
    );

    say(&bot, 42, "alice", "/deploy production");
    let deployed = nth_deployment(&bot, 1);
    assert_eq!(deployed.initiator, "alice");
    assert!(deployed.image.ends_with(PR_SHA), "{}", deployed.image);

    say(&bot, 42, "bob", "/locks");
    let list = reply_with(&bot, 42, &["Locks and freezes of acme/web"]);
    assert!(
        list.contains("`production`: locked by @alice") && list.contains("from #42"),
        "{list}"
    );

    say(&bot, 42, "bob", "/unlock production");
    let unlocked = reply_with(&bot, 42, &["Unlocked `production`"]);
    assert!(unlocked.contains("locked by @alice"), "{unlocked}");
    assert!(production_lock(&bot).is_none(), "the lock is still held");
    assert_eq!(audited(&bot, "@alice", "lock").len(), 1);
    assert_eq!(audited(&bot, "@bob", "unlock").len(), 1);
}

/// `/lock --global` holds every environment of the repository: bob's deploy is refused,
/// a push waits; `/unlock --global` lets the push run.
fn a_global_lock_holds_every_environment_of_the_repository(db: TestDb) {
    let bot = start(db, "");
    say(&bot, 42, "alice", "/lock --global --reason release freeze");
    let locked = reply_with(&bot, 42, &["Locked every environment of acme/web"]);
    assert!(locked.contains("@alice"), "{locked}");
    let whole = LockTarget::Repo {
        repo: "acme/web".into(),
    };
    let lock = bot.db.store.get_lock("acme", &whole).unwrap();
    assert_eq!(lock.map(|l| l.holder), Some("@alice".to_string()));

    say(&bot, 42, "bob", "/deploy production");
    let refusal = reply_with(&bot, 42, &["@bob cannot deploy `production`"]);
    assert!(refusal.contains("locked by @alice"), "{refusal}");
    assert!(production(&bot).is_empty());

    let (status, answer) = bot.send(
        "push",
        &crate::bot::push("refs/heads/main", PR_SHA, "bob"),
        "main-1",
    );
    assert_eq!(status, 202, "{answer}");
    wait_until("the push's deployment", Duration::from_secs(30), || {
        !bot.deployments("web-staging").is_empty()
    });
    let staging = bot.deployments("web-staging").remove(0);
    assert_eq!(
        staging.waiting_for.as_ref().map(|w| w.kind),
        Some(WaitKind::Lock),
        "{staging:?}"
    );

    say(&bot, 42, "bob", "/unlock --global");
    let unlocked = reply_with(&bot, 42, &["Unlocked every environment of acme/web"]);
    assert!(unlocked.contains("locked by @alice"), "{unlocked}");
    assert!(bot.db.store.get_lock("acme", &whole).unwrap().is_none());
    let done = bot.wait_final(&staging.id.to_string());
    assert_eq!(done.state, DeployState::Succeeded, "{done:?}");
}

/// A global lock holds every environment, so it takes leave to use each: alice, a
/// deployer of production but not of staging (bob's), is refused `/lock --global` with a
/// reply naming staging and bob, nothing is locked, and the refusal is in the audit trail.
/// carol, a deployer of both, takes it; alice cannot release it either.
fn a_global_lock_is_refused_to_one_not_allowed_on_every_environment(db: TestDb) {
    let mut bot = Bot::start_configured(db, QUICK, r#"deployers = ["alice", "carol"]"#);
    with_staging_deployers(&mut bot, r#"["bob", "carol"]"#);
    allow_everyone(&bot);
    let whole = LockTarget::Repo {
        repo: "acme/web".into(),
    };

    let alices = say(&bot, 42, "alice", "/lock --global --reason release");
    let refusal = reply_with(
        &bot,
        42,
        &["@alice cannot lock every environment of acme/web"],
    );
    assert!(
        refusal.contains("`staging`") && refusal.contains("`bob`"),
        "{refusal}"
    );
    assert!(!refusal.contains("`production`"), "{refusal}");
    wait_until("alice's 😕", Duration::from_secs(30), || {
        bot.fake
            .reactions("acme/web", alices)
            .contains(&"confused".to_string())
    });
    assert!(bot.db.store.get_lock("acme", &whole).unwrap().is_none());
    assert!(bot.db.store.list_locks("acme").unwrap().is_empty());
    let refused = audited(&bot, "@alice", "refused");
    assert_eq!(refused.len(), 1, "{:#?}", audit(&bot));
    assert!(
        refused[0].detail.contains("web-staging"),
        "{:?}",
        refused[0]
    );

    say(&bot, 42, "carol", "/lock --global --reason release");
    reply_with(
        &bot,
        42,
        &["Locked every environment of acme/web", "@carol"],
    );

    say(&bot, 42, "alice", "/unlock --global");
    let refusal = reply_with(
        &bot,
        42,
        &["@alice cannot unlock every environment of acme/web"],
    );
    assert!(refusal.contains("`staging`"), "{refusal}");
    let held = bot.db.store.get_lock("acme", &whole).unwrap();
    assert_eq!(held.map(|l| l.holder), Some("@carol".to_string()));
    assert_eq!(audited(&bot, "@alice", "refused").len(), 2);
}

/// A lock's reason is the commenter's text: its confirmation, another's refusal and
/// `/locks` show it as code, so it mentions nobody and loads no image.
fn a_lock_reason_in_replies_mentions_nobody_and_loads_nothing(db: TestDb) {
    let bot = start(db, "");
    say(
        &bot,
        42,
        "alice",
        "/lock production --reason @everyone ![x](http://127.0.0.1/x.png)",
    );
    let locked = reply_with(&bot, 42, &["Locked `production`", "@everyone"]);
    say(&bot, 42, "bob", "/deploy production");
    let refused = reply_with(&bot, 42, &["@bob cannot deploy `production`", "@everyone"]);
    say(&bot, 42, "bob", "/locks");
    let listed = reply_with(&bot, 42, &["Locks and freezes of acme/web", "@everyone"]);
    for reply in [locked, refused, listed] {
        let shown = outside_code(&reply);
        assert!(shown.contains("locked by @alice"), "{reply}");
        assert!(
            !shown.contains("@everyone") && !shown.contains("!["),
            "{reply}"
        );
    }
}

/// With `command_prefix = "."`, `.deploy` deploys and `/deploy` is an ordinary line.
fn the_configured_prefix_is_the_only_one_heard(db: TestDb) {
    let mut bot = Bot::start_configured(db, QUICK, "");
    bot.sigterm();
    let path = bot.dir().join("deploybot.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("command_prefix = \".\"\n{config}")).unwrap();
    bot.restart();
    allow_everyone(&bot);

    say(&bot, 42, "alice", "/deploy production");
    say(&bot, 42, "alice", ".deploy production");
    let deployed = nth_deployment(&bot, 1);
    assert_eq!(deployed.initiator, "alice");
    barrier(&bot, 42, "alice", '.');
    assert_eq!(production(&bot).len(), 1, "/deploy was heard too");
    let help = reply_with(&bot, 42, &["deploybot commands"]);
    assert!(help.contains("`.deploy"), "{help}");
    assert!(!help.contains("`/deploy"), "{help}");
    assert!(
        deployed.source.trigger.starts_with(".deploy on #42"),
        "{:?}",
        deployed.source
    );

    bot.wait_final(&deployed.id.to_string());
    say(&bot, 42, "alice", ".lock production");
    reply_with(&bot, 42, &["Locked `production`"]);
    let mut tag = fixture("push_tag");
    tag["ref"] = "refs/tags/v1.0.0".into();
    tag["after"] = PR_SHA.into();
    tag["head_commit"]["id"] = PR_SHA.into();
    let (status, answer) = bot.send("push", &tag, "tag-v1");
    assert_eq!(status, 202, "{answer}");
    nth_deployment(&bot, 2);
    say(&bot, 42, "alice", ".cancel production");
    let nothing = reply_with(&bot, 42, &["Nothing to cancel on `production`"]);
    assert!(
        nothing.contains("`.cancel production --queued`"),
        "{nothing}"
    );
}

/// `| KEY=VALUE` reaches the deployment's parameters; a name the environment does not
/// accept is refused with the names it does.
fn parameters_reach_the_deployment_and_unknown_names_are_refused(db: TestDb) {
    let bot = start(db, r#"params = ["REGION", "FEATURE_FLAG"]"#);
    let refused = say(&bot, 42, "alice", "/deploy production | NOPE=1");
    let reply = reply_with(&bot, 42, &["NOPE"]);
    assert!(
        reply.contains("REGION") && reply.contains("FEATURE_FLAG"),
        "the accepted names are missing: {reply}"
    );
    wait_until("😕", Duration::from_secs(30), || {
        bot.fake
            .reactions("acme/web", refused)
            .contains(&"confused".to_string())
    });
    assert!(production(&bot).is_empty());

    say(&bot, 42, "alice", "/deploy production | REGION=eu");
    let deployed = nth_deployment(&bot, 1);
    assert_eq!(
        deployed.params.get("REGION").map(String::as_str),
        Some("eu"),
        "{:?}",
        deployed.params
    );
    assert_eq!(deployed.params.len(), 1);

    say(&bot, 42, "alice", "/deploy production | REGION");
    let bad = reply_with(&bot, 42, &["`REGION`", "KEY=VALUE"]);
    assert!(bad.contains("is not a parameter"), "{bad}");
}

/// `/noop` queues a dry run: its deployment is a noop and its release is a dry run's.
fn noop_queues_a_dry_run(db: TestDb) {
    let bot = start(db, r#"params = ["REGION"]"#);
    say(&bot, 42, "alice", "/noop production | REGION=us");
    let dry = nth_deployment(&bot, 1);
    assert!(dry.noop, "{dry:?}");
    assert_eq!(dry.kind, DeployKind::Deploy);
    assert_eq!(dry.params.get("REGION").map(String::as_str), Some("us"));
    assert_eq!(
        audited(&bot, "@alice", "noop").len(),
        1,
        "{:#?}",
        audit(&bot)
    );
    assert!(audited(&bot, "@alice", "deploy").is_empty());
}

/// A captured `/lock` comment sent again under a new delivery id, after the lock was
/// released, takes nothing and says nothing.
fn a_replayed_lock_comment_acts_once(db: TestDb) {
    let bot = start(db, "");
    let id = bot
        .fake
        .add_comment("acme/web", 42, "alice", "/lock production --reason first");
    let body = crate::bot::pr_comment(42, id, "alice", "/lock production --reason first");
    let (status, answer) = bot.send("issue_comment", &body, "lock-1");
    assert!((200..300).contains(&status), "{answer}");
    reply_with(&bot, 42, &["Locked `production`"]);
    say(&bot, 42, "alice", "/unlock production");
    reply_with(&bot, 42, &["Unlocked `production`"]);

    let (status, answer) = bot.send("issue_comment", &body, "lock-1-replayed");
    assert!((200..300).contains(&status), "{answer}");
    barrier(&bot, 42, "alice", '/');
    assert!(
        production_lock(&bot).is_none(),
        "the replayed /lock took the lock again"
    );
    let locked = replies(&bot, 42)
        .iter()
        .filter(|r| r.contains("Locked `production`"))
        .count();
    assert_eq!(locked, 1, "{:#?}", replies(&bot, 42));
    assert_eq!(audited(&bot, "@alice", "lock").len(), 1);
}

/// A tag push waits for alice's lock taken from #42; when #42 closes, the lock ends
/// (`unlock_on_merge`), recorded as deploybot's, and the push deploys.
fn closing_the_pull_request_releases_its_lock_and_the_waiting_push_runs(db: TestDb) {
    let bot = start(db, "unlock_on_merge = true");
    say(&bot, 42, "alice", "/lock production --reason release train");
    reply_with(&bot, 42, &["Locked `production`"]);

    let mut tag = fixture("push_tag");
    tag["ref"] = "refs/tags/v1.0.0".into();
    tag["after"] = PR_SHA.into();
    tag["head_commit"]["id"] = PR_SHA.into();
    let (status, answer) = bot.send("push", &tag, "tag-v1");
    assert_eq!(status, 202, "{answer}");
    let waiting = nth_deployment(&bot, 1);
    assert_eq!(
        waiting.waiting_for.as_ref().map(|w| w.kind),
        Some(WaitKind::Lock),
        "{waiting:?}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        bot.deployment(&waiting.id.to_string()).state,
        DeployState::Pending,
        "the push ran through the lock"
    );

    let mut closed = fixture("pull_request_closed");
    closed["number"] = 42.into();
    closed["pull_request"]["number"] = 42.into();
    let (status, answer) = bot.send("pull_request", &closed, "closed-42");
    assert!((200..300).contains(&status), "{answer}");
    wait_until("the lock to end", Duration::from_secs(30), || {
        production_lock(&bot).is_none()
    });
    let released = audited(&bot, "deploybot", "lock.released_on_merge");
    assert_eq!(released.len(), 1, "{:#?}", audit(&bot));
    let done = bot.wait_final(&waiting.id.to_string());
    assert_eq!(done.state, DeployState::Succeeded, "{done:?}");
}

/// With carol and the team @acme/sre as deployers: dave (in the team) rolls back through
/// carol's lock with `--force`, and it is recorded; without `--force` he is refused with
/// the lock's holder; bob, who may write but is no deployer, is refused even with it.
fn a_deployer_forces_a_rollback_through_a_lock_and_others_are_refused(db: TestDb) {
    let bot = start(db, r#"deployers = ["carol", "@acme/sre"]"#);
    bot.fake.add_team_member("acme", "sre", "dave");
    say(&bot, 42, "carol", "/deploy production");
    let first = nth_deployment(&bot, 1);
    bot.wait_final(&first.id.to_string());
    let pushed = Utc::now() - chrono::Duration::seconds(30);
    bot.push_to_pull(42, "9c0ffee5d1e7a1b2c3d4e5f60718293a4b5c6d7e", pushed);
    say(&bot, 42, "carol", "/deploy production");
    let second = nth_deployment(&bot, 2);
    assert_eq!(
        bot.wait_final(&second.id.to_string()).state,
        DeployState::Succeeded
    );

    say(&bot, 42, "carol", "/lock production --reason investigating");
    reply_with(&bot, 42, &["Locked `production`", "@carol"]);

    say(&bot, 42, "bob", "/rollback production --force");
    let bobs = reply_with(&bot, 42, &["@bob cannot roll back `production`"]);
    assert!(bobs.contains("deployers"), "{bobs}");

    say(&bot, 42, "dave", "/rollback production");
    let unforced = reply_with(&bot, 42, &["@dave cannot roll back `production`"]);
    assert!(
        unforced.contains("locked by @carol") && unforced.contains("--force"),
        "{unforced}"
    );
    barrier(&bot, 42, "carol", '/');
    assert_eq!(production(&bot).len(), 2, "a refused rollback was queued");
    let bobs = audited(&bot, "@bob", "refused");
    assert_eq!(bobs.len(), 1, "{:#?}", audit(&bot));
    assert!(
        bobs[0].detail.contains("not a deployer") && bobs[0].instance_id.is_some(),
        "{:?}",
        bobs[0]
    );

    say(
        &bot,
        42,
        "dave",
        "/rollback production --force --reason error rate",
    );
    let rollback = nth_deployment(&bot, 3);
    assert_eq!(rollback.kind, DeployKind::Rollback);
    assert_eq!(rollback.initiator, "dave");
    assert!(
        rollback.source.trigger.contains("error rate"),
        "{:?}",
        rollback.source
    );
    let forced = audited(&bot, "@dave", "force");
    assert_eq!(forced.len(), 1, "{:#?}", audit(&bot));
    assert!(forced[0].detail.contains("@carol"), "{:?}", forced[0]);
    assert!(production_lock(&bot).is_some(), "the lock is carol's still");
}

/// During a freeze a deploy is refused with the freeze's reason and end; `--force` by a
/// deployer passes (recorded), a dry run needs none, and `/help` shows the freeze.
fn a_freeze_refuses_deploys_unless_a_deployer_forces_one(db: TestDb) {
    let now = Utc::now();
    let start_at = (now - chrono::Duration::hours(1)).to_rfc3339();
    let end = now + chrono::Duration::days(1);
    let settings = format!(
        "deployers = [\"carol\"]\n\n[[instances.freeze]]\nreason = \"end-of-year freeze\"\nstart = \"{start_at}\"\nend = \"{}\"\n",
        end.to_rfc3339()
    );
    let bot = start(db, &settings);
    say(&bot, 42, "carol", "/deploy production");
    let refusal = reply_with(&bot, 42, &["@carol cannot deploy `production`"]);
    assert!(
        refusal.contains("end-of-year freeze") && refusal.contains("frozen until"),
        "{refusal}"
    );
    assert!(production(&bot).is_empty());

    say(&bot, 42, "bob", "/deploy production --force");
    reply_with(&bot, 42, &["@bob cannot deploy `production`"]);

    say(&bot, 42, "carol", "/noop production");
    let dry = nth_deployment(&bot, 1);
    assert!(dry.noop);

    say(&bot, 42, "carol", "/deploy production --force");
    let forced = nth_deployment(&bot, 2);
    assert!(!forced.noop);
    assert_eq!(forced.initiator, "carol");
    let events = audited(&bot, "@carol", "force");
    assert_eq!(events.len(), 1, "{:#?}", audit(&bot));
    assert!(
        events[0].detail.contains("end-of-year freeze"),
        "{:?}",
        events[0]
    );

    say(&bot, 42, "carol", "/help");
    let help = reply_with(&bot, 42, &["Environments of acme/web"]);
    assert!(
        help.contains("frozen") && help.contains("end-of-year freeze") && help.contains("`carol`"),
        "{help}"
    );
}

both_backends_owned!(
    a_lock_refuses_everyone_but_its_holder_until_unlocked,
    a_global_lock_holds_every_environment_of_the_repository,
    a_global_lock_is_refused_to_one_not_allowed_on_every_environment,
    a_lock_reason_in_replies_mentions_nobody_and_loads_nothing,
    the_configured_prefix_is_the_only_one_heard,
    parameters_reach_the_deployment_and_unknown_names_are_refused,
    noop_queues_a_dry_run,
    a_replayed_lock_comment_acts_once,
    closing_the_pull_request_releases_its_lock_and_the_waiting_push_runs,
    a_deployer_forces_a_rollback_through_a_lock_and_others_are_refused,
    a_freeze_refuses_deploys_unless_a_deployer_forces_one,
);
