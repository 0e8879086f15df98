-- The admin token is a one-time credential: it is exchanged (once) for an admin session of
-- 12 hours, and `vettid admin new-token` on the API's machine makes a new one. Issue 11,
-- finding 7: it used to be a bearer token without expiry.
ALTER TABLE admins ADD COLUMN token_used_at BIGINT;

CREATE TABLE admin_sessions (
    token_hash  TEXT PRIMARY KEY,
    admin_id    TEXT NOT NULL REFERENCES admins (admin_id),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX admin_sessions_by_admin ON admin_sessions (admin_id);
