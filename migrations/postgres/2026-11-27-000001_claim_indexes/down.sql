DROP INDEX deployments_instance_pending;
DROP INDEX outbox_failed;
DROP INDEX outbox_claim;
