-- The member confirms the enrolling device, and the device registered is the one the vault
-- registered.
--
-- * An app authenticating names its Ed25519 device key and X25519 session key; the member
--   types the comparison code the app derives from them (and the session) into the web page
--   before the app gets enrollment credentials. Wrong codes are counted; the member can cancel
--   at any phase before completion.
-- * Wrong enrollment codes presented for a member are counted against their live session; at
--   the fifth its code stops working (its QR token, 256 bits, does not).
-- * Finalize registers the device only with the vault's receipt for both keys, signed by the
--   vault's identity key, which is recorded (first enrollment) in `vaults`.
-- * NATS user keys issued to a device name it, so a renewal can revoke that device's older
--   credentials.
ALTER TABLE enrollment_sessions ADD COLUMN device_public_key TEXT;
ALTER TABLE enrollment_sessions ADD COLUMN session_public_key TEXT;
ALTER TABLE enrollment_sessions ADD COLUMN comparison_salt TEXT;
ALTER TABLE enrollment_sessions ADD COLUMN confirmed_at BIGINT;
ALTER TABLE enrollment_sessions ADD COLUMN confirm_failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE enrollment_sessions ADD COLUMN code_failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE enrollment_sessions ADD COLUMN cancelled_at BIGINT;
ALTER TABLE enrollment_sessions ADD COLUMN cancel_reason TEXT;

ALTER TABLE devices ADD COLUMN session_public_key TEXT;

CREATE TABLE vaults (
    member_id            TEXT PRIMARY KEY REFERENCES registrations (member_id),
    identity_public_key  TEXT NOT NULL,
    created_at           BIGINT NOT NULL
);

ALTER TABLE nats_user_keys ADD COLUMN device_public_key TEXT;
