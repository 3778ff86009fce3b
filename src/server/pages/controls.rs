//! What the pages show of deploy control: lock badges, freezes, the instance page with its
//! audit trail, `/locks`, and the action forms (plain HTML forms that POST, carrying the
//! session's form token). Every runtime value is written with `Html::text`.

use chrono::{DateTime, Utc};

use super::Viewer;
use super::access::Session;
use super::html::Html;
use super::load::{Control, InstancePage, LockRow, LocksView};
use super::views::{self, capitalized, page, time, timestamp};
use crate::config::Role;
use crate::deploy::{ActiveFreeze, DeployState, Deployment, Instance, Lock, LockTarget};

/// The one-line notice an action left (`?notice=`), if any.
pub(super) fn notice(html: &mut Html, notice: Option<&str>) {
    if let Some(text) = notice {
        html.raw("<p id=\"notice\" class=\"notice-text\" role=\"status\">")
            .text(text)
            .raw("</p>\n");
    }
}

/// `in 2 h`, `in 5 min`, or `now` for a time to come.
fn from_now(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (at - now).num_seconds();
    match secs {
        s if s < 60 => "in less than a minute".to_string(),
        s if s < 3600 => format!("in {} min", s / 60),
        s if s < 86_400 => format!("in {} h", s / 3600),
        s => format!("in {} days", s / 86_400),
    }
}

/// `2026-12-07 10:00:00 UTC (in 2 h)`.
fn until(html: &mut Html, at: DateTime<Utc>, now: DateTime<Utc>) {
    html.raw("<time datetime=\"")
        .text(at.to_rfc3339())
        .raw("\">")
        .text(timestamp(at))
        .raw("</time> <span class=\"muted\">(")
        .text(from_now(at, now))
        .raw(")</span>");
}

/// What a lock covers, in words.
fn scope(lock: &Lock, instance: Option<&Instance>) -> String {
    match (&lock.target, instance) {
        (LockTarget::Repo { repo }, _) => format!("every environment of {repo}"),
        (LockTarget::Instance { .. }, Some(i)) => format!("{} ({})", i.name, i.environment),
        (LockTarget::Instance { instance_id }, None) => instance_id.to_string(),
    }
}

/// The lock badge: holder, reason, since and until.
fn lock_line(html: &mut Html, lock: &Lock, now: DateTime<Utc>) {
    html.raw("<div class=\"lock\" id=\"lock\"><span class=\"badge locked\">locked</span> by <strong class=\"holder\">")
        .text(&lock.holder)
        .raw("</strong>");
    if let LockTarget::Repo { repo } = &lock.target {
        html.raw(" on every environment of ").text(repo);
    }
    if !lock.reason.is_empty() {
        html.raw(": <span class=\"reason\">")
            .text(&lock.reason)
            .raw("</span>");
    }
    html.raw(" · since ");
    time(html, lock.created_at, now);
    html.raw(" · until <span class=\"until\">");
    match lock.expires_at {
        Some(at) => until(html, at, now),
        None => {
            html.raw("unlocked");
        }
    }
    html.raw("</span></div>\n");
}

fn freeze_line(html: &mut Html, freeze: &ActiveFreeze, now: DateTime<Utc>) {
    html.raw("<div class=\"freeze\" id=\"freeze\"><span class=\"badge frozen\">frozen</span> <span class=\"reason\">")
        .text(&freeze.reason)
        .raw("</span> · until ");
    until(html, freeze.end, now);
    html.raw(" <span class=\"muted\">(pushes wait; deploys need --force by an admin token or a deployer; dry runs pass)</span></div>\n");
}

fn next_freeze_line(html: &mut Html, freeze: &ActiveFreeze, now: DateTime<Utc>) {
    html.raw("<p class=\"muted next-freeze\" id=\"next-freeze\">Next freeze: ")
        .text(&freeze.reason)
        .raw(", from ");
    until(html, freeze.start, now);
    html.raw(" until <time datetime=\"")
        .text(freeze.end.to_rfc3339())
        .raw("\">")
        .text(timestamp(freeze.end))
        .raw("</time></p>\n");
}

/// The lock covering an instance, the freeze in force and the next one.
pub(super) fn control_lines(html: &mut Html, control: &Control, now: DateTime<Utc>) {
    if let Some(lock) = &control.lock {
        lock_line(html, lock, now);
    }
    if let Some(freeze) = &control.freeze {
        freeze_line(html, freeze, now);
    }
    if let Some(next) = &control.next_freeze {
        next_freeze_line(html, next, now);
    }
}

/// The start of an action form: its target and the session's form token, and where the
/// answer goes back to.
fn form_start(html: &mut Html, class: &'static str, action: &str, session: &Session, back: &str) {
    html.raw("<form class=\"action ")
        .raw(class)
        .raw("\" method=\"post\" action=\"")
        .text(action)
        .raw("\"><input type=\"hidden\" name=\"form_token\" value=\"")
        .text(&session.form_token)
        .raw("\"><input type=\"hidden\" name=\"back\" value=\"")
        .text(back)
        .raw("\">");
}

/// The confirmation field of a production instance: its environment's name, typed.
fn confirm_field(html: &mut Html, environment: &str, production: bool) {
    if production {
        html.raw("<label class=\"confirm\">Type <code>")
            .text(environment)
            .raw("</code> to confirm <input name=\"confirm\" required autocomplete=\"off\" spellcheck=\"false\"></label>");
    }
}

/// The confirmation field an action needs only when it covers every environment.
fn global_confirm_field(html: &mut Html, environment: &str) {
    html.raw("<label class=\"confirm\">With every environment, type <code>")
        .text(environment)
        .raw("</code> to confirm <input name=\"confirm\" autocomplete=\"off\" spellcheck=\"false\"></label>");
}

/// Cancel a pending or running deployment.
pub(super) fn cancel_form(
    html: &mut Html,
    session: &Session,
    d: &Deployment,
    instance: &Instance,
    production: bool,
) {
    let action = format!("/deployments/{}/cancel", d.id);
    let back = format!("/deployments/{}", d.id);
    form_start(html, "cancel", &action, session, &back);
    confirm_field(html, &instance.environment, production);
    html.raw("<button type=\"submit\" class=\"danger\">")
        .raw(if d.state == DeployState::Running {
            "Cancel this deployment (restores the previous release)"
        } else {
            "Cancel this deployment"
        })
        .raw("</button></form>\n");
}

/// Approve a deployment that waits for approval.
pub(super) fn approve_form(html: &mut Html, session: &Session, d: &Deployment) {
    let action = format!("/deployments/{}/approve", d.id);
    let back = format!("/deployments/{}", d.id);
    form_start(html, "approve", &action, session, &back);
    html.raw("<button type=\"submit\">Approve this deployment</button></form>\n");
}

/// The actions on an instance: lock or unlock, and roll back to the previous release.
fn instance_actions(html: &mut Html, page: &InstancePage, session: &Session) {
    let i = &page.view.instance;
    let production = page.view.control.production;
    let back = format!("/instances/{}", i.id);
    html.raw("<section class=\"card actions\" id=\"actions\"><h2>Actions</h2>");
    if production {
        html.raw(
            "<p class=\"muted\">This is a production instance: each action asks you to type <code>",
        )
        .text(&i.environment)
        .raw("</code>.</p>");
    }
    match &page.view.control.lock {
        Some(lock) => unlock_form(html, page, session, lock, &back),
        None => lock_form(html, page, session, &back),
    }
    match &page.previous {
        Some(previous) => rollback_form(html, page, session, previous.version, &back),
        None => {
            html.raw("<p class=\"muted\">No previous release to roll back to.</p>");
        }
    }
    html.raw("</section>\n");
}

/// Release the lock covering the instance; a lock on every environment is released as one.
fn unlock_form(html: &mut Html, page: &InstancePage, session: &Session, lock: &Lock, back: &str) {
    let i = &page.view.instance;
    let production = page.view.control.production;
    let global = matches!(lock.target, LockTarget::Repo { .. });
    form_start(
        html,
        "unlock",
        &format!("/instances/{}/unlock", i.id),
        session,
        back,
    );
    if global {
        html.raw("<input type=\"hidden\" name=\"global\" value=\"on\">");
    }
    match (&page.global_confirm, global) {
        (Some(environment), true) => confirm_field(html, environment, true),
        _ => confirm_field(html, &i.environment, production),
    }
    let yours = lock.holder == format!("token:{}", session.name);
    html.raw("<button type=\"submit\">")
        .raw(if yours {
            "Unlock"
        } else {
            "Unlock (the lock is someone else's)"
        })
        .raw("</button></form>\n");
}

/// Lock the instance, or every environment of its repository when the session covers them
/// all.
fn lock_form(html: &mut Html, page: &InstancePage, session: &Session, back: &str) {
    let i = &page.view.instance;
    let production = page.view.control.production;
    let global_allowed = page.siblings.iter().all(|name| session.covers(name));
    form_start(
        html,
        "lock",
        &format!("/instances/{}/lock", i.id),
        session,
        back,
    );
    html.raw("<label>Reason <input name=\"reason\" maxlength=\"500\" placeholder=\"incident 42\"></label>")
        .raw("<label>For <input name=\"duration\" placeholder=\"2h (empty: until unlocked)\" size=\"24\"></label>");
    let offer_global = global_allowed && page.siblings.len() > 1;
    if offer_global {
        html.raw("<label class=\"check\"><input type=\"checkbox\" name=\"global\" value=\"on\"> every environment of ")
            .text(&i.repo)
            .raw("</label>");
    }
    match &page.global_confirm {
        Some(environment) if offer_global && !production => global_confirm_field(html, environment),
        _ => confirm_field(html, &i.environment, production),
    }
    html.raw("<button type=\"submit\">Lock</button></form>\n");
}

/// Roll the instance back to its previous release; admins may force past a lock or freeze.
fn rollback_form(
    html: &mut Html,
    page: &InstancePage,
    session: &Session,
    previous_version: i64,
    back: &str,
) {
    let view = &page.view;
    let i = &view.instance;
    form_start(
        html,
        "rollback",
        &format!("/instances/{}/rollback", i.id),
        session,
        back,
    );
    html.raw("<label>Reason <input name=\"reason\" maxlength=\"500\" placeholder=\"errors after v")
        .text(view.active.as_ref().map_or(0, |r| r.version))
        .raw("\"></label>");
    if session.role >= Role::Admin {
        html.raw("<label class=\"check\"><input type=\"checkbox\" name=\"force\" value=\"on\"> force (pass a lock or freeze; recorded)</label>");
    }
    confirm_field(html, &i.environment, view.control.production);
    html.raw("<button type=\"submit\" class=\"danger\">Roll back to v")
        .text(previous_version)
        .raw("</button></form>\n");
}

/// `/instances/{id}`: the instance's lock and freezes, live release, actions, latest
/// deployments and audit trail.
pub(super) fn instance_page(
    page_data: &InstancePage,
    viewer: &Viewer,
    notice_text: Option<&str>,
    now: DateTime<Utc>,
) -> String {
    let view = &page_data.view;
    let i = &view.instance;
    page(&i.name, viewer, &[], |html| {
        html.raw("<p class=\"crumbs\"><a href=\"/\">← All deployments</a></p>\n");
        notice(html, notice_text);
        html.raw("<h1>")
            .text(&i.name)
            .raw("</h1>\n<p class=\"lede\"><a href=\"")
            .text(&page_data.github)
            .raw("/")
            .text(&i.repo)
            .raw("\">")
            .text(&i.repo)
            .raw("</a> → <strong>")
            .text(&i.environment)
            .raw("</strong></p>\n");
        control_lines(html, &view.control, now);
        if view.control.lock.is_none() && view.control.freeze.is_none() {
            html.raw("<p class=\"muted\" id=\"unlocked\">Not locked, not frozen.</p>\n");
        }
        html.raw("<p class=\"active\">");
        views::live_release(html, view, &page_data.github, now);
        html.raw("</p>\n");
        if let Some(session) = viewer.actor(&page_data.tenant, &i.name) {
            instance_actions(html, page_data, session);
        }
        html.raw("<section><h2>Deployments</h2>");
        if view.deployments.is_empty() {
            html.raw("<p class=\"muted\">No deployments yet.</p>");
        } else {
            views::deployments_table(html, view, now);
        }
        html.raw("</section>\n<section><h2>Audit trail</h2>");
        if page_data.audit.is_empty() {
            html.raw("<p class=\"muted\" id=\"audit-empty\">Nothing recorded yet.</p>");
        } else {
            html.raw("<table class=\"deployments audit\" id=\"audit\"><thead><tr><th>When</th><th>Who</th><th>What</th><th>Detail</th></tr></thead><tbody>");
            for event in &page_data.audit {
                html.raw("<tr><td>");
                time(html, event.at, now);
                html.raw("</td><td>")
                    .text(&event.actor)
                    .raw("</td><td><code>")
                    .text(&event.action)
                    .raw("</code></td><td>");
                match event.deployment_id {
                    Some(id) => {
                        html.raw("<a href=\"/deployments/")
                            .text(id)
                            .raw("\">")
                            .text(&event.detail)
                            .raw("</a>");
                    }
                    None => {
                        html.text(&event.detail);
                    }
                }
                html.raw("</td></tr>");
            }
            html.raw("</tbody></table>");
        }
        if viewer.session().is_some() {
            html.raw("<p class=\"more\"><a id=\"audit-trail\" href=\"/audit?instance=")
                .text(super::encode_query_value(&i.name))
                .raw("\">The whole audit trail of ")
                .text(&i.name)
                .raw(" →</a></p>");
        }
        html.raw("</section>");
    })
}

/// `/locks`: the live locks of each tenant the viewer sees.
pub(super) fn locks_page(
    view: &LocksView,
    viewer: &Viewer,
    notice_text: Option<&str>,
    now: DateTime<Utc>,
) -> String {
    page("Locks", viewer, &[], |html| {
        html.raw("<p class=\"crumbs\"><a href=\"/\">← All deployments</a></p>\n");
        notice(html, notice_text);
        html.raw("<h1>Locks</h1>\n");
        let several = view.tenants.len() > 1;
        let mut any = false;
        for (tenant, rows) in &view.tenants {
            if rows.is_empty() {
                continue;
            }
            any = true;
            if several {
                html.raw("<h2 class=\"tenant\">")
                    .text(tenant)
                    .raw("</h2>\n");
            }
            html.raw("<table class=\"deployments locks\"><thead><tr><th>Locked</th><th>Holder</th><th>Reason</th><th>Since</th><th>Until</th><th></th></tr></thead><tbody>");
            for row in rows {
                lock_row(html, row, viewer, tenant, now);
            }
            html.raw("</tbody></table>\n");
        }
        if !any {
            html.raw("<p class=\"empty\" id=\"no-locks\">Nothing is locked.</p>");
        }
    })
}

fn lock_row(html: &mut Html, row: &LockRow, viewer: &Viewer, tenant: &str, now: DateTime<Utc>) {
    let lock = &row.lock;
    html.raw("<tr><td>");
    match (&lock.target, &row.instance) {
        (LockTarget::Instance { .. }, Some(i)) => {
            html.raw("<a href=\"/instances/")
                .text(i.id)
                .raw("\">")
                .text(scope(lock, Some(i)))
                .raw("</a>");
        }
        _ => {
            html.text(scope(lock, row.instance.as_ref()));
        }
    }
    html.raw("</td><td>")
        .text(&lock.holder)
        .raw("</td><td>")
        .text(&lock.reason)
        .raw("</td><td>");
    time(html, lock.created_at, now);
    html.raw("</td><td>");
    match lock.expires_at {
        Some(at) => until(html, at, now),
        None => {
            html.raw("until unlocked");
        }
    }
    html.raw("</td><td>");
    let session = viewer.session().filter(|s| s.tenant == tenant);
    if let (true, Some(session), Some(instance)) = (row.releasable, session, &row.instance) {
        form_start(
            html,
            "unlock",
            &format!("/instances/{}/unlock", instance.id),
            session,
            "/locks",
        );
        if matches!(lock.target, LockTarget::Repo { .. }) {
            html.raw("<input type=\"hidden\" name=\"global\" value=\"on\">");
        }
        if let Some(environment) = &row.confirm {
            confirm_field(html, environment, true);
        }
        html.raw("<button type=\"submit\">Unlock</button></form>");
    }
    html.raw("</td></tr>\n");
}

/// An action that was not done, and why.
pub(super) fn refusal(title: &str, text: &str, back: &str, viewer: &Viewer) -> String {
    page(title, viewer, &[], |html| {
        html.raw("<section class=\"card notice refusal\"><h1>")
            .text(title)
            .raw("</h1><p class=\"error-text\" role=\"alert\" id=\"refusal\">")
            .text(capitalized(text))
            .raw("</p><p>Nothing was changed. <a href=\"")
            .text(back)
            .raw("\">Go back</a></p></section>");
    })
}

/// The fields of an action form, to show it again.
pub(super) struct Resubmit<'a> {
    pub(super) action: String,
    pub(super) what: &'a str,
    pub(super) environment: &'a str,
    pub(super) back: &'a str,
    /// The other fields (name, value) as they were sent.
    pub(super) fields: Vec<(&'static str, &'a str)>,
}

/// The form again, asking for the production confirmation it lacked.
pub(super) fn confirm_page(resubmit: &Resubmit<'_>, session: &Session, viewer: &Viewer) -> String {
    page("Confirm", viewer, &[], |html| {
        html.raw("<section class=\"card notice confirm-page\"><h1>Confirm: ")
            .text(resubmit.what)
            .raw("</h1><p class=\"error-text\" role=\"alert\" id=\"confirm-needed\">This is a production instance: type <code>")
            .text(resubmit.environment)
            .raw("</code> to confirm.</p>");
        form_start(html, "confirm", &resubmit.action, session, resubmit.back);
        for (name, value) in &resubmit.fields {
            if !value.is_empty() {
                html.raw("<input type=\"hidden\" name=\"")
                    .raw(name)
                    .raw("\" value=\"")
                    .text(value)
                    .raw("\">");
            }
        }
        confirm_field(html, resubmit.environment, true);
        html.raw("<button type=\"submit\">")
            .text(capitalized(resubmit.what))
            .raw("</button></form><p><a href=\"")
            .text(resubmit.back)
            .raw("\">Go back</a></p></section>");
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_to_come_read_as_from_now() {
        let now = Utc::now();
        assert_eq!(from_now(now + chrono::Duration::minutes(90), now), "in 1 h");
        assert_eq!(
            from_now(now + chrono::Duration::seconds(10), now),
            "in less than a minute"
        );
        assert_eq!(from_now(now + chrono::Duration::days(3), now), "in 3 days");
    }
}
