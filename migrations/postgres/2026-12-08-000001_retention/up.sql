-- Retention: one row per periodic maintenance task (`prune`), leased to one replica at a
-- time, with when it last ran, so that it runs once per interval across replicas.
CREATE TABLE maintenance (
    name TEXT PRIMARY KEY,
    owner TEXT,
    lease_until TIMESTAMP,
    last_run_at TIMESTAMP
);
-- Pruning removes the oldest rows of each table: these find them without a full scan.
CREATE INDEX deployment_logs_at ON deployment_logs (at);
CREATE INDEX deliveries_received ON deliveries (received_at);
CREATE INDEX outbox_done ON outbox (updated_at) WHERE state IN ('sent', 'failed');
CREATE INDEX audit_events_at ON audit_events (at);
