//! The App's webhook: deliveries, their listing and redelivery.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::http::Incoming;
use super::openapi::{LIST_HOOK_DELIVERIES_PARAMETERS, REDELIVER_HOOK_DELIVERY_RESPONSE, validate};
use super::reply::Reply;
use super::state::{State, lock, now};
use super::types::{HOOK_TIMEOUT, HookAttempt, HookSend};

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
    let target = {
        let state = lock(shared);
        let installation = state.app.as_ref().map(|a| (a.app_id, a.installation_id));
        state.hook_target.as_ref().map(|t| {
            let signature =
                crate::github::webhook::signature::sign(t.secret.as_bytes(), send.body.as_bytes());
            (t.url.clone(), signature, installation)
        })
    };
    let started = std::time::Instant::now();
    let status_code = match target {
        Some((url, signature, installation)) => post_hook(&url, &signature, installation, &send)
            .unwrap_or_else(|timed_out| if timed_out { 504 } else { 502 }),
        None => 502,
    };
    let mut state = lock(shared);
    let attempt = state.hook_attempt(
        send,
        hook_status(status_code),
        started.elapsed().as_secs_f64(),
    );
    state.hook_attempts.push(attempt.clone());
    attempt
}

/// One HTTP/1.1 POST with GitHub's webhook headers; the answer's status, or whether
/// it failed by timing out.
pub(super) fn post_hook(
    url: &str,
    signature: &str,
    installation: Option<(u64, u64)>,
    send: &HookSend,
) -> Result<u16, bool> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").ok_or(false)?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let address = std::net::ToSocketAddrs::to_socket_addrs(host)
        .map_err(|_| false)?
        .next()
        .ok_or(false)?;
    let mut stream =
        std::net::TcpStream::connect_timeout(&address, HOOK_TIMEOUT).map_err(|_| false)?;
    stream
        .set_read_timeout(Some(HOOK_TIMEOUT))
        .map_err(|_| false)?;
    stream
        .set_write_timeout(Some(HOOK_TIMEOUT))
        .map_err(|_| false)?;
    let (app_id, _) = installation.unwrap_or_default();
    let head = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: GitHub-Hookshot/fake\r\n\
         Accept: */*\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         X-GitHub-Event: {}\r\nX-GitHub-Delivery: {}\r\nX-GitHub-Hook-ID: 1\r\n\
         X-GitHub-Hook-Installation-Target-Type: integration\r\n\
         X-GitHub-Hook-Installation-Target-ID: {app_id}\r\n\
         X-Hub-Signature-256: {signature}\r\nConnection: close\r\n\r\n",
        send.body.len(),
        send.event,
        send.guid,
    );
    let timed_out = |e: std::io::Error| {
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )
    };
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(send.body.as_bytes()))
        .map_err(timed_out)?;
    // The status line is all GitHub records.
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
            Err(e) => return Err(timed_out(e)),
        }
    }
    let line = String::from_utf8_lossy(&answer);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or(false)
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
