-- Each step of a pull-request comment (its acknowledgement, then each command line) acts
-- at most once, whatever redelivers the comment or re-runs its job: the row is written in
-- the same transaction as the step's effect.
CREATE TABLE comment_commands (
    repo TEXT NOT NULL,
    comment_id BIGINT NOT NULL,
    step INTEGER NOT NULL,
    tenant_id TEXT NOT NULL,
    acted_at TIMESTAMP NOT NULL,
    PRIMARY KEY (repo, comment_id, step)
);

-- A pull request's head commits and when GitHub says it got them (the `updated_at` of
-- its `pull_request` opened, reopened and synchronize events), so that `/deploy` ships
-- the head its comment saw.
CREATE TABLE pull_heads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    repo TEXT NOT NULL,
    pull_request BIGINT NOT NULL,
    head_sha TEXT NOT NULL,
    at TIMESTAMP NOT NULL
);
CREATE INDEX pull_heads_pull ON pull_heads (tenant_id, repo, pull_request, at);

-- The last reply to a commenter without permission, per pull request: at most one an hour.
CREATE TABLE stranger_replies (
    tenant_id TEXT NOT NULL,
    repo TEXT NOT NULL,
    pull_request BIGINT NOT NULL,
    login TEXT NOT NULL,
    replied_at TIMESTAMP NOT NULL,
    PRIMARY KEY (tenant_id, repo, pull_request, login)
);
