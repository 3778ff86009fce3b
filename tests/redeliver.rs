//! Missed webhook deliveries, end to end: a real `deploybot serve` authenticated as a
//! GitHub App, and the fake GitHub sending the App's webhooks to it. What GitHub could not
//! deliver while the database was away is asked for again and deploys once it is back;
//! what deploybot stored is never asked for again.

#[allow(dead_code)]
#[path = "github/bot.rs"]
mod bot;
mod common;

use std::collections::HashSet;
use std::time::Duration;

use bot::{Bot, SECRET, push, wait_until};
use common::fake_github::{
    FakeGithub, LIST_HOOK_DELIVERIES_RESPONSE, REDELIVER_HOOK_DELIVERY_RESPONSE,
    TEST_APP_PRIVATE_KEY, TEST_APP_PUBLIC_KEY, validate,
};
use common::{Outage, TestDb};
use deploybot::config::GithubConfig;
use deploybot::github::client::GithubClient;
use serde_json::Value;

/// A bot that is a GitHub App, whose webhooks the fake sends, looking for missed
/// deliveries every second.
fn app_bot(db: TestDb) -> Bot {
    let mut bot = Bot::start_as_app(db, "echo deployed");
    bot.sigterm();
    let config = bot.dir().join("deploybot.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("[github]\n"), "{text}");
    let text = text.replace("[github]\n", "[github]\nredeliver_interval = \"1s\"\n");
    std::fs::write(&config, text).unwrap();
    bot.fake.set_webhook_target(
        &format!("http://127.0.0.1:{}/webhooks/github", bot.port),
        SECRET,
    );
    bot.restart();
    bot
}

/// A push to main (web-staging deploys main) of commit `sha`.
fn push_of(sha: &str) -> Value {
    push("refs/heads/main", sha, "octocat")
}

/// A commit SHA whose short form (the staging image's tag) is distinct for each `n`.
fn sha(n: usize) -> String {
    format!("{:07x}{}", n * 0x111_1111, "b".repeat(33))
}

/// How many deployments of web-staging carry each commit (its image is tagged with the
/// short SHA).
fn deployments_of(bot: &Bot, shas: &[String]) -> Vec<usize> {
    let deployments = bot.deployments("web-staging");
    shas.iter()
        .map(|s| {
            let image = format!("ghcr.io/acme/web:{}", &s[..7]);
            deployments.iter().filter(|d| d.image == image).count()
        })
        .collect()
}

fn list_calls(fake: &FakeGithub) -> usize {
    fake.calls()
        .iter()
        .filter(|c| c.method == "GET" && c.path == "/app/hook/deliveries")
        .count()
}

/// The redeliveries deploybot asked for, by delivery id.
fn redelivery_requests(fake: &FakeGithub) -> Vec<u64> {
    fake.calls()
        .iter()
        .filter(|c| c.method == "POST" && c.path.ends_with("/attempts"))
        .filter_map(|c| c.path.split('/').nth(4)?.parse().ok())
        .collect()
}

/// GitHub delivers several pushes while deploybot's database is away for 30 s: each
/// fails (503, or no answer in time). Once the database is back, deploybot asks GitHub for
/// them again, and every push deploys exactly once.
fn pushes_sent_while_the_database_is_away_deploy_once_it_is_back(db: TestDb) {
    let bot = app_bot(db);
    let shas: Vec<String> = (1..=4).map(sha).collect();
    let outage = Outage::begin(&bot.db);
    let began = std::time::Instant::now();
    let attempts: Vec<_> = std::thread::scope(|scope| {
        let senders: Vec<_> = shas
            .iter()
            .map(|s| {
                let fake = &bot.fake;
                let body = push_of(s);
                scope.spawn(move || fake.send_webhook("push", &body))
            })
            .collect();
        senders.into_iter().map(|s| s.join().unwrap()).collect()
    });
    for attempt in &attempts {
        assert!(
            !attempt.succeeded(),
            "GitHub's first attempt must fail while the database is away: {attempt:?}"
        );
    }
    // The outage lasts 30 s in all.
    std::thread::sleep(Duration::from_secs(30).saturating_sub(began.elapsed()));
    outage.end();

    wait_until(
        "every push to be deployed",
        Duration::from_secs(150),
        || deployments_of(&bot, &shas).iter().all(|&n| n >= 1),
    );
    // GitHub holds a 2xx attempt of every event, and the bot asked for no more after it.
    let guids: HashSet<String> = attempts.iter().map(|a| a.guid.clone()).collect();
    wait_until(
        "GitHub to record a delivered attempt of every push",
        Duration::from_secs(30),
        || {
            let delivered: HashSet<String> = bot
                .fake
                .hook_attempts()
                .into_iter()
                .filter(|a| a.succeeded())
                .map(|a| a.guid)
                .collect();
            guids.is_subset(&delivered)
        },
    );
    let asked = redelivery_requests(&bot.fake).len();
    let rounds = list_calls(&bot.fake);
    wait_until("three more rounds", Duration::from_secs(60), || {
        list_calls(&bot.fake) >= rounds + 3
    });
    assert_eq!(
        redelivery_requests(&bot.fake).len(),
        asked,
        "nothing is asked for once every push was delivered"
    );
    assert_eq!(
        deployments_of(&bot, &shas),
        vec![1; shas.len()],
        "every push deploys exactly once"
    );
    let all = bot.deployments("web-staging");
    assert_eq!(all.len(), shas.len(), "no other deployments: {all:?}");
    // Each request was made as the App, for an attempt of one of these pushes.
    for call in bot
        .fake
        .calls()
        .iter()
        .filter(|c| c.path.starts_with("/app/hook/"))
    {
        assert_eq!(call.auth, common::fake_github::CallAuth::AppJwt, "{call:?}");
    }
    let by_id: Vec<_> = bot.fake.hook_attempts();
    for id in redelivery_requests(&bot.fake) {
        let attempt = by_id.iter().find(|a| a.id == id).unwrap();
        assert!(guids.contains(&attempt.guid), "{attempt:?}");
    }
}

/// A delivery deploybot stored is never asked for again, even when GitHub recorded it as
/// failed (the answer was lost on the way back). In the same listing, a failed delivery
/// deploybot never stored is asked for: the rounds do run.
fn a_delivery_the_bot_stored_is_never_asked_for_again(db: TestDb) {
    let bot = app_bot(db);
    let (stored_sha, missed_sha) = (sha(10), sha(11));
    let stored_guid = "8f2e6a40-0000-11f0-8000-000000000001";
    let (status, answer) = bot.send("push", &push_of(&stored_sha), stored_guid);
    assert_eq!(status, 202, "{answer}");
    bot.fake
        .add_hook_attempt(stored_guid, "push", &push_of(&stored_sha), 504);
    let missed_guid = "8f2e6a40-0000-11f0-8000-000000000002";
    bot.fake
        .add_hook_attempt(missed_guid, "push", &push_of(&missed_sha), 503);

    wait_until(
        "the missed delivery to be redelivered",
        Duration::from_secs(60),
        || {
            bot.fake
                .hook_attempts()
                .iter()
                .any(|a| a.guid == missed_guid && a.redelivery && a.succeeded())
        },
    );
    let rounds = list_calls(&bot.fake);
    wait_until("three more rounds", Duration::from_secs(60), || {
        list_calls(&bot.fake) >= rounds + 3
    });
    let attempts = bot.fake.hook_attempts();
    let stored_ids: Vec<u64> = attempts
        .iter()
        .filter(|a| a.guid == stored_guid)
        .map(|a| a.id)
        .collect();
    assert_eq!(stored_ids.len(), 1, "{attempts:?}");
    let asked = redelivery_requests(&bot.fake);
    assert!(
        !asked.iter().any(|id| stored_ids.contains(id)),
        "the stored delivery was asked for: {asked:?}"
    );
    assert_eq!(asked.len(), 1, "the missed one, once: {asked:?}");
    assert_eq!(deployments_of(&bot, &[stored_sha, missed_sha]), vec![1, 1]);
    let metrics = metrics_text(&bot);
    assert!(
        metrics
            .lines()
            .any(|l| l == "deploybot_webhook_redeliveries_total 1"),
        "{metrics}"
    );
}

/// `GET /metrics` as text.
fn metrics_text(bot: &Bot) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", bot.port)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: bot\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

both_backends_owned!(
    pushes_sent_while_the_database_is_away_deploy_once_it_is_back,
    a_delivery_the_bot_stored_is_never_asked_for_again,
);

// ---------------------------------------------------------------------------------------
// The fake's two endpoints, as GitHub's OpenAPI description has them
// ---------------------------------------------------------------------------------------

fn app_client(fake: &FakeGithub) -> GithubClient {
    let config = GithubConfig {
        api_url: fake.url.clone(),
        app_id: Some(4242),
        app_private_key: Some(TEST_APP_PRIVATE_KEY.to_string()),
        ..GithubConfig::default()
    };
    GithubClient::from_config(&config).unwrap().unwrap()
}

/// `GET /app/hook/deliveries` answers GitHub's documented shape, newest first, one page
/// after another through the `Link` header's cursor, only to the App's JWT;
/// `POST …/attempts` answers 202 and sends the delivery again under the same GUID.
#[test]
fn the_fake_lists_and_redelivers_app_deliveries_as_github_documents() {
    let fake = FakeGithub::start();
    fake.add_repo("acme/web");
    fake.set_token("ghs_plain");
    fake.set_app(4242, TEST_APP_PUBLIC_KEY, 77, "ghs_installation");
    for n in 0..5u64 {
        let code = if n % 2 == 0 { 503 } else { 202 };
        fake.add_hook_attempt(
            &format!("guid-{n}"),
            "push",
            &push_of(&sha(n as usize)),
            code,
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = {
        let _runtime = rt.enter();
        app_client(&fake)
    };

    // Two at a time: three pages, newest first, every entry in GitHub's shape.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let (page, next) = rt
            .block_on(client.app_hook_deliveries(cursor.as_deref(), 2))
            .unwrap();
        seen.extend(page.iter().map(|d| d.guid.clone()));
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ["guid-4", "guid-3", "guid-2", "guid-1", "guid-0"]);

    let key = jsonwebtoken::EncodingKey::from_rsa_pem(TEST_APP_PRIVATE_KEY.as_bytes()).unwrap();
    let jwt = octocrab::auth::create_jwt(octocrab::models::AppId(4242), &key).unwrap();
    let call = |method: reqwest::Method, path: &str, credential: &str| -> (u16, Value) {
        rt.block_on(async {
            let answer = reqwest::Client::new()
                .request(method, format!("{}{path}", fake.url))
                .header("user-agent", "deploybot-test")
                .bearer_auth(credential)
                .send()
                .await
                .unwrap();
            let status = answer.status().as_u16();
            let text = answer.text().await.unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        })
    };
    let (status, listed) = call(
        reqwest::Method::GET,
        "/app/hook/deliveries?per_page=100",
        &jwt,
    );
    assert_eq!(status, 200, "{listed}");
    let errors = validate(&LIST_HOOK_DELIVERIES_RESPONSE.schema(), &listed);
    assert!(errors.is_empty(), "{errors:?}\n{listed}");
    assert_eq!(listed.as_array().unwrap().len(), 5);
    let (status, failed) = call(
        reqwest::Method::GET,
        "/app/hook/deliveries?status=failure",
        &jwt,
    );
    assert_eq!(status, 200);
    let codes: Vec<u64> = failed
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status_code"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, [503, 503, 503]);
    // Only the App itself may list or redeliver.
    assert_eq!(
        call(reqwest::Method::GET, "/app/hook/deliveries", "ghs_plain").0,
        401
    );
    assert_eq!(
        call(
            reqwest::Method::POST,
            "/app/hook/deliveries/1/attempts",
            "ghs_plain"
        )
        .0,
        401
    );
    // Parameters outside the documented ones are refused.
    assert_eq!(
        call(
            reqwest::Method::GET,
            "/app/hook/deliveries?status=broken",
            &jwt
        )
        .0,
        422
    );
    assert_eq!(
        call(
            reqwest::Method::GET,
            "/app/hook/deliveries?cursor=nonsense",
            &jwt
        )
        .0,
        400
    );
    assert_eq!(
        call(
            reqwest::Method::POST,
            "/app/hook/deliveries/999/attempts",
            &jwt
        )
        .0,
        404
    );

    // A redelivery: 202 in the documented shape, then a new attempt under the same GUID.
    let first = fake.hook_attempts()[0].clone();
    let (status, accepted) = call(
        reqwest::Method::POST,
        &format!("/app/hook/deliveries/{}/attempts", first.id),
        &jwt,
    );
    assert_eq!(status, 202);
    let errors = validate(&REDELIVER_HOOK_DELIVERY_RESPONSE.schema(), &accepted);
    assert!(errors.is_empty(), "{errors:?}");
    rt.block_on(client.redeliver_app_hook_delivery(first.id))
        .unwrap();
    wait_until("two redeliveries", Duration::from_secs(30), || {
        fake.hook_attempts()
            .iter()
            .filter(|a| a.guid == first.guid && a.redelivery)
            .count()
            == 2
    });
    let again = fake.hook_attempts();
    let again = again.iter().rev().find(|a| a.guid == first.guid).unwrap();
    assert_eq!(again.body, first.body);
    assert!(again.id > first.id);
}
