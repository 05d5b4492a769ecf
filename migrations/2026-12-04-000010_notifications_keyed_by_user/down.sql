DROP INDEX notifications_id_previous_release;
ALTER TABLE notifications
    DROP CONSTRAINT notifications_pkey,
    ADD CONSTRAINT notifications_pkey PRIMARY KEY (id);
