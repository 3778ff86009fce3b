//! The REST API under `/v1`: the deploy Service over HTTP for scripts, CI and the CLI.
//! Every route but `/v1/openapi.json` needs a bearer token, and the tenant comes from it.
//! Routes are registered through `utoipa_actix_web`, so registering a route is what puts
//! it in the OpenAPI document served at `/v1/openapi.json`. This module holds the route
//! table; each resource's answers, inputs and routes live in its own file.

mod admin;
mod audit;
mod deployments;
mod document;
mod input;
mod instances;
mod locks;
mod logs;
mod outbox;
mod releases;
mod schema;

use actix_web::dev::{ServiceFactory, ServiceRequest};
use actix_web::web;
use utoipa::openapi::OpenApi as OpenApiDocument;

use super::error;
pub use admin::ReloadJson;
pub(crate) use audit::readable_audit;
pub use audit::{AuditEventJson, AuditPageJson};
pub use deployments::{
    DeployBody, DeployKindJson, DeployListJson, DeployStateJson, DeploymentJson, GateReadingJson,
    ProgressJson, RollbackBody, SourceJson, WaitKindJson, WaitingForJson,
};
pub use document::methods_of;
use document::{ApiDocument, document, unknown_route};
pub use input::{ApiJson, ListQuery};
pub use instances::{FreezeJson, FreezeStateJson, InstanceJson, InstanceListJson};
pub use locks::{LockJson, LockListJson, LockScopeJson, parse_ttl};
pub use logs::{LOG_PAGE_LIMIT, LogEntryJson, LogPageJson, LogQuery};
pub use releases::{ReleaseJson, ReleaseListJson};

/// The largest request body the API reads.
pub const BODY_LIMIT: usize = 256 * 1024;

/// Registers every route of /v1 on `scope`; each lands in the OpenAPI document too.
fn register<T>(scope: utoipa_actix_web::scope::Scope<T>) -> utoipa_actix_web::scope::Scope<T>
where
    T: ServiceFactory<ServiceRequest, Config = (), Error = actix_web::Error, InitError = ()>,
{
    scope
        .service(instances::list_instances)
        .service(deployments::deploy)
        .service(deployments::rollback)
        .service(deployments::list_deployments)
        .service(releases::list_releases)
        .service(deployments::get_deployment)
        .service(deployments::cancel)
        .service(deployments::approve)
        .service(logs::logs)
        .service(releases::get_release)
        .service(locks::list_locks)
        .service(locks::get_lock)
        .service(locks::put_lock)
        .service(locks::delete_lock)
        .service(audit::list_audit)
        .service(outbox::failed_outbox)
        .service(admin::reload)
        .service(document::openapi_json)
}

/// The OpenAPI document of /v1, as served at `/v1/openapi.json`.
pub fn openapi() -> OpenApiDocument {
    document(&register(utoipa_actix_web::scope("/v1")))
}

/// Mounts /v1: the routes, their OpenAPI document, and error answers in the API's shape
/// for bad input and unknown routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    let scope = register(utoipa_actix_web::scope("/v1"));
    let doc = document(&scope);
    cfg.service(
        scope
            .app_data(web::Data::new(ApiDocument(doc)))
            .app_data(web::PayloadConfig::new(BODY_LIMIT))
            .app_data(error::json_config(BODY_LIMIT))
            .app_data(error::path_config())
            .app_data(error::query_config())
            .default_service(web::to(unknown_route)),
    );
}
