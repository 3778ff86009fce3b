//! The App's webhook: deliveries, their listing and redelivery.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::http::Incoming;
use super::openapi::{LIST_HOOK_DELIVERIES_PARAMETERS, REDELIVER_HOOK_DELIVERY_RESPONSE, validate};
use super::reply::Reply;
use super::state::{State, lock, now};
use super::types::{HOOK_TIMEOUT, HookAttempt, HookSend};
use crate::github::webhook::signature;

/// GitHub's summary of an answer: (status, status_code).
pub(super) fn hook_status(status_code: u16) -> (String, u16) {
    let status = match status_code {
        200..=299 => "OK".to_string(),
        502 => "failed to connect".to_string(),
        504 => "timed out".to_string(),
        code => format!("Invalid HTTP Response: {code}"),
    };
    (status, status_code)
}

/// Sends one attempt to the target (blocking, at most [`HOOK_TIMEOUT`]) and records it.
pub(super) fn deliver_hook(shared: &Arc<Mutex<State>>, send: HookSend) -> HookAttempt {
    deliver(shared, send, false).0
}

/// Like [`deliver_hook`], and also answers the receiver's body (empty when there was none).
pub(super) fn deliver_hook_reading(
    shared: &Arc<Mutex<State>>,
    send: HookSend,
) -> (HookAttempt, String) {
    deliver(shared, send, true)
}

/// Where and how one attempt goes: the URL, the signature and the App's ids.
struct HookRequest {
    url: String,
    signature: String,
    installation: Option<(u64, u64)>,
}

fn deliver(shared: &Arc<Mutex<State>>, send: HookSend, read_body: bool) -> (HookAttempt, String) {
    let request = hook_request(&lock(shared), &send);
    let started = std::time::Instant::now();
    let (status_code, body) = match request {
        Some(request) => post_hook(&request, &send, read_body)
            .unwrap_or_else(|timed_out| (if timed_out { 504 } else { 502 }, String::new())),
        None => (502, String::new()),
    };
    let mut state = lock(shared);
    let attempt = state.hook_attempt(
        send,
        hook_status(status_code),
        started.elapsed().as_secs_f64(),
    );
    state.hook_attempts.push(attempt.clone());
    state.version += 1;
    (attempt, body)
}

/// The target's URL and the signature with the secret of the repository's owner (else the
/// App's secret), or `None` when no target is set.
fn hook_request(state: &State, send: &HookSend) -> Option<HookRequest> {
    let target = state.hook_target.as_ref()?;
    let payload: Value = serde_json::from_str(&send.body).unwrap_or(Value::Null);
    let owner = payload["repository"]["owner"]["login"]
        .as_str()
        .map(str::to_lowercase);
    let secret = owner
        .and_then(|owner| target.owner_secrets.get(&owner))
        .unwrap_or(&target.secret);
    let signature = signature::sign(secret.as_bytes(), send.body.as_bytes());
    Some(HookRequest {
        url: target.url.clone(),
        signature,
        installation: state.app.as_ref().map(|a| (a.app_id, a.installation_id)),
    })
}

/// A connection to the `http://HOST:PORT` of `url` with GitHub's timeouts, and the path.
fn connect(url: &str) -> Result<(TcpStream, String, String), bool> {
    let rest = url.strip_prefix("http://").ok_or(false)?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let address = std::net::ToSocketAddrs::to_socket_addrs(host)
        .map_err(|_| false)?
        .next()
        .ok_or(false)?;
    let stream = TcpStream::connect_timeout(&address, HOOK_TIMEOUT).map_err(|_| false)?;
    stream
        .set_read_timeout(Some(HOOK_TIMEOUT))
        .map_err(|_| false)?;
    stream
        .set_write_timeout(Some(HOOK_TIMEOUT))
        .map_err(|_| false)?;
    Ok((stream, host.to_string(), path.to_string()))
}

/// One HTTP/1.1 POST with GitHub's webhook headers; the answer's status (and its body when
/// `read_body`), or whether it failed by timing out.
fn post_hook(
    request: &HookRequest,
    send: &HookSend,
    read_body: bool,
) -> Result<(u16, String), bool> {
    let (mut stream, host, path) = connect(&request.url)?;
    let (app_id, _) = request.installation.unwrap_or_default();
    let head = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: GitHub-Hookshot/fake\r\n\
         Accept: */*\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         X-GitHub-Event: {}\r\nX-GitHub-Delivery: {}\r\nX-GitHub-Hook-ID: 1\r\n\
         X-GitHub-Hook-Installation-Target-Type: integration\r\n\
         X-GitHub-Hook-Installation-Target-ID: {app_id}\r\n\
         X-Hub-Signature-256: {}\r\nConnection: close\r\n\r\n",
        send.body.len(),
        send.event,
        send.guid,
        request.signature,
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(send.body.as_bytes()))
        .map_err(|e| timed_out(&e))?;
    let answer = read_answer(&mut stream, read_body)?;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or(false)?;
    Ok((
        status,
        if read_body {
            answer_body(&text)
        } else {
            String::new()
        },
    ))
}

fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// The answer's bytes: up to the status line (all GitHub records), or the whole answer
/// (at most 1 MiB) when `whole`.
fn read_answer(stream: &mut TcpStream, whole: bool) -> Result<Vec<u8>, bool> {
    const LIMIT: usize = 1024 * 1024;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let done = if whole {
            answer.len() >= LIMIT
        } else {
            answer.windows(2).any(|w| w == b"\r\n")
        };
        if done {
            break;
        }
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(buffer.get(..n).unwrap_or_default()),
            Err(_) if whole && !answer.is_empty() => break,
            Err(e) => return Err(timed_out(&e)),
        }
    }
    Ok(answer)
}

/// The body of an HTTP/1.1 answer, with a chunked body put back together.
fn answer_body(answer: &str) -> String {
    let Some((head, body)) = answer.split_once("\r\n\r\n") else {
        return String::new();
    };
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    if !chunked {
        return body.to_string();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(after.get(..size).unwrap_or(after));
        rest = after
            .get(size..)
            .unwrap_or_default()
            .trim_start_matches("\r\n");
    }
    out
}

impl State {
    pub(super) fn hook_attempt(
        &mut self,
        send: HookSend,
        status: (String, u16),
        duration: f64,
    ) -> HookAttempt {
        let payload: Value = serde_json::from_str(&send.body).unwrap_or(Value::Null);
        HookAttempt {
            id: self.next_id("hook_delivery"),
            guid: send.guid,
            event: send.event,
            action: payload["action"].as_str().map(str::to_string),
            redelivery: send.redelivery,
            status: status.0,
            status_code: status.1,
            delivered_at: now(),
            duration,
            installation_id: self.app.as_ref().map(|a| a.installation_id),
            repository_id: payload["repository"]["id"].as_u64(),
            body: send.body,
        }
    }

    /// `GET /app/hook/deliveries`: newest first, `per_page` (default 30, at most 100),
    /// `status` (success: 200-399, failure: 400-599) and an opaque `cursor` that the
    /// `Link` header's `rel="next"` names.
    pub(super) fn list_hook_deliveries(&self, req: &Incoming) -> Reply {
        let docs = LIST_HOOK_DELIVERIES_PARAMETERS.documentation_url();
        for parameter in LIST_HOOK_DELIVERIES_PARAMETERS
            .schema()
            .as_array()
            .into_iter()
            .flatten()
        {
            let Some(name) = parameter["name"].as_str() else {
                continue;
            };
            let Some(raw) = req.query.get(name) else {
                continue;
            };
            let value = match parameter["schema"]["type"].as_str() {
                Some("integer") => match raw.parse::<i64>() {
                    Ok(n) => json!(n),
                    Err(_) => return Reply::error(400, "Bad Request", &docs),
                },
                _ => json!(raw),
            };
            if !validate(&parameter["schema"], &value).is_empty() {
                return Reply::json(
                    422,
                    json!({
                        "message": "Validation Failed",
                        "errors": [{"resource": "HookDelivery", "field": name, "code": "invalid", "value": raw}],
                        "documentation_url": docs,
                        "status": "422",
                    }),
                );
            }
        }
        let per_page = req
            .query
            .get("per_page")
            .and_then(|p| p.parse::<usize>().ok())
            .unwrap_or(30)
            .clamp(1, 100);
        let start = match req.query.get("cursor") {
            None => u64::MAX,
            Some(cursor) => match cursor.strip_prefix("v1_").and_then(|id| id.parse().ok()) {
                Some(id) => id,
                None => return Reply::error(400, "Bad Request", &docs),
            },
        };
        let status = req.query.get("status").map(String::as_str);
        let mut matching: Vec<&HookAttempt> = self
            .hook_attempts
            .iter()
            .filter(|a| a.id <= start)
            .filter(|a| match status {
                Some("success") => (200..400).contains(&a.status_code),
                Some("failure") => (400..600).contains(&a.status_code),
                _ => true,
            })
            .collect();
        matching.sort_by_key(|a| std::cmp::Reverse(a.id));
        let page: Vec<Value> = matching
            .iter()
            .take(per_page)
            .map(|a| hook_json(a))
            .collect();
        let mut reply = Reply::json(200, Value::Array(page));
        if let Some(next) = matching.get(per_page) {
            let status = status.map(|s| format!("&status={s}")).unwrap_or_default();
            reply.headers.push((
                "link".to_string(),
                format!(
                    "<{}/app/hook/deliveries?per_page={per_page}&cursor=v1_{}{status}>; rel=\"next\"",
                    self.base_url, next.id
                ),
            ));
        }
        reply
    }

    /// `POST /app/hook/deliveries/{delivery_id}/attempts`: 202, then the delivery is
    /// sent again (same GUID, headers and body) as a new attempt marked `redelivery`.
    pub(super) fn redeliver_hook_delivery(&mut self, delivery: &str) -> Reply {
        let docs = REDELIVER_HOOK_DELIVERY_RESPONSE.documentation_url();
        let Some(attempt) = delivery
            .parse::<u64>()
            .ok()
            .and_then(|id| self.hook_attempts.iter().find(|a| a.id == id))
        else {
            return Reply::not_found(&docs);
        };
        self.hook_sends.push(HookSend {
            guid: attempt.guid.clone(),
            event: attempt.event.clone(),
            body: attempt.body.clone(),
            redelivery: true,
        });
        Reply::json(202, json!({}))
    }
}

/// A simple webhook delivery, as GitHub lists it.
pub(super) fn hook_json(a: &HookAttempt) -> Value {
    json!({
        "id": a.id,
        "guid": a.guid,
        "delivered_at": a.delivered_at,
        "redelivery": a.redelivery,
        "duration": a.duration,
        "status": a.status,
        "status_code": a.status_code,
        "event": a.event,
        "action": a.action,
        "installation_id": a.installation_id,
        "repository_id": a.repository_id,
        "throttled_at": null,
    })
}
