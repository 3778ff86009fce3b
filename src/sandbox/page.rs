//! The sandbox's pages: what GitHub would show for a pull request (its conversation with the
//! bot's replies, reactions, and each environment's deployments with their statuses) and a
//! repository's deployments, read from a `PullSource`.
//!
//! The pages work without JavaScript (a `<noscript>` refresh); with it, a small script asks
//! `?since=VERSION` about once a second and swaps in the new content when the source's
//! version moved (`204 No Content` while nothing changed, else `{"version", "title", "html"}`).

mod markdown;
mod render;

use std::sync::Arc;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

use crate::sandbox::view::{EnvironmentView, PullSource, RepositoryView};
use render::Document;

const STYLE: &str = include_str!("page/page.css");
const SCRIPT: &str = include_str!("page/page.js");

/// Only this server's script, style and images; no framing, no forms. Comments' images
/// show as links, so no other host is contacted by a viewer's browser.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

#[derive(Clone)]
struct Pages {
    source: Arc<dyn PullSource>,
}

/// Registers the pages:
/// `GET /sandbox/{owner}/{repo}/pull/{number}`, `GET /sandbox/{owner}/{repo}/deployments`
/// (also `/deployments/{environment}`, one environment's, and `/commit/{sha}`, one
/// commit's, which is where the bot's pages link) and their assets under `/sandbox/assets/`.
pub fn routes(cfg: &mut web::ServiceConfig, source: Arc<dyn PullSource>) {
    let pages = web::Data::new(Pages { source });
    cfg.service(
        web::resource("/sandbox/assets/page.css")
            .route(web::get().to(|| async { asset("text/css; charset=utf-8", STYLE) })),
    )
    .service(
        web::resource("/sandbox/assets/page.js")
            .route(web::get().to(|| async { asset("text/javascript; charset=utf-8", SCRIPT) })),
    )
    .service(
        web::resource("/sandbox/{owner}/{repo}/pull/{number}")
            .app_data(pages.clone())
            .route(web::get().to(pull_page)),
    )
    .service(
        web::resource("/sandbox/{owner}/{repo}/deployments")
            .app_data(pages.clone())
            .route(web::get().to(deployments_page)),
    )
    .service(
        web::resource("/sandbox/{owner}/{repo}/deployments/{environment}")
            .app_data(pages.clone())
            .route(web::get().to(environment_page)),
    )
    .service(
        web::resource("/sandbox/{owner}/{repo}/commit/{sha}")
            .app_data(pages)
            .route(web::get().to(commit_page)),
    );
}

/// What the page's script receives when the content changed.
#[derive(Serialize)]
struct Live {
    version: u64,
    title: String,
    html: String,
}

/// The content of one page, with the version it was read at.
struct Rendered {
    title: String,
    repo: String,
    version: u64,
    content: String,
}

async fn pull_page(
    req: HttpRequest,
    pages: web::Data<Pages>,
    path: web::Path<(String, String, String)>,
) -> HttpResponse {
    let (owner, name, number) = path.into_inner();
    let repo = format!("{owner}/{name}");
    let since = since(&req);
    let source = &pages.source;
    // Read the version first: a change while rendering makes the next poll fetch again.
    let version = source.version();
    if since == Some(version) {
        return HttpResponse::NoContent().insert_header(no_store()).finish();
    }
    let view = number
        .parse::<u64>()
        .ok()
        .and_then(|n| source.pull_view(&repo, n));
    let Some(view) = view else {
        return not_found(
            source.as_ref(),
            &missing_pull(source.as_ref(), &repo, &number),
            since.is_some(),
        );
    };
    let rendered = Rendered {
        title: render::pull_title(&view),
        repo: view.repo.clone(),
        version,
        content: render::pull_content(&view),
    };
    respond(rendered, since.is_some(), req.path())
}

async fn deployments_page(
    req: HttpRequest,
    pages: web::Data<Pages>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (owner, name) = path.into_inner();
    deployments_of(&req, &pages, &format!("{owner}/{name}"), &Only::All)
}

async fn environment_page(
    req: HttpRequest,
    pages: web::Data<Pages>,
    path: web::Path<(String, String, String)>,
) -> HttpResponse {
    let (owner, name, environment) = path.into_inner();
    let only = Only::Environment(environment);
    deployments_of(&req, &pages, &format!("{owner}/{name}"), &only)
}

async fn commit_page(
    req: HttpRequest,
    pages: web::Data<Pages>,
    path: web::Path<(String, String, String)>,
) -> HttpResponse {
    let (owner, name, sha) = path.into_inner();
    if sha.is_empty() || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
        let message = format!(
            "“{sha}” is not a commit SHA: use the hexadecimal SHA of a commit, e.g. \
             {owner}/{name}/commit/3f2a9c1."
        );
        return not_found(pages.source.as_ref(), &message, since(&req).is_some());
    }
    let only = Only::Commit(sha.to_ascii_lowercase());
    deployments_of(&req, &pages, &format!("{owner}/{name}"), &only)
}

/// Which of a repository's deployments a deployments page shows.
enum Only {
    All,
    /// The environment of this name (GitHub compares environment names case-insensitively).
    Environment(String),
    /// Deployments of the commit whose SHA starts with this.
    Commit(String),
}

impl Only {
    fn keep(&self, environments: Vec<EnvironmentView>) -> Vec<EnvironmentView> {
        match self {
            Only::All => environments,
            Only::Environment(name) => environments
                .into_iter()
                .filter(|e| e.name.eq_ignore_ascii_case(name))
                .collect(),
            Only::Commit(sha) => environments
                .into_iter()
                .map(|mut e| {
                    e.deployments
                        .retain(|d| !sha.is_empty() && d.sha.starts_with(sha));
                    e
                })
                .filter(|e| !e.deployments.is_empty())
                .collect(),
        }
    }
}

/// A deployments page: the repository's environments that `only` keeps.
fn deployments_of(req: &HttpRequest, pages: &Pages, repo: &str, only: &Only) -> HttpResponse {
    let repo = repo.to_string();
    let since = since(req);
    let source = &pages.source;
    let version = source.version();
    if since == Some(version) {
        return HttpResponse::NoContent().insert_header(no_store()).finish();
    }
    let Some(environments) = source.environments(&repo) else {
        let message = format!("There is no repository {repo} in this sandbox.");
        return not_found(source.as_ref(), &message, since.is_some());
    };
    let known = find_repo(&source.repositories(), &repo);
    let (shown, pulls) = known.map_or((repo.clone(), Vec::new()), |r| (r.repo, r.pulls));
    let names: Vec<String> = environments.iter().map(|e| e.name.clone()).collect();
    let environments = only.keep(environments);
    if let Only::Environment(name) = only
        && environments.is_empty()
    {
        let message = missing_environment(&shown, name, &names);
        return not_found(source.as_ref(), &message, since.is_some());
    }
    let rendered = Rendered {
        title: format!("Deployments · {shown}"),
        content: render::deployments_content(&shown, &environments, &pulls),
        repo: shown,
        version,
    };
    respond(rendered, since.is_some(), req.path())
}

/// The `since` query parameter: the version the page shows. A value that is not a number
/// counts as none known, so the current content comes back.
fn since(req: &HttpRequest) -> Option<u64> {
    req.query_string()
        .split('&')
        .find_map(|pair| pair.strip_prefix("since="))
        .map(|value| value.parse().unwrap_or(u64::MAX))
}

fn find_repo(repositories: &[RepositoryView], repo: &str) -> Option<RepositoryView> {
    repositories
        .iter()
        .find(|r| r.repo.eq_ignore_ascii_case(repo))
        .cloned()
}

/// Why there is no page for environment `name` of `repo`, naming those that exist.
fn missing_environment(repo: &str, name: &str, names: &[String]) -> String {
    if names.is_empty() {
        return format!("{repo} has no environment “{name}”: it has no deployments yet.");
    }
    format!(
        "{repo} has no environment “{name}”; its environments: {}.",
        names.join(", ")
    )
}

/// Why there is no page for pull request `number` of `repo`.
fn missing_pull(source: &dyn PullSource, repo: &str, number: &str) -> String {
    if source.environments(repo).is_none() {
        return format!("There is no repository {repo} in this sandbox.");
    }
    let shown = find_repo(&source.repositories(), repo).map_or(repo.to_string(), |r| r.repo);
    match number.parse::<u64>() {
        Ok(n) => format!("{shown} has no pull request #{n}."),
        Err(_) => format!("“{number}” is not a pull request number: use one like {shown}/pull/1."),
    }
}

fn respond(rendered: Rendered, live: bool, path: &str) -> HttpResponse {
    if live {
        return HttpResponse::Ok().insert_header(no_store()).json(Live {
            version: rendered.version,
            title: rendered.title,
            html: rendered.content,
        });
    }
    let body = render::document(&Document {
        title: &rendered.title,
        repo: &rendered.repo,
        live: Some(path),
        version: rendered.version,
        content: &rendered.content,
    });
    html(StatusCode::OK, body)
}

/// A 404 that says what is missing and what exists (JSON for the page's script).
fn not_found(source: &dyn PullSource, message: &str, live: bool) -> HttpResponse {
    if live {
        #[derive(Serialize)]
        struct Missing<'a> {
            error: &'a str,
        }
        return HttpResponse::NotFound()
            .insert_header(no_store())
            .json(Missing { error: message });
    }
    let content = render::not_found_content(message, &source.repositories());
    let body = render::document(&Document {
        title: "Not found · deploybot sandbox",
        repo: "",
        live: None,
        version: 0,
        content: &content,
    });
    html(StatusCode::NOT_FOUND, body)
}

fn html(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header(no_store())
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(body)
}

fn asset(content_type: &'static str, text: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(text)
}

fn no_store() -> (header::HeaderName, &'static str) {
    (header::CACHE_CONTROL, "no-store")
}
