//! Bearer-token authentication and authorization of the REST API. A presented token is
//! hashed with SHA-256 and compared in constant time with every configured `[[api.tokens]]`
//! hash; the caller's tenant, role and instance globs come from the matching token, never
//! from the URL. Tokens are never logged.
//!
//! Every route declares the role it needs by the type of its caller parameter,
//! [`Authorized`]`<need::Read>`, `<need::Deploy>` or `<need::Admin>`: [`Caller`] is not an
//! extractor itself, so a route cannot learn who calls without saying what they must be.

use std::future::{Ready, ready};
use std::marker::PhantomData;
use std::ops::Deref;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;
use crate::config::{ApiToken, Role, globs_cover};

/// How to authenticate, repeated in every 401 answer.
pub const HOW_TO_AUTHENTICATE: &str =
    "send Authorization: Bearer <token>; tokens are configured in [[api.tokens]]";

/// Who is calling: the name of the token (recorded as the initiator of what it starts),
/// the tenant it acts for, its role and the instances it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's `name` in `[[api.tokens]]`.
    pub name: String,
    /// The token's tenant: everything the caller reads or starts is scoped to it.
    pub tenant: String,
    /// What the token may do.
    pub role: Role,
    /// Globs over the tenant's instance names; empty: all of them.
    pub instances: Vec<String>,
}

impl Caller {
    /// Whether the token may see and act on the instance `name`.
    pub fn covers(&self, name: &str) -> bool {
        globs_cover(&self.instances, name)
    }
}

/// The configured token whose hash matches `presented`, if any. Every configured hash is
/// compared, in constant time, so timing reveals neither the token nor which one matched.
pub fn authenticate(tokens: &[ApiToken], presented: &str) -> Option<Caller> {
    let digest = Sha256::digest(presented.as_bytes());
    let mut found: Option<&ApiToken> = None;
    for token in tokens {
        let Ok(expected) = hex::decode(&token.sha256) else {
            continue;
        };
        let matches: bool = digest.as_slice().ct_eq(&expected).into();
        if matches && found.is_none() {
            found = Some(token);
        }
    }
    found.map(|token| Caller {
        name: token.name.clone(),
        tenant: token.tenant.clone(),
        role: token.role,
        instances: token.instances.clone(),
    })
}

/// The token of an `Authorization: Bearer <token>` header value.
pub(crate) fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}

fn caller_of(req: &HttpRequest) -> Result<Caller, ApiError> {
    let Some(state) = req.app_data::<web::Data<AppState>>() else {
        return Err(ApiError::internal(
            "the REST API was mounted without its AppState",
        ));
    };
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Err(ApiError::unauthenticated(format!(
            "the Authorization header is missing: {HOW_TO_AUTHENTICATE}"
        )));
    };
    let token = value.to_str().ok().and_then(bearer_token).ok_or_else(|| {
        ApiError::unauthenticated(format!(
            "the Authorization header is not a bearer token: {HOW_TO_AUTHENTICATE}"
        ))
    })?;
    let tokens = &state.config().api.tokens;
    if tokens.is_empty() {
        return Err(ApiError::unauthenticated(
            "this server has no API tokens: add a [[api.tokens]] entry (name, tenant, sha256 of the token) to its configuration",
        ));
    }
    authenticate(tokens, token).ok_or_else(|| {
        tracing::info!(path = %req.path(), "API request with an unknown bearer token refused");
        ApiError::unauthenticated(format!(
            "the bearer token is not valid: {HOW_TO_AUTHENTICATE}"
        ))
    })
}

/// The role a route needs, as a type: see [`Authorized`].
pub trait Need {
    /// The weakest role allowed.
    const ROLE: Role;
}

/// The roles routes can need.
pub mod need {
    use super::{Need, Role};

    /// Reading: any token.
    pub struct Read;
    /// Changing what runs: deploy, roll back, cancel.
    pub struct Deploy;
    /// Everything else (locks, approvals, administration).
    pub struct Admin;

    impl Need for Read {
        const ROLE: Role = Role::Read;
    }
    impl Need for Deploy {
        const ROLE: Role = Role::Deploy;
    }
    impl Need for Admin {
        const ROLE: Role = Role::Admin;
    }
}

/// A caller whose token has at least the role `N` names; otherwise the request is refused
/// with 401 (no valid token) or 403 (a weaker role), before the handler runs.
#[derive(Debug)]
pub struct Authorized<N: Need> {
    caller: Caller,
    need: PhantomData<N>,
}

impl<N: Need> Deref for Authorized<N> {
    type Target = Caller;

    fn deref(&self) -> &Caller {
        &self.caller
    }
}

/// The 403 for `caller` on a route that needs `need`.
pub fn forbidden(method: &str, path: &str, caller: &Caller, need: Role) -> ApiError {
    ApiError::forbidden(format!(
        "{method} {path} needs the {need} role; token '{}' has {}. Use a token with role = \"{need}\" (or stronger) in [[api.tokens]]",
        caller.name, caller.role
    ))
}

fn authorize<N: Need>(req: &HttpRequest) -> Result<Authorized<N>, ApiError> {
    let caller = caller_of(req)?;
    if caller.role < N::ROLE {
        tracing::info!(token = %caller.name, tenant = %caller.tenant, role = %caller.role, needed = %N::ROLE, method = %req.method(), path = %req.path(), "API request refused: the token's role is too weak");
        return Err(forbidden(
            req.method().as_str(),
            req.path(),
            &caller,
            N::ROLE,
        ));
    }
    Ok(Authorized {
        caller,
        need: PhantomData,
    })
}

impl<N: Need> FromRequest for Authorized<N> {
    type Error = ApiError;
    type Future = Ready<Result<Authorized<N>, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authorize(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(name: &str, tenant: &str, secret: &str) -> ApiToken {
        ApiToken {
            name: name.into(),
            tenant: tenant.into(),
            sha256: hex::encode(Sha256::digest(secret.as_bytes())),
            role: Role::Read,
            instances: vec!["web-*".into()],
        }
    }

    #[test]
    fn finds_the_token_by_its_hash() {
        let tokens = [
            token("ci", "acme", "s3cret"),
            token("ops", "globex", "other"),
        ];
        assert_eq!(
            authenticate(&tokens, "other"),
            Some(Caller {
                name: "ops".into(),
                tenant: "globex".into(),
                role: Role::Read,
                instances: vec!["web-*".into()],
            })
        );
        assert_eq!(authenticate(&tokens, "s3cret").unwrap().name, "ci");
        assert_eq!(authenticate(&tokens, "s3cre"), None);
        assert_eq!(authenticate(&tokens, ""), None);
        assert_eq!(authenticate(&[], "s3cret"), None);
    }

    #[test]
    fn reads_only_bearer_headers() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer a b"), None);
    }
}
