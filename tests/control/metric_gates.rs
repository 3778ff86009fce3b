//! Metric gates end to end, through the real server, the fake GitHub and a real
//! Prometheus scraping an exporter the test controls, on both databases: a canary whose
//! error rate crosses the bound at 50% is rolled back, and the gate's name, the measured
//! value, the bound and the step reach the deployment status on GitHub, the reply, the API
//! and the page; the step before it, measured under the bound, is on record too.

use std::time::Duration;

use deploybot::deploy::{DeployState, Deployment, ReleaseStore};

use crate::bot::{Bot, PR_SHA, wait_until};
use crate::both_backends_owned;
use crate::common::prometheus::Prometheus;
use crate::common::{TestDb, http};

/// The second head of #42, deployed after the first one went live.
const NEXT_SHA: &str = "5555555555555555555555555555555555555555";

/// People who comment in these tests; every other comment is the bot's.
const PEOPLE: [&str; 1] = ["alice"];

/// A canary of web-production in quick steps, judged at each step by the exporter's error
/// ratio of that step (`{{canary_percent}}`) for that instance (`{{instance}}`).
fn production(prometheus: &str) -> String {
    format!(
        r#"
[instances.canary]
steps = [10, 50, 100]
pause = "100ms"

[[instances.gates]]
name = "error rate"
prometheus = "{prometheus}"
query = 'app_error_ratio{{instance="{{{{instance}}}}", canary="{{{{canary_percent}}}}"}}'
max = 0.01
interval = "200ms"
count = 2
"#
    )
}

/// Each provider call as `phase slot percent image`, one per line, in `calls`.
const SCRIPT: &str = r#"echo "$DEPLOY_PHASE $DEPLOY_SLOT $DEPLOY_TRAFFIC_PERCENT $DEPLOY_IMAGE" >> "$(dirname "$0")/calls""#;

/// `alice` comments `body` on #42 and the deployment it started ends; that deployment.
fn deploy_by_comment(bot: &Bot, body: &str) -> Deployment {
    let before = bot.deployments("web-production").len();
    let delivery = format!("c-{}", uuid::Uuid::now_v7().simple());
    let (_, status, answer) = bot.comment(42, "alice", body, &delivery);
    assert!((200..300).contains(&status), "{status} {answer}");
    let mut started = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while started.is_none() {
        let all = bot.deployments("web-production");
        if all.len() > before {
            started = all.into_iter().max_by_key(|d| d.created_at);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no deployment from {body:?}; the bot said: {:#?}",
            replies(bot)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    bot.wait_final(&started.unwrap().id.to_string())
}

/// The bot's replies on #42.
fn replies(bot: &Bot) -> Vec<String> {
    bot.fake
        .comments("acme/web", 42)
        .into_iter()
        .filter(|c| !PEOPLE.contains(&c.user.as_str()))
        .map(|c| c.body)
        .collect()
}

fn a_canary_crossing_the_bound_at_50_percent_is_rolled_back_with_the_reason(db: TestDb) {
    let Some(prom) = Prometheus::start_or_skip("a_canary_crossing_the_bound_at_50_percent") else {
        return;
    };
    let exporter = prom.exporter();
    for step in ["10", "50", "100"] {
        let labels = [("instance", "web-production"), ("canary", step)];
        exporter.set("app_error_ratio", &labels, 0.001);
    }
    prom.wait_for("app_error_ratio", |samples| samples.len() == 3);

    let bot = Bot::start_with(db, SCRIPT, "", false, &production(prom.url()));
    bot.fake.set_permission("acme/web", "alice", "write");
    bot.open_pull(42, PR_SHA, false, "open");
    let first = deploy_by_comment(&bot, "/deploy production --strategy canary");
    assert_eq!(first.state, DeployState::Succeeded, "{}", first.error);
    let passed = first.gates.iter().find(|r| r.gate == "error rate").unwrap();
    assert!(passed.passed, "{passed:?}");
    assert_eq!(passed.at, "promotion", "{passed:?}");

    // The next head misbehaves under half the traffic.
    let bad = [("instance", "web-production"), ("canary", "50")];
    exporter.set("app_error_ratio", &bad, 0.2);
    prom.wait_for("app_error_ratio", |samples| {
        samples.iter().any(|(_, value)| *value > 0.1)
    });
    bot.push_to_pull(
        42,
        NEXT_SHA,
        chrono::Utc::now() - chrono::Duration::seconds(30),
    );
    std::fs::write(bot.dir().join("calls"), "").unwrap();
    let second = deploy_by_comment(&bot, "/deploy production --strategy canary");

    assert_eq!(second.state, DeployState::RolledBack, "{second:?}");
    let reason = "error rate 0.2 > 0.01 at canary 50%; restored v1";
    assert_eq!(second.error, reason);
    let failed = second
        .gates
        .iter()
        .find(|r| r.gate == "error rate")
        .unwrap();
    assert!(!failed.passed && failed.value == "0.2" && failed.at == "canary 50%");
    // The provider was told to put v1's slot back to all traffic and drop the canary.
    let calls = std::fs::read_to_string(bot.dir().join("calls")).unwrap();
    let lines: Vec<&str> = calls.lines().collect();
    let at_50 = lines
        .iter()
        .position(|l| l.starts_with("traffic canary 50"))
        .unwrap_or_else(|| panic!("no step to 50%: {calls}"));
    assert!(
        !lines.iter().any(|l| l.starts_with("traffic canary 100")),
        "{calls}"
    );
    assert!(
        lines[at_50..]
            .iter()
            .any(|l| l.starts_with("traffic blue 100"))
    );
    assert!(
        lines[at_50..]
            .iter()
            .any(|l| l.starts_with("retire canary"))
    );
    let instance = bot.instance("web-production");
    let active = bot.db.store.active_release("acme", instance.id).unwrap();
    assert_eq!(active.map(|r| r.version), Some(1));

    // GitHub: the deployment status says why, within GitHub's 140 characters.
    let id = second.id.to_string();
    let description = |bot: &Bot| {
        bot.fake
            .deployments("acme/web")
            .into_iter()
            .find(|d| d.payload["deploybot"]["deployment_id"] == id.as_str())
            .and_then(|d| d.statuses.last().map(|s| s.description.clone()))
            .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !description(&bot).contains(reason) {
        assert!(
            std::time::Instant::now() < deadline,
            "GitHub's status says {:?}, not {reason:?}",
            description(&bot)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let description = description(&bot);
    assert!(description.chars().count() <= 140, "{description}");
    wait_until("the reply with the reason", Duration::from_secs(30), || {
        replies(&bot).iter().any(|r| r.contains(reason))
    });
    let (status, page) = http(bot.port, "GET", &format!("/deployments/{id}"), None, "");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("error rate 0.2 &gt; 0.01 at canary 50%"),
        "{page}"
    );
}

both_backends_owned!(a_canary_crossing_the_bound_at_50_percent_is_rolled_back_with_the_reason);
