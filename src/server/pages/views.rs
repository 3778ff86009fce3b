//! The pages themselves: pure functions from loaded data to HTML. Every runtime value is
//! written with `Html::text` (escaped); markup only comes from the literals here.

use chrono::{DateTime, Utc};

use super::Viewer;
use super::controls;
use super::html::{Html, clean_line};
use super::load::{DeploymentRow, DeploymentView, IndexView, InstanceView};
use crate::deploy::{DeployKind, DeployState, Deployment, LogEntry};

/// The page script, served inline and allowed by its hash in the Content-Security-Policy.
pub(super) const SCRIPT: &str = include_str!("live.js");
/// The page style, inline and allowed by its hash.
pub(super) const STYLE: &str = include_str!("style.css");

/// What a state is called on a page: `running 50%`, `rolled back`, …
pub(super) fn state_label(d: &Deployment) -> String {
    match d.state {
        DeployState::Running => format!("running {}%", d.progress.percent.clamp(0, 100)),
        DeployState::RolledBack => "rolled back".to_string(),
        state => state.as_str().to_string(),
    }
}

/// `web-production · v12 · canary · running 50%`.
pub(super) fn headline(instance: &str, version: Option<i64>, d: &Deployment) -> String {
    let release = match (version, d.kind) {
        (Some(v), DeployKind::Rollback) => format!("rollback to v{v}"),
        (Some(v), DeployKind::Deploy) => format!("v{v}"),
        (None, _) => "release unknown".to_string(),
    };
    format!(
        "{instance} · {release} · {} · {}",
        d.strategy,
        state_label(d)
    )
}

/// `2024-05-01 12:00:03 UTC`.
pub(super) fn timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `just now`, `42 s ago`, `3 min ago`, `5 h ago`, `4 days ago`.
pub(super) fn ago(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - at).num_seconds();
    match secs {
        s if s < 5 => "just now".to_string(),
        s if s < 60 => format!("{s} s ago"),
        s if s < 3600 => format!("{} min ago", s / 60),
        s if s < 86_400 => format!("{} h ago", s / 3600),
        s if s < 2 * 86_400 => "yesterday".to_string(),
        s => format!("{} days ago", s / 86_400),
    }
}

/// `42s`, `3m 05s`, `1h 02m`.
pub(super) fn duration(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {:02}s", s / 60, s % 60),
        s => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// How long a deployment ran (or has been running).
pub(super) fn run_time(d: &Deployment, now: DateTime<Utc>) -> Option<String> {
    let started = d.started_at?;
    let until = d.finished_at.unwrap_or(now);
    Some(duration((until - started).num_seconds()))
}

fn short_sha(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

fn is_commit_sha(sha: &str) -> bool {
    (7..=64).contains(&sha.len()) && sha.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `[ 50%] shift: sending 50% of traffic` — a progress line the strategy wrote to the log.
pub(super) fn parse_step(entry: &LogEntry) -> Option<(i32, &str, &str)> {
    if entry.stream != "deploybot" {
        return None;
    }
    let rest = entry.line.strip_prefix('[')?;
    let (percent, rest) = rest.split_once("%] ")?;
    let percent = percent.trim().parse().ok()?;
    let (phase, message) = rest.split_once(": ").unwrap_or((rest, ""));
    Some((percent, phase, message))
}

/// The commit link, `{github}/{repo}/commit/{sha}`, when the SHA looks like one.
fn commit_link(html: &mut Html, github: &str, repo: &str, sha: &str, short: bool) {
    if is_commit_sha(sha) && !repo.is_empty() {
        html.raw("<a class=\"sha\" href=\"")
            .text(github)
            .raw("/")
            .text(repo)
            .raw("/commit/")
            .text(sha)
            .raw("\">")
            .text(if short { short_sha(sha) } else { sha })
            .raw("</a>");
    } else if sha.is_empty() {
        html.raw("<span class=\"muted\">—</span>");
    } else {
        html.raw("<span class=\"sha\">").text(sha).raw("</span>");
    }
}

/// What started the deployment, with a link to its pull request when a comment did.
fn trigger(html: &mut Html, github: &str, repo: &str, d: &Deployment) {
    if d.source.trigger.is_empty() {
        html.raw("<span class=\"muted\">—</span>");
    } else {
        html.text(&d.source.trigger);
    }
    if let Some(pr) = d.source.pull_request
        && !repo.is_empty()
    {
        html.raw(" · ");
        pull_link(html, github, repo, pr);
    }
}

/// `pull request #42`, linked to `{github}/{repo}/pull/42`.
fn pull_link(html: &mut Html, github: &str, repo: &str, pr: u64) {
    html.raw("<a href=\"")
        .text(github)
        .raw("/")
        .text(repo)
        .raw("/pull/")
        .text(pr)
        .raw("\">pull request #")
        .text(pr)
        .raw("</a>");
}

/// A path segment percent-encoded (unreserved characters stay).
fn path_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Where the deployment is on GitHub: its pull request (a comment command's) and the
/// GitHub Deployment that mirrors it, once created. GitHub shows a Deployment on its
/// environment's page, `{github}/{repo}/deployments/{environment}`. Nothing when there
/// is neither.
fn github_links(html: &mut Html, view: &DeploymentView, place: &Place<'_>) {
    let d = &view.deployment;
    if place.repo.is_empty()
        || (d.source.pull_request.is_none() && d.github_deployment_id.is_none())
    {
        return;
    }
    html.raw("<p class=\"lede github\">On GitHub: ");
    if let Some(pr) = d.source.pull_request {
        pull_link(html, &view.github, place.repo, pr);
    }
    if let Some(id) = d.github_deployment_id {
        if d.source.pull_request.is_some() {
            html.raw(" · ");
        }
        html.raw("<a href=\"")
            .text(&view.github)
            .raw("/")
            .text(place.repo)
            .raw("/deployments/")
            .text(path_segment(place.environment))
            .raw("\">Deployment ")
            .text(id)
            .raw(" in ")
            .text(place.environment)
            .raw("</a>");
    }
    html.raw("</p>\n");
}

fn badge(html: &mut Html, d: &Deployment, id: Option<&'static str>) {
    html.raw("<span");
    if let Some(id) = id {
        html.raw(" id=\"").raw(id).raw("\"");
    }
    html.raw(" class=\"badge s-")
        .text(d.state.as_str())
        .raw("\">")
        .text(state_label(d))
        .raw("</span>");
}

pub(super) fn time(html: &mut Html, at: DateTime<Utc>, now: DateTime<Utc>) {
    html.raw("<time datetime=\"")
        .text(at.to_rfc3339())
        .raw("\" title=\"")
        .text(timestamp(at))
        .raw("\">")
        .text(ago(at, now))
        .raw("</time>");
}

/// The document around a page's content.
pub(super) fn page(
    title: &str,
    viewer: &Viewer,
    body_data: &[(&'static str, String)],
    content: impl FnOnce(&mut Html),
) -> String {
    let mut html = Html::new();
    html.raw("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
        .raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n")
        .raw("<meta name=\"referrer\" content=\"same-origin\">\n<title>")
        .text(title)
        .raw(" — deploybot</title>\n<style>")
        .raw(STYLE)
        .raw("</style>\n</head>\n<body");
    for (name, value) in body_data {
        html.raw(" data-")
            .raw(name)
            .raw("=\"")
            .text(value)
            .raw("\"");
    }
    html.raw(">\n<header class=\"top\"><span><a class=\"brand\" href=\"/\">deploybot</a>");
    if viewer.sees_index() {
        html.raw("<a class=\"nav\" href=\"/locks\">Locks</a>");
    }
    if viewer.session().is_some() {
        html.raw("<a class=\"nav\" href=\"/audit\">Audit</a>");
    }
    html.raw("</span><span class=\"who\">");
    match viewer {
        Viewer::Signed(session) | Viewer::Public(Some(session)) => {
            html.raw("signed in as <strong>")
                .text(&session.name)
                .raw("</strong> (")
                .text(&session.tenant)
                .raw(") <form method=\"post\" action=\"/signout\"><button type=\"submit\">Sign out</button></form>");
        }
        Viewer::Public(None) => {
            html.raw("public view · <a href=\"/signin?reason=signin_to_act\">Sign in to act</a>");
        }
        Viewer::Anonymous => {
            html.raw("<a href=\"/signin\">Sign in</a>");
        }
    }
    html.raw("</span></header>\n<main>\n");
    content(&mut html);
    html.raw("\n</main>\n<script>")
        .raw(SCRIPT)
        .raw("</script>\n</body>\n</html>\n");
    html.finish()
}

/// `/`: every visible instance with its active release and latest deployments.
pub(super) fn index(
    view: &IndexView,
    viewer: &Viewer,
    notice: Option<&str>,
    now: DateTime<Utc>,
) -> String {
    page("Deployments", viewer, &[], |html| {
        html.raw("<h1>Deployments</h1>\n");
        controls::notice(html, notice);
        let instances: usize = view.tenants.iter().map(|t| t.instances.len()).sum();
        if instances == 0 {
            html.raw("<p class=\"empty\">No instances yet. Add an <code>[[instances]]</code> table to the configuration and restart deploybot; each instance appears here with its releases and deployments.</p>");
            return;
        }
        let several = view.tenants.len() > 1;
        for tenant in &view.tenants {
            if several {
                html.raw("<h2 class=\"tenant\">")
                    .text(&tenant.tenant)
                    .raw("</h2>\n");
            }
            if tenant.instances.is_empty() {
                html.raw("<p class=\"empty\">No instances.</p>");
            }
            for instance in &tenant.instances {
                instance_card(html, instance, &view.github, now);
            }
        }
    })
}

/// One instance on `/`: its lock and freezes, its live release and its latest deployments.
fn instance_card(html: &mut Html, view: &InstanceView, github: &str, now: DateTime<Utc>) {
    let i = &view.instance;
    html.raw("<section class=\"card instance\" data-instance=\"")
        .text(&i.name)
        .raw("\">\n<div class=\"instance-head\"><h3><a href=\"/instances/")
        .text(i.id)
        .raw("\">")
        .text(&i.name)
        .raw("</a></h3><span class=\"muted\"><a href=\"")
        .text(github)
        .raw("/")
        .text(&i.repo)
        .raw("\">")
        .text(&i.repo)
        .raw("</a> → ")
        .text(&i.environment)
        .raw("</span></div>\n");
    controls::control_lines(html, &view.control, now);
    html.raw("<p class=\"active\">");
    live_release(html, view, github, now);
    html.raw("</p>\n");
    if view.deployments.is_empty() {
        html.raw("<p class=\"muted\">No deployments yet.</p>\n</section>\n");
        return;
    }
    deployments_table(html, view, now);
    html.raw("</section>\n");
}

/// An instance's latest deployments, and how many there are in all.
pub(super) fn deployments_table(html: &mut Html, view: &InstanceView, now: DateTime<Utc>) {
    html.raw("<table class=\"deployments\">\n<thead><tr><th>State</th><th>Release</th><th>Strategy</th><th>By</th><th>Queued</th><th>Took</th></tr></thead>\n<tbody>\n");
    for row in &view.deployments {
        deployment_row(html, row, now);
    }
    html.raw("</tbody>\n</table>\n");
    if view.total > view.deployments.len() as i64 {
        html.raw("<p class=\"muted more\">The latest ")
            .text(view.deployments.len())
            .raw(" of ")
            .text(view.total)
            .raw(" deployments.</p>\n");
    }
}

/// The instance's active release, and since when (and by whom) it is live.
pub(super) fn live_release(html: &mut Html, view: &InstanceView, github: &str, now: DateTime<Utc>) {
    let Some(release) = &view.active else {
        html.raw("<span class=\"muted\">Nothing deployed yet.</span>");
        return;
    };
    html.raw("<span class=\"label\">Live</span> <strong>v")
        .text(release.version)
        .raw("</strong> · <code>")
        .text(&release.image)
        .raw("</code> · ");
    commit_link(html, github, &view.instance.repo, &release.commit_sha, true);
    match &view.live_since {
        Some(d) => {
            html.raw(" · since ");
            time(html, d.finished_at.unwrap_or(d.updated_at), now);
            html.raw(" by ").text(&d.initiator);
        }
        None => {
            html.raw(" · released ");
            time(html, release.created_at, now);
        }
    }
}

/// One row of an instance's deployments table.
fn deployment_row(html: &mut Html, row: &DeploymentRow, now: DateTime<Utc>) {
    let d = &row.deployment;
    html.raw("<tr><td>");
    badge(html, d, None);
    if d.noop {
        html.raw(" <span class=\"badge dry-run\">dry run</span>");
    }
    html.raw("</td><td><a href=\"/deployments/")
        .text(d.id)
        .raw("\">");
    release_name(html, row.version, d.kind, "release");
    html.raw("</a> <code class=\"image\">")
        .text(&d.image)
        .raw("</code></td><td>")
        .text(&d.strategy)
        .raw("</td><td>")
        .text(&d.initiator)
        .raw("</td><td>");
    time(html, d.created_at, now);
    html.raw("</td><td>")
        .text(run_time(d, now).unwrap_or_default())
        .raw("</td></tr>\n");
}

/// `v12`, `rollback to v12`, or `unknown` when the release's version is not known.
fn release_name(html: &mut Html, version: Option<i64>, kind: DeployKind, unknown: &'static str) {
    match version {
        Some(v) if kind == DeployKind::Rollback => {
            html.raw("rollback to v").text(v);
        }
        Some(v) => {
            html.raw("v").text(v);
        }
        None => {
            html.raw(unknown);
        }
    }
}

/// `/deployments/{id}`: what is deployed, how far it is, and the log, followed live.
pub(super) fn deployment(
    view: &DeploymentView,
    viewer: &Viewer,
    token: Option<&str>,
    notice: Option<&str>,
    now: DateTime<Utc>,
) -> String {
    let d = &view.deployment;
    let instance_id = d.instance_id.to_string();
    let place = match &view.instance {
        Some(i) => Place {
            name: &i.name,
            repo: &i.repo,
            environment: &i.environment,
        },
        None => Place {
            name: &instance_id,
            repo: "",
            environment: "",
        },
    };
    let version = view.release.as_ref().map(|r| r.version);
    let title = headline(place.name, version, d);
    let after = view.log.last().map_or(0, |l| l.seq);
    let mut data = vec![
        ("deployment", d.id.to_string()),
        ("after", after.to_string()),
        ("final", d.state.is_final().to_string()),
    ];
    if let Some(token) = token {
        data.push(("token", token.to_string()));
    }
    page(&title, viewer, &data, |html| {
        if viewer.sees_index() {
            html.raw("<p class=\"crumbs\"><a href=\"/\">← All deployments</a></p>\n");
        }
        controls::notice(html, notice);
        heading(html, view, &place, version, now);
        github_links(html, view, &place);
        progress(html, d);
        if let Some(instance) = &view.instance
            && !d.state.is_final()
            && let Some(session) = viewer.actor(&d.tenant_id, &instance.name)
        {
            controls::cancel_form(html, session, d, instance, view.production);
            if d.waiting_for
                .as_ref()
                .is_some_and(|w| w.kind == crate::deploy::WaitKind::Approval)
            {
                controls::approve_form(html, session, d);
            }
        }
        html.raw("<div class=\"grid\">\n");
        release_card(html, view, place.repo);
        deployment_card(html, view, place.repo, now);
        html.raw("</div>\n");
        timeline(html, view);
        super::gates::gates_section(html, d, now);
        log(html, view);
    })
}

/// Where a deployment runs: its instance (or the instance id, when the instance is
/// gone), repository and environment.
struct Place<'a> {
    name: &'a str,
    repo: &'a str,
    environment: &'a str,
}

/// The deployment's headline and badge, then where it goes and who started it when.
fn heading(
    html: &mut Html,
    view: &DeploymentView,
    place: &Place<'_>,
    version: Option<i64>,
    now: DateTime<Utc>,
) {
    let d = &view.deployment;
    html.raw("<h1><span id=\"headline\">")
        .text(place.name)
        .raw(" · ");
    release_name(html, version, d.kind, "release unknown");
    html.raw(" · ").text(&d.strategy).raw("</span> ");
    badge(html, d, Some("state"));
    if d.noop {
        html.raw(" <span id=\"dry-run\" class=\"badge dry-run\">dry run</span>");
    }
    html.raw("</h1>\n<p class=\"lede\">");
    if !place.repo.is_empty() {
        html.raw("<a href=\"")
            .text(&view.github)
            .raw("/")
            .text(place.repo)
            .raw("\">")
            .text(place.repo)
            .raw("</a> → <strong>")
            .text(place.environment)
            .raw("</strong> · ");
    }
    html.raw(if d.kind == DeployKind::Rollback {
        "rollback"
    } else {
        "deploy"
    })
    .raw(" started by <strong>")
    .text(&d.initiator)
    .raw("</strong> ");
    time(html, d.created_at, now);
    html.raw("</p>\n");
}

/// The progress bar, the phase, and the error (hidden until there is one).
fn progress(html: &mut Html, d: &Deployment) {
    let percent = d.progress.percent.clamp(0, 100);
    html.raw("<div class=\"progress\"><progress id=\"progress\" max=\"100\" value=\"")
        .text(percent)
        .raw("\">")
        .text(percent)
        .raw("%</progress><span id=\"percent\">")
        .text(percent)
        .raw("%</span></div>\n<p id=\"phase\" class=\"phase\">");
    phase_text(html, d);
    html.raw("</p>\n<div id=\"error\" class=\"error\"");
    if d.error.is_empty() {
        html.raw(" hidden");
    }
    html.raw("><strong id=\"error-label\">")
        .text(super::gates::reason_label(d))
        .raw("</strong><pre id=\"error-text\">")
        .text(clean_line(&d.error))
        .raw("</pre></div>\n");
}

/// The release card: version, image, commit, notes, and the env's keys (never values).
fn release_card(html: &mut Html, view: &DeploymentView, repo: &str) {
    let d = &view.deployment;
    html.raw("<section class=\"card\"><h2>Release</h2><dl>");
    match &view.release {
        Some(r) => {
            html.raw("<dt>Version</dt><dd>v").text(r.version);
            if r.active {
                html.raw(" <span class=\"label\">live</span>");
            }
            html.raw("</dd><dt>Image</dt><dd><code>")
                .text(&r.image)
                .raw("</code></dd><dt>Commit</dt><dd>");
            commit_link(html, &view.github, repo, &r.commit_sha, false);
            html.raw("</dd><dt>Notes</dt><dd class=\"notes\">");
            if r.notes.is_empty() {
                html.raw("<span class=\"muted\">—</span>");
            } else {
                html.text(&r.notes);
            }
            html.raw("</dd>");
        }
        None => {
            html.raw("<dt>Image</dt><dd><code>")
                .text(&d.image)
                .raw("</code></dd>");
        }
    }
    html.raw("<dt>Env</dt><dd>");
    if d.env.is_empty() {
        html.raw("<span class=\"muted\">none</span>");
    } else {
        for (n, key) in d.env.keys().enumerate() {
            if n > 0 {
                html.raw(", ");
            }
            html.raw("<code>").text(key).raw("</code>");
        }
        html.raw(" <span class=\"muted\">(values are not shown)</span>");
    }
    html.raw("</dd></dl></section>\n");
}

/// The deployment card: id, strategy, initiator, trigger and times.
fn deployment_card(html: &mut Html, view: &DeploymentView, repo: &str, now: DateTime<Utc>) {
    let d = &view.deployment;
    html.raw("<section class=\"card\"><h2>Deployment</h2><dl>")
        .raw("<dt>Id</dt><dd><code>")
        .text(d.id)
        .raw("</code></dd><dt>Strategy</dt><dd>")
        .text(&d.strategy)
        .raw("</dd><dt>Initiator</dt><dd>")
        .text(&d.initiator)
        .raw("</dd><dt>Trigger</dt><dd>");
    trigger(html, &view.github, repo, d);
    if d.noop {
        html.raw("</dd><dt>Dry run</dt><dd>yes: the provider plans, nothing changes and the release never becomes live");
    }
    if !d.params.is_empty() {
        html.raw("</dd><dt>Parameters</dt><dd id=\"params\">");
        for (n, (key, value)) in d.params.iter().enumerate() {
            if n > 0 {
                html.raw(" ");
            }
            html.raw("<code>")
                .text(key)
                .raw("=")
                .text(value)
                .raw("</code>");
        }
    }
    html.raw("</dd><dt>Queued</dt><dd>")
        .text(timestamp(d.created_at))
        .raw("</dd><dt>Started</dt><dd id=\"started\">")
        .text(
            d.started_at
                .map(timestamp)
                .unwrap_or_else(|| "not yet".to_string()),
        )
        .raw("</dd><dt>Finished</dt><dd id=\"finished\">")
        .text(
            d.finished_at
                .map(timestamp)
                .unwrap_or_else(|| "not yet".to_string()),
        )
        .raw("</dd><dt>Took</dt><dd id=\"took\">")
        .text(run_time(d, now).unwrap_or_else(|| "—".to_string()))
        .raw("</dd></dl></section>\n");
}

/// The phases the strategy reported, read from its progress lines in the log.
fn timeline(html: &mut Html, view: &DeploymentView) {
    html.raw("<section><h2>Timeline</h2><ol id=\"timeline\" class=\"timeline\">");
    if !view.log.iter().any(|entry| parse_step(entry).is_some()) {
        html.raw("<li id=\"timeline-empty\" class=\"muted\">")
            .raw(if view.deployment.state.is_final() {
                "No phases were reported."
            } else {
                "No phase has started yet."
            })
            .raw("</li>");
    }
    for entry in &view.log {
        if let Some((percent, phase, message)) = parse_step(entry) {
            html.raw("<li><span class=\"pct\">")
                .text(percent)
                .raw("%</span> <strong>")
                .text(phase)
                .raw("</strong> ")
                .text(clean_line(message))
                .raw(" <time>")
                .text(entry.at.format("%H:%M:%S"))
                .raw("</time></li>");
        }
    }
    super::gates::timeline_outcome(html, &view.deployment);
    html.raw("</ol></section>\n");
}

/// The log as loaded with the page; the script appends what follows.
fn log(html: &mut Html, view: &DeploymentView) {
    html.raw("<section><h2>Log <span id=\"live\" class=\"following\"");
    if view.deployment.state.is_final() {
        html.raw(" hidden");
    }
    html.raw(">● following live</span></h2>\n<pre id=\"log\" class=\"log\">");
    if view.log.is_empty() {
        html.raw("<span id=\"log-empty\" class=\"muted\">No log lines yet.</span>");
    }
    for entry in &view.log {
        html.raw("<span class=\"line s-")
            .text(&entry.stream)
            .raw("\" data-seq=\"")
            .text(entry.seq)
            .raw("\"><span class=\"ts\">")
            .text(entry.at.format("%H:%M:%S"))
            .raw("</span>")
            .text(clean_line(&entry.line))
            .raw("\n</span>");
    }
    html.raw("</pre>\n");
    if view.log_truncated {
        html.raw("<p class=\"muted\">Only the first ")
            .text(view.log.len())
            .raw(" lines are shown.</p>\n");
    }
    html.raw("</section>");
}

fn phase_text(html: &mut Html, d: &Deployment) {
    let p = &d.progress;
    if d.state == DeployState::Pending
        && let Some(waiting) = &d.waiting_for
    {
        html.raw("<span class=\"waiting\">")
            .text(capitalized(&waiting.describe()))
            .raw("</span>");
        return;
    }
    if p.phase.is_empty() && p.message.is_empty() {
        html.text(match d.state {
            DeployState::Pending => "Waiting for a worker…",
            DeployState::Running => "Starting…",
            _ => "",
        });
        return;
    }
    html.raw("<strong>").text(&p.phase).raw("</strong>");
    if !p.message.is_empty() {
        html.raw(" — ").text(&p.message);
    }
}

/// `text` with its first letter upper-cased.
pub(super) fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A page that explains why there is nothing to show (404, 403, 503 …).
pub(super) fn message(title: &str, text: &str, viewer: &Viewer) -> String {
    page(title, viewer, &[], |html| {
        html.raw("<section class=\"card notice\"><h1>")
            .text(title)
            .raw("</h1><p>")
            .text(text)
            .raw("</p><p><a href=\"/\">Go to all deployments</a></p></section>");
    })
}

/// `/signin`: a form that takes an API token.
pub(super) fn signin(
    next: &str,
    notice: Option<&str>,
    error: Option<&str>,
    tokens_configured: bool,
) -> String {
    page("Sign in", &Viewer::Anonymous, &[], |html| {
        html.raw("<section class=\"card signin\"><h1>Sign in</h1>");
        if let Some(notice) = notice {
            html.raw("<p class=\"notice-text\">")
                .text(notice)
                .raw("</p>");
        }
        if let Some(error) = error {
            html.raw("<p class=\"error-text\" role=\"alert\">")
                .text(error)
                .raw("</p>");
        }
        if !tokens_configured {
            html.raw("<p>No API tokens are configured, so nobody can sign in. Add an <code>[[api.tokens]]</code> entry to the configuration, or set <code>[pages] public = true</code>.</p>");
        }
        html.raw("<p>Paste an API token of your team. You will see the deployments of that token's tenant; the token is checked and then forgotten (a signed cookie remembers you for 7 days).</p>")
            .raw("<form method=\"post\" action=\"/signin\"><input type=\"hidden\" name=\"next\" value=\"")
            .text(next)
            .raw("\"><label for=\"token\">API token</label><input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus><button type=\"submit\">Sign in</button></form></section>");
    })
}

/// The state, progress and log lines after a sequence number, for the page script.
pub(super) fn line_json(entry: &LogEntry) -> serde_json::Value {
    serde_json::json!({
        "seq": entry.seq,
        "stream": entry.stream,
        "line": clean_line(&entry.line),
        "at": entry.at,
        "time": entry.at.format("%H:%M:%S").to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::path_segment;

    #[test]
    fn an_environment_name_is_one_path_segment() {
        assert_eq!(path_segment("production"), "production");
        assert_eq!(path_segment("eu west/1"), "eu%20west%2F1");
        assert_eq!(path_segment("prod?x=1#y"), "prod%3Fx%3D1%23y");
    }
}
