-- Connect codes: invitations sealed by the member's app under a key derived from a short code
-- the server never sees, kept until they expire or their maker deletes them. Only what the
-- directory needs is stored: no creation time, no address, no member.
-- * lookup: the code-derived lookup id, 32 lowercase hex characters.
-- * sealed: the opaque sealed invitation, base64url without padding (at most 4096 bytes).
-- * delete_hash: SHA-256 of the code-derived delete token, 64 lowercase hex characters.
CREATE TABLE connect_codes (
    lookup       TEXT PRIMARY KEY,
    sealed       TEXT NOT NULL,
    expires_at   BIGINT NOT NULL,
    delete_hash  TEXT NOT NULL
);
CREATE INDEX connect_codes_by_expiry ON connect_codes (expires_at);
