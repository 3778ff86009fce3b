ALTER TABLE outbox DROP COLUMN format;
ALTER TABLE deployments DROP COLUMN format;
