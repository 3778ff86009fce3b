-- Metric gates and the watch after success.
-- gate_readings: the JSON list of each metric gate's last measurement, shown on the page.
ALTER TABLE deployments ADD COLUMN gate_readings TEXT NOT NULL DEFAULT '[]';
-- watch_until: a succeeded deployment's gates keep running until then; a failure rolls back.
-- watch_owner and watch_lease_until: the replica watching it, and until when that holds.
ALTER TABLE deployments ADD COLUMN watch_until TIMESTAMP;
ALTER TABLE deployments ADD COLUMN watch_owner TEXT;
ALTER TABLE deployments ADD COLUMN watch_lease_until TIMESTAMP;
CREATE INDEX deployments_watched ON deployments (watch_until) WHERE watch_until IS NOT NULL;
