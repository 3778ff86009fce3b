//! The REST API's OpenAPI document checked route by route against the real server.
//!
//! The test reads `/v1/openapi.json` from a running server and, for every operation in it,
//! generates requests from the document's own schemas: valid ones (from the declared
//! examples, enums and bounds, with the ids, names and cursors of data it created, so some
//! succeed) and ones that break each declared constraint (pattern, length, bound, type,
//! enum, a required field, an unknown field, a null, two one-of branches at once). Valid
//! requests must never be refused as invalid (400/422) nor fail (5xx); broken ones must be
//! refused with 400 or 422 in the error shape. Every answer's status must be documented
//! for its operation and its body must fit the documented schema, checked by the small
//! JSON-schema checker below. An operation the test could not cover fails it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use deploybot::config::{ApiConfig, ApiToken, Config, InstanceConfig, Role};
use deploybot::deploy::service::ControlSpec;
use deploybot::deploy::{
    CanarySteps, InstanceSpec, InstanceStore, LogStore, QueueStore, ReleaseStore, Service,
    ServiceStore,
};
use deploybot::github::outbox::{CommentReply, NewOutboxItem, OutboxResult, OutboxStore, Work};
use deploybot::provider::catalog::ConfigCatalog;
use deploybot::provider::noop::NoopProvider;
use deploybot::server::AppState;
use deploybot::server::pages::PageKeys;
use deploybot::store::DieselStore;
use regex::Regex;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

/// An admin token of tenant acme covering every instance: allowed to call every route.
const ADMIN: &str = "openapi-admin-token-0123456789";
/// A read-only token of tenant acme.
const READER: &str = "openapi-read-token-0123456789";

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

// ----------------------------------------------------------------------------------------
// The server and its data

struct Server {
    base: String,
    http: reqwest::Client,
    handle: ServerHandle,
    store: Arc<DieselStore>,
    _dir: tempfile::TempDir,
}

fn api_token(name: &str, secret: &str, role: Role) -> ApiToken {
    ApiToken {
        name: name.into(),
        tenant: "acme".into(),
        sha256: hex::encode(Sha256::digest(secret.as_bytes())),
        role,
        instances: Vec::new(),
    }
}

/// The real routes in front of the real Service and a SQLite store, with one configured
/// instance `web` of tenant acme whose `api_env` allows `LOG_LEVEL` and whose `params`
/// accept `REGION`. No worker runs.
async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("openapi.db").display());
    let store = Arc::new(DieselStore::connect(&url).unwrap());
    store.migrate().unwrap();
    store
        .upsert_instance("acme", "web", "acme/web", "production")
        .unwrap();
    let mut catalog = ConfigCatalog::default();
    catalog.insert(
        "acme",
        InstanceSpec {
            name: "web".into(),
            environment: "production".into(),
            default_strategy: "rolling".into(),
            supersede: false,
            provider: Arc::new(NoopProvider),
            health: None,
            gates: Vec::new(),
            watch: None,
            canary: CanarySteps {
                steps: vec![10, 50, 100],
                pause: Duration::from_millis(10),
            },
            wait_for_github: false,
            env: Default::default(),
            control: ControlSpec {
                params: vec!["REGION".into()],
                ..ControlSpec::default()
            },
        },
    );
    let service = Service::new(
        Arc::clone(&store) as Arc<dyn ServiceStore>,
        Arc::new(catalog),
    );
    let config = Config {
        api: ApiConfig {
            tokens: vec![
                api_token("root", ADMIN, Role::Admin),
                api_token("dash", READER, Role::Read),
            ],
        },
        instances: vec![InstanceConfig {
            api_env: vec!["LOG_LEVEL".into()],
            ..InstanceConfig::new("web", "acme/web", "production", "ghcr.io/acme/web:{sha}")
        }],
        ..Config::default()
    };
    let state = web::Data::new(AppState {
        config: Arc::new(config).into(),
        store: store.clone(),
        service,
        worker_alive: CancellationToken::new(),
        keys: PageKeys::from_master(b"openapi-test-session-key-0123456789ab"),
        reload: Some(Arc::new(common::UnchangedReload)),
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(deploybot::server::routes)
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .unwrap();
    let base = format!("http://{}", server.addrs()[0]);
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    Server {
        base,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        handle,
        store,
        _dir: dir,
    }
}

/// An answer: status and body.
struct Answer {
    status: u16,
    text: String,
}

impl Server {
    async fn send(&self, token: Option<&str>, method: &str, request: &Request) -> Answer {
        let mut url = reqwest::Url::parse(&self.base).unwrap();
        {
            let mut segments = url.path_segments_mut().unwrap();
            segments.clear();
            for segment in request.path.split('/').filter(|s| !s.is_empty()) {
                match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => segments.push(&request.path_params[name]),
                    None => segments.push(segment),
                };
            }
        }
        if !request.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (name, value) in &request.query {
                pairs.append_pair(name, value);
            }
        }
        let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
        let mut builder = self.http.request(method, url);
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        if let Some(body) = &request.body {
            builder = builder
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = builder.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        Answer { status, text }
    }

    async fn json(&self, method: &str, path: &str, query: &str, body: Option<Value>) -> Value {
        let query = query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let request = Request {
            path: path.to_string(),
            query,
            body,
            ..Request::default()
        };
        let answer = self.send(Some(ADMIN), method, &request).await;
        assert!(
            (200..300).contains(&answer.status),
            "{method} {path}: {} {}",
            answer.status,
            answer.text
        );
        serde_json::from_str(&answer.text).unwrap()
    }
}

/// Real values of the created data, by the name of the schema they fill.
struct Fixtures {
    instance_id: String,
    /// A pending deployment with a log.
    deployment_id: String,
    /// A pending deployment that waits for approvals someone else asked for.
    approval_id: String,
    /// A release that is not active (version 1; version 2 is active).
    release_id: String,
    deployments_cursor: String,
    releases_cursor: String,
}

impl Fixtures {
    fn get(&self, schema_name: &str, path: &str) -> Option<Value> {
        let text = match schema_name {
            "InstanceKey" => "web",
            "InstanceId" => &self.instance_id,
            "DeploymentId" if path.ends_with("/approve") => &self.approval_id,
            "DeploymentId" => &self.deployment_id,
            "ReleaseId" => &self.release_id,
            "Cursor" if path.ends_with("/deployments") => &self.deployments_cursor,
            "Cursor" if path.ends_with("/releases") => &self.releases_cursor,
            _ => return None,
        };
        Some(json!(text))
    }
}

/// Releases 1 and 2 of `web` (2 active, so 1 is the previous one), a pending deployment
/// with a log, an outbox item GitHub refused for good, and a lock on `web` held by the
/// admin token.
/// A deployment waiting for more approvals than the tokens can give, asked for by someone
/// else: each approval answers 200 and it goes on waiting.
async fn waiting_for_approval(server: &Server) -> String {
    let d = server
        .json(
            "post",
            "/v1/instances/web/deploy",
            "",
            Some(json!({"image": "ghcr.io/acme/web:4"})),
        )
        .await;
    let id = deploybot::deploy::DeploymentId::parse(d["id"].as_str().unwrap()).unwrap();
    let mut waiting = deploybot::deploy::WaitingFor::new(
        deploybot::deploy::WaitKind::Approval,
        "5 approvals",
        None,
    );
    waiting.approval = Some(deploybot::deploy::ApprovalState {
        requested_by: "@someone".into(),
        approved_by: Vec::new(),
        needed: 5,
    });
    server
        .store
        .set_waiting("acme", id, Some(&waiting))
        .unwrap();
    id.to_string()
}

async fn create_data(server: &Server) -> Fixtures {
    let deploy = "/v1/instances/web/deploy";
    let mut deployments = Vec::new();
    for image in [
        "ghcr.io/acme/web:1",
        "ghcr.io/acme/web:2",
        "ghcr.io/acme/web:3",
    ] {
        let d = server
            .json("post", deploy, "", Some(json!({"image": image})))
            .await;
        deployments.push(d);
    }
    for d in &deployments[..2] {
        let release = deploybot::deploy::ReleaseId::parse(d["release_id"].as_str().unwrap());
        server
            .store
            .activate_release("acme", release.unwrap())
            .unwrap();
    }
    let pending = &deployments[2];
    let pending_id = deploybot::deploy::DeploymentId::parse(pending["id"].as_str().unwrap());
    server
        .store
        .append_logs(
            "acme",
            pending_id.unwrap(),
            1,
            &[("stdout".into(), "pulling the image".into())],
        )
        .unwrap();
    store_failed_reply(&server.store);
    let approval_id = waiting_for_approval(server).await;
    // The admin token holds the lock: its own requests pass it, and the lock routes have
    // a lock to read.
    server
        .json(
            "put",
            "/v1/instances/web/lock",
            "",
            Some(json!({"reason": "release freeze drill"})),
        )
        .await;
    let page = |list: &str| format!("/v1/instances/web/{list}");
    let cursor = |page: Value| page["next_cursor"].as_str().unwrap().to_string();
    Fixtures {
        instance_id: pending["instance_id"].as_str().unwrap().to_string(),
        deployment_id: pending["id"].as_str().unwrap().to_string(),
        approval_id,
        release_id: deployments[0]["release_id"].as_str().unwrap().to_string(),
        deployments_cursor: cursor(
            server
                .json("get", &page("deployments"), "limit=1", None)
                .await,
        ),
        releases_cursor: cursor(server.json("get", &page("releases"), "limit=1", None).await),
    }
}

fn store_failed_reply(store: &DieselStore) {
    let work = Work::CommentReply(CommentReply {
        repo: "acme/web".into(),
        issue: 1,
        body: "a reply".into(),
        installation_id: None,
    });
    store
        .enqueue(&[NewOutboxItem {
            tenant_id: "acme".into(),
            ordering_key: "acme/web#1".into(),
            deployment_id: None,
            work,
        }])
        .unwrap();
    let claimed = store
        .claim_outbox("test", Duration::from_secs(60), 10)
        .unwrap();
    let failed = OutboxResult::Failed {
        error: "Not Found".into(),
    };
    store
        .complete_outbox(claimed[0].id, "test", &failed)
        .unwrap();
}

// ----------------------------------------------------------------------------------------
// A JSON-schema checker for the subset utoipa emits

/// Keywords the checker reads, and annotations it may ignore. Any other keyword in the
/// document fails the test, so a constraint is never silently unchecked.
const CHECKED: &[&str] = &[
    "$ref",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "propertyNames",
    "items",
    "enum",
    "const",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "oneOf",
    "anyOf",
    "allOf",
    "nullable",
];
const ANNOTATIONS: &[&str] = &[
    "description",
    "title",
    "example",
    "examples",
    "format",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// The schema `schema` points at (following `$ref`s), and the last component name on the way.
fn resolve<'a>(doc: &'a Value, mut schema: &'a Value) -> (&'a Value, Option<&'a str>) {
    let mut name = None;
    while let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let component = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unsupported $ref {reference}"));
        schema = doc["components"]["schemas"]
            .get(component)
            .unwrap_or_else(|| panic!("$ref {reference} names no schema"));
        name = Some(component);
    }
    (schema, name)
}

fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|e| panic!("pattern {pattern:?} does not compile: {e}"))
}

fn type_names(schema: &Value) -> Vec<&str> {
    match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(types) => types.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn has_type(value: &Value, name: &str) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        // JSON Schema counts 3.0 as an integer too.
        "integer" => value.as_f64().is_some_and(|f| f.fract() == 0.0),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        other => panic!("unknown type {other:?}"),
    }
}

/// The errors of `value` against `schema`, each naming where (`at`).
fn check(doc: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    let mut errors = Vec::new();
    check_into(doc, schema, value, at, &mut errors);
    errors
}

fn check_into(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let (schema, _) = resolve(doc, schema);
    let Some(keywords) = schema.as_object() else {
        return;
    };
    for keyword in keywords.keys() {
        assert!(
            CHECKED.contains(&keyword.as_str()) || ANNOTATIONS.contains(&keyword.as_str()),
            "the checker does not know the keyword {keyword:?} of {schema}"
        );
    }
    if value.is_null() && schema["nullable"] == true {
        return;
    }
    for sub in schema["allOf"].as_array().into_iter().flatten() {
        check_into(doc, sub, value, at, errors);
    }
    for (keyword, exactly_one) in [("oneOf", true), ("anyOf", false)] {
        if let Some(branches) = schema[keyword].as_array() {
            let fits = branches
                .iter()
                .filter(|b| check(doc, b, value, at).is_empty())
                .count();
            if fits == 0 || (exactly_one && fits > 1) {
                errors.push(format!(
                    "{at}: {value} fits {fits} of the {keyword} branches"
                ));
            }
        }
    }
    let types = type_names(schema);
    if !types.is_empty() && !types.iter().any(|t| has_type(value, t)) {
        errors.push(format!("{at}: {value} is not of type {types:?}"));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        errors.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if let Some(constant) = schema.get("const")
        && constant != value
    {
        errors.push(format!("{at}: {value} is not {constant}"));
    }
    match value {
        Value::String(text) => check_string(schema, text, at, errors),
        Value::Number(n) => check_number(schema, n.as_f64().unwrap(), at, errors),
        Value::Array(items) => {
            check_count(schema, "Items", items.len(), at, errors);
            if let Some(item) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    check_into(doc, item, v, &format!("{at}[{i}]"), errors);
                }
            }
        }
        Value::Object(fields) => check_object(doc, schema, fields, at, errors),
        _ => {}
    }
}

fn check_string(schema: &Value, text: &str, at: &str, errors: &mut Vec<String>) {
    let chars = text.chars().count();
    if let Some(min) = schema["minLength"].as_u64()
        && (chars as u64) < min
    {
        errors.push(format!("{at}: {text:?} is shorter than {min}"));
    }
    if let Some(max) = schema["maxLength"].as_u64()
        && (chars as u64) > max
    {
        errors.push(format!("{at}: {} characters is longer than {max}", chars));
    }
    if let Some(pattern) = schema["pattern"].as_str()
        && !regex(pattern).is_match(text)
    {
        errors.push(format!("{at}: {text:?} does not match {pattern}"));
    }
}

fn check_number(schema: &Value, n: f64, at: &str, errors: &mut Vec<String>) {
    let bound = |k: &str| schema[k].as_f64();
    if bound("minimum").is_some_and(|m| n < m) || bound("exclusiveMinimum").is_some_and(|m| n <= m)
    {
        errors.push(format!("{at}: {n} is below the minimum"));
    }
    if bound("maximum").is_some_and(|m| n > m) || bound("exclusiveMaximum").is_some_and(|m| n >= m)
    {
        errors.push(format!("{at}: {n} is above the maximum"));
    }
}

fn check_count(schema: &Value, what: &str, count: usize, at: &str, errors: &mut Vec<String>) {
    if let Some(min) = schema[format!("min{what}")].as_u64()
        && (count as u64) < min
    {
        errors.push(format!("{at}: {count} is fewer than min{what} {min}"));
    }
    if let Some(max) = schema[format!("max{what}")].as_u64()
        && (count as u64) > max
    {
        errors.push(format!("{at}: {count} is more than max{what} {max}"));
    }
}

fn check_object(
    doc: &Value,
    schema: &Value,
    fields: &Map<String, Value>,
    at: &str,
    errors: &mut Vec<String>,
) {
    check_count(schema, "Properties", fields.len(), at, errors);
    for required in schema["required"].as_array().into_iter().flatten() {
        let name = required.as_str().unwrap();
        if !fields.contains_key(name) {
            errors.push(format!("{at}: the required {name} is missing"));
        }
    }
    let properties = schema["properties"].as_object();
    for (key, v) in fields {
        let inner = format!("{at}.{key}");
        if let Some(names) = schema.get("propertyNames") {
            check_into(doc, names, &json!(key), &format!("{inner} (name)"), errors);
        }
        match (
            properties.and_then(|p| p.get(key)),
            &schema["additionalProperties"],
        ) {
            (Some(property), _) => check_into(doc, property, v, &inner, errors),
            (None, Value::Bool(false)) => errors.push(format!("{inner} is not a known property")),
            (None, extra) if extra.is_object() => check_into(doc, extra, v, &inner, errors),
            (None, _) => {}
        }
    }
}

/// Every `example` and `examples` in the document fits the schema that declares it.
fn examples_fit_their_schemas(doc: &Value, node: &Value, at: &str, failures: &mut Vec<String>) {
    match node {
        Value::Object(fields) => {
            let is_schema = fields.contains_key("type")
                || fields.contains_key("oneOf")
                || fields.contains_key("$ref");
            if is_schema {
                let examples = fields.get("example").into_iter().chain(
                    fields
                        .get("examples")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten(),
                );
                for example in examples {
                    failures.extend(check(doc, node, example, at));
                }
            }
            for (key, value) in fields {
                if key != "example" && key != "examples" {
                    examples_fit_their_schemas(doc, value, &format!("{at}/{key}"), failures);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                examples_fit_their_schemas(doc, item, &format!("{at}/{i}"), failures);
            }
        }
        _ => {}
    }
}

// ----------------------------------------------------------------------------------------
// Operations and requests

struct Param {
    name: String,
    location: String,
    required: bool,
    schema: Value,
}

struct Operation {
    method: String,
    path: String,
    params: Vec<Param>,
    body: Option<Value>,
    body_required: bool,
    responses: Value,
    secured: bool,
}

impl Operation {
    fn name(&self) -> String {
        format!("{} {}", self.method.to_ascii_uppercase(), self.path)
    }
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(op) = item.get(method) else {
                continue;
            };
            let params = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| Param {
                    name: p["name"].as_str().unwrap().to_string(),
                    location: p["in"].as_str().unwrap().to_string(),
                    required: p["required"] == true,
                    schema: p["schema"].clone(),
                })
                .collect();
            let body = op["requestBody"]["content"]["application/json"]["schema"].clone();
            found.push(Operation {
                method: method.to_string(),
                path: path.clone(),
                params,
                body: (!body.is_null()).then_some(body),
                body_required: op["requestBody"]["required"] == true,
                responses: op["responses"].clone(),
                secured: op.get("security").is_some(),
            });
        }
    }
    found
}

#[derive(Clone, Default, Debug)]
struct Request {
    path: String,
    path_params: BTreeMap<String, String>,
    query: Vec<(String, String)>,
    body: Option<Value>,
}

impl Request {
    fn key(&self) -> String {
        format!("{:?} {:?} {:?}", self.path_params, self.query, self.body)
    }
}

/// How a valid value is generated.
#[derive(Clone, Copy)]
struct Mode {
    /// Ids, names and cursors of the created data instead of the declared examples.
    real: bool,
    /// Optional properties and parameters too.
    full: bool,
    bound: Bound,
    /// Which enum value or one-of branch.
    choice: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Bound {
    /// Examples, or the minimum.
    Typical,
    /// Strings at their maxLength, numbers at their maximum.
    High,
    /// Numbers at their minimum.
    Low,
    /// Strings that no pattern, enum or format restricts get free text: spaces, punctuation,
    /// non-ASCII. A declaration that loses its pattern lets this through to the server.
    Wild,
}

const WILD_TEXT: &str = "Free text: spaces, ümlauts & punctuation!";

fn example_of(schema: &Value) -> Option<Value> {
    schema.get("example").cloned().or_else(|| {
        schema["examples"]
            .as_array()
            .and_then(|e| e.first().cloned())
    })
}

/// `base` extended to `len` characters by repeating its last character.
fn pad(base: &str, len: usize) -> String {
    let last = base.chars().last().unwrap_or('a');
    let mut text = base.to_string();
    while text.chars().count() < len {
        text.push(last);
    }
    text
}

/// A value that fits `schema` (None when the document gives nothing to build one from).
fn generate(doc: &Value, schema: &Value, mode: Mode, fx: &Fixtures, path: &str) -> Option<Value> {
    let (schema, name) = resolve(doc, schema);
    if mode.real
        && let Some(value) = name.and_then(|n| fx.get(n, path))
    {
        return Some(value);
    }
    for keyword in ["oneOf", "anyOf"] {
        if let Some(branches) = schema[keyword].as_array() {
            let usable: Vec<&Value> = branches
                .iter()
                .filter(|b| !type_names(resolve(doc, b).0).contains(&"null"))
                .collect();
            let branch = usable[mode.choice % usable.len()];
            return generate(doc, branch, mode, fx, path);
        }
    }
    if let Some(allowed) = schema["enum"].as_array() {
        return Some(allowed[mode.choice % allowed.len()].clone());
    }
    let types = type_names(schema);
    let main = types
        .iter()
        .find(|t| **t != "null")
        .copied()
        .unwrap_or("object");
    match main {
        "string" => generate_string(schema, mode),
        "integer" | "number" => {
            let (min, max) = (schema.get("minimum"), schema.get("maximum"));
            let value = match mode.bound {
                Bound::High => max.or(min).cloned(),
                Bound::Low => min.or(max).cloned(),
                _ => None,
            };
            let value = value
                .or_else(|| example_of(schema))
                .or_else(|| min.cloned())
                .unwrap_or(json!(1));
            // The free-text pass writes whole numbers with a fraction: `3.0`.
            match value.as_f64() {
                Some(f) if mode.bound == Bound::Wild => Some(json!(f)),
                _ => Some(value),
            }
        }
        "boolean" => Some(json!(true)),
        "array" => {
            let item = generate(doc, &schema["items"], mode, fx, path)?;
            Some(json!([item]))
        }
        _ => generate_object(doc, schema, mode, fx, path),
    }
}

fn generate_string(schema: &Value, mode: Mode) -> Option<Value> {
    let restricted = schema.get("pattern").is_some() || schema.get("format").is_some();
    let base = match example_of(schema) {
        Some(Value::String(s)) if mode.bound != Bound::Wild || restricted => s,
        _ if !restricted => WILD_TEXT.to_string(),
        _ => return None,
    };
    let min = schema["minLength"].as_u64().unwrap_or(0) as usize;
    let max = schema["maxLength"].as_u64().map(|m| m as usize);
    let mut text = pad(&base, min);
    if mode.bound == Bound::High
        && let Some(max) = max
    {
        let long = pad(&base, max);
        let fits = schema["pattern"]
            .as_str()
            .is_none_or(|p| regex(p).is_match(&long));
        if fits {
            text = long;
        }
    }
    if let Some(max) = max {
        text = text.chars().take(max).collect();
    }
    Some(json!(text))
}

fn generate_object(
    doc: &Value,
    schema: &Value,
    mode: Mode,
    fx: &Fixtures,
    path: &str,
) -> Option<Value> {
    let required: BTreeSet<&str> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut object = Map::new();
    for (key, property) in schema["properties"].as_object().into_iter().flatten() {
        if !mode.full && !required.contains(key.as_str()) {
            continue;
        }
        match generate(doc, property, mode, fx, path) {
            Some(value) => {
                object.insert(key.clone(), value);
            }
            None if required.contains(key.as_str()) => return None,
            None => {}
        }
    }
    if mode.full
        && schema["properties"].is_null()
        && let Some(Value::Object(example)) = example_of(schema)
    {
        object.extend(example);
    }
    // A map whose keys the document leaves free gets the emptiest key of all.
    let values = &schema["additionalProperties"];
    if mode.bound == Bound::Wild && values.is_object() && schema.get("propertyNames").is_none() {
        let value = generate(doc, values, mode, fx, path)?;
        object.insert(String::new(), value);
    }
    Some(Value::Object(object))
}

fn as_param_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) if !n.is_i64() && n.as_f64().is_some_and(|f| f.fract() == 0.0) => {
            (n.as_f64().unwrap() as i64).to_string()
        }
        other => other.to_string(),
    }
}

/// A valid request for `op` in `mode`, or None when a required part cannot be built.
fn valid_request(doc: &Value, op: &Operation, mode: Mode, fx: &Fixtures) -> Option<Request> {
    let mut request = Request {
        path: op.path.clone(),
        ..Request::default()
    };
    for param in &op.params {
        if !param.required && !mode.full {
            continue;
        }
        let value = generate(doc, &param.schema, mode, fx, &op.path);
        match (value, param.location.as_str()) {
            (Some(v), "path") => {
                request
                    .path_params
                    .insert(param.name.clone(), as_param_text(&v));
            }
            (Some(v), "query") => request.query.push((param.name.clone(), as_param_text(&v))),
            (None, _) if param.required => return None,
            (None, _) => {}
            (Some(_), other) => panic!("{}: parameters in {other} are not generated", op.name()),
        }
    }
    match &op.body {
        // An optional body is left out when optional parts are.
        Some(_) if !mode.full && !op.body_required => {}
        Some(body) => request.body = Some(generate(doc, body, mode, fx, &op.path)?),
        None => {}
    }
    Some(request)
}

/// The errors of a request's values against the operation's schemas.
fn request_errors(doc: &Value, op: &Operation, request: &Request) -> Vec<String> {
    let mut errors = Vec::new();
    for param in &op.params {
        let value = match param.location.as_str() {
            "path" => request.path_params.get(&param.name).cloned(),
            _ => request
                .query
                .iter()
                .find(|(n, _)| *n == param.name)
                .map(|(_, v)| v.clone()),
        };
        let Some(text) = value else {
            if param.required {
                errors.push(format!("{} is missing", param.name));
            }
            continue;
        };
        // Query and path values are text; a typed parameter is read from it.
        let (schema, _) = resolve(doc, &param.schema);
        let types = type_names(schema);
        let value = if ["integer", "number", "boolean"]
            .iter()
            .any(|t| types.contains(t))
        {
            serde_json::from_str::<Value>(&text)
                .ok()
                .filter(|v| v.is_number() || v.is_boolean())
                .unwrap_or(json!(text))
        } else {
            json!(text)
        };
        errors.extend(check(doc, &param.schema, &value, &param.name));
    }
    match (&op.body, &request.body) {
        (Some(schema), Some(body)) => errors.extend(check(doc, schema, body, "body")),
        (Some(_), None) if op.body_required => errors.push("the body is missing".into()),
        _ => {}
    }
    errors
}

// ----------------------------------------------------------------------------------------
// Breaking the schema, one declared constraint at a time

/// Values of a string schema that break its pattern.
fn pattern_breakers(schema: &Value) -> Vec<Value> {
    let Some(pattern) = schema["pattern"].as_str() else {
        return Vec::new();
    };
    let re = regex(pattern);
    let example = example_of(schema)
        .and_then(|e| e.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut swapped = example.clone();
    if !swapped.is_empty() {
        swapped.replace_range(..1, "x");
    }
    let candidates = [
        example.to_uppercase(),
        swapped,
        "not valid!".to_string(),
        "-".to_string(),
        "ü".to_string(),
    ];
    candidates
        .into_iter()
        .filter(|c| !c.is_empty() && !re.is_match(c))
        .map(Value::String)
        .collect()
}

/// Values that break one declared constraint of `schema` each, with what they break.
/// `in_path`: the value is a path segment (never empty, never a JSON type of its own).
fn breakers(doc: &Value, schema: &Value, in_path: bool) -> Vec<(String, Value)> {
    let (schema, _) = resolve(doc, schema);
    let mut out = Vec::new();
    let types = type_names(schema);
    let nullable = types.contains(&"null") || schema["nullable"] == true;
    if types.contains(&"string") {
        for v in pattern_breakers(schema) {
            out.push(("pattern".to_string(), v));
        }
        if let Some(max) = schema["maxLength"].as_u64() {
            let base = example_of(schema)
                .and_then(|e| e.as_str().map(str::to_string))
                .unwrap_or_default();
            out.push(("maxLength".into(), json!(pad(&base, max as usize + 1))));
        }
        if schema["minLength"].as_u64().unwrap_or(0) > 0 && !in_path {
            out.push(("minLength".into(), json!("")));
        }
    }
    if schema.get("enum").is_some() {
        out.push(("enum".into(), json!("not-a-listed-value")));
    }
    if let Some(min) = schema["minimum"].as_i64() {
        out.push(("minimum".into(), json!(min - 1)));
    }
    if let Some(max) = schema["maximum"].as_i64() {
        out.push(("maximum".into(), json!(max + 1)));
    }
    let wrong_type = match types.iter().find(|t| **t != "null") {
        Some(&"string") if !in_path => Some(json!(12345)),
        Some(&"integer") | Some(&"number") => Some(json!("not-a-number")),
        Some(&"object") if !in_path => Some(json!([])),
        Some(&"array") if !in_path => Some(json!({})),
        Some(&"boolean") if !in_path => Some(json!("yes")),
        _ => None,
    };
    if let Some(v) = wrong_type {
        out.push(("type".into(), v));
    }
    if !nullable && !in_path && !types.is_empty() {
        out.push(("null".into(), Value::Null));
    }
    out
}

/// Bodies that break `schema` at one place each, built from `base` (which fits it).
fn body_breakers(
    doc: &Value,
    schema: &Value,
    base: &Value,
    at: &str,
    fx: &Fixtures,
) -> Vec<(String, Value)> {
    let (schema, _) = resolve(doc, schema);
    let mut out: Vec<(String, Value)> = breakers(doc, schema, false)
        .into_iter()
        .map(|(what, v)| (format!("{at}: {what}"), v))
        .collect();
    if let Some(branches) = schema["oneOf"].as_array() {
        let mode = Mode {
            real: true,
            full: true,
            bound: Bound::Typical,
            choice: 0,
        };
        let object = |s: &Value| generate(doc, s, mode, fx, "");
        for (i, a) in branches.iter().enumerate() {
            for b in &branches[i + 1..] {
                if let (Some(Value::Object(mut x)), Some(Value::Object(y))) = (object(a), object(b))
                {
                    x.extend(y);
                    out.push((
                        format!("{at}: two oneOf branches at once"),
                        Value::Object(x),
                    ));
                }
            }
            // Within the branch the base is built from, each of its own constraints.
            if check(doc, a, base, at).is_empty() {
                out.extend(body_breakers(doc, a, base, at, fx));
            }
        }
    }
    let Value::Object(fields) = base else {
        return out;
    };
    let properties = schema["properties"].as_object();
    for (key, property) in properties.into_iter().flatten() {
        let inner = format!("{at}.{key}");
        let mut without = fields.clone();
        if without.remove(key).is_some() {
            out.push((format!("{inner}: required"), Value::Object(without)));
        }
        let nested_base = fields.get(key).cloned().unwrap_or(Value::Null);
        for (what, v) in body_breakers(doc, property, &nested_base, &inner, fx) {
            let mut changed = fields.clone();
            changed.insert(key.clone(), v);
            out.push((what, Value::Object(changed)));
        }
    }
    if schema["additionalProperties"] == false {
        let mut extra = fields.clone();
        extra.insert("unexpected_field".into(), json!(1));
        out.push((format!("{at}: additionalProperties"), Value::Object(extra)));
    }
    if let Some(names) = schema.get("propertyNames") {
        let value = example_of(&schema["additionalProperties"]).unwrap_or(json!("x"));
        for (what, name) in breakers(doc, names, false) {
            if let Value::String(name) = name {
                let mut bad = fields.clone();
                bad.insert(name, value.clone());
                out.push((format!("{at}: property name {what}"), Value::Object(bad)));
            }
        }
    }
    if schema["additionalProperties"].is_object()
        && let Some((key, _)) = fields.iter().next()
    {
        let mut bad = fields.clone();
        bad.insert(key.clone(), json!(12345));
        out.push((
            format!("{at}.{key}: additionalProperties type"),
            Value::Object(bad),
        ));
    }
    out
}

/// Requests that each break one declared constraint of `op`, built from `base`.
fn invalid_requests(
    doc: &Value,
    op: &Operation,
    base: &Request,
    fx: &Fixtures,
) -> Vec<(String, Request)> {
    let mut out = Vec::new();
    for param in &op.params {
        let in_path = param.location == "path";
        for (what, value) in breakers(doc, &param.schema, in_path) {
            if value.is_null() {
                continue;
            }
            let text = as_param_text(&value);
            let mut request = base.clone();
            if in_path {
                request.path_params.insert(param.name.clone(), text);
            } else {
                request.query.retain(|(n, _)| *n != param.name);
                request.query.push((param.name.clone(), text));
            }
            out.push((format!("{} {what}", param.name), request));
        }
    }
    if let (Some(schema), Some(body)) = (&op.body, &base.body) {
        // `null` for the whole body (kept only where the document refuses it).
        let whole = [("body: null".to_string(), Value::Null)];
        for (what, value) in whole
            .into_iter()
            .chain(body_breakers(doc, schema, body, "body", fx))
        {
            let mut request = base.clone();
            request.body = Some(value);
            out.push((what, request));
        }
    }
    out
}

// ----------------------------------------------------------------------------------------
// Answers

/// The answer's status is documented for `op` and its body fits the documented schema.
fn assert_documented(doc: &Value, op: &Operation, what: &str, answer: &Answer) {
    let response = &op.responses[answer.status.to_string()];
    assert!(
        response.is_object(),
        "{what}: answered {}, which {} does not document: {}",
        answer.status,
        op.name(),
        answer.text
    );
    let schema = &response["content"]["application/json"]["schema"];
    if schema.is_null() {
        assert!(
            answer.text.is_empty(),
            "{what}: {} documents no body but got {}",
            answer.status,
            answer.text
        );
        return;
    }
    let body: Value = serde_json::from_str(&answer.text)
        .unwrap_or_else(|e| panic!("{what}: the answer is not JSON ({e}): {}", answer.text));
    let errors = check(doc, schema, &body, "answer");
    assert!(
        errors.is_empty(),
        "{what}: the {} answer does not fit its documented schema:\n{}\n{}",
        answer.status,
        errors.join("\n"),
        answer.text
    );
}

/// An error answer in the API's shape.
fn assert_error_shape(what: &str, answer: &Answer) {
    let body: Value = serde_json::from_str(&answer.text).unwrap_or_default();
    let code = body["error"]["code"].as_str().unwrap_or_default();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        !code.is_empty() && !message.is_empty(),
        "{what}: not an error in the API's shape: {}",
        answer.text
    );
}

#[derive(Default)]
struct Coverage {
    valid: usize,
    succeeded: usize,
    refused: usize,
}

fn modes() -> Vec<Mode> {
    let mut all = Vec::new();
    for real in [true, false] {
        for (full, bound) in [
            (true, Bound::Typical),
            (false, Bound::Typical),
            (true, Bound::High),
            (true, Bound::Low),
            (true, Bound::Wild),
        ] {
            for choice in 0..5 {
                all.push(Mode {
                    real,
                    full,
                    bound,
                    choice,
                });
            }
        }
    }
    all
}

async fn cover_valid(
    server: &Server,
    doc: &Value,
    op: &Operation,
    fx: &Fixtures,
    coverage: &mut Coverage,
) {
    let mut seen = BTreeSet::new();
    for mode in modes() {
        let Some(request) = valid_request(doc, op, mode, fx) else {
            continue;
        };
        if !seen.insert(request.key()) {
            continue;
        }
        let what = format!("{} with valid {request:?}", op.name());
        let errors = request_errors(doc, op, &request);
        assert!(errors.is_empty(), "{what}: generated wrong: {errors:?}");
        let answer = server.send(Some(ADMIN), &op.method, &request).await;
        assert!(
            !matches!(answer.status, 400 | 422) && answer.status < 500,
            "{what}: the document allows it, the server answered {} {}",
            answer.status,
            answer.text
        );
        assert_documented(doc, op, &what, &answer);
        coverage.valid += 1;
        if (200..300).contains(&answer.status) {
            coverage.succeeded += 1;
        }
    }
}

async fn cover_invalid(
    server: &Server,
    doc: &Value,
    op: &Operation,
    fx: &Fixtures,
    coverage: &mut Coverage,
) {
    let base_mode = Mode {
        real: true,
        full: true,
        bound: Bound::Typical,
        choice: 0,
    };
    let base = valid_request(doc, op, base_mode, fx).unwrap();
    // Each one-of branch of the body is a base of its own.
    let mut bases = vec![base.clone()];
    for choice in 1..5 {
        let mode = Mode {
            choice,
            ..base_mode
        };
        if let Some(other) = valid_request(doc, op, mode, fx)
            && other.key() != base.key()
        {
            bases.push(other);
        }
    }
    let mut seen = BTreeSet::new();
    for base in &bases {
        for (broken, request) in invalid_requests(doc, op, base, fx) {
            // Only what the document itself refuses counts as broken.
            if request_errors(doc, op, &request).is_empty() || !seen.insert(request.key()) {
                continue;
            }
            let what = format!("{} breaking {broken}: {request:?}", op.name());
            let answer = server.send(Some(ADMIN), &op.method, &request).await;
            assert!(
                matches!(answer.status, 400 | 422),
                "{what}: the document refuses it, the server answered {} {}",
                answer.status,
                answer.text
            );
            assert_error_shape(&what, &answer);
            assert_documented(doc, op, &what, &answer);
            coverage.refused += 1;
        }
    }
}

/// Without a token a secured operation is 401; with a read-only token it answers a
/// documented status; either way in the documented shape.
async fn cover_tokens(server: &Server, doc: &Value, op: &Operation, fx: &Fixtures) {
    let mode = Mode {
        real: true,
        full: true,
        bound: Bound::Typical,
        choice: 0,
    };
    let request = valid_request(doc, op, mode, fx).unwrap();
    let anonymous = server.send(None, &op.method, &request).await;
    let what = format!("{} without a token", op.name());
    if op.secured {
        assert_eq!(anonymous.status, 401, "{what}: {}", anonymous.text);
        assert_error_shape(&what, &anonymous);
    }
    assert_documented(doc, op, &what, &anonymous);
    let read = server.send(Some(READER), &op.method, &request).await;
    let what = format!("{} with a read-only token", op.name());
    assert!(read.status < 500, "{what}: {} {}", read.status, read.text);
    assert_documented(doc, op, &what, &read);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_accepts_what_its_document_allows_and_refuses_what_it_forbids() {
    let server = start().await;
    let fx = create_data(&server).await;
    let request = Request {
        path: "/v1/openapi.json".into(),
        ..Request::default()
    };
    let answer = server.send(None, "get", &request).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let doc: Value = serde_json::from_str(&answer.text).unwrap();

    let mut failures = Vec::new();
    examples_fit_their_schemas(&doc, &doc, "#", &mut failures);
    assert!(
        failures.is_empty(),
        "examples that break their own schema:\n{}",
        failures.join("\n")
    );

    let mut covered: BTreeMap<String, Coverage> = BTreeMap::new();
    for op in operations(&doc) {
        let coverage = covered.entry(op.name()).or_default();
        cover_valid(&server, &doc, &op, &fx, coverage).await;
        cover_invalid(&server, &doc, &op, &fx, coverage).await;
        cover_tokens(&server, &doc, &op, &fx).await;
        let has_inputs = !op.params.is_empty() || op.body.is_some();
        assert!(
            coverage.succeeded > 0,
            "{}: no generated request succeeded, so its answers went unchecked",
            op.name()
        );
        assert!(
            !has_inputs || coverage.refused > 0,
            "{}: it takes input, yet no request breaking its schema was generated",
            op.name()
        );
    }
    println!("operation: valid requests (succeeded), broken requests refused");
    for (name, c) in &covered {
        println!("{name}: {} ({}), {}", c.valid, c.succeeded, c.refused);
    }
    assert!(!covered.is_empty(), "the document lists no operations");
    server.handle.stop(true).await;
}
