DROP INDEX audit_events_at;
DROP INDEX outbox_done;
DROP INDEX deliveries_received;
DROP INDEX deployment_logs_at;
DROP TABLE maintenance;
