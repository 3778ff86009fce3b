-- The GitHub repository id (and App installation id) first seen for each configured
-- repository: a later delivery for the same name with another id is refused until an
-- operator accepts it (`deploybot repos accept OWNER/NAME` deletes the row).
CREATE TABLE repositories (
    full_name TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    repository_id BIGINT NOT NULL,
    installation_id BIGINT,
    first_seen_at TIMESTAMP NOT NULL
);
