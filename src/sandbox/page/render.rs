//! The HTML of the sandbox's pages: a pull request's conversation and deployments, a
//! repository's deployments, and the page for something that does not exist. Everything
//! that comes from the stand-in's state is escaped; comment bodies go through `markdown`.

use std::fmt::{self, Display, Write};

use super::markdown::{self, is_safe_url};
use crate::sandbox::view::{
    CommentView, DeploymentView, EnvironmentView, PullView, ReactionCount, RepositoryView,
    StatusView,
};
use crate::server::pages::escape_into;

/// Text written escaped by `Display`.
pub(super) struct Esc<'a>(pub(super) &'a str);

impl Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::with_capacity(self.0.len());
        escape_into(&mut out, self.0);
        f.write_str(&out)
    }
}

/// What one page is made of: its title, where its script asks for changes (none: no
/// script), the version it shows, and the content that the script swaps.
pub(super) struct Document<'a> {
    pub(super) title: &'a str,
    pub(super) repo: &'a str,
    pub(super) live: Option<&'a str>,
    pub(super) version: u64,
    pub(super) content: &'a str,
}

/// The whole page around its content.
pub(super) fn document(doc: &Document<'_>) -> String {
    let mut out = String::with_capacity(doc.content.len() + 1500);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<link rel=\"stylesheet\" href=\"/sandbox/assets/page.css\">\n",
        Esc(doc.title)
    );
    if let Some(live) = doc.live {
        let _ = write!(
            out,
            "<noscript><meta http-equiv=\"refresh\" content=\"5\"></noscript>\n\
             <script src=\"/sandbox/assets/page.js\" defer></script>\n</head>\n\
             <body data-live=\"{}\" data-version=\"{}\">\n",
            Esc(live),
            doc.version
        );
    } else {
        out.push_str("</head>\n<body>\n");
    }
    let home = if doc.repo.is_empty() {
        String::new()
    } else {
        format!(
            "<a class=\"repo-link\" href=\"/sandbox/{0}/deployments\">{0}</a>",
            Esc(doc.repo)
        )
    };
    let _ = write!(
        out,
        "<header class=\"site\"><span class=\"mark\">deploybot sandbox</span>{home}\
         <span class=\"hint\">a GitHub stand-in on this machine</span></header>\n\
         <main id=\"content\">\n{}</main>\n</body>\n</html>\n",
        doc.content
    );
    out
}

/// The pull request's page title, as GitHub writes it.
pub(super) fn pull_title(view: &PullView) -> String {
    format!(
        "{} by {} · Pull Request #{} · {}",
        view.title, view.author, view.number, view.repo
    )
}

/// The swapped part of a pull request's page: its header, conversation and deployments.
pub(super) fn pull_content(view: &PullView) -> String {
    let mut out = String::with_capacity(4096);
    pull_header(&mut out, view);
    let count = view.comments.len();
    let _ = write!(
        out,
        "<nav class=\"tabs\"><span class=\"tab selected\">Conversation \
         <span class=\"counter\">{count}</span></span>\
         <a class=\"tab\" href=\"/sandbox/{}/deployments\">Deployments</a></nav>\n\
         <div class=\"layout\">\n<div class=\"timeline\" id=\"conversation\">\n",
        Esc(&view.repo)
    );
    let description = CommentView {
        id: 0,
        author: view.author.clone(),
        author_is_bot: false,
        body: view.body.clone(),
        created_at: view.created_at.clone(),
        reactions: Vec::new(),
    };
    comment(&mut out, &description, "pull-description");
    timeline(&mut out, view);
    out.push_str("</div>\n<aside class=\"sidebar\">\n");
    deployments_panel(&mut out, &view.environments);
    out.push_str("</aside>\n</div>\n");
    out
}

/// The conversation after the description: the comments in their order, and between them,
/// by time, each deployment of the pull request's branch or head as GitHub's event.
fn timeline(out: &mut String, view: &PullView) {
    let mut deployed: Vec<(&str, &DeploymentView)> = view
        .environments
        .iter()
        .flat_map(|env| env.deployments.iter().map(move |d| (env.name.as_str(), d)))
        .filter(|(_, d)| d.git_ref == view.head_ref || d.sha == view.head_sha)
        .collect();
    deployed.sort_by(|a, b| (&a.1.created_at, a.1.id).cmp(&(&b.1.created_at, b.1.id)));
    let mut events = deployed.into_iter().peekable();
    for c in &view.comments {
        while let Some((env, d)) = events.next_if(|(_, d)| d.created_at < c.created_at) {
            deployment_event(out, env, d);
        }
        comment(out, c, &format!("comment-{}", c.id));
    }
    for (env, d) in events {
        deployment_event(out, env, d);
    }
}

/// "deploybot deployed to staging — Active", as GitHub's timeline shows a deployment.
fn deployment_event(out: &mut String, environment: &str, d: &DeploymentView) {
    let (label, class) = deployment_badge(d);
    let _ = write!(
        out,
        "<div class=\"timeline-item event\" id=\"deployed-{}\">\
         <span class=\"event-icon\" aria-hidden=\"true\">🚀</span><div class=\"event-body\">\
         {} deployed to <strong class=\"env-name\">{}</strong> \
         <span class=\"badge badge-{class}\">{label}</span> {}",
        d.id,
        login(&d.creator),
        Esc(environment),
        when(&d.created_at),
    );
    let mut sites = d.statuses.iter().rev().map(|s| s.environment_url.as_str());
    if let Some(url) = sites.find(|url| is_web_url(url)) {
        let _ = write!(out, " <a href=\"{}\">View deployment</a>", Esc(url));
    }
    out.push_str("</div></div>\n");
}

fn pull_header(out: &mut String, view: &PullView) {
    let (state, class) = match view.state.as_str() {
        "open" => ("Open", "open"),
        "merged" => ("Merged", "merged"),
        _ => ("Closed", "closed"),
    };
    let _ = write!(
        out,
        "<div class=\"pr-header\">\n<h1><span class=\"pr-title\">{}</span> \
         <span class=\"pr-number\">#{}</span></h1>\n\
         <div class=\"pr-meta\"><span class=\"state state-{class}\">{state}</span> \
         <strong class=\"author\">{}</strong> wants to merge into \
         <code class=\"branch\">{}</code> from <code class=\"branch\">{}</code> \
         · head <code class=\"sha\" title=\"{}\">{}</code></div>\n</div>\n",
        Esc(&view.title),
        view.number,
        Esc(&view.author),
        Esc(&view.base_ref),
        Esc(&view.head_ref),
        Esc(&view.head_sha),
        Esc(short_sha(&view.head_sha)),
    );
}

/// One comment box: avatar, "alice commented", the rendered body and its reactions.
fn comment(out: &mut String, c: &CommentView, id: &str) {
    let name = display_name(c);
    let bot = if c.author_is_bot {
        " <span class=\"label\">bot</span>"
    } else {
        ""
    };
    let body = if c.body.trim().is_empty() {
        "<p class=\"empty\">No description provided.</p>".to_string()
    } else {
        markdown::render(&c.body)
    };
    let _ = write!(
        out,
        "<div class=\"timeline-item\" id=\"{}\">{}\
         <article class=\"comment{}\"><header class=\"comment-head\">\
         <strong class=\"author\">{}</strong>{bot} commented {}</header>\n\
         <div class=\"comment-body markdown\">{body}</div>\n",
        Esc(id),
        avatar(name),
        if c.author_is_bot { " bot" } else { "" },
        Esc(name),
        when(&c.created_at),
    );
    reactions(out, &c.reactions);
    out.push_str("</article></div>\n");
}

/// The author as GitHub shows it: a bot's `[bot]` suffix goes, its label says it instead.
fn display_name(c: &CommentView) -> &str {
    if c.author_is_bot {
        c.author.strip_suffix("[bot]").unwrap_or(&c.author)
    } else {
        &c.author
    }
}

/// A login in bold; an App's `name[bot]` as `name` with a "bot" label, as GitHub shows it.
fn login(login: &str) -> String {
    match login.strip_suffix("[bot]") {
        Some(name) => format!(
            "<strong>{}</strong> <span class=\"label\">bot</span>",
            Esc(name)
        ),
        None => format!("<strong>{}</strong>", Esc(login)),
    }
}

/// A round avatar with the login's first letter, in one of eight colours by the login.
fn avatar(login: &str) -> String {
    let initial: String = login
        .chars()
        .find(|c| c.is_alphanumeric())
        .unwrap_or('?')
        .to_uppercase()
        .collect();
    let colour = login
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31) + u32::from(b))
        % 8;
    format!(
        "<span class=\"avatar c{colour}\" aria-hidden=\"true\">{}</span>",
        Esc(&initial)
    )
}

fn reactions(out: &mut String, reactions: &[ReactionCount]) {
    if reactions.is_empty() {
        return;
    }
    out.push_str("<div class=\"reactions\">");
    for r in reactions {
        let _ = write!(
            out,
            "<span class=\"reaction\" data-content=\"{0}\" title=\"{1} {0}\">\
             <span class=\"emoji\">{2}</span> <span class=\"count\">{1}</span></span>",
            Esc(&r.content),
            r.count,
            emoji(&r.content)
        );
    }
    out.push_str("</div>\n");
}

/// The emoji GitHub shows for a reaction's name.
fn emoji(content: &str) -> &'static str {
    match content {
        "+1" => "👍",
        "-1" => "👎",
        "laugh" => "😄",
        "confused" => "😕",
        "heart" => "❤️",
        "hooray" => "🎉",
        "rocket" => "🚀",
        "eyes" => "👀",
        _ => "❔",
    }
}

/// The "Deployments" panel: each environment with its deployments, newest first.
pub(super) fn deployments_panel(out: &mut String, environments: &[EnvironmentView]) {
    out.push_str(
        "<section class=\"panel deployments\" id=\"deployments\">\n<h2>Deployments</h2>\n",
    );
    if environments.is_empty() {
        out.push_str(
            "<p class=\"empty\">No deployments yet. Comment <code>/deploy ENVIRONMENT</code> \
             on a pull request to start one.</p>\n",
        );
    }
    for env in environments {
        let _ = write!(
            out,
            "<section class=\"environment\" data-environment=\"{0}\">\n\
             <h3><span class=\"env-name\">{0}</span> <span class=\"counter\">{1}</span></h3>\n\
             <ol class=\"deployment-list\">\n",
            Esc(&env.name),
            env.deployments.len()
        );
        for d in &env.deployments {
            deployment(out, d);
        }
        out.push_str("</ol>\n</section>\n");
    }
    out.push_str("</section>\n");
}

fn deployment(out: &mut String, d: &DeploymentView) {
    let (label, class) = deployment_badge(d);
    let _ = write!(
        out,
        "<li class=\"deployment\" id=\"deployment-{}\" data-state=\"{label}\">\n\
         <div class=\"deployment-head\"><span class=\"badge badge-{class}\">{label}</span> \
         <code class=\"sha\" title=\"{}\">{}</code>{}</div>\n\
         <div class=\"deployment-meta\">{} deployed {}</div>\n",
        d.id,
        Esc(&d.sha),
        Esc(short_sha(&d.sha)),
        git_ref(d),
        login(&d.creator),
        when(&d.created_at),
    );
    if !d.description.is_empty() {
        let _ = writeln!(
            out,
            "<p class=\"deployment-description\">{}</p>",
            Esc(&d.description)
        );
    }
    statuses(out, &d.statuses);
    links(out, &d.statuses);
    out.push_str("</li>\n");
}

/// The branch or tag a deployment was made for; nothing when it was made for the commit
/// itself (the SHA already shows).
fn git_ref(d: &DeploymentView) -> String {
    if d.git_ref.is_empty() || d.git_ref.eq_ignore_ascii_case(&d.sha) {
        return String::new();
    }
    format!(" <span class=\"ref\">{}</span>", Esc(&d.git_ref))
}

/// The word and colour GitHub gives a deployment: the environment's newest success is
/// Active; an older success was made inactive by the one after it.
fn deployment_badge(d: &DeploymentView) -> (&'static str, &'static str) {
    if d.active {
        return ("Active", "active");
    }
    match d.state.as_str() {
        "success" | "inactive" => ("Inactive", "inactive"),
        "failure" => ("Failure", "failure"),
        "error" => ("Error", "error"),
        "in_progress" => ("In progress", "progress"),
        "queued" => ("Queued", "queued"),
        _ => ("Pending", "queued"),
    }
}

/// The word GitHub shows for one status's state.
fn status_label(state: &str) -> &'static str {
    match state {
        "success" => "Success",
        "failure" => "Failure",
        "error" => "Error",
        "inactive" => "Inactive",
        "in_progress" => "In progress",
        "queued" => "Queued",
        _ => "Pending",
    }
}

fn statuses(out: &mut String, statuses: &[StatusView]) {
    if statuses.is_empty() {
        return;
    }
    out.push_str("<ol class=\"statuses\">\n");
    for s in statuses {
        let label = status_label(&s.state);
        let _ = writeln!(
            out,
            "<li class=\"status\" data-state=\"{}\"><span class=\"status-state s-{}\">{label}</span> \
             <span class=\"status-description\">{}</span> {}</li>",
            Esc(&s.state),
            label.to_ascii_lowercase().replace(' ', "-"),
            Esc(&s.description),
            when(&s.created_at),
        );
    }
    out.push_str("</ol>\n");
}

/// "View logs" and "View deployment", from the newest status that has each address.
fn links(out: &mut String, statuses: &[StatusView]) {
    let newest = |pick: fn(&StatusView) -> &str| {
        statuses
            .iter()
            .rev()
            .map(pick)
            .find(|url| !url.is_empty() && is_web_url(url))
    };
    let log = newest(|s| &s.log_url);
    let site = newest(|s| &s.environment_url);
    if log.is_none() && site.is_none() {
        return;
    }
    out.push_str("<div class=\"links\">");
    if let Some(url) = log {
        let _ = write!(
            out,
            "<a class=\"button\" href=\"{}\">View logs</a>",
            Esc(url)
        );
    }
    if let Some(url) = site {
        let _ = write!(
            out,
            "<a class=\"button\" href=\"{}\">View deployment</a>",
            Esc(url)
        );
    }
    out.push_str("</div>\n");
}

/// An address a link may open: `http`, `https` or a path on this server.
fn is_web_url(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with('/'))
        && is_safe_url(url)
}

/// The swapped part of a repository's deployments page.
pub(super) fn deployments_content(
    repo: &str,
    environments: &[EnvironmentView],
    pulls: &[u64],
) -> String {
    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        "<div class=\"repo-header\"><h1>{}</h1></div>\n<nav class=\"tabs\">",
        Esc(repo)
    );
    for number in pulls {
        let _ = write!(
            out,
            "<a class=\"tab\" href=\"/sandbox/{}/pull/{number}\">Pull request #{number}</a>",
            Esc(repo)
        );
    }
    out.push_str("<span class=\"tab selected\">Deployments</span></nav>\n<div class=\"wide\">\n");
    deployments_panel(&mut out, environments);
    out.push_str("</div>\n");
    out
}

/// The content of a page for something that does not exist: what was asked, and links to
/// what exists.
pub(super) fn not_found_content(message: &str, repositories: &[RepositoryView]) -> String {
    let mut out = String::with_capacity(1024);
    let _ = write!(
        out,
        "<div class=\"blankslate\">\n<h1>Not found</h1>\n<p class=\"missing\">{}</p>\n",
        Esc(message)
    );
    if repositories.is_empty() {
        out.push_str(
            "<p>This sandbox has no repositories: give an instance a <code>repo</code> in the \
             config and start the sandbox again.</p>\n",
        );
    } else {
        out.push_str("<p>What exists here:</p>\n<ul class=\"exists\">\n");
        for r in repositories {
            let _ = write!(out, "<li><strong>{}</strong>:", Esc(&r.repo));
            for number in &r.pulls {
                let _ = write!(
                    out,
                    " <a href=\"/sandbox/{}/pull/{number}\">pull request #{number}</a>",
                    Esc(&r.repo)
                );
            }
            let _ = writeln!(
                out,
                " <a href=\"/sandbox/{}/deployments\">deployments</a></li>",
                Esc(&r.repo)
            );
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</div>\n");
    out
}

/// A time as `<time>`, shown as `2026-12-07 03:10:00 UTC` when it is RFC 3339 in UTC.
fn when(timestamp: &str) -> String {
    let shown = match timestamp.split_once('T') {
        Some((date, time)) => {
            let time = time.trim_end_matches('Z');
            let time = time.split('.').next().unwrap_or(time);
            let zone = if timestamp.ends_with('Z') { " UTC" } else { "" };
            format!("{date} {time}{zone}")
        }
        None => timestamp.to_string(),
    };
    format!(
        "<time datetime=\"{}\">{}</time>",
        Esc(timestamp),
        Esc(&shown)
    )
}

fn short_sha(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}
