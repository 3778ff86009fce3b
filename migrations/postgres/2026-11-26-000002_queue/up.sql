-- The durable queue: pending deployments are claimed by workers, which hold a lease on
-- what they run. A rollback is a deployment of an existing release.
ALTER TABLE deployments ADD COLUMN kind TEXT NOT NULL DEFAULT 'deploy';
ALTER TABLE deployments ADD COLUMN lease_owner TEXT;
ALTER TABLE deployments ADD COLUMN lease_expires_at TIMESTAMP;
ALTER TABLE deployments ADD COLUMN cancel_requested BOOLEAN NOT NULL DEFAULT FALSE;
-- When the release last became active: "the previous release" is the one before.
ALTER TABLE releases ADD COLUMN last_active_at TIMESTAMP;

-- At most one running deployment per instance, whatever the number of workers.
CREATE UNIQUE INDEX deployments_one_running ON deployments (tenant_id, instance_id) WHERE state = 'running';
-- The queue, oldest first.
CREATE INDEX deployments_queue ON deployments (created_at, id) WHERE state = 'pending';
-- Lease recovery.
CREATE INDEX deployments_leases ON deployments (lease_expires_at) WHERE state = 'running';

CREATE TABLE deployment_logs (
    deployment_id TEXT NOT NULL REFERENCES deployments (id),
    seq BIGINT NOT NULL,
    tenant_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    line TEXT NOT NULL,
    at TIMESTAMP NOT NULL,
    PRIMARY KEY (deployment_id, seq)
);
