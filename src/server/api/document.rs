//! The OpenAPI document of /v1: built from the registered routes, served at
//! `/v1/openapi.json`, and read to answer 405 or 404 for paths and methods it lacks.

use actix_web::{HttpRequest, HttpResponse, ResponseError, get, web};
use utoipa::openapi::schema::{SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Components, OpenApi as OpenApiDocument, RefOr, Schema};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::OpenApiFactory;

use super::schema::{
    CursorSchema, DeploymentIdSchema, InstanceIdSchema, InstanceKeySchema, LockBodySchema,
    ParamsSchema, ReleaseEnvSchema, ReleaseIdSchema, RequestedStrategySchema, RollbackBodySchema,
    StrategySchema,
};
use crate::server::auth::HOW_TO_AUTHENTICATE;
use crate::server::error::ApiError;

/// The OpenAPI document built from the registered routes.
pub(super) struct ApiDocument(pub(super) OpenApiDocument);

/// This document (no token needed).
#[utoipa::path(
    tag = "meta",
    responses((status = 200, description = "The OpenAPI document of /v1", body = Object, content_type = "application/json"))
)]
#[get("/openapi.json")]
pub(super) async fn openapi_json(doc: web::Data<ApiDocument>) -> HttpResponse {
    HttpResponse::Ok().json(&doc.0)
}

/// Anything else under /v1: a 405 when the path exists with other methods, else a 404.
pub(super) async fn unknown_route(
    req: HttpRequest,
    doc: Option<web::Data<ApiDocument>>,
) -> HttpResponse {
    let method = req.method().as_str().to_string();
    let path = req.path().to_string();
    let allowed = req
        .resource_map()
        .match_pattern(&path)
        .zip(doc)
        .and_then(|(pattern, doc)| doc.0.paths.paths.get(&pattern).map(methods_of))
        .unwrap_or_default();
    let err = if allowed.is_empty() {
        ApiError::not_found(format!(
            "there is no route {method} {path}: the routes are listed in /v1/openapi.json"
        ))
    } else {
        ApiError::method_not_allowed(
            format!(
                "{path} does not accept {method}: use {}",
                allowed.join(" or ")
            ),
            &allowed,
        )
    };
    err.error_response()
}

/// The methods a path item of the document has.
pub fn methods_of(item: &utoipa::openapi::PathItem) -> Vec<String> {
    [
        ("GET", &item.get),
        ("PUT", &item.put),
        ("POST", &item.post),
        ("DELETE", &item.delete),
        ("OPTIONS", &item.options),
        ("HEAD", &item.head),
        ("PATCH", &item.patch),
        ("TRACE", &item.trace),
    ]
    .into_iter()
    .filter(|(_, op)| op.is_some())
    .map(|(m, _)| m.to_string())
    .collect()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "deploybot REST API",
        description = "The deploy Service over HTTP. Authenticate with `Authorization: Bearer <token>`; the tenant comes from the token. Errors are `{\"error\": {\"code\", \"message\"}}`; a deploy refused by a lock or a freeze is a 409 with code `locked` or `frozen`."
    ),
    components(schemas(
        DeploymentIdSchema,
        ReleaseIdSchema,
        InstanceIdSchema,
        InstanceKeySchema,
        CursorSchema,
        StrategySchema,
        RequestedStrategySchema,
        ReleaseEnvSchema,
        RollbackBodySchema,
        ParamsSchema,
        LockBodySchema,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "instances", description = "Configured deploy targets"),
        (name = "deployments", description = "Attempts to run a release on an instance"),
        (name = "releases", description = "Immutable, numbered snapshots of what runs"),
        (name = "locks", description = "Locks that hold instances for their holder: others' deploys are refused, pushes wait"),
        (name = "audit", description = "Who did what: deploys, dry runs, rollbacks, cancels, locks, forced passes and refusals"),
        (name = "outbox", description = "Reports to GitHub and jobs that failed for good"),
        (name = "meta", description = "This document"),
    )
)]
struct ApiDoc;

/// Declares the `bearer` security scheme the operations require.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApiDocument) {
        openapi
            .components
            .get_or_insert_with(Components::new)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(HOW_TO_AUTHENTICATE))
                        .build(),
                ),
            );
    }
}

/// An optional body (`Option<T>` in `request_body`) is declared as not required, not as one
/// that may be `null`: the API reads an empty body as `{}` and refuses `null`.
fn optional_bodies_are_not_nullable(doc: &mut OpenApiDocument) {
    let operations = doc.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
    });
    for operation in operations.flatten() {
        let Some(RefOr::T(body)) = operation.request_body.as_mut() else {
            continue;
        };
        if body.required.is_some() {
            continue;
        }
        for content in body.content.values_mut() {
            let RefOr::T(content) = content else {
                continue;
            };
            let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema else {
                continue;
            };
            let mut items = one_of.items.iter().filter(|item| !is_null(item));
            if let (Some(only), None) = (items.next(), items.next()) {
                content.schema = Some(only.clone());
            }
        }
    }
}

fn is_null(schema: &RefOr<Schema>) -> bool {
    matches!(schema, RefOr::T(Schema::Object(o)) if o.schema_type == SchemaType::Type(Type::Null))
}

/// The document: the fixed parts of `ApiDoc` plus the paths and schemas of `scope`.
pub(super) fn document(scope: &impl OpenApiFactory) -> OpenApiDocument {
    let mut doc = ApiDoc::openapi();
    doc.paths.merge(scope.paths());
    optional_bodies_are_not_nullable(&mut doc);
    let mut schemas = Vec::new();
    scope.schemas(&mut schemas);
    doc.components
        .get_or_insert_with(Components::new)
        .schemas
        .extend(schemas);
    doc
}
