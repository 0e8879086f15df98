-- Staged recovery of a vault to a new device: one request per member at a time. Expiry is
-- recorded when noticed (cancel_reason 'expired'), so "live" is a plain column test and the
-- partial unique index keeps one live request per member even under concurrent requests.
CREATE TABLE recovery_requests (
    request_id     TEXT PRIMARY KEY,
    member_id      TEXT NOT NULL REFERENCES registrations (member_id),
    requested_at   BIGINT NOT NULL,
    ready_at       BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    cancelled_at   BIGINT,
    cancel_reason  TEXT,
    completed_at   BIGINT
);
CREATE INDEX recovery_requests_by_member ON recovery_requests (member_id, requested_at);
CREATE UNIQUE INDEX recovery_requests_one_live ON recovery_requests (member_id)
    WHERE cancelled_at IS NULL AND completed_at IS NULL;

-- A recovery's QR is an enrollment session of its own kind: the new device authenticates and
-- is confirmed like an enrolling one, and finalizes through /v1/recovery/finalize.
ALTER TABLE enrollment_sessions ADD COLUMN recovery_request_id TEXT REFERENCES recovery_requests (request_id);

-- The newest timestamp (ms) of a device's signed question about recovery: each is spent once.
ALTER TABLE devices ADD COLUMN last_recovery_ts BIGINT;
