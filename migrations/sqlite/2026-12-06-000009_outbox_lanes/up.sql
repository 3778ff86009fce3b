-- Outbox items are claimed round-robin by tenant and repository (the lane), so one
-- repository's flood of reports does not delay every other repository's. The claim
-- reads each lane's oldest pending items through this index.
ALTER TABLE outbox ADD COLUMN lane TEXT NOT NULL DEFAULT '';
DROP INDEX outbox_claim;
CREATE INDEX outbox_claim ON outbox (tenant_id, lane, id) WHERE state = 'pending';
