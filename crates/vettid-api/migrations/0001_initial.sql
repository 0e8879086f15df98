-- The API's metadata: admins, invites, registrations, sign-in links and sessions, enrollment
-- sessions, devices and the NATS user keys issued to members.
--
-- Portable SQL (SQLite now, PostgreSQL later): TEXT, INTEGER, BIGINT, CHECK, UNIQUE,
-- REFERENCES; no SQLite-only syntax.
-- * Secrets (tokens, codes) are stored only as lowercase hex SHA-256 digests (`*_hash`).
-- * Times are unix seconds (BIGINT). Booleans are INTEGER 0/1.
-- * Single-use secrets carry a `*used_at` column set by `UPDATE … WHERE … used_at IS NULL`,
--   so a race cannot use one twice.

CREATE TABLE admins (
    admin_id    TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE admin_audit (
    audit_id  TEXT PRIMARY KEY,
    at        BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    subject   TEXT NOT NULL
);
CREATE INDEX admin_audit_by_time ON admin_audit (at);

CREATE TABLE invites (
    code          TEXT PRIMARY KEY,
    max_uses      BIGINT NOT NULL CHECK (max_uses >= 1),
    uses          BIGINT NOT NULL CHECK (uses >= 0 AND uses <= max_uses),
    expires_at    BIGINT NOT NULL,
    auto_approve  INTEGER NOT NULL CHECK (auto_approve IN (0, 1)),
    created_at    BIGINT NOT NULL,
    created_by    TEXT NOT NULL
);

CREATE TABLE registrations (
    registration_id  TEXT PRIMARY KEY,
    member_id        TEXT NOT NULL UNIQUE,
    email            TEXT NOT NULL UNIQUE,
    first_name       TEXT NOT NULL,
    last_name        TEXT NOT NULL,
    invite_code      TEXT NOT NULL REFERENCES invites (code),
    status           TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    created_at       BIGINT NOT NULL,
    decided_at       BIGINT,
    decided_by       TEXT
);
CREATE INDEX registrations_by_status ON registrations (status, created_at);

CREATE TABLE magic_links (
    token_hash  TEXT PRIMARY KEY,
    member_id   TEXT NOT NULL REFERENCES registrations (member_id),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);

CREATE TABLE member_sessions (
    token_hash  TEXT PRIMARY KEY,
    member_id   TEXT NOT NULL REFERENCES registrations (member_id),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

-- One enrollment: a code and a QR token (either authenticates the app, once, before
-- `expires_at`), then an enrollment token (until `token_expires_at`, spent by finalize).
CREATE TABLE enrollment_sessions (
    session_id        TEXT PRIMARY KEY,
    member_id         TEXT NOT NULL REFERENCES registrations (member_id),
    code_hash         TEXT NOT NULL,
    qr_token_hash     TEXT NOT NULL UNIQUE,
    phase             TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    authenticated_at  BIGINT,
    device_name       TEXT,
    token_hash        TEXT UNIQUE,
    token_expires_at  BIGINT,
    token_used_at     BIGINT,
    completed_at      BIGINT
);
CREATE INDEX enrollment_sessions_by_code ON enrollment_sessions (code_hash);
CREATE INDEX enrollment_sessions_by_member ON enrollment_sessions (member_id);

CREATE TABLE enrollment_phases (
    session_id  TEXT NOT NULL REFERENCES enrollment_sessions (session_id),
    phase       TEXT NOT NULL,
    at          BIGINT NOT NULL,
    PRIMARY KEY (session_id, phase)
);

-- A member's enrolled app: its Ed25519 key signs NATS credential refreshes.
CREATE TABLE devices (
    device_public_key      TEXT PRIMARY KEY,
    member_id              TEXT NOT NULL REFERENCES registrations (member_id),
    enrollment_session_id  TEXT NOT NULL REFERENCES enrollment_sessions (session_id),
    created_at             BIGINT NOT NULL,
    revoked_at             BIGINT,
    last_refresh_ts        BIGINT
);
CREATE INDEX devices_by_member ON devices (member_id);

-- Every NATS user key a member was ever issued a JWT for (revocation needs them all).
CREATE TABLE nats_user_keys (
    user_public_key  TEXT PRIMARY KEY,
    member_id        TEXT NOT NULL REFERENCES registrations (member_id),
    scope            TEXT NOT NULL CHECK (scope IN ('enrollment', 'member')),
    first_issued_at  BIGINT NOT NULL,
    last_issued_at   BIGINT NOT NULL,
    last_expires_at  BIGINT NOT NULL,
    revoked_at       BIGINT
);
CREATE INDEX nats_user_keys_by_member ON nats_user_keys (member_id);
