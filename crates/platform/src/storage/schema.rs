// Kept identical to what `diesel print-schema` prints for migrations/.

diesel::table! {
    api_keys (id) {
        id -> Uuid,
        name -> Text,
        key_hash -> Bytea,
        created_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    notifications (id) {
        id -> Uuid,
        user_id -> Text,
        seq -> Int8,
        title -> Text,
        body -> Text,
        priority -> Text,
        category -> Nullable<Text>,
        data -> Nullable<Jsonb>,
        created_at -> Timestamptz,
        stored_at -> Timestamptz,
        read_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    user_inbox (user_id) {
        user_id -> Text,
        last_seq -> Int8,
        unread_count -> Int8,
        version -> Int8,
    }
}

diesel::allow_tables_to_appear_in_same_query!(api_keys, notifications, user_inbox,);
