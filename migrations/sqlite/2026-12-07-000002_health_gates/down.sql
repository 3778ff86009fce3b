DROP INDEX deployments_watched;
ALTER TABLE deployments DROP COLUMN watch_lease_until;
ALTER TABLE deployments DROP COLUMN watch_owner;
ALTER TABLE deployments DROP COLUMN watch_until;
ALTER TABLE deployments DROP COLUMN gate_readings;
