//! GitHub's request schemas, as excerpts of its OpenAPI description (`openapi/`, copied
//! from the npm package `@octokit/openapi`), and the validator that checks request bodies
//! against them the way GitHub does.

use serde_json::Value;

use super::state::DOCS;

/// One operation's request body schema, as copied from GitHub's OpenAPI description.
pub struct OpenApiExcerpt {
    /// The resource name GitHub uses in `Validation Failed` errors for this operation.
    pub resource: &'static str,
    /// The fixture's text: `{source, operation, operationId, documentation_url, pointer, schema}`.
    pub text: &'static str,
}

impl OpenApiExcerpt {
    pub fn document(&self) -> Value {
        serde_json::from_str(self.text).unwrap_or(Value::Null)
    }

    pub fn schema(&self) -> Value {
        self.document()["schema"].clone()
    }

    pub fn documentation_url(&self) -> String {
        self.document()["documentation_url"]
            .as_str()
            .unwrap_or(DOCS)
            .to_string()
    }
}

pub const CREATE_DEPLOYMENT: OpenApiExcerpt = OpenApiExcerpt {
    resource: "Deployment",
    text: include_str!("openapi/create-deployment.request.json"),
};
pub const CREATE_DEPLOYMENT_STATUS: OpenApiExcerpt = OpenApiExcerpt {
    resource: "DeploymentStatus",
    text: include_str!("openapi/create-deployment-status.request.json"),
};
pub const CREATE_ISSUE_COMMENT: OpenApiExcerpt = OpenApiExcerpt {
    resource: "IssueComment",
    text: include_str!("openapi/create-issue-comment.request.json"),
};
pub const UPDATE_ISSUE_COMMENT: OpenApiExcerpt = OpenApiExcerpt {
    resource: "IssueComment",
    text: include_str!("openapi/update-issue-comment.request.json"),
};
pub const CREATE_COMMENT_REACTION: OpenApiExcerpt = OpenApiExcerpt {
    resource: "Reaction",
    text: include_str!("openapi/create-reaction-for-issue-comment.request.json"),
};
pub const CREATE_ISSUE_REACTION: OpenApiExcerpt = OpenApiExcerpt {
    resource: "Reaction",
    text: include_str!("openapi/create-reaction-for-issue.request.json"),
};
pub const CREATE_INSTALLATION_TOKEN: OpenApiExcerpt = OpenApiExcerpt {
    resource: "InstallationAccessToken",
    text: include_str!("openapi/create-installation-access-token.request.json"),
};
/// The query parameters of `GET /app/hook/deliveries` (`per_page`, `cursor`, `status`).
pub const LIST_HOOK_DELIVERIES_PARAMETERS: OpenApiExcerpt = OpenApiExcerpt {
    resource: "HookDelivery",
    text: include_str!("openapi/list-webhook-deliveries.parameters.json"),
};
/// The answer of `GET /app/hook/deliveries`: a list of simple webhook deliveries.
pub const LIST_HOOK_DELIVERIES_RESPONSE: OpenApiExcerpt = OpenApiExcerpt {
    resource: "HookDelivery",
    text: include_str!("openapi/list-webhook-deliveries.response.json"),
};
/// The answer of `POST /app/hook/deliveries/{delivery_id}/attempts` (202).
pub const REDELIVER_HOOK_DELIVERY_RESPONSE: OpenApiExcerpt = OpenApiExcerpt {
    resource: "HookDelivery",
    text: include_str!("openapi/redeliver-webhook-delivery.response.json"),
};

/// The query parameters of `GET /repos/{owner}/{repo}/commits/{ref}/check-runs`
/// (`check_name`, `status`, `filter`, `per_page`, `page`, `app_id`).
pub const CHECK_RUNS_PARAMETERS: OpenApiExcerpt = OpenApiExcerpt {
    resource: "CheckRun",
    text: include_str!("openapi/check-runs-for-ref.parameters.json"),
};

/// One way a JSON value breaks a schema: the field (dotted path), GitHub's error code
/// (`missing_field` or `invalid`) and a sentence for people.
#[derive(Clone, Debug, PartialEq)]
pub struct SchemaError {
    pub field: String,
    pub code: &'static str,
    pub message: String,
}

/// Checks `value` against the OpenAPI subset GitHub's schemas use: `type`, `nullable`,
/// `enum`, `required`, `properties`, `items`, `oneOf`/`anyOf`/`allOf`, `minLength`,
/// `maxLength`. Unknown properties are ignored, as GitHub ignores them.
pub fn validate(schema: &Value, value: &Value) -> Vec<SchemaError> {
    let mut errors = Vec::new();
    check(schema, value, "", &mut errors);
    errors
}

fn check(schema: &Value, value: &Value, field: &str, errors: &mut Vec<SchemaError>) {
    let invalid = |message: String| SchemaError {
        field: field.to_string(),
        code: "invalid",
        message,
    };
    if value.is_null() && schema["nullable"] == true {
        return;
    }
    let branches = schema.get("oneOf").or_else(|| schema.get("anyOf"));
    if let Some(branches) = branches.and_then(Value::as_array) {
        if !branches.iter().any(|b| validate(b, value).is_empty()) {
            errors.push(invalid(format!(
                "{field} {value} matches none of the allowed shapes"
            )));
        }
        return;
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        check(part, value, field, errors);
    }
    if let Some(ty) = schema["type"].as_str() {
        let fits = match ty {
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "object" => value.is_object(),
            "array" => value.is_array(),
            "null" => value.is_null(),
            _ => true,
        };
        if !fits {
            errors.push(invalid(format!("{field} {value} is not a {ty}")));
            return;
        }
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed
            .iter()
            .map(|a| a.as_str().unwrap_or("?").into())
            .collect();
        errors.push(invalid(format!(
            "{field} {value} is not one of: {}",
            list.join(", ")
        )));
    }
    if let Some(text) = value.as_str() {
        let length = text.chars().count() as u64;
        if schema["minLength"].as_u64().is_some_and(|min| length < min) {
            errors.push(invalid(format!("{field} is too short")));
        }
        if schema["maxLength"].as_u64().is_some_and(|max| length > max) {
            errors.push(invalid(format!("{field} is too long")));
        }
    }
    if let Some(object) = value.as_object() {
        check_object(schema, object, field, errors);
    }
    if let (Some(items), Some(item_schema)) = (value.as_array(), schema.get("items")) {
        for (index, item) in items.iter().enumerate() {
            check(item_schema, item, &format!("{field}[{index}]"), errors);
        }
    }
}

/// `required` and `properties` of an object schema.
fn check_object(
    schema: &Value,
    object: &serde_json::Map<String, Value>,
    field: &str,
    errors: &mut Vec<SchemaError>,
) {
    for name in schema["required"].as_array().into_iter().flatten() {
        let name = name.as_str().unwrap_or_default();
        if !object.contains_key(name) {
            errors.push(SchemaError {
                field: join_field(field, name),
                code: "missing_field",
                message: format!("{} wasn't supplied", join_field(field, name)),
            });
        }
    }
    for (name, property) in schema["properties"].as_object().into_iter().flatten() {
        if let Some(inner) = object.get(name) {
            check(property, inner, &join_field(field, name), errors);
        }
    }
}

fn join_field(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}
