//! The file's shape: serde structs that mirror the TOML and reject unknown keys. The
//! builder next to each public type checks these values and converts them.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) database_url: Option<String>,
    pub(super) listen: Option<String>,
    pub(super) public_url: Option<String>,
    /// `toml::Value` so that a wrongly typed secret is never echoed by serde's error.
    pub(super) webhook_secrets: Option<toml::Value>,
    pub(super) webhook_max_bytes: Option<usize>,
    pub(super) webhook_body_timeout: Option<String>,
    pub(super) webhook_max_pending: Option<usize>,
    pub(super) webhook_pending_bytes: Option<usize>,
    pub(super) webhook_store_timeout: Option<String>,
    #[serde(default)]
    pub(super) tenants: Vec<RawTenant>,
    #[serde(default)]
    pub(super) github: RawGithub,
    #[serde(default)]
    pub(super) worker: RawWorker,
    #[serde(default)]
    pub(super) api: RawApi,
    #[serde(default)]
    pub(super) pages: RawPages,
    #[serde(default)]
    pub(super) instances: Vec<RawInstance>,
    pub(super) command_prefix: Option<String>,
    #[serde(default)]
    pub(super) freeze: Vec<RawFreeze>,
    #[serde(default)]
    pub(super) retention: RawRetention,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetention {
    pub(super) logs: Option<String>,
    pub(super) outbox: Option<String>,
    pub(super) deliveries: Option<String>,
    pub(super) audit: Option<String>,
    pub(super) interval: Option<String>,
    pub(super) batch: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFreeze {
    pub(super) reason: Option<String>,
    /// A string or a TOML date-time.
    pub(super) start: Option<toml::Value>,
    pub(super) end: Option<toml::Value>,
    pub(super) weekly: Option<RawWeekly>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWeekly {
    pub(super) from: Option<String>,
    pub(super) until: Option<String>,
    pub(super) timezone: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTenant {
    pub(super) name: Option<String>,
    pub(super) webhook_secret_env: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGithub {
    pub(super) api_url: Option<String>,
    pub(super) token: Option<toml::Value>,
    pub(super) app_id: Option<u64>,
    pub(super) app_private_key: Option<toml::Value>,
    pub(super) app_private_key_path: Option<String>,
    pub(super) redeliver_interval: Option<String>,
    pub(super) redeliver_lookback: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorker {
    pub(super) concurrency: Option<usize>,
    pub(super) lease: Option<String>,
    pub(super) grace: Option<String>,
    pub(super) log_lines: Option<usize>,
    pub(super) log_bytes: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApi {
    #[serde(default)]
    pub(super) tokens: Vec<RawToken>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawToken {
    pub(super) name: Option<String>,
    pub(super) tenant: Option<String>,
    pub(super) sha256: Option<String>,
    pub(super) role: Option<String>,
    pub(super) instances: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPages {
    pub(super) public: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInstance {
    pub(super) name: Option<String>,
    pub(super) repo: Option<String>,
    pub(super) environment: Option<String>,
    pub(super) image: Option<String>,
    pub(super) strategy: Option<String>,
    pub(super) on_push: Option<Vec<String>>,
    pub(super) on_tag: Option<Vec<String>>,
    pub(super) commands: Option<bool>,
    pub(super) allowed_permissions: Option<Vec<String>>,
    pub(super) allow_forks: Option<bool>,
    pub(super) supersede: Option<bool>,
    pub(super) environment_url: Option<String>,
    pub(super) env: Option<BTreeMap<String, String>>,
    pub(super) pass_env: Option<Vec<String>>,
    pub(super) api_env: Option<Vec<String>>,
    pub(super) secret_env: Option<Vec<String>>,
    pub(super) provider: Option<RawProvider>,
    pub(super) health: Option<RawHealth>,
    pub(super) canary: Option<RawCanary>,
    pub(super) required_contexts: Option<Vec<String>>,
    pub(super) production_environment: Option<bool>,
    pub(super) transient_environment: Option<bool>,
    pub(super) params: Option<Vec<String>>,
    pub(super) deployers: Option<Vec<String>>,
    pub(super) lock_on_rollback: Option<bool>,
    pub(super) unlock_on_merge: Option<bool>,
    pub(super) approvals: Option<u32>,
    pub(super) approval_timeout: Option<String>,
    pub(super) rollback_approvals: Option<u32>,
    pub(super) required_checks: Option<Vec<String>>,
    pub(super) checks_timeout: Option<String>,
    pub(super) required_reviews: Option<u32>,
    pub(super) require_up_to_date: Option<bool>,
    pub(super) promote_from: Option<String>,
    pub(super) promotion_timeout: Option<String>,
    #[serde(default)]
    pub(super) freeze: Vec<RawFreeze>,
    /// `[[instances.gates]]`: metric health gates.
    #[serde(default)]
    pub(super) gates: Vec<RawMetricGate>,
    pub(super) watch: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetricGate {
    pub(super) name: Option<String>,
    pub(super) prometheus: Option<String>,
    pub(super) query: Option<String>,
    pub(super) max: Option<f64>,
    pub(super) min: Option<f64>,
    pub(super) interval: Option<String>,
    pub(super) count: Option<i64>,
    pub(super) failure_limit: Option<i64>,
    pub(super) no_data: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    pub(super) kind: Option<String>,
    pub(super) run: Option<Vec<String>>,
    pub(super) noop_run: Option<Vec<String>>,
    pub(super) timeout: Option<String>,
    pub(super) kill_grace: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    pub(super) url: Option<String>,
    pub(super) command: Option<Vec<String>>,
    pub(super) timeout: Option<String>,
    pub(super) interval: Option<String>,
    pub(super) deadline: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCanary {
    pub(super) steps: Option<Vec<i64>>,
    pub(super) pause: Option<String>,
}
