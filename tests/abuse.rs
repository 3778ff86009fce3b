//! Hostile HTTP against the real `deploybot serve` (tests/github/bot.rs): slow bodies, huge
//! headers, oversized and malformed bodies, values at their limits, unknown events, replays
//! and signatures over another body. Each gets its documented answer, and afterwards the
//! server still answers `/healthz` and still turns a signed push into a deployment.

#[allow(dead_code)]
#[path = "github/bot.rs"]
mod bot;
#[path = "common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bot::{Bot, PR_SHA, SECRET, SHA, fixture, pr_comment, push, wait_until};
use common::TestDb;
use deploybot::deploy::{DeployState, Store};
use deploybot::github::webhook::signature;
use serde_json::Value;

const SCRIPT: &str = "echo \"image=$DEPLOY_IMAGE\"";

/// How long a healthy server may take to answer on loopback before it counts as hung.
/// Generous: this detects a server that stopped answering, it does not measure speed.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// One HTTP exchange over a fresh connection: writes `request` as is (the server may
/// close early, which is not an error here) and reads the whole answer.
fn exchange(port: u16, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(ANSWER_WITHIN)).unwrap();
    stream.set_write_timeout(Some(ANSWER_WITHIN)).unwrap();
    let _ = stream.write_all(request);
    read_answer(&mut stream)
}

/// Reads until the server closes (every request here says `Connection: close`), or until
/// the read timeout, which then shows as a status of 0.
fn read_answer(stream: &mut TcpStream) -> (u16, String) {
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            // A reset after the answer was sent (the server closed with unread input).
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// The JSON object in an answer's body (after the head; chunked framing skipped).
fn json_of(answer: &str) -> Value {
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    body.find('{')
        .and_then(|start| body.rfind('}').map(|end| &body[start..=end]))
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or(Value::Null)
}

/// `GET /healthz` answered 200, and not after a hang.
fn assert_healthz(port: u16) {
    let started = Instant::now();
    let (status, answer) = exchange(
        port,
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200, "/healthz: {answer:?}");
    assert!(
        started.elapsed() < ANSWER_WITHIN,
        "/healthz took {:?}",
        started.elapsed()
    );
}

/// The server is healthy and a normal signed push to main still creates a deployment.
/// `n` makes the commit (and the delivery) new for every call.
fn assert_still_deploys(bot: &Bot, n: u64) {
    assert_healthz(bot.port);
    let sha = format!("{n:040x}");
    let before = bot.deployments("web-staging").len();
    let (status, answer) = bot.send(
        "push",
        &push("refs/heads/main", &sha, "octocat"),
        &format!("after-abuse-{n}"),
    );
    assert_eq!(status, 202, "{answer}");
    let created = answer["deployments"].as_array().unwrap();
    assert_eq!(created.len(), 1, "{answer}");
    let deployments = bot.deployments("web-staging");
    assert_eq!(deployments.len(), before + 1);
    assert_eq!(deployments[0].id.to_string(), created[0].as_str().unwrap());
    let image = bot.deployment(created[0].as_str().unwrap()).image;
    assert_eq!(image, format!("ghcr.io/acme/web:{}", &sha[..7]));
}

/// A signed webhook request with exactly this body, as raw bytes.
fn signed_request(event: &str, delivery: &str, body: &[u8]) -> Vec<u8> {
    webhook_request(
        event,
        delivery,
        &signature::sign(SECRET.as_bytes(), body),
        body,
    )
}

/// A webhook request with this signature header and body, as raw bytes.
fn webhook_request(event: &str, delivery: &str, signature: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\nX-GitHub-Event: {event}\r\n\
         X-GitHub-Delivery: {delivery}\r\nX-Hub-Signature-256: {signature}\r\n\r\n",
        body.len(),
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// Sends a signed body (bytes, not necessarily JSON) and returns the status and answer.
fn send_signed(bot: &Bot, event: &str, delivery: &str, body: &[u8]) -> (u16, Value) {
    let (status, answer) = exchange(bot.port, &signed_request(event, delivery, body));
    (status, json_of(&answer))
}

/// Raises the bot's `webhook_max_bytes` (64 KiB in bot.rs) and restarts it on the same
/// port and database.
fn raise_body_limit(bot: &mut Bot, bytes: usize) {
    let path = bot.dir().join("deploybot.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("webhook_max_bytes = 65536"), "{text}");
    let text = text.replace(
        "webhook_max_bytes = 65536",
        &format!("webhook_max_bytes = {bytes}"),
    );
    std::fs::write(&path, text).unwrap();
    bot.kill9_and_restart();
}

// ---------------------------------------------------------------------------------------

/// Clients that send their body a byte every 100 ms hold their own connection only: the
/// server keeps answering others, and a slow body that does complete is still handled.
fn slow_bodies_do_not_hold_up_others(db: TestDb) {
    let bot = Bot::start(db, SCRIPT, "");
    let body = br#"{"zen": "Slow is smooth.", "hook_id": 7}"#.to_vec();
    let request = signed_request("ping", "slow-complete", &body);
    let (head, slow_body) = request.split_at(request.len() - body.len());
    let port = bot.port;
    let head = head.to_vec();
    let slow_body = slow_body.to_vec();

    // One client completes its body slowly (about 4 s); twenty others give up half-way.
    let complete = {
        let (head, slow_body) = (head.clone(), slow_body.clone());
        std::thread::spawn(move || {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream.set_read_timeout(Some(ANSWER_WITHIN)).unwrap();
            stream.write_all(&head).unwrap();
            for byte in slow_body {
                stream.write_all(&[byte]).unwrap();
                std::thread::sleep(Duration::from_millis(100));
            }
            read_answer(&mut stream)
        })
    };
    let quitters: Vec<_> = (0..20)
        .map(|_| {
            let (head, slow_body) = (head.clone(), slow_body.clone());
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
                stream.write_all(&head).unwrap();
                for &byte in &slow_body[..slow_body.len() / 2] {
                    stream.write_all(&[byte]).unwrap();
                    std::thread::sleep(Duration::from_millis(100));
                }
                // Dropped mid-body.
            })
        })
        .collect();

    // Meanwhile the server answers others, and a push still deploys.
    std::thread::sleep(Duration::from_millis(300));
    let mut n = 0;
    while !complete.is_finished() {
        assert_healthz(port);
        if n < 3 {
            assert_still_deploys(&bot, 0x510 + n);
        }
        n += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        n >= 5,
        "only {n} checks ran while the slow body was being sent"
    );
    let (status, answer) = complete.join().unwrap();
    assert_eq!(status, 200, "the slow but complete ping: {answer:?}");
    assert_eq!(json_of(&answer)["status"], "pong", "{answer:?}");
    for quitter in quitters {
        quitter.join().unwrap();
    }
    assert_still_deploys(&bot, 0x51f);
}

/// A body that has not arrived within `webhook_body_timeout` gets 408 naming the setting,
/// the connection is closed, nothing is stored (the same delivery sent whole afterwards is
/// not a duplicate), and the server keeps serving.
fn a_body_slower_than_the_deadline_gets_408(db: TestDb) {
    let mut bot = Bot::start(db, SCRIPT, "");
    let path = bot.dir().join("deploybot.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("webhook_body_timeout = \"1s\"\n{text}")).unwrap();
    bot.kill9_and_restart();

    let body = serde_json::to_vec(&fixture("ping")).unwrap();
    let request = signed_request("ping", "slow-ping", &body);
    let half = request.len() - body.len() / 2;
    let mut stream = TcpStream::connect(("127.0.0.1", bot.port)).unwrap();
    stream.set_read_timeout(Some(ANSWER_WITHIN)).unwrap();
    stream.write_all(&request[..half]).unwrap();
    // The rest never comes; the answer does, about a second later.
    let started = std::time::Instant::now();
    let (status, answer) = read_answer(&mut stream);
    let waited = started.elapsed();
    assert_eq!(status, 408, "{answer}");
    let answer = json_of(&answer);
    assert_eq!(answer["error"]["code"], "body_timeout", "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("webhook_body_timeout"),
        "{answer}"
    );
    assert!(
        waited >= Duration::from_millis(900),
        "answered after {waited:?}, before the deadline"
    );
    // Closed: nothing more is read from this connection.
    let mut rest = Vec::new();
    let closed = std::io::Read::read_to_end(&mut stream, &mut rest);
    assert!(
        closed.is_ok(),
        "the connection is closed after the 408: {closed:?}"
    );

    // Nothing was stored: the whole delivery is new, not a duplicate.
    let (status, answer) = send_signed(&bot, "ping", "slow-ping", &body);
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("pong")),
        "{answer}"
    );
    assert_healthz(bot.port);
}

/// Huge request heads are refused with 431 before any handler runs, and the server does
/// not crash. actix-web reads a request head of up to 128 KiB: a 64 KiB header is within
/// that and is handled like any other request (here: a signed ping answered with pong);
/// a 256 KiB header or a flood of headers is refused.
fn huge_headers_are_refused(db: TestDb) {
    let bot = Bot::start(db, SCRIPT, "");
    let body = serde_json::to_vec(&fixture("ping")).unwrap();
    let with_header = |delivery: &str, extra: &str| {
        let mut request = signed_request("ping", delivery, &body);
        let at = request.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
        request.splice(at..at, extra.bytes());
        exchange(bot.port, &request)
    };
    let (status, answer) = with_header(
        "header-64k",
        &format!("X-Padding: {}\r\n", "a".repeat(64 << 10)),
    );
    assert_eq!(status, 200, "a 64 KiB header: {:?}", answer.get(..300));
    assert_eq!(json_of(&answer)["status"], "pong");

    for (what, extra) in [
        (
            "a 256 KiB header",
            format!("X-Padding: {}\r\n", "a".repeat(256 << 10)),
        ),
        (
            "200 headers of 1 KiB",
            (0..200)
                .map(|i| format!("X-H{i}: {}\r\n", "b".repeat(1 << 10)))
                .collect(),
        ),
        (
            "2000 small headers",
            (0..2_000).map(|i| format!("X-H{i}: {i}\r\n")).collect(),
        ),
    ] {
        let (status, answer) = with_header(what, &extra);
        assert!(
            status == 431 || status == 400,
            "{what}: {status} {:?}",
            answer.get(..300)
        );
    }

    // A huge value in the signature header itself is malformed, not a crash.
    let sig = format!("sha256={}", "0".repeat(16 * 1024));
    let request = webhook_request("ping", "long-signature", &sig, &body);
    let (status, raw) = exchange(bot.port, &request);
    let answer = json_of(&raw);
    assert_eq!(status, 401, "{raw:?}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("malformed"),
        "{answer}"
    );
    // A delivery id longer than 200 characters is a bad request.
    let (status, answer) = send_signed(&bot, "ping", &"d".repeat(201), &body);
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("X-GitHub-Delivery"),
        "{answer}"
    );
    assert_still_deploys(&bot, 0x431);
}

/// Bodies past `webhook_max_bytes` are 413, whether announced by Content-Length (even one
/// that is never sent) or streamed chunked without a length.
fn bodies_past_the_limit_are_413(db: TestDb) {
    let bot = Bot::start(db, SCRIPT, "");
    // Announced and sent.
    let big = vec![b' '; 65_537];
    let (status, answer) = send_signed(&bot, "push", "too-big", &big);
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"]["code"], "payload_too_large");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("65536"),
        "{answer}"
    );

    // Announced as 10 GB, never sent: refused at once, not after waiting for it.
    let head = "POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10000000000\r\n\
                Connection: close\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: liar\r\n\
                X-Hub-Signature-256: sha256=00\r\n\r\n";
    let (status, answer) = exchange(bot.port, head.as_bytes());
    assert_eq!(status, 413, "{answer:?}");

    // Chunked, no length: refused once the chunks pass the limit.
    let mut chunked =
        "POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\
                       Connection: close\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: chunked\r\n\
                       X-Hub-Signature-256: sha256=00\r\n\r\n"
            .to_string();
    let chunk = " ".repeat(8192);
    for _ in 0..10 {
        chunked.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    chunked.push_str("0\r\n\r\n");
    let (status, answer) = exchange(bot.port, chunked.as_bytes());
    assert_eq!(status, 413, "{:?}", answer.get(..300));
    assert_eq!(json_of(&answer)["error"]["code"], "payload_too_large");

    // Exactly at the limit is read (and then verified): 401 for a wrong signature, not 413.
    let at_limit = vec![b' '; 65_536];
    let wrong = signature::sign(b"wrong", &at_limit);
    let request = webhook_request("push", "at-limit", &wrong, &at_limit);
    let (status, answer) = exchange(bot.port, &request);
    assert_eq!(status, 401, "{answer:?}");
    assert_still_deploys(&bot, 0x413);
}

/// A signed body with bytes that are not UTF-8 is a 400 that names the event, for every
/// event deploybot handles.
fn invalid_utf8_in_a_signed_body_is_400_naming_the_event(db: TestDb) {
    let bot = Bot::start(db, SCRIPT, "");
    for (i, (event, fixture_name)) in [
        ("ping", "ping"),
        ("push", "push"),
        ("create", "create_tag"),
        ("issue_comment", "issue_comment_created_pr"),
    ]
    .into_iter()
    .enumerate()
    {
        let text = serde_json::to_string(&fixture(fixture_name)).unwrap();
        // Inside a string value: `"repository":{"…` gets a lone 0xFF after its first quote.
        let at = text.find("\"full_name\":\"").unwrap() + "\"full_name\":\"".len();
        let mut body = text.into_bytes();
        body.insert(at, 0xff);
        body.insert(at + 1, 0xfe);
        let (status, answer) = send_signed(&bot, event, &format!("utf8-{i}"), &body);
        assert_eq!(status, 400, "{event}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_payload", "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("{event} payload is invalid")),
            "{message}"
        );
    }
    assert!(bot.deployments("web-staging").is_empty());
    assert_still_deploys(&bot, 0xf8);
}

/// JSON nested 10,000 levels deep, signed: a 400 naming the event wherever deploybot reads
/// the nested value (serde_json follows typed fields only as deep as the struct goes, and
/// bounds recursion at 128), never a stack overflow. Inside a field deploybot ignores, serde
/// skips the value iteratively, without recursion: such a body is valid JSON and is
/// accepted like any other.
fn json_nested_10000_levels_is_400(db: TestDb) {
    let bot = Bot::start(db, SCRIPT, "");
    let arrays = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let objects = format!("{}null{}", r#"{"":"#.repeat(10_000), "}".repeat(10_000));
    let deep_in = |fixture_name: &str, pointer: &str, deep: &str| {
        let mut value = fixture(fixture_name);
        *value.pointer_mut(pointer).unwrap() = "DEEP".into();
        serde_json::to_string(&value)
            .unwrap()
            .replace("\"DEEP\"", deep)
    };
    let cases = [
        ("push", arrays.clone()),
        ("issue_comment", objects.clone()),
        ("ping", format!(r#"{{"zen":{arrays},"hook_id":1}}"#)),
        ("push", deep_in("push", "/repository", &objects)),
        ("create", deep_in("create_tag", "/sender", &arrays)),
        (
            "issue_comment",
            deep_in("issue_comment_created_pr", "/comment/body", &objects),
        ),
        ("push", deep_in("push", "/head_commit/id", &arrays)),
    ];
    for (i, (event, body)) in cases.into_iter().enumerate() {
        assert!(body.len() < 65_536);
        let (status, answer) = send_signed(&bot, event, &format!("deep-{i}"), body.as_bytes());
        assert_eq!(status, 400, "{event}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_payload");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("{event} payload is invalid")),
            "{message}"
        );
    }
    assert!(bot.deployments("web-staging").is_empty());

    // Deep inside fields deploybot ignores: skipped, and the event is handled.
    let mut ping = fixture("ping");
    ping["hook"] = "DEEP".into();
    let ping = serde_json::to_string(&ping)
        .unwrap()
        .replace("\"DEEP\"", &objects);
    let (status, answer) = send_signed(&bot, "ping", "deep-ignored-1", ping.as_bytes());
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("pong")),
        "{answer}"
    );
    let mut event = push("refs/heads/main", SHA, "octocat");
    event["repository"]["topics"] = "DEEP".into();
    let event = serde_json::to_string(&event)
        .unwrap()
        .replace("\"DEEP\"", &arrays);
    let (status, answer) = send_signed(&bot, "push", "deep-ignored-2", event.as_bytes());
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        answer["deployments"].as_array().unwrap().len(),
        1,
        "{answer}"
    );
    assert_still_deploys(&bot, 0xdee9);
}

/// Integers at u64::MAX are accepted where GitHub uses them (PR number, comment id,
/// installation id) and one past it is a 400; megabyte strings within the body limit are
/// stored and shown whole.
fn numbers_and_strings_at_their_limits(db: TestDb) {
    let mut bot = Bot::start(db, SCRIPT, "");
    // PR number u64::MAX parses (an edited comment: ignored, so no job asks the fake GitHub,
    // whose PR ids are 1000 + number).
    let mut edited = pr_comment(u64::MAX, u64::MAX, "octocat", "/deploy production");
    edited["action"] = "edited".into();
    let (status, answer) = bot.send("issue_comment", &edited, "max-0");
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "ignored", "{answer}");

    // `/deploy` in comment u64::MAX through installation u64::MAX, on the largest PR the fake
    // GitHub can serve: accepted (the comment's job), and the deployment it makes keeps
    // those numbers exactly.
    let pr = u64::MAX - 1000;
    bot.fake.set_permission("acme/web", "octocat", "write");
    bot.open_pull(pr, PR_SHA, false, "open");
    let mut comment = pr_comment(pr, u64::MAX, "octocat", "/deploy production");
    comment["installation"]["id"] = u64::MAX.into();
    let (status, answer) = bot.send("issue_comment", &comment, "max-1");
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "accepted", "{answer}");
    assert_eq!(answer["jobs"], 1, "the comment's job: {answer}");
    wait_until("the command's deployment", Duration::from_secs(30), || {
        bot.deployments("web-production").len() == 1
    });
    let deployment = bot.deployments("web-production").remove(0);
    assert_eq!(deployment.source.pull_request, Some(pr));
    assert_eq!(deployment.source.comment_id, Some(u64::MAX));
    assert_eq!(deployment.source.installation_id, Some(u64::MAX));
    assert_eq!(deployment.image, format!("ghcr.io/acme/web:{PR_SHA}"));
    let done = bot.wait_final(&deployment.id.to_string());
    assert_eq!(done.state, DeployState::Succeeded, "{}", done.error);

    // One past u64::MAX, negative, fractional: invalid payloads.
    let text = serde_json::to_string(&comment).unwrap();
    let max = u64::MAX.to_string();
    for (i, bad) in [
        "18446744073709551616",
        "-1",
        "1.5",
        "1e400",
        "99999999999999999999999",
    ]
    .into_iter()
    .enumerate()
    {
        let body = text.replacen(&max, bad, 1);
        let (status, answer) =
            send_signed(&bot, "issue_comment", &format!("num-{i}"), body.as_bytes());
        assert_eq!(status, 400, "{bad}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("issue_comment payload is invalid"),
            "{answer}"
        );
    }

    // Megabyte strings, within a 4 MiB limit.
    raise_body_limit(&mut bot, 4 << 20);
    let huge = "x".repeat(1 << 20);
    let mut event = push("refs/heads/main", SHA, "octocat");
    event["head_commit"]["message"] = huge.clone().into();
    event["pusher"]["name"] = huge.clone().into();
    event["repository"]["description"] = huge.clone().into();
    let (status, answer) = bot.send("push", &event, "mega-1");
    assert_eq!(status, 202, "{answer}");
    let id = answer["deployments"][0].as_str().unwrap().to_string();
    let release = bot.deployment(&id).release_id;
    assert_eq!(
        bot.db
            .store
            .get_release("acme", release)
            .unwrap()
            .commit_sha,
        SHA
    );

    // A megabyte sender login would make megabyte notes: the delivery is accepted and the
    // deployment refused, with the reason in the answer.
    let login = "L".repeat(1 << 20);
    let other = "b10867b14bb761a232cd80139fbd4c0d33264240";
    let (status, answer) = bot.send("push", &push("refs/heads/main", other, &login), "mega-2");
    assert_eq!(status, 202);
    assert_eq!(answer["deployments"], serde_json::json!([]));
    assert_eq!(answer["refused"][0]["instance"], "web-staging");
    assert_eq!(
        answer["refused"][0]["reason"],
        "notes are longer than 4096 characters"
    );

    // A megabyte comment with the command at its end still finds the command.
    let body = format!("{}\n\n/help", "words ".repeat((1 << 20) / 6));
    let (status, answer) = bot.send(
        "issue_comment",
        &pr_comment(7, 70, "octocat", &body),
        "mega-3",
    );
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["jobs"], 1, "the comment's job: {answer}");
    assert_still_deploys(&bot, 0x2e6);
}

/// Events deploybot does not act on are 202 ignored, whatever their body or name.
fn unknown_events_are_ignored(db: TestDb) {
    let bot = Bot::start(db, SCRIPT, "");
    let long_name = "e".repeat(4_000);
    let cases: [(&str, &[u8]); 5] = [
        ("workflow_run", br#"{"action": "completed"}"#),
        ("pull_request_review", b"not json at all"),
        ("deployment_status", b""),
        ("Push", br#"{"ref": "refs/heads/main"}"#),
        (&long_name, b"{}"),
    ];
    for (i, (event, body)) in cases.into_iter().enumerate() {
        let (status, answer) = send_signed(&bot, event, &format!("unknown-{i}"), body);
        assert_eq!(status, 202, "{}: {answer}", &event[..event.len().min(20)]);
        assert_eq!(answer["status"], "ignored", "{answer}");
        assert!(
            answer["reason"]
                .as_str()
                .unwrap()
                .contains("does not act on"),
            "{answer}"
        );
    }
    assert!(bot.deployments("web-staging").is_empty());
    assert_still_deploys(&bot, 0xe7e);
}

/// A replayed delivery is 200 duplicate and changes nothing, even with another (validly
/// signed) body under the same delivery id.
fn replayed_deliveries_are_duplicates(db: TestDb) {
    let bot = Bot::start(db, SCRIPT, "");
    let event = push("refs/heads/main", SHA, "octocat");
    let (status, answer) = bot.send("push", &event, "replayed");
    assert_eq!(status, 202, "{answer}");
    for _ in 0..3 {
        let (status, answer) = bot.send("push", &event, "replayed");
        assert_eq!(
            (status, answer["status"].as_str()),
            (200, Some("duplicate"))
        );
    }
    let other = push(
        "refs/heads/main",
        "c10867b14bb761a232cd80139fbd4c0d33264240",
        "mallory",
    );
    let (status, answer) = bot.send("push", &other, "replayed");
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("duplicate"))
    );
    let deployments = bot.deployments("web-staging");
    assert_eq!(deployments.len(), 1);
    assert_eq!(deployments[0].initiator, "octocat");
    assert_still_deploys(&bot, 0x4e9);
}

/// A genuine signature moved onto another body is 401 and stores nothing.
fn a_valid_signature_over_another_body_is_401(db: TestDb) {
    let bot = Bot::start(db, SCRIPT, "");
    let genuine = serde_json::to_vec(&fixture("ping")).unwrap();
    let sig = signature::sign(SECRET.as_bytes(), &genuine);
    let forged = serde_json::to_vec(&push("refs/heads/main", SHA, "mallory")).unwrap();
    for (i, body) in [&forged[..], &genuine[..genuine.len() - 1], b""]
        .into_iter()
        .enumerate()
    {
        let request = webhook_request("push", &format!("forged-{i}"), &sig, body);
        let (status, raw) = exchange(bot.port, &request);
        let answer = json_of(&raw);
        assert_eq!(status, 401, "{raw:?}");
        assert_eq!(answer["error"]["code"], "bad_signature");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("does not match the body"),
            "{answer}"
        );
    }
    assert!(bot.deployments("web-staging").is_empty());
    // The refused delivery ids were not recorded: the genuine event under one is accepted.
    let (status, answer) = bot.send("push", &push("refs/heads/main", SHA, "octocat"), "forged-0");
    assert_eq!(status, 202, "{answer}");
    assert_still_deploys(&bot, 0x401);
}

/// Prepends top-level settings to the bot's configuration and restarts it on the same
/// port and database.
fn configure(bot: &mut Bot, settings: &str) {
    let path = bot.dir().join("deploybot.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{settings}\n{text}")).unwrap();
    bot.kill9_and_restart();
}

/// The value of an unlabelled metric in `GET /metrics`.
fn gauge(port: u16, name: &str) -> i64 {
    let (status, text) = exchange(
        port,
        b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing in {text}"))
}

/// The head of an unsigned push that announces `length` bytes of body.
fn unsigned_head(delivery: &str, length: usize) -> Vec<u8> {
    format!(
        "POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\nConnection: close\r\nX-GitHub-Event: push\r\n\
         X-GitHub-Delivery: {delivery}\r\n\r\n"
    )
    .into_bytes()
}

/// Slow senders: each announces a body of `length` bytes, sends its head, then one byte
/// of body every 300 ms until `stop` or `rounds` bytes, whichever comes first.
fn slow_senders(
    port: u16,
    count: usize,
    length: usize,
    rounds: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<TcpStream>> {
    std::thread::spawn(move || {
        let mut streams: Vec<TcpStream> = (0..count)
            .map(|n| {
                let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
                stream
                    .write_all(&unsigned_head(&format!("slow-{n}"), length))
                    .unwrap();
                let _ = stream.write_all(b"{");
                stream
            })
            .collect();
        for _ in 0..rounds {
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
            for stream in &mut streams {
                let _ = stream.write_all(b" ");
            }
        }
        streams
    })
}

/// 300 unsigned senders hold their connections open, each dripping a byte of a 60,000-byte
/// body every 300 ms: together they announce far more than webhook_pending_bytes (1 MiB
/// here), but they hold only what they have sent. Meanwhile `/healthz` answers 200 and
/// signed pushes deploy.
fn signed_pushes_deploy_while_300_slow_senders_hold_connections(db: TestDb) {
    let mut bot = Bot::start(db, SCRIPT, "");
    configure(&mut bot, "webhook_pending_bytes = 1048576");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let senders = slow_senders(bot.port, 300, 60_000, 25, stop.clone());
    wait_until("300 slow bodies to be held", ANSWER_WITHIN, || {
        gauge(bot.port, "deploybot_webhook_unverified") >= 300
    });
    for n in 0..3 {
        assert_still_deploys(&bot, 0x300 + n);
    }
    assert!(gauge(bot.port, "deploybot_webhook_unverified") >= 300);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    drop(senders.join().unwrap());
    wait_until("the slow bodies to be let go", ANSWER_WITHIN, || {
        gauge(bot.port, "deploybot_webhook_unverified") == 0
    });
    assert_still_deploys(&bot, 0x3ff);
}

/// Sends the head of an unsigned push announcing `length` bytes and `sent` bytes of its
/// body, then waits up to `wait` for an answer (status 0: none, the body is held).
fn partial_body(
    port: u16,
    delivery: &str,
    length: usize,
    sent: usize,
    wait: Duration,
) -> (u16, String, TcpStream) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(&unsigned_head(delivery, length)).unwrap();
    let _ = stream.write_all(&vec![b' '; sent]);
    stream.set_read_timeout(Some(wait)).unwrap();
    let (status, answer) = read_answer(&mut stream);
    (status, answer, stream)
}

/// 50 unsigned senders at once each announce and send 30,000 bytes of a 32,000-byte body
/// and stall, against webhook_pending_bytes = 65,536: at most two are held, every other
/// one gets 503 with Retry-After naming the setting. When they go, pushes deploy again.
fn a_flood_of_large_unsigned_bodies_past_the_byte_budget_gets_503(db: TestDb) {
    let mut bot = Bot::start(db, SCRIPT, "");
    configure(&mut bot, "webhook_pending_bytes = 65536");
    let port = bot.port;
    let flood: Vec<_> = (0..50)
        .map(|n| {
            std::thread::spawn(move || {
                partial_body(
                    port,
                    &format!("flood-{n}"),
                    32_000,
                    30_000,
                    Duration::from_secs(3),
                )
            })
        })
        .collect();
    let answers: Vec<(u16, String, TcpStream)> =
        flood.into_iter().map(|t| t.join().unwrap()).collect();
    let held = answers.iter().filter(|(status, _, _)| *status == 0).count();
    assert!(held <= 2, "{held} bodies held past the budget");
    for (status, answer, _) in answers.iter().filter(|(status, _, _)| *status != 0) {
        assert_eq!(*status, 503, "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("\r\nretry-after: "),
            "{answer}"
        );
        assert_eq!(json_of(answer)["error"]["code"], "overloaded", "{answer}");
    }
    assert!(
        answers
            .iter()
            .any(|(_, answer, _)| answer.contains("webhook_pending_bytes")),
        "no refusal names the setting"
    );
    assert!(gauge(port, "deploybot_webhook_unverified_bytes") <= 65_536);
    drop(answers);
    wait_until("the held bodies to be let go", ANSWER_WITHIN, || {
        gauge(port, "deploybot_webhook_unverified_bytes") == 0
    });
    assert_still_deploys(&bot, 0x503);
}

/// Two unsigned bodies stalled for over a second hold nearly all of webhook_pending_bytes:
/// a signed push still gets in, cutting off the oldest of them (503 with Retry-After).
fn a_signed_push_gets_the_bytes_held_by_the_oldest_stalled_sender(db: TestDb) {
    let mut bot = Bot::start(db, SCRIPT, "");
    configure(&mut bot, "webhook_pending_bytes = 65536");
    let holders: Vec<TcpStream> = (0..2)
        .map(|n| {
            let (status, answer, stream) = partial_body(
                bot.port,
                &format!("holder-{n}"),
                32_000,
                30_000,
                Duration::from_millis(100),
            );
            assert_eq!(status, 0, "{answer}");
            stream
        })
        .collect();
    wait_until("the stalled bodies to be held", ANSWER_WITHIN, || {
        gauge(bot.port, "deploybot_webhook_unverified_bytes") == 60_000
    });
    std::thread::sleep(Duration::from_millis(1100));
    assert_still_deploys(&bot, 0x60b);
    let cut_off: Vec<(u16, String)> = holders
        .into_iter()
        .map(|mut stream| {
            stream
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            read_answer(&mut stream)
        })
        .filter(|(status, _)| *status == 503)
        .collect();
    assert!(!cut_off.is_empty(), "no stalled sender was cut off");
    for (_, answer) in &cut_off {
        assert!(
            answer.to_ascii_lowercase().contains("\r\nretry-after: "),
            "{answer}"
        );
    }
}

/// With every one of webhook_max_pending's slots held by slow senders for more than a
/// second, a signed push still gets in: the oldest slow sender is cut off (503 with
/// Retry-After) to make room.
fn a_signed_push_gets_a_slot_held_by_the_oldest_slow_sender(db: TestDb) {
    let mut bot = Bot::start(db, SCRIPT, "");
    configure(&mut bot, "webhook_max_pending = 4");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let senders = slow_senders(bot.port, 4, 1000, 25, stop.clone());
    wait_until("4 slow bodies to be held", ANSWER_WITHIN, || {
        gauge(bot.port, "deploybot_webhook_unverified") == 4
    });
    std::thread::sleep(Duration::from_millis(1100));
    assert_still_deploys(&bot, 0x404);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut streams = senders.join().unwrap();
    let cut_off: Vec<(u16, String)> = streams
        .iter_mut()
        .map(|stream| {
            stream
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            read_answer(stream)
        })
        .filter(|(status, _)| *status == 503)
        .collect();
    assert!(!cut_off.is_empty(), "no slow sender was cut off");
    for (_, answer) in &cut_off {
        assert!(
            answer.to_ascii_lowercase().contains("\r\nretry-after: "),
            "{answer}"
        );
    }
}

/// An event name of lower-case letters, like GitHub's, different for every `n`.
fn invented_event(mut n: usize) -> String {
    let mut name = String::from("invented_");
    for _ in 0..3 {
        name.push(char::from(b'a' + (n % 26) as u8));
        n /= 26;
    }
    name
}

/// 1000 unsigned requests, each with an X-GitHub-Event of its own, add at most one series
/// to deploybot_webhooks_total (event="other"): an unverified request cannot grow the
/// metrics.
fn invented_event_names_add_no_metric_series(db: TestDb) {
    let bot = Bot::start(db, SCRIPT, "");
    let series = |port: u16| -> Vec<String> {
        let (_, text) = exchange(
            port,
            b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        );
        text.lines()
            .filter(|l| l.starts_with("deploybot_webhooks_total{"))
            .map(|l| l.rsplit_once(' ').unwrap().0.to_string())
            .collect()
    };
    let before = series(bot.port);
    let body = serde_json::to_vec(&fixture("ping")).unwrap();
    for n in 0..1000 {
        let request = webhook_request(
            &invented_event(n),
            &format!("garbage-{n}"),
            &format!("sha256={:064x}", n),
            &body,
        );
        let (status, answer) = exchange(bot.port, &request);
        assert_eq!(status, 401, "{answer}");
    }
    let after = series(bot.port);
    assert!(after.iter().all(|s| !s.contains("invented")), "{after:#?}");
    let added: Vec<_> = after.iter().filter(|s| !before.contains(s)).collect();
    assert!(added.len() <= 1, "{added:#?}");
}

both_backends_owned!(
    slow_bodies_do_not_hold_up_others,
    a_body_slower_than_the_deadline_gets_408,
    huge_headers_are_refused,
    bodies_past_the_limit_are_413,
    invalid_utf8_in_a_signed_body_is_400_naming_the_event,
    json_nested_10000_levels_is_400,
    numbers_and_strings_at_their_limits,
    unknown_events_are_ignored,
    replayed_deliveries_are_duplicates,
    a_valid_signature_over_another_body_is_401,
    signed_pushes_deploy_while_300_slow_senders_hold_connections,
    a_flood_of_large_unsigned_bodies_past_the_byte_budget_gets_503,
    a_signed_push_gets_a_slot_held_by_the_oldest_slow_sender,
    a_signed_push_gets_the_bytes_held_by_the_oldest_stalled_sender,
    invented_event_names_add_no_metric_series,
);
