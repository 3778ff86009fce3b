-- Webhook deliveries, recorded before the answer is sent: the same delivery id again is
-- a duplicate, also after a restart.
CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    event TEXT NOT NULL,
    action TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    repo TEXT NOT NULL,
    outcome TEXT NOT NULL,
    received_at TIMESTAMP NOT NULL
);

-- Where a deployment came from on GitHub, and its GitHub Deployment once created.
ALTER TABLE deployments ADD COLUMN source TEXT NOT NULL DEFAULT '{}';
ALTER TABLE deployments ADD COLUMN github_deployment_id BIGINT;
-- Idempotency of triggers (a tag push and its create event deploy once).
ALTER TABLE deployments ADD COLUMN trigger_key TEXT;
CREATE UNIQUE INDEX deployments_trigger ON deployments (tenant_id, instance_id, trigger_key) WHERE trigger_key IS NOT NULL;

-- The outbox: everything that must reach GitHub (reports) or needs GitHub first (jobs),
-- written in the same transaction as the change that causes it, sent in order per key.
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    ordering_key TEXT NOT NULL,
    deployment_id TEXT,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    locked_by TEXT,
    locked_until TIMESTAMP,
    last_error TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX outbox_pending ON outbox (ordering_key, id) WHERE state = 'pending';
CREATE INDEX outbox_deployment ON outbox (deployment_id);
