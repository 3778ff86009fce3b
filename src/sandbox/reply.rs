//! Answers as GitHub gives them: the error shapes, `Validation Failed` from the OpenAPI
//! schemas, and paginated lists.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::http::Incoming;
use super::openapi::{OpenApiExcerpt, SchemaError, validate};
use super::state::{DOCS, Repo};

#[derive(Debug)]
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) body: Value,
    /// Plain text instead of JSON (GitHub's answer to a missing User-Agent).
    pub(super) text: Option<String>,
    pub(super) headers: Vec<(String, String)>,
}

impl Reply {
    pub(super) fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body,
            text: None,
            headers: Vec::new(),
        }
    }

    /// GitHub's basic error: `{message, documentation_url, status}`.
    pub(super) fn error(status: u16, message: &str, documentation_url: &str) -> Reply {
        Reply::json(
            status,
            json!({
                "message": message,
                "documentation_url": documentation_url,
                "status": status.to_string(),
            }),
        )
    }

    pub(super) fn not_found(documentation_url: &str) -> Reply {
        Reply::error(404, "Not Found", documentation_url)
    }

    /// `422 Validation Failed` with one `{resource, field, code}` per problem.
    pub(super) fn validation_failed(excerpt: &OpenApiExcerpt, errors: Vec<SchemaError>) -> Reply {
        let errors: Vec<Value> = errors
            .into_iter()
            .map(|e| {
                json!({
                    "resource": excerpt.resource,
                    "field": e.field,
                    "code": e.code,
                    "message": e.message,
                })
            })
            .collect();
        Reply::json(
            422,
            json!({
                "message": "Validation Failed",
                "errors": errors,
                "documentation_url": excerpt.documentation_url(),
                "status": "422",
            }),
        )
    }
}

pub(super) fn find_repo<'a>(
    repos: &'a BTreeMap<String, Repo>,
    owner: &str,
    name: &str,
) -> Result<&'a Repo, Reply> {
    let key = format!("{owner}/{name}").to_lowercase();
    repos.get(&key).ok_or_else(|| Reply::not_found(DOCS))
}

pub(super) fn find_repo_mut<'a>(
    repos: &'a mut BTreeMap<String, Repo>,
    owner: &str,
    name: &str,
) -> Result<&'a mut Repo, Reply> {
    let key = format!("{owner}/{name}").to_lowercase();
    repos.get_mut(&key).ok_or_else(|| Reply::not_found(DOCS))
}

/// A request body as GitHub reads it: empty means `{}`, invalid JSON is 400, and the
/// object must satisfy the operation's schema or the answer is 422.
pub(super) fn parse_body(
    req: &Incoming,
    excerpt: &OpenApiExcerpt,
) -> Result<Map<String, Value>, Reply> {
    let problems = || Reply::error(400, "Problems parsing JSON", &excerpt.documentation_url());
    let value = if req.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice::<Value>(&req.body).map_err(|_| problems())?
    };
    let Value::Object(object) = value else {
        return Err(problems());
    };
    let errors = validate(&excerpt.schema(), &Value::Object(object.clone()));
    if !errors.is_empty() {
        return Err(Reply::validation_failed(excerpt, errors));
    }
    Ok(object)
}

pub(super) fn custom_error(
    excerpt: &OpenApiExcerpt,
    field: &str,
    code: &'static str,
    message: &str,
) -> Reply {
    Reply::validation_failed(
        excerpt,
        vec![SchemaError {
            field: field.to_string(),
            code,
            message: message.to_string(),
        }],
    )
}

/// The query checked against an operation's documented parameters: a number that is not
/// one is 400, a value outside the schema (e.g. its `enum`) is 422.
pub(super) fn check_query(req: &Incoming, excerpt: &OpenApiExcerpt) -> Result<(), Reply> {
    let docs = excerpt.documentation_url();
    for parameter in excerpt.schema().as_array().into_iter().flatten() {
        if parameter["in"] != "query" {
            continue;
        }
        let Some(raw) = parameter["name"].as_str().and_then(|n| req.query.get(n)) else {
            continue;
        };
        let name = parameter["name"].as_str().unwrap_or_default();
        let value = match parameter["schema"]["type"].as_str() {
            Some("integer") => match raw.parse::<i64>() {
                Ok(n) => json!(n),
                Err(_) => return Err(Reply::error(400, "Bad Request", &docs)),
            },
            _ => json!(raw),
        };
        if !validate(&parameter["schema"], &value).is_empty() {
            return Err(Reply::json(
                422,
                json!({
                    "message": "Validation Failed",
                    "errors": [{"resource": excerpt.resource, "field": name, "code": "invalid", "value": raw}],
                    "documentation_url": docs,
                    "status": "422",
                }),
            ));
        }
    }
    Ok(())
}

/// GitHub's list answers: `?per_page` (default 30, at most 100) and `?page`, with a
/// `Link` header naming the next and last pages.
pub(super) fn paginate(base_url: &str, req: &Incoming, items: Vec<Value>) -> Reply {
    let per_page = req
        .query
        .get("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(30usize);
    let per_page = per_page.clamp(1, 100);
    let page = req
        .query
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1usize)
        .max(1);
    let last = items.len().div_ceil(per_page).max(1);
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .collect();
    let mut reply = Reply::json(200, Value::Array(slice));
    if page < last {
        let others: Vec<&str> = req
            .raw_query
            .split('&')
            .filter(|p| !p.is_empty() && !p.starts_with("page=") && !p.starts_with("per_page="))
            .collect();
        let link = |to: usize| {
            let mut query = others.clone();
            let per_page = format!("per_page={per_page}");
            let page = format!("page={to}");
            query.push(&per_page);
            query.push(&page);
            format!("<{base_url}{}?{}>", req.path, query.join("&"))
        };
        let value = format!(
            "{}; rel=\"next\", {}; rel=\"last\"",
            link(page + 1),
            link(last)
        );
        reply.headers.push(("link".to_string(), value));
    }
    reply
}
