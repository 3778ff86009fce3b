-- The key that signs page sessions and log links when DEPLOYBOT_SESSION_KEY is not set:
-- generated once by the first server to start and shared by every replica. One row per
-- purpose ('pages'); the secret is hex.
CREATE TABLE session_keys (
    name TEXT PRIMARY KEY,
    secret TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
