DROP TABLE deployment_logs;
DROP INDEX deployments_leases;
DROP INDEX deployments_queue;
DROP INDEX deployments_one_running;
ALTER TABLE releases DROP COLUMN last_active_at;
ALTER TABLE deployments DROP COLUMN cancel_requested;
ALTER TABLE deployments DROP COLUMN lease_expires_at;
ALTER TABLE deployments DROP COLUMN lease_owner;
ALTER TABLE deployments DROP COLUMN kind;
