//! Signing a delivery with the webhook secret, sending it (or printing it with
//! `--dry-run`), and telling a person what the server answered and what to do next.

use reqwest::StatusCode;
use serde_json::Value;

use super::{Delivery, Repo, Target};
use crate::cli::{CliError, Outcome, http, server_url};
use crate::config::Config;
use crate::github::webhook::signature;

const UNREACHABLE_HINT: &str = "is `deploybot serve` running there? Start it with `deploybot \
                                serve`, or point --url (or DEPLOYBOT_URL) at it; without \
                                them the URL is public_url, else http://LISTEN, of the \
                                configuration";

/// The secret to sign with and the server's base URL: from the flags, else the
/// configuration (the URL as `cli::server_url` finds it).
pub(super) fn secret_and_url(target: &Target) -> Result<(String, String), CliError> {
    let secret = match &target.secret {
        Some(secret) => Some(secret.clone()),
        None => Config::load(target.config.as_deref())?
            .webhook_secrets
            .first()
            .cloned(),
    };
    let secret = secret.filter(|s| !s.is_empty()).ok_or_else(|| {
        CliError::Usage(
            "no webhook secret to sign with: set DEPLOYBOT_WEBHOOK_SECRET (or webhook_secrets in \
             the configuration) as for `deploybot serve`, or pass --secret"
                .into(),
        )
    })?;
    let server = server_url(target.url.as_deref(), target.config.as_deref())?;
    Ok((secret, server.url))
}

/// A delivery as it goes on the wire: the body and GitHub's headers, signature included.
pub(super) struct Signed {
    body: Vec<u8>,
    headers: [(&'static str, String); 8],
}

impl Signed {
    /// Encodes the delivery's payload and signs it with `secret`.
    pub(super) fn new(delivery: &Delivery, secret: &str) -> Result<Signed, CliError> {
        let body = serde_json::to_vec_pretty(&delivery.payload)
            .map_err(|e| CliError::Usage(format!("cannot encode the payload: {e}")))?;
        let signature = signature::sign(secret.as_bytes(), &body);
        let headers = [
            ("Content-Type", "application/json".to_string()),
            (
                "User-Agent",
                "GitHub-Hookshot/deploybot-simulate".to_string(),
            ),
            ("X-GitHub-Event", delivery.event.to_string()),
            ("X-GitHub-Delivery", delivery.id.clone()),
            ("X-GitHub-Hook-ID", delivery.hook_id.to_string()),
            (
                "X-GitHub-Hook-Installation-Target-Type",
                "repository".to_string(),
            ),
            (
                "X-GitHub-Hook-Installation-Target-ID",
                delivery.repository_id.to_string(),
            ),
            ("X-Hub-Signature-256", signature),
        ];
        Ok(Signed { body, headers })
    }

    /// `--dry-run`: the request as it would be sent.
    pub(super) fn print(&self, url: &str) {
        println!("POST {}", http::shown(url));
        for (name, value) in &self.headers {
            println!("{name}: {value}");
        }
        println!();
        println!("{}", String::from_utf8_lossy(&self.body));
    }

    /// POSTs the delivery to `url` and reads the answer, whatever its status.
    pub(super) async fn send(self, url: &str) -> Result<Answer, CliError> {
        let client = http::client()?;
        let mut request = client.post(url).body(self.body);
        for (name, value) in &self.headers {
            request = request.header(*name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| http::unreachable(url, &e, UNREACHABLE_HINT))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| http::unreachable(url, &e, UNREACHABLE_HINT))?;
        let value: Option<Value> = serde_json::from_str(&text).ok();
        Ok(Answer {
            status,
            text,
            value,
        })
    }
}

/// The server's answer to a delivery.
pub(super) struct Answer {
    status: StatusCode,
    /// The body as received.
    pub(super) text: String,
    /// The body, when it is JSON.
    value: Option<Value>,
}

impl Answer {
    /// An answer the sandbox relays: what the bot answered its stand-in's webhook.
    pub(super) fn relayed(status: u16, text: String) -> Answer {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        let value = serde_json::from_str(&text).ok();
        Answer {
            status,
            text,
            value,
        }
    }

    /// What was sent, the status and the answer, then the next steps it suggests.
    pub(super) fn print(&self, delivery: &Delivery, repo: &Repo, url: &str) {
        println!("sent {} on {}", delivery.summary, repo.full_name);
        println!(
            "POST {} (X-GitHub-Event: {}, X-GitHub-Delivery: {})",
            http::shown(url),
            delivery.event,
            delivery.id
        );
        println!(
            "{} {}",
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or_default()
        );
        match &self.value {
            Some(value) => println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_else(|_| self.text.clone())
            ),
            None if !self.text.trim().is_empty() => println!("{}", self.text.trim()),
            None => {}
        }
        if let Some(value) = &self.value {
            for line in hints(value) {
                println!("{line}");
            }
        }
    }

    /// Success for a 2xx answer; otherwise says on stderr why the server refused.
    pub(super) fn outcome(&self) -> Outcome {
        if self.status.is_success() {
            return Outcome::Success;
        }
        let message = self
            .value
            .as_ref()
            .and_then(|v| v["error"]["message"].as_str())
            .unwrap_or("see the answer above");
        eprintln!(
            "deploybot: the server refused the webhook (HTTP {}): {message}",
            self.status.as_u16()
        );
        Outcome::Failed
    }
}

/// Next steps suggested by an answer.
fn hints(answer: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match answer["status"].as_str() {
        Some("duplicate") => out.push(
            "this delivery id was seen before: a redelivery is acknowledged and deploys nothing"
                .to_string(),
        ),
        Some("accepted") => {
            for id in answer["deployments"].as_array().into_iter().flatten() {
                if let Some(id) = id.as_str() {
                    out.push(format!("follow it: deploybot watch {id}"));
                }
            }
            let jobs = answer["jobs"].as_u64().unwrap_or(0);
            if jobs > 0 {
                out.push(format!(
                    "{jobs} job(s) queued for GitHub: commands ask it for the commenter's \
                     permission and the pull request's head before they deploy (a server \
                     without GitHub credentials only logs them; `deploybot sandbox` has a \
                     GitHub of its own)"
                ));
            }
        }
        _ => {}
    }
    out
}
