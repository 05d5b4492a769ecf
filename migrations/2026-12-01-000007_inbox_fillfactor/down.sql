ALTER TABLE user_inbox RESET (fillfactor);
