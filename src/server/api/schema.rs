//! Schemas of the strings the API reads and writes whose shape the server enforces:
//! TypeIDs, instance keys, cursors, strategy names and release env names. Each states the
//! pattern and length bounds the server checks, so a client generated from the document,
//! or a schema-driven tester, agrees with the server.

use std::borrow::Cow;

use serde_json::json;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, SchemaType, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use crate::deploy::strategies;
use crate::deploy::{DeploymentId, InstanceId, ReleaseId};

/// The Crockford base32 alphabet of a TypeID suffix (no i, l, o, u).
const BASE32: &str = "[0-9a-hjkmnp-tv-z]";

/// Longest instance name (see the configuration's instance `name`).
pub const MAX_INSTANCE_NAME: usize = 63;

/// Longest cursor the list routes read.
pub const MAX_CURSOR: usize = 512;

/// The pattern of a TypeID with `prefix`: 26 base32 characters of a UUIDv7, whose first
/// character carries 3 bits (0-7) and whose eleventh carries the version nibble 7 (e or f).
pub fn id_pattern(prefix: &str) -> String {
    format!("{prefix}_[0-7]{BASE32}{{9}}[ef]{BASE32}{{15}}")
}

/// The pattern of an instance name: 1-63 characters of a-z, 0-9 and -, not starting with -.
const INSTANCE_NAME: &str = "[a-z0-9][a-z0-9-]{0,62}";

/// Whether `key` is an instance id or a well-formed instance name (what `InstanceKey` declares).
pub fn is_instance_key(key: &str) -> bool {
    InstanceId::parse(key).is_ok()
        || ((1..=MAX_INSTANCE_NAME).contains(&key.len())
            && !key.starts_with('-')
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
}

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(SchemaType::Type(Type::String))
}

fn id_schema(prefix: &str, what: &str, example: String) -> RefOr<Schema> {
    let len = prefix.len() + 1 + 26;
    string()
        .description(Some(format!(
            "{what}: `{prefix}_` and 26 lower-case Crockford base32 characters of a UUIDv7"
        )))
        .pattern(Some(format!("^{}$", id_pattern(prefix))))
        .min_length(Some(len))
        .max_length(Some(len))
        .examples([json!(example)])
        .into()
}

/// Declares a string schema type named `$name` whose schema `$body` builds.
macro_rules! string_schema {
    ($(#[$doc:meta])* $ty:ident, $name:literal, $body:expr) => {
        $(#[$doc])*
        pub struct $ty;

        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                $body
            }
        }

        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

string_schema!(
    /// A deployment id (`dep_…`).
    DeploymentIdSchema,
    "DeploymentId",
    id_schema(
        DeploymentId::PREFIX,
        "A deployment id",
        "dep_01h455vb4pex5vsknk084sn02q".into()
    )
);

string_schema!(
    /// A release id (`rel_…`).
    ReleaseIdSchema,
    "ReleaseId",
    id_schema(
        ReleaseId::PREFIX,
        "A release id",
        "rel_01h455vb4pex5vsknk084sn02q".into()
    )
);

string_schema!(
    /// An instance id (`inst_…`).
    InstanceIdSchema,
    "InstanceId",
    id_schema(
        InstanceId::PREFIX,
        "An instance id",
        "inst_01h455vb4pex5vsknk084sn02q".into()
    )
);

string_schema!(
    /// An instance id or name, as a path names an instance.
    InstanceKeySchema,
    "InstanceKey",
    string()
        .description(Some(
            "An instance id (`inst_…`) or an instance name (1-63 characters of a-z, 0-9 and -, not starting with -)",
        ))
        .pattern(Some(format!(
            "^(?:{}|{INSTANCE_NAME})$",
            id_pattern(InstanceId::PREFIX)
        )))
        .min_length(Some(1))
        .max_length(Some(MAX_INSTANCE_NAME))
        .examples([json!("web-production")])
        .into()
);

string_schema!(
    /// The opaque cursor of a list page.
    CursorSchema,
    "Cursor",
    string()
        .description(Some(
            "The `next_cursor` of the previous page of the same list, as it was given (URL-safe base64). A cursor this server did not hand out for this list is a 400",
        ))
        .pattern(Some("^[A-Za-z0-9_-]+$"))
        .min_length(Some(1))
        .max_length(Some(MAX_CURSOR))
        .into()
);

string_schema!(
    /// A strategy name, as a deployment records it.
    StrategySchema,
    "Strategy",
    string()
        .description(Some("How the deployment is driven"))
        .enum_values(Some(strategies::NAMES))
        .examples([json!("canary")])
        .into()
);

string_schema!(
    /// A strategy name in a deploy request; empty means the instance's strategy.
    RequestedStrategySchema,
    "RequestedStrategy",
    string()
        .description(Some(
            "A strategy the instance's provider can run; empty (the default) means the instance's strategy",
        ))
        .enum_values(Some(std::iter::once("").chain(strategies::NAMES)))
        .examples([json!("canary")])
        .into()
);

string_schema!(
    /// The `env` of a deploy request: names the server refuses for any child process are
    /// out by their pattern; the rest must be in the instance's `api_env`.
    ReleaseEnvSchema,
    "ReleaseEnv",
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::Object))
        .description(Some(
            "Environment variables of the release. Each name is 1 to 64 characters of A-Z, 0-9 and _, not starting with a digit. A name starting with DEPLOY_, one a loader, shell or runtime reads as code (LD_PRELOAD, BASH_ENV, NODE_OPTIONS, …), one deploybot sets itself (PATH, HOME, LANG, LC_*) or one outside the instance's `api_env` is a 422 naming it",
        ))
        .property_names(Some(
            string()
                .pattern(Some("^[A-Z_][A-Z0-9_]{0,63}$"))
                .min_length(Some(1))
                .max_length(Some(crate::deploy::env::MAX_NAME_LEN)),
        ))
        .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(
            Schema::Object(string().build()),
        ))))
        .examples([json!({"LOG_LEVEL": "debug"})])
        .into()
);

string_schema!(
    /// The `params` of a deploy: names the instance lists in its `params`.
    ParamsSchema,
    "Params",
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::Object))
        .description(Some(
            "Parameters of the deployment, passed to the provider as DEPLOY_PARAM_<NAME>. Each name is 1 to 64 characters of A-Z, 0-9 and _, not starting with a digit, and must be one the instance lists in its `params` (a 400 names the accepted ones); each value is at most 256 characters without control characters",
        ))
        .property_names(Some(
            string()
                .pattern(Some("^[A-Z_][A-Z0-9_]{0,63}$"))
                .min_length(Some(1))
                .max_length(Some(crate::deploy::env::MAX_NAME_LEN)),
        ))
        .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(
            Schema::Object(
                string()
                    .max_length(Some(crate::deploy::MAX_PARAM_CHARS))
                    .pattern(Some("^[^\\x00-\\x1f\\x7f-\\x9f]*$"))
                    .build()
            ),
        ))))
        .examples([json!({"REGION": "eu-west-1"})])
        .into()
);

/// The `reason` of a rollback or a lock: one line of at most 500 characters.
pub fn reason_schema() -> ObjectBuilder {
    string()
        .description(Some(
            "Why: one line of at most 500 characters, kept in the audit trail",
        ))
        .max_length(Some(crate::deploy::MAX_REASON_CHARS))
        .pattern(Some("^[^\\x00-\\x1f\\x7f-\\x9f]*$"))
        .examples([json!("incident 42")])
}

/// `force` of a request: pass what an admin token may pass.
fn force_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::Boolean))
        .description(Some(
            "Pass another's lock (a rollback) or a freeze in force; only an admin token may",
        ))
}

/// An object schema that refuses properties it does not list.
fn closed_object() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::Object))
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
}

string_schema!(
    /// The body of `PUT /v1/instances/{instance}/lock`.
    LockBodySchema,
    "LockBody",
    closed_object()
        .description(Some(
            "The lock to take: `reason`, `ttl` (a whole number and a unit s, m, h or d, such as `30m`; absent or empty: until unlocked) and `global` (every instance of the repository). None may be null",
        ))
        .property("reason", reason_schema())
        .property(
            "ttl",
            string()
                .description(Some(
                    "How long the lock holds: a whole number of up to 4 digits and a unit, s, m, h or d; empty: until unlocked",
                ))
                .pattern(Some(super::locks::TTL_PATTERN))
                .max_length(Some(5))
                .examples([json!("30m")]),
        )
        .property(
            "global",
            ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::Boolean))
                .description(Some("Lock every instance of the instance's repository")),
        )
        .into()
);

string_schema!(
    /// The rollback body: exactly one way to name the release to return to.
    RollbackBodySchema,
    "RollbackBody",
    utoipa::openapi::schema::OneOfBuilder::new()
        .description(Some(
            "Which release to return to: `{\"release_id\": …}`, `{\"version\": …}`, or `{}` / `{\"to\": \"previous\"}` for the release that was active before the active one. At most one of the three; none may be null. `force` passes another's lock or a freeze (admin tokens only); `reason` is kept in the deployment's trigger and the audit trail",
        ))
        .item(
            closed_object()
                .title(Some("By release id"))
                .property("release_id", ReleaseIdSchema::schema())
                .property("force", force_schema())
                .property("reason", reason_schema())
                .required("release_id"),
        )
        .item(
            closed_object()
                .title(Some("By version"))
                .property(
                    "version",
                    ObjectBuilder::new()
                        .schema_type(SchemaType::Type(Type::Integer))
                        .format(Some(utoipa::openapi::schema::SchemaFormat::KnownFormat(
                            utoipa::openapi::schema::KnownFormat::Int64,
                        )))
                        .minimum(Some(1))
                        .examples([json!(3)]),
                )
                .property("force", force_schema())
                .property("reason", reason_schema())
                .required("version"),
        )
        .item(
            closed_object()
                .title(Some("The previous release"))
                .property(
                    "to",
                    string()
                        .enum_values(Some(["previous"]))
                        .examples([json!("previous")]),
                )
                .property("force", force_schema())
                .property("reason", reason_schema()),
        )
        .into()
);
