-- The sender claims the oldest pending items (ORDER BY id): without this index every
-- claim read the whole outbox, sent items included, so each claim grew slower with the
-- outbox's history. The failed items are counted for /metrics.
CREATE INDEX outbox_claim ON outbox (id) WHERE state = 'pending';
CREATE INDEX outbox_failed ON outbox (id) WHERE state = 'failed';
-- Each instance's queue head (its oldest pending deployment), for the worker's claim:
-- without it, finding the head read the instance's whole history of deployments.
CREATE INDEX deployments_instance_pending ON deployments (tenant_id, instance_id, created_at, id) WHERE state = 'pending';
