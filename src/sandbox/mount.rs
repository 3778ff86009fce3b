//! What `deploybot sandbox` adds to the bot's HTTP server: the pull-request pages (`page`)
//! and `POST /sandbox/{owner}/{repo}/pull/{number}/comments`, where a person comments as
//! one of the stand-in's users. The stand-in records the comment, sends the bot the
//! signed `issue_comment` webhook GitHub would send, and answers with what the bot said.
//! `GET /sandbox/{owner}/{repo}/pull/{number}/view` answers what the page shows, as JSON.

use std::sync::{Arc, Mutex};

use actix_web::error::PayloadError;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::FakeGithub;
use super::hooks::deliver_hook_reading;
use super::page;
use super::seed::announce;
use super::state::{Repo, State, lock};
use super::types::{FakeComment, HookSend};
use super::view::PullSource;
use crate::cli::simulate::sandbox::{PullFacts, comment_payload};

/// The header every answer of the comment route carries, so that `deploybot simulate`
/// knows it talks to a sandbox (a plain `serve` answers 404 without it).
pub const SANDBOX_HEADER: &str = "x-deploybot-sandbox";
/// The longest comment GitHub accepts, in characters.
const MAX_BODY: usize = 65536;
/// The largest request body of the comment route, in bytes: room for a comment of
/// `MAX_BODY` characters written as JSON escapes (up to 12 bytes each, `\ud83d\ude00`).
const MAX_REQUEST_BYTES: usize = 1 << 20;

/// What the comment route needs: the stand-in's state.
struct Comments {
    state: Arc<Mutex<State>>,
    /// What the stand-in still has to announce before a comment (`seed::announce`).
    announcements: Arc<Mutex<Vec<String>>>,
}

/// The body of `POST …/comments`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewComment {
    /// The login commenting: one of the repository's users.
    user: String,
    /// The comment's Markdown, e.g. `/deploy staging`.
    body: String,
    /// The webhook's `X-GitHub-Delivery` (default: a fresh UUID).
    #[serde(default)]
    delivery: Option<String>,
}

/// A comment recorded, and the webhook to send for it.
struct Recorded {
    comment_id: u64,
    send: HookSend,
}

impl FakeGithub {
    /// Registers the sandbox's routes (the pages and the comment route) on a server's
    /// configuration; `server` calls it for each of its workers.
    pub fn routes(&self) -> impl Fn(&mut web::ServiceConfig) + Send + Sync + 'static {
        let source = self.pull_source();
        let views = web::Data::from(Arc::clone(&source));
        let comments = web::Data::new(Comments {
            state: Arc::clone(&self.state),
            announcements: Arc::clone(&self.announcements),
        });
        move |cfg: &mut web::ServiceConfig| {
            page::routes(cfg, Arc::clone(&source));
            cfg.service(
                web::resource("/sandbox/{owner}/{repo}/pull/{number}/comments")
                    .app_data(comments.clone())
                    .app_data(web::PayloadConfig::new(MAX_REQUEST_BYTES))
                    .route(web::post().to(post_comment)),
            )
            .service(
                web::resource("/sandbox/{owner}/{repo}/pull/{number}/view")
                    .app_data(views.clone())
                    .route(web::get().to(get_view)),
            );
        }
    }
}

/// `GET …/pull/{number}/view`: what the pull request's page shows, as JSON (`PullView`).
async fn get_view(
    path: web::Path<(String, String, String)>,
    source: web::Data<dyn PullSource>,
) -> HttpResponse {
    let (owner, name, number) = path.into_inner();
    let repo = format!("{owner}/{name}");
    let view = number.parse().ok().and_then(|n| source.pull_view(&repo, n));
    match view {
        Some(view) => sandbox_answer(StatusCode::OK).json(view),
        None => {
            let known: Vec<String> = source
                .repositories()
                .iter()
                .flat_map(|r| r.pulls.iter().map(move |n| format!("{}#{n}", r.repo)))
                .collect();
            let known: Vec<&str> = known.iter().map(String::as_str).collect();
            let message = format!(
                "the sandbox has no pull request {repo}#{number}; it has: {}",
                list(&known)
            );
            refuse(StatusCode::NOT_FOUND, "not_found", message).answer()
        }
    }
}

async fn post_comment(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    body: Result<web::Bytes, actix_web::Error>,
    comments: web::Data<Comments>,
) -> HttpResponse {
    let (owner, name, number) = path.into_inner();
    let checked = own_host(&req, &comments)
        .and_then(|()| same_origin(&req))
        .and_then(|()| json_content(&req))
        .and_then(|()| body.map_err(|e| unreadable(&e)));
    let body = match checked {
        Ok(body) => body,
        Err(refusal) => return refusal.answer(),
    };
    let request = match parse_request(&body) {
        Ok(request) => request,
        Err(refusal) => return refusal.answer(),
    };
    let Ok(number) = number.parse::<u64>() else {
        let message = format!("{number:?} is not a pull request number: use e.g. /pull/1");
        return refuse(StatusCode::NOT_FOUND, "not_found", message).answer();
    };
    let recorded = {
        let mut state = lock(&comments.state);
        record(&mut state, &format!("{owner}/{name}"), number, request)
    };
    let Recorded { comment_id, send } = match recorded {
        Ok(recorded) => recorded,
        Err(refusal) => return refusal.answer(),
    };
    let delivery = send.guid.clone();
    let shared = Arc::clone(&comments.state);
    let announcements = Arc::clone(&comments.announcements);
    let delivered = web::block(move || {
        announce(&shared, &announcements);
        deliver_hook_reading(&shared, send)
    });
    match delivered.await {
        Ok((attempt, answer)) => sandbox_answer(StatusCode::CREATED).json(json!({
            "comment_id": comment_id,
            "delivery": delivery,
            "webhook_status": attempt.status_code,
            "webhook_answer": serde_json::from_str::<Value>(&answer).unwrap_or(json!(answer)),
        })),
        Err(_) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the comment was recorded, but its webhook could not be sent: try again".into(),
        )
        .answer(),
    }
}

/// Refuses a request addressed to a name that is not this server's: a loopback name or
/// address, or the host of the bot's own URL. A page of another site whose name was made to
/// resolve to this machine (DNS rebinding) is same-origin to the browser, but its requests
/// carry its own name in `Host`.
fn own_host(req: &HttpRequest, comments: &Comments) -> Result<(), Refusal> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let name = host_name(host);
    let bot = {
        let state = lock(&comments.state);
        state.hook_target.as_ref().map(|t| t.url.clone())
    };
    let bot_name = bot
        .as_deref()
        .and_then(|url| url.split_once("://"))
        .map(|(_, rest)| host_name(rest.split('/').next().unwrap_or("")));
    let loopback = name.eq_ignore_ascii_case("localhost")
        || name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !name.is_empty() && (loopback || bot_name.is_some_and(|b| b.eq_ignore_ascii_case(name))) {
        return Ok(());
    }
    let message = format!(
        "this sandbox answers comments addressed to localhost, a loopback address or its own \
         URL's host, not to {host:?}"
    );
    Err(refuse(StatusCode::FORBIDDEN, "forbidden", message))
}

/// The name part of a `Host` value: `127.0.0.1` of `127.0.0.1:8080`, `[::1]` of `[::1]:8080`.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// Refuses a request a web page of another site made (a browser names the page's origin
/// and, in `Sec-Fetch-Site`, whether it is this server's): only this server's own pages
/// and clients that are not browsers (`deploybot simulate comment`) may comment.
fn same_origin(req: &HttpRequest) -> Result<(), Refusal> {
    let headers = req.headers();
    let site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let cross_site = ["cross-site", "same-site"]
        .iter()
        .any(|s| site.eq_ignore_ascii_case(s));
    let foreign_origin = headers.get(header::ORIGIN).is_some_and(|origin| {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let origin = origin.to_str().unwrap_or("");
        host.is_empty()
            || !["http", "https"]
                .iter()
                .any(|scheme| origin.eq_ignore_ascii_case(&format!("{scheme}://{host}")))
    });
    if cross_site || foreign_origin {
        let message = "comments come only from this server's own pages or from clients that \
                       send no Origin header, such as `deploybot simulate comment`: a page of \
                       another site cannot comment"
            .to_string();
        return Err(refuse(StatusCode::FORBIDDEN, "forbidden", message));
    }
    Ok(())
}

/// Refuses a body that is not declared JSON (what a form or a page of another site can
/// send without asking first).
fn json_content(req: &HttpRequest) -> Result<(), Refusal> {
    let is_json = matches!(req.mime_type(), Ok(Some(m)) if m.essence_str() == "application/json");
    if is_json {
        return Ok(());
    }
    let example = r#"{"user": "alice", "body": "/deploy staging"}"#;
    let message =
        format!("send the body as JSON with `Content-Type: application/json`, like {example}");
    Err(refuse(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        message,
    ))
}

/// Why the body could not be read: a 413 naming the limit, or a 400.
fn unreadable(error: &actix_web::Error) -> Refusal {
    match error.as_error::<PayloadError>() {
        Some(PayloadError::Overflow) => {
            let message = format!(
                "the request body is larger than the {MAX_REQUEST_BYTES} bytes the sandbox \
                 accepts: a comment holds at most {MAX_BODY} characters"
            );
            refuse(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
        }
        _ => {
            let message = format!("the request body could not be read: {error}");
            refuse(StatusCode::BAD_REQUEST, "invalid_request", message)
        }
    }
}

/// The JSON body, or a 400 naming what is wrong with it.
fn parse_request(body: &[u8]) -> Result<NewComment, Refusal> {
    let request: NewComment = serde_json::from_slice(body).map_err(|e| {
        let message = format!(
            "the body must be JSON like {{\"user\": \"alice\", \"body\": \"/deploy staging\"}}: {e}"
        );
        refuse(StatusCode::BAD_REQUEST, "invalid_request", message)
    })?;
    if request.body.trim().is_empty() {
        let message = "body is empty: write the comment, e.g. \"/deploy staging\"".to_string();
        return Err(refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            message,
        ));
    }
    if request.body.chars().count() > MAX_BODY {
        let message = format!("body is longer than GitHub's {MAX_BODY} characters");
        return Err(refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            message,
        ));
    }
    let valid_delivery = |d: &String| {
        (1..=100).contains(&d.len())
            && d.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    if request
        .delivery
        .as_ref()
        .is_some_and(|d| !valid_delivery(d))
    {
        let message = "delivery must be 1 to 100 letters, digits, '-', '_' or '.'".to_string();
        return Err(refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            message,
        ));
    }
    Ok(request)
}

/// Records the comment as `request.user` on pull request `number` of `full_name` and
/// builds its webhook, or refuses naming what is unknown and what exists.
fn record(
    state: &mut State,
    full_name: &str,
    number: u64,
    request: NewComment,
) -> Result<Recorded, Refusal> {
    let Some(repo) = state.repos.get(&full_name.to_lowercase()) else {
        let known: Vec<&str> = state.repos.values().map(|r| r.full_name.as_str()).collect();
        let message = format!(
            "the sandbox has no repository {full_name}; it has: {}",
            list(&known)
        );
        return Err(refuse(StatusCode::NOT_FOUND, "not_found", message));
    };
    let login = user_of(repo, &request.user)?;
    let Some(pull) = repo.pulls.get(&number) else {
        let known: Vec<String> = repo.pulls.keys().map(|n| format!("#{n}")).collect();
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        let message = format!(
            "{} has no pull request #{number}; it has: {}",
            repo.full_name,
            list(&known)
        );
        return Err(refuse(StatusCode::NOT_FOUND, "not_found", message));
    };
    if state.hook_target.is_none() {
        let message = "the sandbox has no webhook to send the comment to".to_string();
        return Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            message,
        ));
    }
    let facts = PullFacts {
        title: pull.title.clone(),
        author: pull.author.clone(),
        body: pull.body.clone(),
    };
    let full_name = repo.full_name.clone();
    let id = state.next_id("comment");
    let payload = comment_payload(&full_name, number, &facts, &login, &request.body, id)
        .ok_or_else(|| {
            let message = format!("{full_name} is not a repository name GitHub accepts");
            refuse(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
        })?;
    add_comment(state, &full_name, number, id, &login, &request.body);
    let guid = request
        .delivery
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    Ok(Recorded {
        comment_id: id,
        send: HookSend {
            guid,
            event: "issue_comment".to_string(),
            body: payload.to_string(),
            redelivery: false,
        },
    })
}

/// The login of `user` as the repository knows it, or a 422 listing its users.
fn user_of(repo: &Repo, user: &str) -> Result<String, Refusal> {
    if let Some((login, _)) = repo.roles.get(&user.to_lowercase()) {
        return Ok(login.clone());
    }
    let mut users: Vec<String> = repo
        .roles
        .values()
        .map(|(login, role)| format!("{login} ({role})"))
        .collect();
    users.sort();
    let users: Vec<&str> = users.iter().map(String::as_str).collect();
    let message = format!(
        "{user:?} is not a user of {}; its users are: {}",
        repo.full_name,
        list(&users)
    );
    Err(refuse(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        message,
    ))
}

fn add_comment(state: &mut State, full_name: &str, issue: u64, id: u64, login: &str, body: &str) {
    if let Some(repo) = state.repos.get_mut(&full_name.to_lowercase()) {
        repo.comments.push(FakeComment::new(
            id,
            issue,
            body,
            login,
            format!("https://github.com/{full_name}/pull/{issue}#issuecomment-{id}"),
        ));
    }
    state.version += 1;
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

fn sandbox_answer(status: StatusCode) -> actix_web::HttpResponseBuilder {
    let mut answer = HttpResponse::build(status);
    answer.insert_header((SANDBOX_HEADER, "1"));
    answer
}

/// A refusal, answered in the API's error shape: `{"error": {"code", "message"}}`.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refusal {
    fn answer(self) -> HttpResponse {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        sandbox_answer(self.status).json(body)
    }
}

fn refuse(status: StatusCode, code: &'static str, message: String) -> Refusal {
    Refusal {
        status,
        code,
        message,
    }
}
