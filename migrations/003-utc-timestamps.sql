-- Since this version every connection writes DATETIME columns in UTC. Rows written before
-- hold the server's local time: move them to UTC (the server's offset now; nothing to do on
-- a server that runs in UTC). twofa_confirmed_at and used_at were always UTC_TIMESTAMP().
UPDATE users SET created_at = created_at - INTERVAL TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), NOW()) SECOND
    WHERE TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), NOW()) <> 0;
UPDATE products SET
    created_at = created_at - INTERVAL TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), NOW()) SECOND,
    updated_at = updated_at - INTERVAL TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), NOW()) SECOND
    WHERE TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), NOW()) <> 0;
