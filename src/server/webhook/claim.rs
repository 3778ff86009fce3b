//! Whose delivery a raw body claims to be: read before the signature is checked, to pick
//! the tenant's secret, and checked against the event once it is verified.

use serde::Deserialize;

use crate::config::Config;
use crate::github::store::RepositorySeen;

/// Just enough of a payload to tell whose it is, read before the signature is checked
/// (to pick the tenant's secret). Everything else is skipped unread.
#[derive(Debug, Default, Deserialize)]
struct Probe {
    #[serde(default)]
    repository: Option<ProbeRepository>,
    #[serde(default)]
    organization: Option<ProbeAccount>,
    #[serde(default)]
    installation: Option<ProbeInstallation>,
}

#[derive(Debug, Default, Deserialize)]
struct ProbeRepository {
    #[serde(default)]
    id: Option<serde_json::Number>,
    #[serde(default)]
    full_name: Option<String>,
    #[serde(default)]
    owner: Option<ProbeAccount>,
}

#[derive(Debug, Default, Deserialize)]
struct ProbeAccount {
    #[serde(default)]
    login: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ProbeInstallation {
    #[serde(default)]
    id: Option<serde_json::Number>,
}

/// Whose delivery this is, as its payload claims (verified afterwards).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Claim {
    /// The account whose secret must have signed it (`None`: it names none).
    pub(super) tenant: Option<String>,
    /// `owner/name` of the repository it names, lower-cased.
    pub(super) repo: Option<String>,
    pub(super) repository_id: Option<i64>,
    pub(super) installation_id: Option<i64>,
}

/// Reads the claim of a raw body. A body that is not a JSON object names no account;
/// one whose repository owner and full name disagree is refused.
pub(super) fn claim(body: &[u8]) -> Result<Claim, String> {
    let Ok(probe) = serde_json::from_slice::<Probe>(body) else {
        return Ok(Claim::default());
    };
    // Ids beyond i64 (GitHub's are far below) are kept out of the pin, not refused.
    let installation_id = probe
        .installation
        .and_then(|i| i.id)
        .and_then(|id| id.as_i64());
    let org = probe
        .organization
        .and_then(|o| o.login)
        .map(|l| l.to_ascii_lowercase());
    let Some(repository) = probe.repository else {
        return Ok(Claim {
            tenant: org,
            installation_id,
            ..Claim::default()
        });
    };
    let repo = repository.full_name.map(|n| n.to_ascii_lowercase());
    let by_name = repo
        .as_deref()
        .and_then(|r| r.split_once('/'))
        .map(|(owner, _)| owner.to_string());
    let by_owner = repository
        .owner
        .and_then(|o| o.login)
        .map(|l| l.to_ascii_lowercase());
    let tenant = match (by_owner, by_name) {
        (Some(a), Some(b)) if a != b => {
            return Err(format!(
                "repository.owner.login ({a}) and repository.full_name ({b}/…) name different accounts"
            ));
        }
        (a, b) => a.or(b).or(org),
    };
    Ok(Claim {
        tenant,
        repo,
        repository_id: repository.id.and_then(|id| id.as_i64()),
        installation_id,
    })
}

/// The repository a delivery names, when it is one an instance is configured for and
/// the payload carries its id: checked against (or recorded as) its pin.
pub(super) fn pinnable(config: &Config, repo: &str, claim: &Claim) -> Option<RepositorySeen> {
    let id = claim.repository_id?;
    let configured = config
        .instances
        .iter()
        .any(|i| i.repo.eq_ignore_ascii_case(repo));
    configured.then(|| RepositorySeen {
        full_name: repo.to_ascii_lowercase(),
        tenant: repo
            .split('/')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase(),
        repository_id: id,
        installation_id: claim.installation_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claim_names_the_repository_owner_or_the_organization() {
        let body = br#"{"repository": {"id": 7, "full_name": "AcMe/Web", "owner": {"login": "ACME"}}, "installation": {"id": 9}}"#;
        assert_eq!(
            claim(body),
            Ok(Claim {
                tenant: Some("acme".into()),
                repo: Some("acme/web".into()),
                repository_id: Some(7),
                installation_id: Some(9),
            })
        );
        let org = br#"{"zen": "z", "organization": {"login": "Globex"}}"#;
        assert_eq!(claim(org).map(|c| c.tenant), Ok(Some("globex".into())));
        assert_eq!(claim(b"not json"), Ok(Claim::default()));
        // An id beyond i64 is left out, not refused.
        let huge = br#"{"repository": {"id": 18446744073709551615, "full_name": "acme/web", "owner": {"login": "acme"}}}"#;
        assert_eq!(claim(huge).map(|c| c.repository_id), Ok(None));
    }

    #[test]
    fn an_owner_and_full_name_that_disagree_are_refused() {
        let body = br#"{"repository": {"full_name": "acme/web", "owner": {"login": "globex"}}}"#;
        assert!(claim(body).unwrap_err().contains("different accounts"));
    }
}
