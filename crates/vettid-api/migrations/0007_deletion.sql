-- Vault deletion: the member asks on the web, waits out the delay, and confirms; the hosts then
-- shred the vault in the enclave. One live request per member (the partial unique index), as
-- for recovery; expiry is recorded when noticed.
CREATE TABLE deletion_requests (
    request_id     TEXT PRIMARY KEY,
    member_id      TEXT NOT NULL REFERENCES registrations (member_id),
    requested_at   BIGINT NOT NULL,
    ready_at       BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    cancelled_at   BIGINT,
    cancel_reason  TEXT,
    completed_at   BIGINT,
    -- Set while a confirmation is shredding the vault: no cancel then (a stale one, left by
    -- a process that died, stops counting after a few minutes).
    confirming_at  BIGINT
);
CREATE INDEX deletion_requests_by_member ON deletion_requests (member_id, requested_at);
CREATE UNIQUE INDEX deletion_requests_one_live ON deletion_requests (member_id)
    WHERE cancelled_at IS NULL AND completed_at IS NULL;

-- Devices of a shredded vault stay listed (their keys stay revoked) but no longer count as a
-- vault: the member may enroll again.
ALTER TABLE devices ADD COLUMN vault_deleted_at BIGINT;

-- A device joining alongside the others: an enrollment session the member's registered device
-- approved (`joined_by`, its device key) after the enclave added the new device; its token is
-- spent only by /v1/devices/join/finalize.
ALTER TABLE enrollment_sessions ADD COLUMN joined_by TEXT;
