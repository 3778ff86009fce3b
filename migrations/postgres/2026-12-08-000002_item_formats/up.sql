-- The format each queued deployment and outbox item is written in. A release that writes
-- something an earlier release cannot read writes it with a higher format; a replica
-- claims only the formats it reads, so during a rolling upgrade the older replica leaves
-- such items to the newer one instead of failing them.
ALTER TABLE deployments ADD COLUMN format INTEGER NOT NULL DEFAULT 1;
ALTER TABLE outbox ADD COLUMN format INTEGER NOT NULL DEFAULT 1;
