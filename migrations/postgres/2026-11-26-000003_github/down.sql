DROP TABLE outbox;
DROP INDEX deployments_trigger;
ALTER TABLE deployments DROP COLUMN trigger_key;
ALTER TABLE deployments DROP COLUMN github_deployment_id;
ALTER TABLE deployments DROP COLUMN source;
DROP TABLE deliveries;
