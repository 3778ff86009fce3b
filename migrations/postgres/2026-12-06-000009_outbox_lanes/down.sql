DROP INDEX outbox_claim;
CREATE INDEX outbox_claim ON outbox (id) WHERE state = 'pending';
ALTER TABLE outbox DROP COLUMN lane;
