DROP TABLE session_keys;
