-- Members an admin has suspended: they hold no web session, and may not sign in, enroll, or
-- get or renew NATS credentials until an admin lifts it.
CREATE TABLE member_suspensions (
    member_id     TEXT PRIMARY KEY REFERENCES registrations (member_id),
    suspended_at  BIGINT NOT NULL,
    suspended_by  TEXT NOT NULL
);
