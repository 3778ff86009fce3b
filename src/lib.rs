//! deploybot: a GitHub deploy bot. Webhooks and API calls become durable deployments that
//! a worker runs through a strategy and a provider, reported back to GitHub.

pub mod app;
pub mod cli;
pub mod config;
pub mod deploy;
pub mod github;
pub mod id;
pub mod metrics;
pub mod provider;
pub mod sandbox;
pub mod server;
pub mod store;
pub mod worker;
