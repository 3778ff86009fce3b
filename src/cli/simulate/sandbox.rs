//! `simulate comment` against `deploybot sandbox`: the comment goes through the sandbox's
//! GitHub stand-in (`POST /sandbox/{owner}/{repo}/pull/{number}/comments`), so it appears
//! in the pull request's conversation and the bot's reaction and reply land on it. Any
//! other server answers that route 404 without the sandbox's header, and the webhook is
//! then signed and sent directly. Also the payload the stand-in sends for such a comment.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::ids::node_id;
use super::payload::comment;
use super::repo::user;
use super::send::Answer;
use super::{Delivery, Event, Repo, WEBHOOK_PATH};
use crate::cli::{CliError, http};

/// The header of the sandbox's answers (`sandbox::mount::SANDBOX_HEADER`).
const SANDBOX_HEADER: &str = "x-deploybot-sandbox";

/// What a webhook says about the pull request a comment is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullFacts {
    pub title: String,
    /// The login that opened it.
    pub author: String,
    /// Its description (Markdown); empty for none.
    pub body: String,
}

/// The `issue_comment` `created` payload for comment `comment_id`, written by `login` on
/// pull request `number` of `full_name`; `None` when `full_name` is not `OWNER/NAME`.
pub fn comment_payload(
    full_name: &str,
    number: u64,
    pull: &PullFacts,
    login: &str,
    body: &str,
    comment_id: u64,
) -> Option<Value> {
    let repo = Repo::parse(full_name).ok()?;
    let mut payload = comment(&repo, number, body, login);
    let pr_html = format!("{}/pull/{number}", repo.html_url());
    let comment_api = format!("{}/issues/comments/{comment_id}", repo.api_url());
    let issue = &mut payload["issue"];
    issue["title"] = json!(pull.title);
    issue["user"] = user(&pull.author, false);
    issue["body"] = json!(pull.body);
    let comment = &mut payload["comment"];
    comment["id"] = json!(comment_id);
    comment["node_id"] = json!(node_id("IssueComment", comment_id));
    comment["url"] = json!(comment_api);
    comment["html_url"] = json!(format!("{pr_html}#issuecomment-{comment_id}"));
    comment["reactions"]["url"] = json!(format!("{comment_api}/reactions"));
    Some(payload)
}

/// Sends a comment event through the sandbox's comment route when the server at `url`
/// (its webhook URL) is a sandbox, and answers the bot's answer to the webhook the
/// stand-in sent; `None` for other events and for a server that is not a sandbox.
pub(super) async fn through_sandbox(
    event: &Event,
    repo: &Repo,
    url: &str,
    delivery: &Delivery,
) -> Result<Option<Answer>, CliError> {
    let Event::Comment { pr, body, user, .. } = event else {
        return Ok(None);
    };
    let base = url.strip_suffix(WEBHOOK_PATH).unwrap_or(url);
    let route = format!(
        "{base}/sandbox/{}/{}/pull/{pr}/comments",
        repo.owner, repo.name
    );
    let request = json!({"user": user, "body": body, "delivery": delivery.id});
    let response = http::client()?
        .post(&route)
        .header("content-type", "application/json")
        .body(request.to_string())
        .send()
        .await
        .map_err(|e| http::unreachable(&route, &e, "is the server running?"))?;
    if !response.headers().contains_key(SANDBOX_HEADER) {
        return Ok(None);
    }
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| http::unreachable(&route, &e, "is the server running?"))?;
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status != StatusCode::CREATED {
        return Err(CliError::Api {
            status: status.as_u16(),
            code: value["error"]["code"].as_str().unwrap_or("").to_string(),
            message: value["error"]["message"]
                .as_str()
                .unwrap_or("the sandbox refused the comment")
                .to_string(),
        });
    }
    let answer = match &value["webhook_answer"] {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let webhook_status = value["webhook_status"].as_u64().unwrap_or(502);
    let webhook_status = u16::try_from(webhook_status).unwrap_or(502);
    Ok(Some(Answer::relayed(webhook_status, answer)))
}

/// The `repository` object webhooks carry, as `simulate` writes it (the same id for the
/// same name); `None` when `full_name` is not `OWNER/NAME`.
pub fn repository_json(full_name: &str) -> Option<Value> {
    Repo::parse(full_name).ok().map(|repo| repo.json(false))
}

/// The account object webhooks carry for a person (`sender`, `user`).
pub fn account_json(login: &str) -> Value {
    user(login, false)
}
