// Kept identical to what `diesel print-schema` prints for migrations/.

diesel::table! {
    api_keys (id) {
        id -> Uuid,
        name -> Text,
        key_hash -> Bytea,
        created_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        scope -> Text,
        scopes -> Array<Text>,
        tenant -> Nullable<Text>,
        rate_per_sec -> Nullable<Float8>,
        burst -> Nullable<Int4>,
    }
}

diesel::table! {
    dead_letters (id) {
        id -> Uuid,
        priority -> Text,
        entry_id -> Text,
        payload -> Text,
        error -> Text,
        deliveries -> Int8,
        created_at -> Timestamptz,
        replayed_at -> Nullable<Timestamptz>,
        replay_entry_id -> Nullable<Text>,
        shard -> Int4,
    }
}

diesel::table! {
    erasures (id) {
        id -> Uuid,
        erasing -> Nullable<Text>,
        tenant -> Nullable<Text>,
        requested_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
        drained_through -> Nullable<Text>,
        passes -> Int4,
        notifications_erased -> Int8,
        entries_dropped -> Int8,
    }
}

diesel::table! {
    notifications (id, user_id) {
        id -> Uuid,
        user_id -> Text,
        seq -> Nullable<Int8>,
        title -> Text,
        body -> Text,
        priority -> Text,
        category -> Nullable<Text>,
        data -> Nullable<Jsonb>,
        created_at -> Timestamptz,
        stored_at -> Timestamptz,
        read_at -> Nullable<Timestamptz>,
        expires_at -> Nullable<Timestamptz>,
        expired -> Bool,
        archived_at -> Nullable<Timestamptz>,
        locale -> Nullable<Text>,
        template_key -> Nullable<Text>,
        template_version -> Nullable<Int4>,
        params -> Nullable<Jsonb>,
        muted -> Bool,
        seen_at -> Nullable<Timestamptz>,
        snoozed_until -> Nullable<Timestamptz>,
        state_version -> Int8,
    }
}

diesel::table! {
    revoked_tokens (jti) {
        jti -> Text,
        expires_at -> Timestamptz,
        revoked_at -> Timestamptz,
    }
}

diesel::table! {
    templates (key, version) {
        key -> Text,
        version -> Int4,
        source -> Jsonb,
        created_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    user_preferences (user_id) {
        user_id -> Text,
        locale -> Nullable<Text>,
        timezone -> Nullable<Text>,
        muted_categories -> Array<Text>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    user_inbox (user_id) {
        user_id -> Text,
        last_seq -> Int8,
        unread_count -> Int8,
        version -> Int8,
        unseen_count -> Int8,
        by_category -> Jsonb,
        trimmed_through -> Int8,
        epoch -> Int8,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    api_keys,
    dead_letters,
    erasures,
    notifications,
    revoked_tokens,
    templates,
    user_inbox,
    user_preferences,
);
