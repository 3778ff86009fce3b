//! Diesel's view of the tables in `migrations/`; the same for both backends.

diesel::table! {
    instances (id) {
        id -> Text,
        tenant_id -> Text,
        name -> Text,
        repo -> Text,
        environment -> Text,
        last_release_version -> BigInt,
        deployment_count -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    releases (id) {
        id -> Text,
        tenant_id -> Text,
        instance_id -> Text,
        version -> BigInt,
        image -> Text,
        env -> Text,
        notes -> Text,
        commit_sha -> Text,
        active -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        last_active_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    deployments (id) {
        id -> Text,
        tenant_id -> Text,
        instance_id -> Text,
        release_id -> Text,
        state -> Text,
        strategy -> Text,
        image -> Text,
        env -> Text,
        provider_ref -> Text,
        started_at -> Nullable<Timestamp>,
        finished_at -> Nullable<Timestamp>,
        error -> Text,
        initiator -> Text,
        progress_phase -> Text,
        progress_percent -> Integer,
        progress_message -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        kind -> Text,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamp>,
        cancel_requested -> Bool,
        source -> Text,
        github_deployment_id -> Nullable<BigInt>,
        trigger_key -> Nullable<Text>,
        waiting_for -> Nullable<Text>,
        noop -> Bool,
        params -> Text,
        gate_readings -> Text,
        watch_until -> Nullable<Timestamp>,
        watch_owner -> Nullable<Text>,
        watch_lease_until -> Nullable<Timestamp>,
        // `format INTEGER NOT NULL DEFAULT 1` (see `queue::QUEUE_FORMAT`) is read only by
        // the claim's SQL text: this table is at diesel's 32-column limit.
    }
}

diesel::table! {
    deployment_logs (deployment_id, seq) {
        deployment_id -> Text,
        seq -> BigInt,
        tenant_id -> Text,
        stream -> Text,
        line -> Text,
        at -> Timestamp,
    }
}

diesel::table! {
    deliveries (id) {
        id -> Text,
        event -> Text,
        action -> Text,
        tenant_id -> Text,
        repo -> Text,
        outcome -> Text,
        received_at -> Timestamp,
    }
}

diesel::table! {
    outbox (id) {
        id -> BigInt,
        tenant_id -> Text,
        ordering_key -> Text,
        deployment_id -> Nullable<Text>,
        kind -> Text,
        payload -> Text,
        state -> Text,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        locked_by -> Nullable<Text>,
        locked_until -> Nullable<Timestamp>,
        last_error -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        lane -> Text,
        format -> Integer,
    }
}

diesel::table! {
    session_keys (name) {
        name -> Text,
        secret -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    repositories (full_name) {
        full_name -> Text,
        tenant_id -> Text,
        repository_id -> BigInt,
        installation_id -> Nullable<BigInt>,
        first_seen_at -> Timestamp,
    }
}

diesel::table! {
    comment_commands (repo, comment_id, step) {
        repo -> Text,
        comment_id -> BigInt,
        step -> Integer,
        tenant_id -> Text,
        acted_at -> Timestamp,
    }
}

diesel::table! {
    pull_heads (id) {
        id -> BigInt,
        tenant_id -> Text,
        repo -> Text,
        pull_request -> BigInt,
        head_sha -> Text,
        at -> Timestamp,
    }
}

diesel::table! {
    stranger_replies (tenant_id, repo, pull_request, login) {
        tenant_id -> Text,
        repo -> Text,
        pull_request -> BigInt,
        login -> Text,
        replied_at -> Timestamp,
    }
}

diesel::table! {
    locks (tenant_id, target) {
        tenant_id -> Text,
        target -> Text,
        repo -> Text,
        instance_id -> Nullable<Text>,
        holder -> Text,
        reason -> Text,
        pull_request -> Nullable<BigInt>,
        created_at -> Timestamp,
        expires_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    audit_events (id) {
        id -> BigInt,
        tenant_id -> Text,
        at -> Timestamp,
        actor -> Text,
        action -> Text,
        instance_id -> Nullable<Text>,
        deployment_id -> Nullable<Text>,
        detail -> Text,
    }
}

diesel::table! {
    replies (tenant_id, reply_key) {
        tenant_id -> Text,
        reply_key -> Text,
        repo -> Text,
        issue -> BigInt,
        marker -> Text,
        comment_id -> Nullable<BigInt>,
        edited_at -> Nullable<Timestamp>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(deployments, releases, instances);

diesel::table! {
    maintenance (name) {
        name -> Text,
        owner -> Nullable<Text>,
        lease_until -> Nullable<Timestamp>,
        last_run_at -> Nullable<Timestamp>,
    }
}
