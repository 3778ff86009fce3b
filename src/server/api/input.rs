//! What every route reads the same way: JSON bodies (with the field path in errors and
//! NUL characters refused), `?cursor&limit` of the list routes, integer query parameters
//! and TypeIDs in the path.

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{FromRequest, HttpRequest};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use utoipa::IntoParams;

use super::BODY_LIMIT;
use crate::deploy::ListOptions;
use crate::id::IdError;
use crate::server::error::{self, ApiError};

/// `?cursor&limit` of the list routes.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// The `next_cursor` of the previous page; omit it for the first page.
    #[param(value_type = Option<super::schema::CursorSchema>)]
    pub cursor: Option<String>,
    /// Items per page, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
}

impl ListQuery {
    pub(super) fn options(self) -> Result<ListOptions, ApiError> {
        let max = i64::from(ListOptions::MAX_LIMIT);
        let limit = self
            .limit
            .map(|text| integer("limit", &text, 1, max))
            .transpose()?
            .map(|n| u32::try_from(n).unwrap_or(ListOptions::MAX_LIMIT));
        Ok(ListOptions {
            cursor: self.cursor,
            limit,
        })
    }
}

/// An integer query parameter in `min..=max`, or a 400 naming the parameter and the range.
pub(super) fn integer(name: &str, text: &str, min: i64, max: i64) -> Result<i64, ApiError> {
    let value: i64 = text.trim().parse().map_err(|_| {
        ApiError::invalid_request(format!(
            "query parameter `{name}` is {text:?}, not an integer: use {min} to {max}"
        ))
    })?;
    if !(min..=max).contains(&value) {
        return Err(ApiError::invalid_request(format!(
            "query parameter `{name}` is {value}, out of range: use {min} to {max}"
        )));
    }
    Ok(value)
}

/// A TypeID, or a 400 naming where it came from (`path parameter `id``).
pub(super) fn parse_id<T: FromStr<Err = IdError>>(what: &str, text: &str) -> Result<T, ApiError> {
    text.parse()
        .map_err(|e: IdError| ApiError::invalid_request(format!("{what}: {e}")))
}

/// A field that may be left out but, when given, holds a value: `null` is refused, naming
/// the field, as for any other wrong type.
pub(super) fn present<'de, D, T>(de: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(de).map(Some)
}

/// `present` for an integer that JSON may also write with a zero fraction (`3.0`, as
/// JSON Schema's `integer` allows); `1.5` is refused as not an integer.
pub(super) fn present_integer<'de, D>(de: D) -> Result<Option<i64>, D::Error>
where
    D: Deserializer<'de>,
{
    let number = serde_json::Number::deserialize(de)?;
    if let Some(n) = number.as_i64() {
        return Ok(Some(n));
    }
    match number.as_f64() {
        // i64::MAX as f64 rounds up to 2^63, so the upper bound is exclusive.
        Some(f) if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 => {
            Ok(Some(f as i64))
        }
        _ => Err(serde::de::Error::custom(format!(
            "{number} is not a whole number: versions are 1, 2, 3 …"
        ))),
    }
}

/// A JSON request body read with the field path in every error (`env.PORT: invalid type…`),
/// limited to `BODY_LIMIT`. An empty body reads as `{}`.
pub struct ApiJson<T>(pub T);

fn is_json(req: &HttpRequest) -> bool {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn decode_json<T: DeserializeOwned>(req: &HttpRequest, bytes: &[u8]) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else if is_json(req) {
        bytes
    } else {
        return Err(error::not_json());
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(ApiError::from_json)?;
    de.end().map_err(|e| {
        ApiError::invalid_request(format!("the request body is not valid JSON: {e}"))
    })?;
    // serde reads a struct from an array too (`["x:1"]`); every body of the API is an object.
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::invalid_request(
            "the request body is invalid: it is a JSON array; send a JSON object ({\"field\": value, …})",
        ));
    }
    // JSON can carry U+0000 only as the escape `\u0000`; most bodies skip the second read.
    if bytes.windows(6).any(|w| w == b"\\u0000")
        && let Ok(parsed) = serde_json::from_slice::<serde_json::Value>(bytes)
        && let Some(field) = nul_field(&parsed, String::new())
    {
        return Err(ApiError::invalid_request(format!(
            "{field} contains a NUL character (U+0000), which deploybot cannot store: remove it"
        )));
    }
    Ok(value)
}

/// The path (`env.KEY`, `items[2]`) of the first key or string in `value` holding a NUL.
fn nul_field(value: &serde_json::Value, path: String) -> Option<String> {
    let name = |path: &str| {
        if path.is_empty() {
            "the request body".to_string()
        } else {
            format!("field `{path}`")
        }
    };
    match value {
        serde_json::Value::String(s) => s.contains('\0').then(|| name(&path)),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_field(item, format!("{path}[{i}]"))),
        serde_json::Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let inner = if path.is_empty() {
                key.escape_debug().to_string()
            } else {
                format!("{path}.{}", key.escape_debug())
            };
            if key.contains('\0') {
                Some(format!("the name of {}", name(&inner)))
            } else {
                nul_field(item, inner)
            }
        }),
        _ => None,
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for ApiJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let body = Bytes::from_request(&req, payload);
        Box::pin(async move {
            let bytes = body
                .await
                .map_err(|e| ApiError::from_payload(&e, BODY_LIMIT))?;
            decode_json(&req, &bytes).map(ApiJson)
        })
    }
}
