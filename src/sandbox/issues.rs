//! Issue comments and reactions.

use serde_json::Value;

use super::http::Incoming;
use super::json::{comment_json, reaction_json};
use super::openapi::{
    CREATE_COMMENT_REACTION, CREATE_ISSUE_COMMENT, CREATE_ISSUE_REACTION, UPDATE_ISSUE_COMMENT,
};
use super::reply::{Reply, custom_error, find_repo, find_repo_mut, paginate, parse_body};
use super::state::{DOCS, Reaction, State, Subject, now};
use super::types::FakeComment;

impl State {
    pub(super) fn list_comments(
        &self,
        req: &Incoming,
        owner: &str,
        name: &str,
        issue: u64,
    ) -> Reply {
        let Ok(repo) = find_repo(&self.repos, owner, name) else {
            return Reply::not_found(DOCS);
        };
        if !repo.has_issue(issue) {
            return Reply::not_found(DOCS);
        }
        let comments = repo.comments.iter().filter(|c| c.issue == issue);
        let items = comments
            .map(|c| comment_json(&self.base_url, repo, c))
            .collect();
        paginate(&self.base_url, req, items)
    }

    pub(super) fn create_comment(
        &mut self,
        req: &Incoming,
        owner: &str,
        name: &str,
        issue: u64,
        actor: &str,
    ) -> Reply {
        let excerpt = &CREATE_ISSUE_COMMENT;
        let docs = excerpt.documentation_url();
        match find_repo(&self.repos, owner, name) {
            Ok(repo) if repo.has_issue(issue) => {}
            _ => return Reply::not_found(&docs),
        }
        let body = match parse_body(req, excerpt) {
            Ok(body) => body,
            Err(reply) => return reply,
        };
        let text = body.get("body").and_then(Value::as_str).unwrap_or_default();
        if text.trim().is_empty() {
            return custom_error(excerpt, "body", "missing_field", "body wasn't supplied");
        }
        if text.chars().count() > 65536 {
            let message = "Body is too long (maximum is 65536 characters)";
            return custom_error(excerpt, "body", "custom", message);
        }
        let id = self.next_id("comment");
        let Ok(repo) = find_repo_mut(&mut self.repos, owner, name) else {
            return Reply::not_found(&docs);
        };
        let kind = if repo.pulls.contains_key(&issue) {
            "pull"
        } else {
            "issues"
        };
        let html_url = format!(
            "https://github.com/{}/{kind}/{issue}#issuecomment-{id}",
            repo.full_name
        );
        let comment = FakeComment::new(id, issue, text, actor, html_url);
        let answer = comment_json(&self.base_url, repo, &comment);
        repo.comments.push(comment);
        Reply::json(201, answer)
    }

    /// Replaces a comment's body (`PATCH /repos/{owner}/{repo}/issues/comments/{id}`).
    /// As on GitHub, only its author may (a repository admin may too, which the stand-in
    /// does not model); the comment keeps its id, its old body goes to its history.
    pub(super) fn update_comment(
        &mut self,
        req: &Incoming,
        owner: &str,
        name: &str,
        comment: u64,
        actor: &str,
    ) -> Reply {
        let excerpt = &UPDATE_ISSUE_COMMENT;
        let docs = excerpt.documentation_url();
        let exists = find_repo(&self.repos, owner, name)
            .is_ok_and(|repo| repo.comments.iter().any(|c| c.id == comment));
        if !exists {
            return Reply::not_found(&docs);
        }
        let body = match parse_body(req, excerpt) {
            Ok(body) => body,
            Err(reply) => return reply,
        };
        let text = body.get("body").and_then(Value::as_str).unwrap_or_default();
        if text.trim().is_empty() {
            return custom_error(excerpt, "body", "missing_field", "body wasn't supplied");
        }
        if text.chars().count() > 65536 {
            let message = "Body is too long (maximum is 65536 characters)";
            return custom_error(excerpt, "body", "custom", message);
        }
        let base_url = self.base_url.clone();
        let Ok(repo) = find_repo_mut(&mut self.repos, owner, name) else {
            return Reply::not_found(&docs);
        };
        let Some(found) = repo.comments.iter_mut().find(|c| c.id == comment) else {
            return Reply::not_found(&docs);
        };
        if !found.user.eq_ignore_ascii_case(actor) {
            return Reply::json(
                403,
                serde_json::json!({
                    "message": "Must have admin rights to Repository.",
                    "documentation_url": docs,
                    "status": "403",
                }),
            );
        }
        let old = std::mem::replace(&mut found.body, text.to_string());
        found.history.push(old);
        found.updated_at = now();
        let found = found.clone();
        Reply::json(200, comment_json(&base_url, repo, &found))
    }

    /// 201 for a new reaction; 200 with the existing one when this user already reacted
    /// with the same content.
    pub(super) fn create_reaction(
        &mut self,
        req: &Incoming,
        owner: &str,
        name: &str,
        subject: Subject,
        actor: &str,
    ) -> Reply {
        let excerpt = match subject {
            Subject::Comment(_) => &CREATE_COMMENT_REACTION,
            Subject::Issue(_) => &CREATE_ISSUE_REACTION,
        };
        let docs = excerpt.documentation_url();
        let exists = find_repo(&self.repos, owner, name).is_ok_and(|repo| match subject {
            Subject::Comment(id) => repo.comments.iter().any(|c| c.id == id),
            Subject::Issue(number) => repo.has_issue(number),
        });
        if !exists {
            return Reply::not_found(&docs);
        }
        let body = match parse_body(req, excerpt) {
            Ok(body) => body,
            Err(reply) => return reply,
        };
        let content = body
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let Ok(repo) = find_repo(&self.repos, owner, name) else {
            return Reply::not_found(&docs);
        };
        let same = repo
            .reactions
            .iter()
            .find(|r| r.subject == subject && r.content == content && r.user == actor);
        if let Some(reaction) = same {
            return Reply::json(200, reaction_json(reaction));
        }
        let reaction = Reaction {
            id: self.next_id("reaction"),
            subject,
            content,
            user: actor.to_string(),
            created_at: now(),
        };
        let answer = reaction_json(&reaction);
        let Ok(repo) = find_repo_mut(&mut self.repos, owner, name) else {
            return Reply::not_found(&docs);
        };
        repo.reactions.push(reaction);
        Reply::json(201, answer)
    }
}
