DROP TABLE notifications;
DROP TABLE user_inbox;
DROP TABLE api_keys;
