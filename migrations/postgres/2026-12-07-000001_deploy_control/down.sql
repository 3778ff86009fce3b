DROP TABLE replies;
DROP TABLE audit_events;
DROP TABLE locks;
DROP INDEX deployments_waiting;
ALTER TABLE deployments DROP COLUMN params;
ALTER TABLE deployments DROP COLUMN noop;
ALTER TABLE deployments DROP COLUMN waiting_for;
