//! The watch after a successful deployment, through the real server, the fake GitHub and
//! a real Prometheus scraping an exporter the test controls, on both databases: once a
//! deploy succeeded its gates keep running for `watch`; when the error rate rises within
//! the window the deployment becomes rolled back with the gate's reason, the previous
//! release is live again and GitHub's deployment status says why. A server killed during
//! the window is restarted and still catches the failure.

use std::time::Duration;

use deploybot::deploy::{DeployKind, DeployState, Deployment, InstanceStore, ReleaseStore};

use crate::bot::{Bot, SHA, push, wait_until};
use crate::both_backends_owned;
use crate::common::TestDb;
use crate::common::prometheus::{Exporter, Prometheus};

/// The second tag's commit.
const NEXT_SHA: &str = "5555555555555555555555555555555555555555";

/// web-production watched for `watch` by one gate on the exporter's error ratio.
fn production(prometheus: &str, watch: &str) -> String {
    format!(
        r#"watch = "{watch}"

[[instances.gates]]
name = "error rate"
prometheus = "{prometheus}"
query = 'app_error_ratio{{instance="{{{{instance}}}}"}}'
max = 0.01
interval = "300ms"
count = 1
"#
    )
}

fn set_errors(prom: &Prometheus, exporter: &Exporter, ratio: f64) {
    exporter.set("app_error_ratio", &[("instance", "web-production")], ratio);
    prom.wait_for("app_error_ratio", |samples| {
        samples
            .iter()
            .any(|(_, value)| (*value - ratio).abs() < 1e-9)
    });
}

/// Pushes tag `tag` at `sha` and waits for its deployment to end; that deployment.
fn deploy_tag(bot: &Bot, tag: &str, sha: &str) -> Deployment {
    let before = bot.deployments("web-production").len();
    let (status, answer) = bot.send(
        "push",
        &push(&format!("refs/tags/{tag}"), sha, "alice"),
        &format!("push-{tag}"),
    );
    assert!((200..300).contains(&status), "{status} {answer}");
    let mut started = None;
    wait_until("the tag's deployment", Duration::from_secs(30), || {
        let all = bot.deployments("web-production");
        if all.len() > before {
            started = all.into_iter().max_by_key(|d| d.created_at);
        }
        started.is_some()
    });
    bot.wait_final(&started.unwrap().id.to_string())
}

/// v1 live, then v2 live and watched.
fn two_releases(bot: &Bot) -> Deployment {
    wait_until(
        "the instances to be stored",
        Duration::from_secs(30),
        || bot.db.store.find_instance("acme", "web-production").is_ok(),
    );
    let first = deploy_tag(bot, "v1.0.0", SHA);
    assert_eq!(first.state, DeployState::Succeeded, "{}", first.error);
    let second = deploy_tag(bot, "v2.0.0", NEXT_SHA);
    assert_eq!(second.state, DeployState::Succeeded, "{}", second.error);
    assert!(second.watch_until.is_some(), "{second:?}");
    second
}

/// The watched deployment ends rolled back with the gate's reason, v1 is live again, and
/// GitHub's deployment status says why.
fn expect_rolled_back(bot: &Bot, watched: &Deployment) {
    let id = watched.id.to_string();
    let mut now = bot.deployment(&id);
    wait_until("the watch to roll back", Duration::from_secs(60), || {
        now = bot.deployment(&id);
        now.state == DeployState::RolledBack
    });
    assert!(
        now.error.starts_with("error rate 0.5 > 0.01 at watch"),
        "{}",
        now.error
    );
    assert!(now.error.ends_with("; rolling back to v1"), "{}", now.error);
    let instance = bot.instance("web-production");
    wait_until("v1 to be live again", Duration::from_secs(60), || {
        bot.deployments("web-production")
            .iter()
            .any(|d| d.kind == DeployKind::Rollback && d.state == DeployState::Succeeded)
    });
    let active = bot.db.store.active_release("acme", instance.id).unwrap();
    assert_eq!(active.map(|r| r.version), Some(1));
    let mut seen = Vec::new();
    let found = (0..300).any(|_| {
        seen = bot
            .fake
            .deployments("acme/web")
            .into_iter()
            .map(|d| {
                let last = d
                    .statuses
                    .last()
                    .map(|s| (s.state.clone(), s.description.clone()));
                (d.payload["deploybot"]["deployment_id"].clone(), last)
            })
            .collect();
        let shown = seen.iter().any(|(mirrors, description)| {
            *mirrors == id.as_str()
                && description.as_ref().is_some_and(|(state, d)| {
                    state == "failure" && d.contains("error rate 0.5 > 0.01 at watch")
                })
        });
        if !shown {
            std::thread::sleep(Duration::from_millis(100));
        }
        shown
    });
    assert!(found, "GitHub's deployments: {seen:?}");
}

fn a_rising_error_rate_within_the_watch_rolls_back(db: TestDb) {
    let Some(prom) = Prometheus::start_or_skip("a_rising_error_rate_within_the_watch_rolls_back")
    else {
        return;
    };
    set_errors(&prom, prom.exporter(), 0.001);
    let bot = Bot::start_with(
        db,
        "echo deployed",
        "",
        false,
        &production(prom.url(), "20s"),
    );
    let watched = two_releases(&bot);
    set_errors(&prom, prom.exporter(), 0.5);
    expect_rolled_back(&bot, &watched);
}

fn a_watch_survives_a_killed_server(db: TestDb) {
    let Some(prom) = Prometheus::start_or_skip("a_watch_survives_a_killed_server") else {
        return;
    };
    set_errors(&prom, prom.exporter(), 0.001);
    let mut bot = Bot::start_with(
        db,
        "echo deployed",
        "",
        false,
        &production(prom.url(), "30s"),
    );
    let watched = two_releases(&bot);
    bot.kill9_and_restart();
    set_errors(&prom, prom.exporter(), 0.5);
    expect_rolled_back(&bot, &watched);
}

both_backends_owned!(
    a_rising_error_rate_within_the_watch_rolls_back,
    a_watch_survives_a_killed_server,
);
