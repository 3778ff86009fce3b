//! The stand-in's one HTTP entry point: it records each request, applies injected faults,
//! authenticates and routes to the endpoint's handler.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;

use super::RATE_LIMIT;
use super::hooks::deliver_hook;
use super::reply::Reply;
use super::state::{DOCS, State, Subject, lock, percent_decode, unix_now};
use super::types::{Call, CallAuth};
use super::{APP_BOT_LOGIN, TOKEN_LOGIN};

pub(super) struct Incoming {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) query: HashMap<String, String>,
    pub(super) raw_query: String,
    pub(super) body: Vec<u8>,
    pub(super) user_agent: Option<String>,
    pub(super) authorization: Option<String>,
}

/// The one handler of every request: waits as a slow GitHub would, answers, records the
/// call, and sends the redeliveries the answer asked for.
pub(super) async fn serve(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Mutex<State>>,
) -> HttpResponse {
    let delay = delay_for(&lock(&state), &req);
    if !delay.is_zero() {
        actix_web::rt::time::sleep(delay).await;
    }
    let (incoming, mut call) = read_request(&req, &body);
    let shared = state.clone().into_inner();
    let mut state = lock(&state);
    state.rate_remaining = state.rate_remaining.saturating_sub(1);
    let reply = state.answer(&incoming, &mut call);
    if incoming.method != "GET" && reply.status < 400 {
        state.version += 1;
    }
    // Redeliveries go out after the answer, as GitHub's do, each on its own thread.
    for send in std::mem::take(&mut state.hook_sends) {
        let shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new().name("stand-in-redeliver".into());
        let _ = thread.spawn(move || deliver_hook(&shared, send));
    }
    call.status = reply.status;
    state.calls.push(call);
    respond(&state, reply)
}

/// How long the request waits: the longest of the general delay and its path's.
fn delay_for(state: &State, req: &HttpRequest) -> std::time::Duration {
    let path = percent_decode(req.path());
    state
        .slow_paths
        .iter()
        .filter(|(method, prefix, _)| method == req.method().as_str() && path.starts_with(prefix))
        .map(|(_, _, delay)| *delay)
        .fold(state.delay, std::time::Duration::max)
}

/// The parts of the request the stand-in reads, and its record of the call.
fn read_request(req: &HttpRequest, body: &[u8]) -> (Incoming, Call) {
    let header = |name: &str| {
        let value = req.headers().get(name)?;
        Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
    };
    let incoming = Incoming {
        method: req.method().as_str().to_string(),
        path: percent_decode(req.path()),
        query: web::Query::<HashMap<String, String>>::from_query(req.query_string())
            .map(|q| q.into_inner())
            .unwrap_or_default(),
        raw_query: req.query_string().to_string(),
        body: body.to_vec(),
        user_agent: header("user-agent").filter(|ua| !ua.trim().is_empty()),
        authorization: header("authorization"),
    };
    let call = Call {
        method: incoming.method.clone(),
        path: incoming.path.clone(),
        query: incoming.raw_query.clone(),
        body: serde_json::from_slice(body).ok(),
        raw_body: String::from_utf8_lossy(body).into_owned(),
        status: 0,
        accept: header("accept"),
        api_version: header("x-github-api-version"),
        user_agent: incoming.user_agent.clone(),
        auth: CallAuth::None,
    };
    (incoming, call)
}

/// The HTTP response of `reply`, with GitHub's rate-limit and request-id headers.
fn respond(state: &State, reply: Reply) -> HttpResponse {
    let request_id = format!("FAKE:{:08X}", state.calls.len());
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    let used = RATE_LIMIT.saturating_sub(state.rate_remaining);
    response
        .insert_header(("x-ratelimit-limit", RATE_LIMIT.to_string()))
        .insert_header(("x-ratelimit-remaining", state.rate_remaining.to_string()))
        .insert_header(("x-ratelimit-used", used.to_string()))
        .insert_header(("x-ratelimit-reset", state.rate_reset.to_string()))
        .insert_header(("x-ratelimit-resource", "core"))
        .insert_header(("x-github-request-id", request_id))
        .insert_header(("x-github-media-type", "github.v3; format=json"));
    for (name, value) in &reply.headers {
        response.insert_header((name.as_str(), value.as_str()));
    }
    match reply.text {
        Some(text) => response
            .content_type("text/plain; charset=utf-8")
            .body(text),
        None => response
            .content_type("application/json; charset=utf-8")
            .body(reply.body.to_string()),
    }
}

impl State {
    /// User-Agent, then injected faults, then credentials, then the endpoint.
    pub(super) fn answer(&mut self, req: &Incoming, call: &mut Call) -> Reply {
        if req.user_agent.is_none() {
            return Reply {
                text: Some(
                    "Request forbidden by administrative rules. Please make sure your request \
                     has a User-Agent header (https://docs.github.com/en/rest/overview/\
                     resources-in-the-rest-api#user-agent-required). Check \
                     https://developer.github.com for other possible causes.\n"
                        .to_string(),
                ),
                ..Reply::json(403, Value::Null)
            };
        }
        let fault = self.take_fault(req);
        let fault = match fault {
            Some((reply, false)) => return reply,
            Some((reply, true)) => Some(reply),
            None => None,
        };
        let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
        let app_route = matches!(
            segments.as_slice(),
            ["app", ..] | ["repos", _, _, "installation"]
        );
        let actor = match self.authenticate(req.authorization.as_deref(), app_route) {
            Ok((actor, auth)) => {
                call.auth = auth;
                actor
            }
            Err(reply) => {
                call.auth = match req.authorization {
                    Some(_) => CallAuth::Refused,
                    None => CallAuth::None,
                };
                return reply;
            }
        };
        let reply = self.route(req, &segments, &actor);
        fault.unwrap_or(reply)
    }

    pub(super) fn route(&mut self, req: &Incoming, segments: &[&str], actor: &str) -> Reply {
        match (req.method.as_str(), segments) {
            ("POST", ["app", "installations", installation, "access_tokens"]) => {
                self.create_installation_token(req, installation)
            }
            ("GET", ["app", "hook", "deliveries"]) => self.list_hook_deliveries(req),
            ("POST", ["app", "hook", "deliveries", delivery, "attempts"]) => {
                self.redeliver_hook_delivery(delivery)
            }
            ("GET", ["orgs", org, "teams", team, "memberships", user]) => {
                self.get_team_membership(org, team, user)
            }
            (_, ["repos", owner, name, rest @ ..]) => {
                self.route_repo(req, (owner, name), rest, actor)
            }
            _ => Reply::not_found(DOCS),
        }
    }

    /// The routes under `/repos/{owner}/{name}/`.
    fn route_repo(
        &mut self,
        req: &Incoming,
        (owner, name): (&str, &str),
        rest: &[&str],
        actor: &str,
    ) -> Reply {
        let id = |text: &str| text.parse::<u64>().ok();
        let method = req.method.as_str();
        match (method, rest) {
            ("GET", ["installation"]) => self.get_repo_installation(owner, name),
            ("GET", ["collaborators", user, "permission"]) => {
                self.get_permission(owner, name, user)
            }
            ("GET", ["pulls", number]) => match id(number) {
                Some(number) => self.get_pull(owner, name, number),
                None => Reply::not_found(DOCS),
            },
            ("GET", ["git", "ref", git_ref @ ..]) if !git_ref.is_empty() => {
                self.get_git_ref(owner, name, &git_ref.join("/"))
            }
            ("GET", ["git", "tags", sha]) => self.get_git_tag(owner, name, sha),
            ("GET", ["commits", git_ref @ .., "check-runs"]) if !git_ref.is_empty() => {
                self.list_check_runs(req, owner, name, &git_ref.join("/"))
            }
            ("GET", ["commits", git_ref @ .., "status"]) if !git_ref.is_empty() => {
                self.combined_status(req, owner, name, &git_ref.join("/"))
            }
            ("GET", ["compare", basehead @ ..]) if !basehead.is_empty() => {
                self.compare(owner, name, &basehead.join("/"))
            }
            ("GET", ["pulls", number, "reviews"]) => match id(number) {
                Some(number) => self.list_reviews(req, (owner, name), number, actor),
                None => Reply::not_found(DOCS),
            },
            ("GET", ["deployments"]) => self.list_deployments(req, owner, name),
            ("POST", ["deployments"]) => self.create_deployment(req, owner, name, actor),
            (_, ["deployments", deployment, more @ ..]) => match id(deployment) {
                Some(deployment) => match (method, more) {
                    ("GET", []) => self.get_deployment(owner, name, deployment),
                    ("GET", ["statuses"]) => self.list_statuses(req, owner, name, deployment),
                    ("POST", ["statuses"]) => {
                        self.create_status(req, owner, name, deployment, actor)
                    }
                    _ => Reply::not_found(DOCS),
                },
                None => Reply::not_found(DOCS),
            },
            ("PATCH", ["issues", "comments", comment]) => match id(comment) {
                Some(comment) => self.update_comment(req, owner, name, comment, actor),
                None => Reply::not_found(DOCS),
            },
            ("POST", ["issues", "comments", comment, "reactions"]) => match id(comment) {
                Some(comment) => {
                    self.create_reaction(req, owner, name, Subject::Comment(comment), actor)
                }
                None => Reply::not_found(DOCS),
            },
            (_, ["issues", issue, what]) => match (method, id(issue), *what) {
                ("GET", Some(issue), "comments") => self.list_comments(req, owner, name, issue),
                ("POST", Some(issue), "comments") => {
                    self.create_comment(req, owner, name, issue, actor)
                }
                ("POST", Some(issue), "reactions") => {
                    self.create_reaction(req, owner, name, Subject::Issue(issue), actor)
                }
                _ => Reply::not_found(DOCS),
            },
            _ => Reply::not_found(DOCS),
        }
    }

    /// The answer of the first matching fault, and whether the request is carried out
    /// before it is given.
    pub(super) fn take_fault(&mut self, req: &Incoming) -> Option<(Reply, bool)> {
        let index = self.faults.iter().position(|f| {
            f.remaining > 0
                && (f.method == "*" || f.method.eq_ignore_ascii_case(&req.method))
                && req.path.starts_with(&f.path_prefix)
        })?;
        let fault = &mut self.faults[index];
        fault.remaining -= 1;
        let (status, headers, after_applying) =
            (fault.status, fault.headers.clone(), fault.after_applying);
        if fault.remaining == 0 {
            self.faults.remove(index);
        }
        let header = |name: &str| {
            let found = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name));
            found.map(|(_, v)| v.as_str())
        };
        let (message, docs) = match status {
            403 | 429 if header("x-ratelimit-remaining") == Some("0") => (
                "API rate limit exceeded for user ID 1. If you reach out to GitHub Support \
                 for help, please include the request ID FAKE."
                    .to_string(),
                "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
            ),
            403 | 429 => (
                "You have exceeded a secondary rate limit. Please wait a few minutes before \
                 you try again. If you reach out to GitHub Support for help, please include \
                 the request ID FAKE."
                    .to_string(),
                "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
            ),
            401 => ("Bad credentials".to_string(), DOCS),
            404 => ("Not Found".to_string(), DOCS),
            409 => ("Conflict".to_string(), DOCS),
            422 => ("Validation Failed".to_string(), DOCS),
            500 | 502 => ("Server Error".to_string(), DOCS),
            other => {
                let reason = StatusCode::from_u16(other)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("Error");
                (reason.to_string(), DOCS)
            }
        };
        let mut reply = Reply::error(status, &message, docs);
        reply.headers = headers;
        Some((reply, after_applying))
    }

    /// App routes take a JWT signed by the App; every other route takes the token from
    /// `set_token` or a minted installation token. Answers the login acting.
    pub(super) fn authenticate(
        &self,
        header: Option<&str>,
        app_route: bool,
    ) -> Result<(String, CallAuth), Reply> {
        let Some(header) = header else {
            return Err(Reply::error(401, "Requires authentication", DOCS));
        };
        let credential = match header.split_once(' ') {
            Some((scheme, value))
                if scheme.eq_ignore_ascii_case("bearer")
                    || scheme.eq_ignore_ascii_case("token") =>
            {
                value.trim()
            }
            _ => return Err(Reply::error(401, "Bad credentials", DOCS)),
        };
        if app_route {
            let app_id = self.verify_app_jwt(credential)?;
            return Ok((format!("app-{app_id}"), CallAuth::AppJwt));
        }
        if self.token.as_deref() == Some(credential) {
            return Ok((TOKEN_LOGIN.to_string(), CallAuth::Token));
        }
        if self.installation_tokens.iter().any(|t| t == credential) {
            return Ok((APP_BOT_LOGIN.to_string(), CallAuth::InstallationToken));
        }
        Err(Reply::error(401, "Bad credentials", DOCS))
    }

    /// GitHub's rules: RS256 signed by the App's key, `iss` = the App id (number or
    /// string), `exp` in the future and at most 10 minutes after `iat`.
    pub(super) fn verify_app_jwt(&self, jwt: &str) -> Result<u64, Reply> {
        let undecodable = || Reply::error(401, "A JSON web token could not be decoded", DOCS);
        let Some(app) = &self.app else {
            return Err(undecodable());
        };
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        // `iss` is checked below: jsonwebtoken only reads it as a string, GitHub takes both.
        validation.set_required_spec_claims(&["exp"]);
        validation.leeway = 60;
        let claims = jsonwebtoken::decode::<Value>(jwt, &app.key, &validation)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => Reply::error(
                    401,
                    "'Expiration time' claim ('exp') must be a numeric value representing the \
                     future time at which the assertion expires",
                    DOCS,
                ),
                _ => undecodable(),
            })?
            .claims;
        let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
            return Err(undecodable());
        };
        if exp - iat > 600 {
            return Err(Reply::error(
                401,
                "'Expiration time' claim ('exp') is too far in the future",
                DOCS,
            ));
        }
        if iat > unix_now() as i64 + 60 {
            return Err(Reply::error(
                401,
                "'Issued at' claim ('iat') must be an Integer representing a time in the past",
                DOCS,
            ));
        }
        let issuer = match &claims["iss"] {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        };
        if issuer != Some(app.app_id) {
            return Err(undecodable());
        }
        Ok(app.app_id)
    }
}
