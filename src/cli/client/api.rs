//! Talking to the REST API: URLs under `/v1`, the bearer token, and answers read as the
//! API's own types, with the server's error message when it refuses.

use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Connection;
use crate::cli::{CliError, http, server_url};

/// The REST API at one base URL, with one token.
pub(super) struct Api {
    http: reqwest::Client,
    base: Url,
    shown: String,
    /// What to do when nothing answers there.
    hint: String,
    token: Option<String>,
}

impl Api {
    pub(super) fn new(connection: &Connection) -> Result<Api, CliError> {
        let server = server_url(connection.url.as_deref(), connection.config.as_deref())?;
        let shown = server.url;
        let base = Url::parse(&shown).map_err(|e| {
            CliError::Usage(format!(
                "{} {:?} is not a URL ({e}): use http://HOST:PORT",
                server.from,
                http::shown(&shown)
            ))
        })?;
        Ok(Api {
            http: http::client()?,
            base,
            hint: format!(
                "is the server running? Start it with `deploybot serve`, or point --url (or \
                 DEPLOYBOT_URL) at it (this URL is {})",
                server.from
            ),
            shown,
            token: connection.token.clone().filter(|t| !t.trim().is_empty()),
        })
    }

    /// `base/v1/SEGMENTS…?QUERY`, each segment percent-encoded.
    pub(super) fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Result<Url, CliError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| {
                CliError::Usage(format!(
                    "--url {} cannot have a path appended",
                    http::shown(&self.shown)
                ))
            })?
            .pop_if_empty()
            .push("v1")
            .extend(segments);
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (name, value) in query {
                pairs.append_pair(name, value);
            }
        }
        Ok(url)
    }

    /// Sends a request and returns the body of a 2xx answer; anything else is an error with
    /// the server's message.
    pub(super) async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<String, CliError> {
        let mut request = self.http.request(method, url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|e| http::unreachable(&self.shown, &e, &self.hint))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| http::unreachable(&self.shown, &e, &self.hint))?;
        if status.is_success() {
            return Ok(text);
        }
        Err(self.refusal(status, &text))
    }

    /// A non-2xx answer as an error; a 401 also says what to do about the token.
    fn refusal(&self, status: reqwest::StatusCode, text: &str) -> CliError {
        let mut err = http::api_error(status, text);
        if let CliError::Api {
            status: 401,
            message,
            ..
        } = &mut err
        {
            message.push_str(if self.token.is_none() {
                ". No token was given: pass --token or set DEPLOYBOT_TOKEN"
            } else {
                ". Check --token / DEPLOYBOT_TOKEN: the server does not know this token"
            });
        }
        err
    }

    /// A GET read as `T`, with the raw body for `--json`.
    pub(super) async fn get<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<(T, String), CliError> {
        let url = self.url(segments, query)?;
        let text = self.call(Method::GET, url.clone(), None).await?;
        Ok((decode(&url, &text)?, text))
    }

    /// A POST of `body` read as `T`, with the raw body for `--json`.
    pub(super) async fn post<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        body: &Value,
    ) -> Result<(T, String), CliError> {
        let url = self.url(segments, &[])?;
        let text = self.call(Method::POST, url.clone(), Some(body)).await?;
        Ok((decode(&url, &text)?, text))
    }

    /// A PUT of `body` read as `T`, with the raw body for `--json`.
    pub(super) async fn put<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        body: &Value,
    ) -> Result<(T, String), CliError> {
        let url = self.url(segments, &[])?;
        let text = self.call(Method::PUT, url.clone(), Some(body)).await?;
        Ok((decode(&url, &text)?, text))
    }
}

fn decode<T: DeserializeOwned>(url: &Url, text: &str) -> Result<T, CliError> {
    serde_json::from_str(text).map_err(|e| CliError::Protocol {
        url: http::shown(url.as_str()),
        detail: format!("{e}; is this a deploybot server of the same version?"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_segments_and_keep_a_path_prefix() {
        let api = Api::new(&Connection {
            url: Some("https://ops.acme.dev/deploybot/".into()),
            token: None,
            config: None,
        })
        .unwrap();
        let url = api
            .url(
                &["instances", "web prod", "deployments"],
                &[("cursor", "a+b".into())],
            )
            .unwrap();
        assert_eq!(
            url.as_str(),
            "https://ops.acme.dev/deploybot/v1/instances/web%20prod/deployments?cursor=a%2Bb"
        );
    }
}
