//! What an event asks of deploybot ([`Routing`]), as the rules for pushes and tags and
//! the route of comments both answer it, and the lookups they share.

use super::outbox::NewOutboxItem;
use super::webhook::events::Repository;
use crate::config::{Config, InstanceConfig};
use crate::deploy::Source;

/// A deployment an event asks for, before validation by the Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedDeploy {
    pub tenant: String,
    pub instance: String,
    pub image: String,
    pub commit_sha: String,
    pub notes: String,
    pub initiator: String,
    /// One deployment per instance and key: `tag:v1.2.0:<sha>`, `push:refs/heads/main:<before>..<after>`.
    pub trigger_key: String,
    pub source: Source,
}

/// What to do with an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Routing {
    /// A `ping`: answer with the zen.
    Pong { zen: String },
    /// Nothing to do, and why.
    Ignored { reason: String },
    /// Deployments to create now and outbox items (jobs, reactions, replies).
    Act {
        tenant: String,
        deploys: Vec<PlannedDeploy>,
        items: Vec<NewOutboxItem>,
        /// Instances the event matched but that cannot deploy it: (instance, why), told in
        /// the webhook's answer (GitHub's delivery log) and the log.
        refused: Vec<(String, String)>,
    },
}

/// The instances configured for a repository.
pub fn instances_of<'a>(config: &'a Config, repo: &Repository) -> Vec<&'a InstanceConfig> {
    config
        .instances
        .iter()
        .filter(|i| i.repo.eq_ignore_ascii_case(&repo.full_name))
        .collect()
}

/// The ordering key of everything about one pull request: its head changes and its
/// comments' jobs run in the order GitHub sent them.
pub fn pull_key(repo: &str, pr: u64) -> String {
    format!("pull:{}#{pr}", repo.to_lowercase())
}
