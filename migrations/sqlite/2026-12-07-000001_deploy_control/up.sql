-- Deploy control: dry runs, parameters and waiting deployments.
-- waiting_for: NULL, or the JSON {"kind", "reason", "until"} of what a pending deployment
-- waits for; the worker claims only pending deployments that wait for nothing.
ALTER TABLE deployments ADD COLUMN waiting_for TEXT;
ALTER TABLE deployments ADD COLUMN noop BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE deployments ADD COLUMN params TEXT NOT NULL DEFAULT '{}';
-- The waiting deployments, for the worker that lets them run when what they wait for ends.
CREATE INDEX deployments_waiting ON deployments (tenant_id, instance_id, created_at) WHERE state = 'pending' AND waiting_for IS NOT NULL;

-- Locks: one per instance ('instance:<id>') or per repository ('repo:<owner/name>',
-- lower-cased), held by a GitHub login ('@alice') or an API token ('token:ci').
-- A lock whose expires_at has passed is not held, whether or not its row is gone yet.
CREATE TABLE locks (
    tenant_id TEXT NOT NULL,
    target TEXT NOT NULL,
    repo TEXT NOT NULL,
    instance_id TEXT,
    holder TEXT NOT NULL,
    reason TEXT NOT NULL,
    pull_request BIGINT,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP,
    PRIMARY KEY (tenant_id, target)
);
CREATE INDEX locks_expiry ON locks (expires_at) WHERE expires_at IS NOT NULL;

-- Who did what: deploys, dry runs, rollbacks, cancels, locks, forced passes, refusals.
CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    at TIMESTAMP NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    instance_id TEXT,
    deployment_id TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX audit_events_page ON audit_events (tenant_id, id);
CREATE INDEX audit_events_instance ON audit_events (tenant_id, instance_id, id);

-- The one reply comment of a command, edited in place: the GitHub comment once created,
-- and the unguessable marker that finds it again when its creation's answer was lost.
CREATE TABLE replies (
    tenant_id TEXT NOT NULL,
    reply_key TEXT NOT NULL,
    repo TEXT NOT NULL,
    issue BIGINT NOT NULL,
    marker TEXT NOT NULL,
    comment_id BIGINT,
    edited_at TIMESTAMP,
    PRIMARY KEY (tenant_id, reply_key)
);
