-- Keys issued before renewals named their device: a member has one device, so they are its
-- (and a renewal ends them like the rest).
UPDATE nats_user_keys SET device_public_key = (
    SELECT d.device_public_key FROM devices d WHERE d.member_id = nats_user_keys.member_id
    ORDER BY d.created_at LIMIT 1
) WHERE device_public_key IS NULL;
