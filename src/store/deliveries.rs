//! Webhook deliveries and pull-request comments: `github`'s `DeliveryStore`. Deliveries
//! that arrive together are group-committed (`group`); comments are written in `comments`.

use std::time::Instant;

use diesel::prelude::*;

use super::{DieselStore, comments, db_error, insert_triggered_in, recording, schema};
use crate::deploy::{Error, TriggeredDeployment};
use crate::github::outbox::NewOutboxItem;
use crate::github::store::{
    CommentActed, CommentEffect, CommentItems, CommentStep, Delivery, DeliveryRecord,
    DeliveryStore, IngestError, PullHead, RepositorySeen,
};

#[async_trait::async_trait]
impl DeliveryStore for DieselStore {
    fn record_delivery(
        &self,
        delivery: &Delivery,
        triggered: &[TriggeredDeployment],
        items: &[NewOutboxItem],
    ) -> Result<DeliveryRecord, Error> {
        let job = recording::DeliveryJob {
            delivery,
            triggered,
            items,
        };
        let attempt = || {
            self.write(|conn| {
                recording::record_deliveries(conn, std::slice::from_ref(&job), insert_triggered_in)
            })
            .map(|mut records| records.pop().unwrap_or_default())
        };
        // A concurrent copy of the same delivery, or the same trigger, won the race: the
        // second attempt sees its rows.
        match attempt() {
            Err(Error::Conflict(_)) => attempt(),
            other => other,
        }
    }

    async fn record_delivery_checked(
        &self,
        delivery: Delivery,
        triggered: Vec<TriggeredDeployment>,
        items: Vec<NewOutboxItem>,
        seen: Option<RepositorySeen>,
        deadline: Option<Instant>,
    ) -> Result<DeliveryRecord, IngestError> {
        self.submit_delivery(delivery, triggered, items, seen, deadline)
            .await
    }

    fn stored_deliveries(&self, ids: &[String]) -> Result<Vec<String>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.read(|conn| {
            let mut stored = Vec::with_capacity(ids.len());
            // Bounded IN lists: SQLite caps the number of bound parameters.
            for chunk in ids.chunks(500) {
                let found: Vec<String> = schema::deliveries::table
                    .filter(schema::deliveries::id.eq_any(chunk))
                    .select(schema::deliveries::id)
                    .load(conn)
                    .map_err(db_error)?;
                stored.extend(found);
            }
            Ok(stored)
        })
    }

    fn act_on_comment(
        &self,
        step: &CommentStep,
        effect: &CommentEffect,
        items: CommentItems<'_>,
    ) -> Result<Option<CommentActed>, Error> {
        self.write(|conn| comments::act(conn, step, effect, items))
    }

    fn comment_steps(
        &self,
        _tenant_id: &str,
        repo: &str,
        comment_id: u64,
    ) -> Result<Vec<i32>, Error> {
        self.read(|conn| comments::steps(conn, repo, comment_id))
    }

    fn record_pull_head(
        &self,
        tenant_id: &str,
        repo: &str,
        pull_request: u64,
        head: &PullHead,
    ) -> Result<(), Error> {
        self.write(|conn| comments::record_head(conn, tenant_id, repo, pull_request, head))
    }

    fn pull_heads(
        &self,
        tenant_id: &str,
        repo: &str,
        pull_request: u64,
    ) -> Result<Vec<PullHead>, Error> {
        self.read(|conn| comments::heads(conn, tenant_id, repo, pull_request))
    }
}
