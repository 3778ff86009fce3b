-- Instances: one configured deploy target per (tenant, name), with a stable id.
-- last_release_version and deployment_count are maintained by the store in the same
-- transaction as the inserts they count: versions are allocated from the counter
-- (row-locked), and list totals are read without counting rows.
CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    repo TEXT NOT NULL,
    environment TEXT NOT NULL,
    last_release_version BIGINT NOT NULL DEFAULT 0,
    deployment_count BIGINT NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX instances_tenant_name ON instances (tenant_id, name);

CREATE TABLE releases (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    instance_id TEXT NOT NULL REFERENCES instances (id),
    version BIGINT NOT NULL,
    image TEXT NOT NULL,
    env TEXT NOT NULL,
    notes TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    active BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
-- One version number per instance, and keyset pagination by version.
CREATE UNIQUE INDEX releases_instance_version ON releases (tenant_id, instance_id, version);
-- Exactly one active release per instance.
CREATE UNIQUE INDEX releases_one_active ON releases (tenant_id, instance_id) WHERE active;

CREATE TABLE deployments (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    instance_id TEXT NOT NULL REFERENCES instances (id),
    release_id TEXT NOT NULL REFERENCES releases (id),
    state TEXT NOT NULL,
    strategy TEXT NOT NULL,
    image TEXT NOT NULL,
    env TEXT NOT NULL,
    provider_ref TEXT NOT NULL,
    started_at TIMESTAMP,
    finished_at TIMESTAMP,
    error TEXT NOT NULL,
    initiator TEXT NOT NULL,
    progress_phase TEXT NOT NULL,
    progress_percent INTEGER NOT NULL,
    progress_message TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
-- Keyset pagination of one instance's deployments, newest first.
CREATE INDEX deployments_instance_page ON deployments (tenant_id, instance_id, created_at DESC, id DESC);
